//! Running QEMU: the command line, the pipes and sockets its character devices use, and a guard
//! that kills it.
//!
//! The lab VM has two UARTs (console, control markers), each a QEMU `file:` serial backend
//! opened on `/dev/fd/N`, the write end of a pipe we create, and one `virtio-serial-pci`
//! controller whose named ports ([`VirtPort`]) carry the program's streams and any TCP bridges:
//! a port's backend is the write end of a pipe (output), one end of a socket pair (input, or
//! both ways) or a TCP listen address. Every descriptor is close-on-exec everywhere except in
//! QEMU. Reader threads poll, so every wait is bounded, and QEMU is killed and reaped by
//! [`QemuGuard`]'s `Drop` on every path (including a panic); `PR_SET_PDEATHSIG` kills it if we
//! die.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::apt::{run_tool, which};
use crate::error::LabError;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The emulated CPU: AMD-flavoured with SVM and nested paging (TCG emulates no Intel VMX).
pub const DEFAULT_CPU: &str = "qemu64,+svm,+npt";

/// Kernel command line of the lab (`$XV6_LAB_KERNEL_ARGS` is appended, for debugging, e.g.
/// `loglevel=7` to see the whole boot on the console log). `no_timer_check`: on a loaded host
/// TCG can miss the kernel's IO-APIC timer check, which then panics the boot
/// (`clear_IO_APIC_pin` … `x86_late_time_init` on the console); the timer works regardless.
/// `init_on_free=1`: freed pages (the initramfs image once unpacked, above all) are zeroed,
/// so a warm snapshot skips them (zero pages cost nothing in a saved state): 151 → 107 MiB.
/// `cryptomgr.notests`: no crypto self-tests (seconds of emulated boot, nothing we use).
///
/// `nohz=off highres=off`: the lab kernel's LAPIC timer runs periodic (QEMU re-arms it on its
/// own) instead of one-shot. With a one-shot timer, lab runs hung now and then (8 of 66
/// runs of a fuzzer whose children sleep a few ticks, with `--cow`): QEMU's monitor showed
/// the lab's CPU halted with interrupts on and its timer interrupt pending but never taken
/// (`info lapic`: IRR 236, ISR empty, PPR 0x10, the one-shot count at 0; `info registers`:
/// HLT=1, IF=1, in the idle routine). The likely cause is QEMU (10.0) TCG's nested SVM:
/// VMRUN sets the virtual-interrupt request in `interrupt_request` with a plain
/// read-modify-write outside the big lock, which can drop the "poll the APIC" request the
/// timer thread sets at the same moment (later QEMU sets those bits atomically). KVM uses
/// that virtual interrupt whenever our guest has an interrupt pending with interrupts off.
/// The wake-up is lost, the one-shot timer is never re-armed, and every timer of the lab
/// kernel stops: the guest's LAPIC timer (an hrtimer there), so its ticks freeze in
/// `sleep`, and the inner `vmm`'s own `--timeout`. A periodic timer fires again a tick
/// later and recovers the lost interrupt: 0 hangs in 46 runs (vmm/tests/suite/fuzz.rs). The cost:
/// the lab kernel ticks at its HZ while idle, and its hrtimers have tick resolution.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet no_timer_check init_on_free=1 \
     cryptomgr.notests nohz=off highres=off rdinit=/init";

/// The most CPUs a lab machine gets (the guest's own bound, `--cpus` 1–8).
pub const MAX_CPUS: u32 = 8;
/// `XV6_LAB_CPUS=N` lets a lab machine have up to N CPUs (1–8) instead of one.
pub const CPUS_ENV: &str = "XV6_LAB_CPUS";

/// The most CPUs a lab machine gets: one, or `$XV6_LAB_CPUS` if set to 1–8 (another value is
/// ignored, with a warning). A run of several vCPUs gets as many lab CPUs as it has vCPUs, up
/// to this ([`crate::LabRequest::machine_cpus`]); above one, QEMU's multi-threaded TCG gives
/// each a host thread, so that the vCPUs really run at once.
///
/// Why one by default, though several vCPUs then take turns on it: with two lab CPUs and the
/// host's cores busy with other work, QEMU 10.0's emulation of nested SVM corrupted the
/// guest. `vmm run --cpus 2` of xv6-public's init and sh (xv6-public's `sh` restarted by
/// `init` about a thousand times in 8 s) beside the AMD tests, as CI runs it: 2 triple faults
/// in 24 runs with multi-threaded TCG, 2 kernel panics in 10 with both lab CPUs on one QEMU
/// thread (`-accel tcg,thread=single`), none in 32 with one lab CPU. The lab kernel's KVM
/// trace (`kvm:kvm_exit`) of a triple fault shows the 32-bit guest's vCPU at RIP
/// 0xffffffffc0379dcc, an address in the lab kernel's own KVM module, just before the
/// shutdown; both panics are a timer interrupt taken inside the timer handler's `wakeup`,
/// whose interrupts are off (an interrupt gate, a spin lock held).
pub fn lab_cpus() -> u32 {
    cpus_from(std::env::var(CPUS_ENV).ok().as_deref())
}

/// [`lab_cpus`] from `$XV6_LAB_CPUS`'s value.
fn cpus_from(env: Option<&str>) -> u32 {
    match env.filter(|v| !v.is_empty()) {
        None => 1,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_CPUS).contains(&n) => n,
            _ => {
                log::warn!("lab: ignoring {CPUS_ENV}={v:?} (give 1 to {MAX_CPUS})");
                1
            }
        },
    }
}

/// qboot, QEMU's minimal firmware (package qemu-system-data): boots ~0.1 s faster than SeaBIOS.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// The firmware to use: qboot if installed, else QEMU's default (SeaBIOS).
pub fn fast_bios() -> Option<&'static Path> {
    let p = Path::new(QBOOT);
    p.is_file().then_some(p)
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected `AF_UNIX` stream socket pair, both ends close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What a virtio-serial port is connected to on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortBackend {
    /// An inherited descriptor QEMU writes the guest's bytes to (a pipe's write end).
    Output(RawFd),
    /// An inherited connected stream socket, both ways; when we shut down our sending side,
    /// the guest reads end of input once it has read what was sent.
    Socket(RawFd),
    /// A TCP address QEMU listens on (one client at a time, not waiting for one to start).
    TcpListen(SocketAddr),
    /// A Unix socket QEMU creates and listens on, likewise.
    UnixListen(std::path::PathBuf),
}

/// One named port of the lab's virtio-serial controller, `/dev/virtio-ports/NAME` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtPort {
    /// The port's name (checked by the caller: no commas, see [`valid_port_name`]).
    pub name: String,
    /// Its host side.
    pub backend: PortBackend,
}

/// Whether `name` can name a virtio-serial port: 1–64 of `[A-Za-z0-9._-]`, not starting
/// with a dot or dash (safe in QEMU's option syntax, a file name and a shell word).
pub fn valid_port_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The `-chardev` and `-device` arguments of `ports` (chardev ids `port0`, `port1`, ...).
fn port_args(ports: &[VirtPort]) -> Vec<OsString> {
    if ports.is_empty() {
        return Vec::new();
    }
    let mut a: Vec<String> = vec!["-device".into(), "virtio-serial-pci,id=vser0".into()];
    for (i, p) in ports.iter().enumerate() {
        let chardev = match &p.backend {
            PortBackend::Output(fd) => format!("file,id=port{i},path=/dev/fd/{fd}"),
            PortBackend::Socket(fd) => format!("socket,id=port{i},fd={fd},server=off"),
            PortBackend::TcpListen(addr) => format!(
                "socket,id=port{i},host={},port={},server=on,wait=off,nodelay=on",
                addr.ip(),
                addr.port()
            ),
            // QEMU's option syntax doubles a comma inside a value.
            PortBackend::UnixListen(path) => format!(
                "socket,id=port{i},path={},server=on,wait=off",
                path.display().to_string().replace(',', ",,")
            ),
        };
        a.extend(["-chardev".into(), chardev, "-device".into()]);
        a.push(format!(
            "virtserialport,bus=vser0.0,chardev=port{i},name={}",
            p.name
        ));
    }
    a.into_iter().map(OsString::from).collect()
}

/// One lab machine as QEMU is to run it.
#[derive(Debug, Clone)]
pub struct Machine<'a> {
    /// The kernel (`-kernel`).
    pub kernel: &'a Path,
    /// The initramfs (`-initrd`).
    pub initrd: &'a Path,
    /// The firmware (`-bios`), if not QEMU's default.
    pub bios: Option<&'a Path>,
    /// The `-cpu` model.
    pub cpu: &'a str,
    /// CPUs (`-smp`); more than one runs TCG multi-threaded (a host thread per CPU).
    pub cpus: u32,
    /// RAM in MiB.
    pub mem_mib: u64,
    /// ttyS0, ttyS1, ...: an inherited descriptor each (`Output`: QEMU only writes to it;
    /// `Socket`: both ways).
    pub serials: &'a [PortBackend],
    /// The virtio-serial ports.
    pub ports: &'a [VirtPort],
    /// An inherited connected socket QEMU serves its QMP monitor on (used to save the
    /// machine's state: [`crate::warm`]).
    pub qmp: Option<RawFd>,
    /// A saved state to start from (`-incoming file:PATH`) instead of booting.
    pub incoming: Option<&'a Path>,
}

/// The `-serial` arguments of `serials` (socket chardev ids `serial0`, `serial1`, ...).
fn serial_args(serials: &[PortBackend]) -> Vec<OsString> {
    let mut a: Vec<String> = Vec::new();
    for (i, s) in serials.iter().enumerate() {
        match s {
            PortBackend::Output(fd) => a.extend(["-serial".into(), format!("file:/dev/fd/{fd}")]),
            PortBackend::Socket(fd) => a.extend([
                "-chardev".into(),
                format!("socket,id=serial{i},fd={fd},server=off"),
                "-serial".into(),
                format!("chardev:serial{i}"),
            ]),
            PortBackend::TcpListen(addr) => a.extend([
                "-serial".into(),
                format!("tcp:{}:{},server=on,wait=off", addr.ip(), addr.port()),
            ]),
            PortBackend::UnixListen(path) => a.extend([
                "-serial".into(),
                format!("unix:{},server=on,wait=off", path.display()),
            ]),
        }
    }
    a.into_iter().map(OsString::from).collect()
}

impl Machine<'_> {
    /// QEMU's arguments (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        // x86 guests on an x86 host run multi-threaded by default in QEMU 10; asked for
        // explicitly all the same (several CPUs are there to run at once).
        let accel = if self.cpus > 1 {
            "tcg,thread=multi"
        } else {
            "tcg"
        };
        let mut a: Vec<OsString> = ["-accel", accel, "-cpu", self.cpu, "-m"]
            .iter()
            .map(OsString::from)
            .collect();
        a.push(format!("{}M", self.mem_mib).into());
        a.push("-smp".into());
        a.push(self.cpus.max(1).to_string().into());
        for s in [
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ] {
            a.push(s.into());
        }
        match self.qmp {
            Some(fd) => a.extend(
                [
                    "-chardev".to_string(),
                    format!("socket,id=qmp,fd={fd},server=off"),
                    "-mon".to_string(),
                    "chardev=qmp,mode=control".to_string(),
                ]
                .map(OsString::from),
            ),
            None => a.extend(["-monitor", "none"].map(OsString::from)),
        }
        if let Some(b) = self.bios {
            a.push("-bios".into());
            a.push(b.into());
        }
        a.push("-kernel".into());
        a.push(self.kernel.into());
        a.push("-initrd".into());
        a.push(self.initrd.into());
        a.push("-append".into());
        a.push(kernel_cmdline().into());
        a.extend(serial_args(self.serials));
        a.extend(port_args(self.ports));
        if let Some(state) = self.incoming {
            let mut uri = OsString::from("file:");
            uri.push(state);
            a.extend(["-incoming".into(), uri]);
        }
        a
    }
}

/// [`KERNEL_CMDLINE`] and `$XV6_LAB_KERNEL_ARGS`.
pub fn kernel_cmdline() -> String {
    with_extra_kernel_args(KERNEL_CMDLINE)
}

/// A lab kernel's command line `base`, then `$XV6_LAB_KERNEL_ARGS` (for debugging), if set.
pub fn with_extra_kernel_args(base: &str) -> String {
    let mut cmdline = base.to_string();
    if let Some(extra) = std::env::var("XV6_LAB_KERNEL_ARGS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        cmdline.push(' ');
        cmdline.push_str(&extra);
    }
    cmdline
}

/// A running QEMU, killed and reaped when dropped.
pub struct QemuGuard {
    child: Option<Child>,
}

impl QemuGuard {
    /// Spawns `cmd`, letting it inherit `keep` (cleared close-on-exec in the child only).
    pub fn spawn(mut cmd: Command, keep: &[RawFd]) -> io::Result<QemuGuard> {
        let keep = keep.to_vec();
        // SAFETY: the closure only calls async-signal-safe functions (fcntl, prctl, umask).
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // What QEMU creates (a saved state, a Unix socket) is ours alone.
                libc::umask(0o077);
                Ok(())
            });
        }
        // Its own process group: a terminal's Ctrl-C reaches only us, and we stop QEMU (see
        // `interrupt`) after removing nothing it still needs.
        cmd.process_group(0);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        Ok(QemuGuard {
            child: Some(cmd.spawn()?),
        })
    }

    /// Takes QEMU's stderr pipe, if it was piped.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    /// Non-blocking: QEMU's exit status if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Kills QEMU (if still running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                log::debug!("lab: killing QEMU (pid {})", c.id());
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies everything readable from `fd` to `sink` until EOF. Once `done` is set (QEMU is gone),
/// gives up after `grace` without data, so a stray holder of the write end cannot hang us.
pub fn pump(fd: OwnedFd, done: &AtomicBool, grace: Duration, mut sink: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    let step_ms = 50;
    let mut idle_after_done = Duration::ZERO;
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, step_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!("lab: poll failed: {e}");
            return;
        }
        if r == 0 {
            if done.load(Ordering::Acquire) {
                idle_after_done += Duration::from_millis(step_ms as u64);
                if idle_after_done >= grace {
                    log::warn!("lab: a serial pipe stayed open after QEMU exited; giving up on it");
                    return;
                }
            }
            continue;
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            // A socket whose peer (QEMU) is gone reads as reset: the end, as EOF is.
            if e.kind() == io::ErrorKind::ConnectionReset {
                log::debug!("lab: read: {e}");
            } else {
                log::warn!("lab: read failed: {e}");
            }
            return;
        }
        if n == 0 {
            return; // EOF: QEMU closed its end.
        }
        sink(&buf[..n as usize]);
    }
}

/// Splits a byte stream into lines (without `\r`/`\n`).
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `line` for every completed line.
    pub fn feed(&mut self, data: &[u8], mut line: impl FnMut(&str)) {
        for &b in data {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&self.partial);
                line(text.trim_end_matches('\r'));
                self.partial.clear();
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    /// Flushes an unterminated last line.
    pub fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial);
            line(text.trim_end_matches('\r'));
            self.partial.clear();
        }
    }
}

/// The path of the QEMU binary: `$XV6_LAB_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf, LabError> {
    if let Some(q) = std::env::var_os("XV6_LAB_QEMU").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(q);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::QemuMissing)
        };
    }
    which("qemu-system-x86_64").ok_or(LabError::QemuMissing)
}

/// The oldest QEMU whose TCG arms a nested guest's DR7 on VMRUN: before it, debug-register
/// breakpoints and watchpoints of a guest inside the lab never fire.
pub const QEMU_NESTED_DEBUG_MIN: (u32, u32) = (9, 1);

/// The `(major, minor)` of a `qemu-system-x86_64 --version` first line, if it is one.
pub fn parse_qemu_version(line: &str) -> Option<(u32, u32)> {
    let v = line.strip_prefix("QEMU emulator version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The lab's QEMU version line, when its version is known to be older than
/// [`QEMU_NESTED_DEBUG_MIN`] (None: new enough, or unknown).
pub fn qemu_too_old_for_debugging() -> Option<String> {
    let q = find_qemu().ok()?;
    let out = run_tool(Command::new(q).arg("--version")).ok()?;
    let line = out.lines().next()?.trim().to_string();
    (parse_qemu_version(&line)? < QEMU_NESTED_DEBUG_MIN).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        s.feed(b"ab\r\ncd", |l| got.push(l.to_string()));
        s.feed(b"e\nf", |l| got.push(l.to_string()));
        s.finish(|l| got.push(l.to_string()));
        assert_eq!(got, ["ab", "cde", "f"]);
    }

    #[test]
    fn args_name_the_serial_fds_and_ports() {
        let ports = [
            VirtPort {
                name: "lab.stdout".into(),
                backend: PortBackend::Output(11),
            },
            VirtPort {
                name: "lab.stdin".into(),
                backend: PortBackend::Socket(12),
            },
            VirtPort {
                name: "gdb".into(),
                backend: PortBackend::TcpListen("127.0.0.1:1234".parse().unwrap()),
            },
        ];
        let serials = [PortBackend::Output(7), PortBackend::Output(8)];
        let m = Machine {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            bios: None,
            cpu: DEFAULT_CPU,
            cpus: 1,
            mem_mib: 768,
            serials: &serials,
            ports: &ports,
            qmp: None,
            incoming: None,
        };
        let joined = joined_args(&m);
        assert!(joined.contains("-m 768M"));
        assert!(joined.contains("-accel tcg -cpu qemu64,+svm,+npt"));
        assert!(joined.contains("-smp 1 "));
        assert!(joined.contains(
            "-serial file:/dev/fd/7 -serial file:/dev/fd/8 -device virtio-serial-pci,id=vser0 "
        ));
        assert!(joined.contains(
            "-chardev file,id=port0,path=/dev/fd/11 \
             -device virtserialport,bus=vser0.0,chardev=port0,name=lab.stdout"
        ));
        assert!(joined.contains("-chardev socket,id=port1,fd=12,server=off "));
        assert!(joined.ends_with(
            "-chardev socket,id=port2,host=127.0.0.1,port=1234,server=on,wait=off,nodelay=on \
             -device virtserialport,bus=vser0.0,chardev=port2,name=gdb"
        ));
        assert!(joined.contains("-monitor none"));
        assert!(!joined.contains("-incoming"));
    }

    /// A machine's QEMU arguments as one string.
    fn joined_args(m: &Machine) -> String {
        let a: Vec<String> = m
            .args()
            .iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        a.join(" ")
    }

    #[test]
    fn a_warm_machine_has_its_qmp_socket_and_incoming_state() {
        let serials = [PortBackend::Output(7), PortBackend::Socket(9)];
        let warm = Machine {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            bios: None,
            cpu: DEFAULT_CPU,
            cpus: 2,
            mem_mib: 768,
            serials: &serials,
            ports: &[],
            qmp: Some(10),
            incoming: Some(Path::new("/s/state")),
        };
        let w = joined_args(&warm);
        assert!(!w.contains("virtio-serial-pci,id=vser0"));
        assert!(w.contains(
            "-serial file:/dev/fd/7 -chardev socket,id=serial1,fd=9,server=off -serial chardev:serial1"
        ));
        assert!(w.contains("-chardev socket,id=qmp,fd=10,server=off -mon chardev=qmp,mode=control"));
        assert!(!w.contains("-monitor none"));
        assert!(w.ends_with("-incoming file:/s/state"));
        assert!(w.contains("-accel tcg,thread=multi -cpu qemu64,+svm,+npt -m 768M -smp 2 "));
    }

    #[test]
    fn the_lab_has_one_cpu_or_up_to_eight_when_the_environment_says() {
        assert_eq!(cpus_from(None), 1);
        assert_eq!(cpus_from(Some("")), 1);
        assert_eq!(cpus_from(Some("1")), 1);
        assert_eq!(cpus_from(Some("2")), 2);
        assert_eq!(cpus_from(Some("8")), 8);
        for bad in ["0", "9", "two", "-1"] {
            assert_eq!(cpus_from(Some(bad)), 1, "{bad}");
        }
    }

    #[test]
    fn port_names_are_checked() {
        for ok in ["gdb", "lab.stdin", "a-b_c.9", &"x".repeat(64)] {
            assert!(valid_port_name(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a,b", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(!valid_port_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_socket_pair_carries_bytes_and_a_half_close() {
        use std::io::{Read, Write};
        let (a, b) = socketpair().unwrap();
        let (mut a, mut b) = (std::fs::File::from(a), std::fs::File::from(b));
        a.write_all(b"xyz").unwrap();
        // SAFETY: shutdown on a descriptor we own; no memory is involved.
        assert_eq!(unsafe { libc::shutdown(a.as_raw_fd(), libc::SHUT_WR) }, 0);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"xyz");
        b.write_all(b"back").unwrap();
        let mut back = [0u8; 4];
        a.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"back");
    }

    #[test]
    fn pump_reads_to_eof_and_gives_up_when_told() {
        let (r, w) = pipe().unwrap();
        let done = AtomicBool::new(false);
        let mut got = Vec::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::from(w);
                use std::io::Write;
                (&f).write_all(b"hello").unwrap();
            });
            pump(r, &done, Duration::from_millis(100), |d| {
                got.extend_from_slice(d)
            });
        });
        assert_eq!(got, b"hello");
        // A writer that never closes: pump returns once `done` is set.
        let (r, _w) = pipe().unwrap();
        done.store(true, Ordering::Release);
        let t = std::time::Instant::now();
        pump(r, &done, Duration::from_millis(100), |_| {});
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn qemu_versions_are_read_from_the_version_line() {
        let p = super::parse_qemu_version;
        assert_eq!(
            p("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b2)"),
            Some((7, 2))
        );
        assert_eq!(
            p("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)"),
            Some((10, 0))
        );
        assert!(p("QEMU emulator version 9.0.0").unwrap() < super::QEMU_NESTED_DEBUG_MIN);
        assert!(p("QEMU emulator version 10.0.2").unwrap() >= super::QEMU_NESTED_DEBUG_MIN);
        assert_eq!(p("qemu-system-x86_64: not a version"), None);
    }
}
