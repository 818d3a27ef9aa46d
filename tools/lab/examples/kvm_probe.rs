//! Test helper for the lab's integration test: opens /dev/kvm, asks KVM_GET_API_VERSION and
//! creates a VM, then prints distinct text to stdout and stderr and exits with the status given
//! as the first argument. Further arguments are echoed (one per line, as `arg[i]=<bytes>`) to
//! stdout, `LAB_PROBE_FILE` (if set) is read and echoed, and `LAB_PROBE_VAR` is echoed.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

/// `_IO(KVMIO, 0x00)`.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
/// `_IO(KVMIO, 0x01)`.
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    let status: i32 = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let path = c"/dev/kvm";
    // SAFETY: plain syscalls on a NUL-terminated path and the returned descriptor.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let _ = writeln!(
            err,
            "probe: open /dev/kvm: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(100);
    }
    // SAFETY: KVM ioctls without arguments on a /dev/kvm descriptor.
    let api = unsafe { libc::ioctl(fd, KVM_GET_API_VERSION, 0) };
    // SAFETY: as above.
    let vm = unsafe { libc::ioctl(fd, KVM_CREATE_VM, 0) };
    writeln!(out, "probe: KVM_GET_API_VERSION={api}").unwrap();
    writeln!(
        out,
        "probe: KVM_CREATE_VM {}",
        if vm >= 0 { "ok" } else { "failed" }
    )
    .unwrap();
    for (i, a) in args.iter().enumerate().skip(2) {
        write!(out, "arg[{i}]=").unwrap();
        out.write_all(a.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    if let Ok(v) = std::env::var("LAB_PROBE_VAR") {
        writeln!(out, "var={v}").unwrap();
    }
    if let Some(f) = std::env::var_os("LAB_PROBE_FILE") {
        let data = std::fs::read(&f).unwrap();
        out.write_all(b"file=").unwrap();
        out.write_all(&data).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.write_all(b"raw:a\nb\r\nc\x00\xff\n").unwrap();
    out.flush().unwrap();
    writeln!(err, "probe: this goes to stderr").unwrap();
    std::process::exit(status);
}
