//! The Intel lab: the program runs on `kvm_intel`, inside a Linux that Bochs runs on an emulated
//! Intel CPU with VMX (EPT, unrestricted guest, VPID). QEMU's TCG emulates no VMX; Debian's
//! Bochs 2.7 does (see `../shared/intel-lab/README.md` for the measurement behind this).
//!
//! A run ([`run`]): the lab's cached bzImage and the base initramfs (the same assets as the AMD
//! lab, see [`crate::assets`]), a per-run initramfs part with a generated `/init`
//! ([`init_script`]) and the program, an ISOLINUX CD image of both ([`crate::iso`]), a
//! `bochsrc` ([`bochsrc`]); then Bochs, watched like QEMU in the AMD lab.
//!
//! Channels (Bochs has no virtio; its four 16550 UARTs carry everything):
//!
//! | lab device | Bochs mode | host side | carries |
//! |---|---|---|---|
//! | ttyS0 (COM1) | `file` on `/dev/fd/N` | a pipe: console log | kernel console, init's messages |
//! | ttyS1 (COM2) | `term` on a pty | the pty's master | markers out (`XV6LAB ...`, see [`crate::script`]); stdin frames in |
//! | ttyS2 (COM3) | `file` on `/dev/fd/N` | a pipe: our stdout | the program's stdout, raw |
//! | ttyS3 (COM4) | `file` on `/dev/fd/N` | a pipe: our stderr | the program's stderr, raw |
//!
//! Every line is 8-bit clean: init sets ttyS1–3 to raw with no echo and no output processing
//! (ttyS2/ttyS3 at 115200 baud, ttyS1 at 9600, see below); Bochs's `file` mode writes each byte
//! as sent, and its `term` mode sets the pty raw. The program writes straight to ttyS2/ttyS3
//! (no relay in between).
//!
//! **Stdin** travels in frames on ttyS1, one at a time: a relay in the lab asks with
//! `XV6LAB more`, the host answers `N\n` and N bytes (at most [`STDIN_FRAME`]), and `0\n` at the
//! end of input; the relay copies each frame into a FIFO that is the program's stdin, and closes
//! it at the end. Asking first keeps the lab's tty buffer from overflowing: never more than one
//! frame is in flight. Bochs's UART has no flow control either: it drops a byte that arrives
//! while its 16-byte receive FIFO is full, which a lab busy with a nested guest let happen at
//! 115200 baud (20 KB through `cat`: bytes lost after 3 KB); at 9600 baud, with reads of up to
//! 64 bytes at a time, the same 20 KB pass intact (~2 KB/s). The UART interrupts at every
//! byte (its receive trigger set to 1 through sysfs; Linux's default of 8 left the driver 8
//! byte times, 8 ms, to drain it before a drop, and a loaded host saw drops twice in CI). A
//! drop that happens anyway is seen in Bochs's log and fails the run at once, saying so
//! ([`watch_log`]).
//!
//! **The end of a run**: once the program has exited, init closes its own descriptors of
//! ttyS2/ttyS3 (the last close waits until the UART has sent everything), reports the bytes each
//! port transmitted (`tx:` of `/proc/tty/driver/serial`) with `XV6LAB sent`, then the exit
//! status, and waits; the host stops Bochs once that much of each stream has arrived — the same
//! protocol and checks as the AMD lab (see [`crate::script`]).
//!
//! Bochs runs in its own network namespace when the kernel allows one (its display, a VNC
//! server nobody connects to, then listens there and not on the host), in its own process
//! group, killed with its parent, and always killed and reaped at the end of a run. Its
//! internal debugger (built into Debian's `bochs-bin`) is told to continue (`-rc`), its log
//! keeps only errors (not the one per nested EPT violation its CPU model reports).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::apt::which;
use crate::assets::{self, Assets, Vendor};
use crate::error::LabError;
use crate::iso::{self, IsoParts};
use crate::qemu::{LineSplitter, QemuGuard};
use crate::request::{LabOutcome, LabRequest};
use crate::script::{parse_marker, InitSpec, Marker, MARKER_PREFIX};
use crate::streams::StdinSource;
use crate::supervise::{Shared, Watched};
use crate::tmp;

/// The Debian packages the Intel lab needs. `bochs-term` only satisfies `bochs`'s need for a
/// display library, which apt would otherwise meet with `bochs-wx` and wxWidgets (the lab uses
/// the built-in VNC one).
pub const APT_PACKAGES: &[&str] = &[
    "bochs",
    "bochs-term",
    "bochsbios",
    "vgabios",
    "isolinux",
    "syslinux-common",
    "xorriso",
];

/// Bochs's CPU model: Sandy Bridge (VMX with EPT, unrestricted guest, VPID; no APICv).
pub const CPU_MODEL: &str = "corei7_sandy_bridge_2600k";
/// Instructions per emulated second: the guest's TSC rate and what its timers count in.
pub const IPS: u64 = 50_000_000;
/// Largest stdin frame (bytes): well inside the lab tty's 4 KiB input buffer.
pub const STDIN_FRAME: usize = 1024;
/// The kernel command line (`$XV6_LAB_KERNEL_ARGS` is appended). `8250.nr_uarts=4`: all four
/// UARTs; `no_timer_check`, `tsc=reliable`: an emulated clock is not a broken one.
/// `cryptomgr.notests`: the kernel's crypto self-tests take ~15 s of a ~30 s boot under Bochs.
pub const KERNEL_CMDLINE: &str = "console=ttyS0,115200 rdinit=/init panic=-1 quiet \
     8250.nr_uarts=4 no_timer_check tsc=reliable mitigations=off cryptomgr.notests";

/// The host programs and files a run needs.
#[derive(Debug, Clone)]
pub struct IntelTools {
    /// `bochs-bin` (`$XV6_LAB_BOCHS` overrides).
    pub bochs: PathBuf,
    /// Bochs's BIOS.
    pub bios: PathBuf,
    /// The VGA BIOS.
    pub vgabios: PathBuf,
    /// ISOLINUX's boot sector.
    pub isolinux: PathBuf,
    /// ISOLINUX's core module.
    pub ldlinux: PathBuf,
    /// `xorriso`.
    pub xorriso: PathBuf,
}

/// Finds what a run needs; else the apt packages that provide what is missing.
pub fn find_tools() -> Result<IntelTools, Vec<&'static str>> {
    let mut missing = Vec::new();
    let mut need = |found: Option<PathBuf>, package: &'static str| {
        if found.is_none() && !missing.contains(&package) {
            missing.push(package);
        }
        found.unwrap_or_default()
    };
    let file = |p: &str| Some(PathBuf::from(p)).filter(|p| p.is_file());
    let bochs = match std::env::var_os("XV6_LAB_BOCHS").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => which("bochs-bin"),
    };
    if bochs.is_none() {
        need(None, "bochs");
        need(None, "bochs-term");
    }
    let tools = IntelTools {
        bochs: need(bochs, "bochs"),
        bios: need(file("/usr/share/bochs/BIOS-bochs-latest"), "bochsbios"),
        vgabios: need(file("/usr/share/bochs/VGABIOS-lgpl-latest"), "vgabios"),
        isolinux: need(file("/usr/lib/ISOLINUX/isolinux.bin"), "isolinux"),
        ldlinux: need(
            file("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
            "syslinux-common",
        ),
        xorriso: need(which("xorriso"), "xorriso"),
    };
    if missing.is_empty() {
        Ok(tools)
    } else {
        Err(missing)
    }
}

/// Generates the Intel lab's `/init` (busybox `sh`), quoting every argument and value with
/// [`crate::script::shell_quote`]. `spec.stdin_port` means stdin is streamed (over ttyS1
/// here); `spec.extra_ports` must be empty (Bochs has no ports to bridge).
pub fn init_script(spec: &InitSpec) -> Vec<u8> {
    let mut s: Vec<u8> = Vec::new();
    s.extend_from_slice(INIT_HEAD);
    s.extend_from_slice(crate::script::MEMORY_TUNING);
    for m in spec.modules {
        crate::script::push_insmod(&mut s, m);
    }
    s.extend_from_slice(INIT_KVM);
    if spec.stdin_port {
        s.extend_from_slice(INIT_STDIN_RELAY);
    }
    s.extend_from_slice(b"cd /\nmark stage exec\n(\n");
    crate::script::push_program(&mut s, spec);
    let stdin = if spec.stdin_port {
        "/tmp/stdin"
    } else {
        "/dev/null"
    };
    s.extend_from_slice(format!("\n) <{stdin} >&5 2>&6 5>&- 6>&- 8>&-\n").as_bytes());
    s.extend_from_slice(INIT_TAIL);
    s
}

/// Mounts, the UARTs, the control channel and its helpers.
const INIT_HEAD: &[u8] = br#"#!/bin/busybox sh
# Generated by the lab crate (tools/lab/src/bochs.rs): one run of a program on a real /dev/kvm
# (kvm_intel, in Bochs). ttyS1: markers out, stdin frames in; ttyS2/ttyS3: stdout/stderr.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for n in 1 2 3; do
  [ -c /dev/ttyS$n ] || mknod /dev/ttyS$n c 4 $((64 + n))
  stty -F /dev/ttyS$n 115200 raw -echo -echonl -iexten -opost cs8 -parenb -cstopb clocal -crtscts -ixon -ixoff
done
exec 8<>/dev/ttyS1
# Input: Bochs's UART drops what arrives while its 16-byte FIFO is full, and the nested guest
# can keep the lab busy: a slower line, reads of up to 64 bytes at a time, and an interrupt
# at every byte (the receive trigger at 1, not 8: 15 bytes of slack before a drop).
stty -F /dev/ttyS1 9600 min 64 time 1
mark() { echo "XV6LAB $*" >&8; }
off() { poweroff -f; reboot -f; sleep 5; echo o > /proc/sysrq-trigger; }
fail() {
  echo "lab: $*"
  dmesg | tail -n 15
  mark fail "$*"
  off
}
echo 1 >/sys/class/tty/ttyS1/rx_trig_bytes || fail "ttyS1: cannot set its receive trigger"
mark stage init
"#;

/// KVM's checks.
const INIT_KVM: &[u8] = br#"[ -c /dev/kvm ] || mknod /dev/kvm c 10 232 || fail "/dev/kvm missing"
[ -e /sys/module/kvm_intel ] || fail "kvm_intel did not load"
( : < /dev/kvm ) 2>/dev/null || fail "/dev/kvm cannot be opened"
mark stage kvm
exec 5>/dev/ttyS2 6>/dev/ttyS3
"#;

/// The stdin relay: asks for a frame, copies it into the FIFO, until a frame of 0 bytes.
const INIT_STDIN_RELAY: &[u8] = br#"mkfifo -m 600 /tmp/stdin
(
  exec 5>&- 6>&-
  while :; do
    mark more
    IFS= read -r n <&8 || break
    [ "$n" -gt 0 ] 2>/dev/null || break
    dd bs="$n" count=1 iflag=fullblock <&8 2>/dev/null || break
  done
) >/tmp/stdin &
relay=$!
"#;

/// After the program: drain, counts, results, the exit status; then the host stops us.
const INIT_TAIL: &[u8] = br#"status=$?
[ -n "$relay" ] && kill $relay 2>/dev/null
# The last close of a UART waits until it has sent everything.
exec 5>&- 6>&-
tx() { sed -n "s/^$1: .* tx:\([0-9]*\).*/\1/p" /proc/tty/driver/serial; }
out=$(tx 2)
err=$(tx 3)
if [ -s /lab/result ]; then
  while IFS= read -r l; do mark result "$l"; done < /lab/result
fi
if [ -n "$out" ] && [ -n "$err" ]; then
  mark sent "$out" "$err"
  mark exit $status
  sleep 86400
else
  mark exit $status
fi
off
"#;

/// The `bochsrc` of a run. Paths are relative to the run's directory (Bochs's working
/// directory) except the system's BIOS files and the pty.
pub fn bochsrc(tools: &IntelTools, mem_mib: u64, fds: [RawFd; 3], pty: &Path) -> String {
    let [console, out, err] = fds;
    format!(
        "# Generated by the lab crate (tools/lab/src/bochs.rs) for one run.\n\
         plugin_ctrl: unmapped=1, biosdev=0, speaker=0, e1000=0, parallel=0, serial=1\n\
         config_interface: textconfig\n\
         display_library: rfb, options=\"timeout=0\"\n\
         megs: {mem_mib}\n\
         cpu: model={CPU_MODEL}, count=1, ips={IPS}, reset_on_triple_fault=1, ignore_bad_msrs=1\n\
         romimage: file={}, options=fastboot\n\
         vgaromimage: file={}\n\
         vga: extension=vbe, update_freq=1\n\
         pci: enabled=1, chipset=i440fx\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=cdrom, path=boot.iso, status=inserted\n\
         boot: cdrom\n\
         floppy_bootsig_check: disabled=1\n\
         com1: enabled=1, mode=file, dev=/dev/fd/{console}\n\
         com2: enabled=1, mode=term, dev={}\n\
         com3: enabled=1, mode=file, dev=/dev/fd/{out}\n\
         com4: enabled=1, mode=file, dev=/dev/fd/{err}\n\
         clock: sync=none, time0=local\n\
         log: bochs.log\n\
         panic: action=fatal\n\
         error: action=report, cpu0=ignore\n\
         info: action=ignore\n\
         debug: action=ignore\n\
         mouse: enabled=0\n",
        tools.bios.display(),
        tools.vgabios.display(),
        pty.display(),
    )
}

/// A copy of `program` without its debugging information (`strip --strip-debug`, which keeps
/// the symbol table) in `dir`, if binutils' `strip` is there and works: the boot loader and the
/// kernel handle every byte of the initramfs at emulated speed (the `vmm` binary: 30 MB → 7 MB).
pub(crate) fn strip_debug(program: &Path, dir: &Path) -> Option<PathBuf> {
    let strip = which("strip")?;
    let out = dir.join("program.stripped");
    let ok = Command::new(strip)
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(out)
    } else {
        let _ = fs::remove_file(&out);
        None
    }
}

/// Writes the run's initramfs to `path` (the cached base, then the run's part); its size.
fn build_initrd(assets: &Assets, req: &LabRequest, path: &Path) -> Result<u64, LabError> {
    let placed = crate::payload::place(req)?;
    let args: Vec<&OsStr> = req.args.iter().map(OsString::as_os_str).collect();
    let init = init_script(&crate::payload::run_spec(
        req,
        &placed,
        assets.modules_for(Vendor::Intel),
        &args,
        &[],
    ));
    let dir = path.parent().unwrap_or(Path::new("."));
    let stripped = strip_debug(&req.program, dir);
    let program = stripped.as_deref().unwrap_or(&req.program);
    crate::payload::write_initrd(assets, program, &placed, &init, &req.files, path)
}

/// A pty for ttyS1: the master (ours, close-on-exec, non-blocking), the slave (kept open by us
/// so the master never reports a hang-up while Bochs opens and sets it up) and its path.
/// The slave is made private (0600) and raw.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd, PathBuf)> {
    // SAFETY: posix_openpt has no memory arguments; a negative result is an error.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: m is a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt take our descriptor; ptsname_r writes at most name.len() bytes.
    unsafe {
        if libc::grantpt(m) != 0
            || libc::unlockpt(m) != 0
            || libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: ptsname_r succeeded, so name holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: path is a valid C string.
    let s = unsafe { libc::open(path.as_ptr(), flags) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: termios calls on our descriptor with a termios we own; fchmod on our descriptor.
    unsafe {
        let mut t = std::mem::zeroed::<libc::termios>();
        if libc::tcgetattr(s, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(s, libc::TCSANOW, &t) != 0 || libc::fchmod(s, 0o600) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fl = libc::fcntl(m, libc::F_GETFL);
        if fl < 0 || libc::fcntl(m, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(OsStr::from_bytes(path.to_bytes()));
    Ok((master, slave, path))
}

/// Waits up to 50 ms for `events` on `fd`.
fn poll_one(fd: BorrowedFd, events: libc::c_short) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: p is a valid pollfd for the call.
    match unsafe { libc::poll(&mut p, 1, 50) } {
        r if r < 0 => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            e => Err(e),
        },
        r => Ok(r > 0),
    }
}

/// Reads the control channel (the pty's master) until Bochs is gone: markers go to `tx`, each
/// `XV6LAB more` (the stdin relay asking for a frame) to `more`. Once `done` is set, what is
/// still buffered is read, then it returns (Bochs writes nothing more).
fn read_control(
    master: &OwnedFd,
    sh: &Shared,
    tx: mpsc::Sender<(Instant, Marker)>,
    more: mpsc::Sender<()>,
) {
    let mut split = LineSplitter::default();
    let more_line = format!("{MARKER_PREFIX} more");
    let mut on_line = |l: &str| {
        log::debug!("lab control: {l}");
        if l.trim() == more_line {
            let _ = more.send(());
        } else if let Some(m) = parse_marker(l) {
            let _ = tx.send((Instant::now(), m));
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let finishing = sh.done.load(Ordering::Acquire);
        match poll_one(master.as_fd(), libc::POLLIN) {
            Ok(true) => {}
            Ok(false) if finishing => break,
            Ok(false) => continue,
            Err(e) => {
                log::warn!("lab: waiting on the control channel: {e}");
                break;
            }
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            split.feed(&buf[..n as usize], &mut on_line);
            continue;
        }
        if n == 0 {
            break;
        }
        match io::Error::last_os_error() {
            e if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) => {}
            // EIO: no slave side left.
            _ => break,
        }
    }
    split.finish(on_line);
}

/// One stdin frame's bytes: the header `N\n`, then the data.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut f = format!("{}\n", data.len()).into_bytes();
    f.extend_from_slice(data);
    f
}

/// Writes all of `data` to the non-blocking pty master; false if the run ended first.
fn write_all(master: &OwnedFd, mut data: &[u8], sh: &Shared) -> bool {
    while !data.is_empty() {
        if sh.done.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: data is valid for data.len() bytes.
        let n = unsafe { libc::write(master.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => {}
            e if e.kind() == io::ErrorKind::WouldBlock => {
                if poll_one(master.as_fd(), libc::POLLOUT).is_err() {
                    return false;
                }
            }
            e => {
                log::debug!("lab: writing stdin to the control channel: {e}");
                return false;
            }
        }
    }
    true
}

/// Answers each request for stdin with a frame of what has arrived (waiting for some), and the
/// first request after the end of input with the empty frame.
fn feed_stdin(src: &StdinSource, master: &OwnedFd, more: mpsc::Receiver<()>, sh: &Shared) {
    let mut buf = vec![0u8; STDIN_FRAME];
    loop {
        match more.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if !sh.done.load(Ordering::Acquire) => continue,
            Err(_) => return,
        }
        let n = loop {
            if sh.done.load(Ordering::Acquire) {
                return;
            }
            match poll_one(src.fd(), libc::POLLIN) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    log::warn!("lab: cannot wait for stdin ({e}); the program sees end of input");
                    break 0;
                }
            }
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(src.fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                break n as usize;
            }
            match io::Error::last_os_error() {
                e if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
                e => {
                    log::warn!("lab: cannot read stdin ({e}); the program sees end of input");
                    break 0;
                }
            }
        };
        if !write_all(master, &frame(&buf[..n]), sh) || n == 0 {
            log::debug!("lab: stdin ended");
            return;
        }
    }
}

/// Puts the child in its own network namespace if the kernel lets us (Bochs's VNC display
/// then listens there, not on the host's network); nothing happens otherwise.
fn isolate_network(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls async-signal-safe functions (geteuid, unshare).
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() == 0 {
                libc::unshare(libc::CLONE_NEWNET);
            } else {
                libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
            }
            Ok(())
        });
    }
}

/// Runs `req` in the Intel lab (see the module docs); called by [`crate::run_with_options`].
pub(crate) fn run(
    req: &LabRequest,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> Result<LabOutcome, LabError> {
    let start = Instant::now();
    crate::request::check_request(req)?;
    if !req.tcp_ports.is_empty() || !req.unix_ports.is_empty() {
        return Err(LabError::InvalidRequest(
            "the Intel lab has no TCP bridges (Bochs has no virtio-serial): use the AMD lab".into(),
        ));
    }
    let tools = find_tools().map_err(|packages| LabError::IntelLabMissing { packages })?;
    let stdin = StdinSource::open(&req.stdin)?;
    let assets = assets::ensure_assets()?;

    tmp::sweep_stale(&std::env::temp_dir(), "xv6-lab-");
    let tmp = tmp::TempDir::new_in(&std::env::temp_dir(), "xv6-lab-")?;
    let dir = tmp.path();
    let mem = build_boot_iso(&tools, &assets, req, dir)?;

    let pipe = || crate::qemu::pipe().map_err(|e| LabError::io("creating a pipe", e));
    let (console_r, console_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (master, slave, pty) = open_pty().map_err(|e| LabError::io("creating a pty", e))?;
    let fds = [&console_w, &out_w, &err_w].map(|f| f.as_raw_fd());
    let cmd = bochs_command(&tools, mem, fds, &pty, dir)?;
    let prepared = start.elapsed();
    let spawned_at = Instant::now();
    let guard =
        QemuGuard::spawn(cmd, &fds).map_err(|e| LabError::io_path("starting", &tools.bochs, e))?;
    // Bochs has its copies; ours must go, or our readers never see the end.
    drop((console_w, out_w, err_w));
    let ends = Ends {
        console: console_r,
        out: out_r,
        err: err_r,
        master,
    };
    let limits = crate::supervise::Limits {
        deadline: start + req.timeout,
        run_timeout: req.run_timeout,
        restore_by: None,
    };
    let watched = watch_bochs(guard, ends, stdin.as_ref(), (stdout, stderr), dir, &limits);
    drop(slave);
    crate::supervise::log_timings(&watched, spawned_at, prepared);
    if watched.markers.is_empty() && !matches!(watched.ending, crate::supervise::Ending::TimedOut) {
        log_bochs_tail(dir);
    }
    drop(tmp);
    crate::supervise::conclude(req, watched)
}

/// Builds the boot CD of a run of `req` in `dir` (isolinux, the bzImage, the run's
/// initramfs). Returns the machine's RAM in MiB.
fn build_boot_iso(
    tools: &IntelTools,
    assets: &Assets,
    req: &LabRequest,
    dir: &Path,
) -> Result<u64, LabError> {
    let initrd = dir.join("initrd.cpio");
    let initrd_size = build_initrd(assets, req, &initrd)?;
    let cmdline = crate::qemu::with_extra_kernel_args(KERNEL_CMDLINE);
    let iso_path = dir.join("boot.iso");
    let parts = IsoParts {
        xorriso: &tools.xorriso,
        isolinux: &tools.isolinux,
        ldlinux: &tools.ldlinux,
        kernel: &assets.bzimage,
        initrd: &initrd,
    };
    iso::build(&parts, &cmdline, dir, &iso_path)?;
    Ok(req.guest_mem_mib + crate::request::LAB_OVERHEAD_MIB + 2 * initrd_size.div_ceil(1 << 20))
}

/// Writes Bochs's configuration and debugger script into `dir` and returns the command that
/// runs it there (its network cut off).
fn bochs_command(
    tools: &IntelTools,
    mem: u64,
    fds: [RawFd; 3],
    pty: &Path,
    dir: &Path,
) -> Result<Command, LabError> {
    let rc = dir.join("bochsrc");
    fs::write(&rc, bochsrc(tools, mem, fds, pty))
        .map_err(|e| LabError::io_path("writing", &rc, e))?;
    let debugger = dir.join("debugger.rc");
    fs::write(&debugger, "c\nquit\n").map_err(|e| LabError::io_path("writing", &debugger, e))?;
    let mut cmd = Command::new(&tools.bochs);
    cmd.args(["-q", "-f", "bochsrc", "-rc", "debugger.rc"])
        .current_dir(dir)
        .stderr(Stdio::piped());
    isolate_network(&mut cmd);
    log::debug!("lab: {cmd:?} in {}", dir.display());
    Ok(cmd)
}

/// Our ends of a Bochs run's channels: the console, the program's stdout and stderr, and the
/// pty that carries control markers out and stdin in.
struct Ends {
    console: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    master: OwnedFd,
}

/// Watches a Bochs run to its end: its readers, the stdin feeder and the log watcher run
/// beside the watch of `guard` under `limits`.
fn watch_bochs(
    mut guard: QemuGuard,
    ends: Ends,
    stdin: Option<&StdinSource>,
    (stdout, stderr): (&mut (dyn Write + Send), &mut (dyn Write + Send)),
    dir: &Path,
    limits: &crate::supervise::Limits,
) -> Watched {
    let bochs_err = guard.take_stderr();
    let shared = Shared::default();
    let (tx, rx) = mpsc::channel::<(Instant, Marker)>();
    let (more_tx, more_rx) = mpsc::channel::<()>();
    let mut markers = Vec::new();
    let Ends {
        console,
        out,
        err,
        master,
    } = ends;
    let ending = std::thread::scope(|s| {
        let sh = &shared;
        let master = &master;
        s.spawn(move || crate::supervise::read_console(console, sh));
        s.spawn(move || read_control(master, sh, tx, more_tx));
        s.spawn(move || crate::supervise::forward(out, stdout, "stdout", &sh.out, sh));
        s.spawn(move || crate::supervise::forward(err, stderr, "stderr", &sh.err, sh));
        if let Some(e) = bochs_err {
            s.spawn(move || crate::supervise::read_qemu_stderr(e, sh));
        }
        if let Some(src) = stdin {
            s.spawn(move || feed_stdin(src, master, more_rx, sh));
        }
        let log = dir.join("bochs.log");
        s.spawn(move || watch_log(&log, sh));
        let ending = crate::supervise::watch(&mut guard, &rx, &mut markers, limits, sh);
        guard.kill();
        sh.done.store(true, Ordering::Release);
        ending
    });
    markers.extend(rx.try_iter());
    drop(master);
    Watched::gather(ending, markers, shared)
}

/// What Bochs logs when its UART drops input: the guest left its receive FIFO full.
const RX_OVERFLOW: &str = "receive FIFO overflow";

/// Watches Bochs's log (errors only) while the run lasts: input dropped by a UART fails the
/// run at once, with one line, instead of leaving the program waiting for it.
fn watch_log(path: &Path, sh: &Shared) {
    use std::io::{Read, Seek, SeekFrom};
    let mut seen = 0u64;
    let mut tail = String::new();
    while !sh.done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = fs::File::open(path) else {
            continue;
        };
        let mut new = Vec::new();
        if f.seek(SeekFrom::Start(seen)).is_err() || f.read_to_end(&mut new).is_err() {
            continue;
        }
        seen += new.len() as u64;
        // Keep a line's worth from before, so a message split across reads is still found.
        tail.push_str(&String::from_utf8_lossy(&new));
        if tail.contains(RX_OVERFLOW) {
            sh.output_failed.lock().unwrap().get_or_insert(LabError::io(
                "the Intel lab lost part of the program's stdin (Bochs's UART overflowed while \
                 the lab was busy); feed it less at a time, or use --engine lab-amd",
                io::Error::other(RX_OVERFLOW),
            ));
            return;
        }
        let keep = tail.len().saturating_sub(RX_OVERFLOW.len());
        let cut = (keep..=tail.len())
            .find(|&i| tail.is_char_boundary(i))
            .unwrap_or(tail.len());
        tail.drain(..cut);
    }
}

/// Bochs's log (errors only), at debug level, when the lab said nothing.
fn log_bochs_tail(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join("bochs.log")) {
        for l in text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            log::debug!("lab bochs log: {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(frame(b"ab\n\x00"), b"4\nab\n\x00");
        assert_eq!(frame(b""), b"0\n");
    }

    #[test]
    fn init_runs_the_program_on_the_uarts_and_parses() {
        let args = [OsStr::new("--flag"), OsStr::new("a b'c")];
        let modules = vec![
            "/lib/modules/lab/kvm.ko".to_string(),
            "/lib/modules/lab/kvm_intel.ko".to_string(),
        ];
        let env = vec![("RUST_LOG".to_string(), "debug".to_string())];
        for stdin in [false, true] {
            let script = init_script(&InitSpec {
                modules: &modules,
                program: "/lab/bin/vmm",
                args: &args,
                env: &env,
                stdin_port: stdin,
                extra_ports: &[],
            });
            let text = String::from_utf8(script).unwrap();
            assert!(text.starts_with("#!/bin/busybox sh\n"));
            assert!(text.contains(
                "insmod '/lib/modules/lab/kvm_intel.ko' || fail 'kvm_intel did not load'\n"
            ));
            assert!(!text.contains("kvm_amd.ko"));
            let tuned = text.find("use_zero_page").expect("no memory tuning");
            assert!(tuned < text.find("insmod").unwrap());
            assert!(text.contains("[ -e /sys/module/kvm_intel ] || fail"));
            assert!(text.contains("  export RUST_LOG='debug'\n"));
            assert!(text.contains("exec '/lab/bin/vmm' \\\n    '--flag' \\\n    'a b'\\''c'\n"));
            let redirect = if stdin { "/tmp/stdin" } else { "/dev/null" };
            assert!(text.contains(&format!("\n) <{redirect} >&5 2>&6 5>&- 6>&- 8>&-\n")));
            assert_eq!(text.contains("mark more"), stdin);
            let result = crate::script::RESULT_PATH;
            assert!(text.contains(&format!("[ -s {result} ]")));
            assert!(text.contains("  mark sent \"$out\" \"$err\"\n  mark exit $status\n"));
            let sh = Command::new("sh").arg("-n").arg("-c").arg(&text).status();
            assert!(sh.unwrap().success(), "generated init must parse");
        }
    }

    /// The relay's loop, run by a real sh on a pipe: frames in, the bytes out, nothing more.
    #[test]
    fn the_stdin_relay_copies_frames_exactly() {
        if which("dd").is_none() {
            return;
        }
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut input = Vec::new();
        for chunk in data.chunks(STDIN_FRAME) {
            input.extend(frame(chunk));
        }
        input.extend(frame(b""));
        input.extend(b"after the end");
        let script = "mark() { :; }\n\
             while :; do mark more; IFS= read -r n || break; \
             [ \"$n\" -gt 0 ] 2>/dev/null || break; \
             dd bs=\"$n\" count=1 iflag=fullblock 2>/dev/null || break; done";
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.stdout == data,
            "{} of {} bytes",
            out.stdout.len(),
            data.len()
        );
    }

    #[test]
    fn bochsrc_names_the_channels_and_the_cpu() {
        let tools = IntelTools {
            bochs: "/usr/bin/bochs-bin".into(),
            bios: "/b/BIOS".into(),
            vgabios: "/b/VGA".into(),
            isolinux: "/i".into(),
            ldlinux: "/l".into(),
            xorriso: "/x".into(),
        };
        let rc = bochsrc(&tools, 768, [7, 8, 9], Path::new("/dev/pts/3"));
        assert!(rc.contains("megs: 768\n"));
        assert!(rc.contains(&format!("cpu: model={CPU_MODEL}, count=1, ips=50000000,")));
        assert!(rc.contains("romimage: file=/b/BIOS, options=fastboot\n"));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/dev/fd/7\n"));
        assert!(rc.contains("com2: enabled=1, mode=term, dev=/dev/pts/3\n"));
        assert!(rc.contains("com3: enabled=1, mode=file, dev=/dev/fd/8\n"));
        assert!(rc.contains("com4: enabled=1, mode=file, dev=/dev/fd/9\n"));
        assert!(rc.contains("error: action=report, cpu0=ignore\n"));
    }

    #[test]
    fn dropped_input_in_the_bochs_log_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("bochs.log");
        fs::write(&log, "00000001e[SER   ] com2: receive FIFO ov").unwrap();
        let sh = Shared::default();
        std::thread::scope(|s| {
            let t = s.spawn(|| watch_log(&log, &sh));
            std::thread::sleep(Duration::from_millis(500));
            assert!(sh.output_failed.lock().unwrap().is_none(), "not yet");
            let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(b"erflow\n").unwrap();
            let start = Instant::now();
            while !t.is_finished() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            sh.done.store(true, Ordering::Release);
        });
        let e = sh
            .output_failed
            .lock()
            .unwrap()
            .take()
            .expect("the overflow is seen");
        assert!(
            e.to_string().contains("lost part of the program's stdin"),
            "{e}"
        );
    }

    #[test]
    fn a_pty_is_private_and_raw() {
        use std::os::unix::fs::PermissionsExt;
        let (_m, s, path) = open_pty().unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // SAFETY: tcgetattr on our descriptor into a termios we own.
        let t = unsafe {
            let mut t = std::mem::zeroed::<libc::termios>();
            assert_eq!(libc::tcgetattr(s.as_raw_fd(), &mut t), 0);
            t
        };
        assert_eq!(t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        assert_eq!(t.c_oflag & libc::OPOST, 0);
        assert_eq!(t.c_iflag & (libc::ICRNL | libc::IXON), 0);
    }
}
