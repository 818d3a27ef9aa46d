//! Running QEMU: the command line, the pipes its serial ports write to, and a guard that kills it.
//!
//! Each of the lab VM's four UARTs is a QEMU `file:` serial backend opened on `/dev/fd/N`, the
//! write end of a pipe we create (close-on-exec everywhere except in QEMU). Reader threads poll
//! the read ends, so every wait is bounded, and QEMU is killed and reaped by [`QemuGuard`]'s
//! `Drop` on every path (including a panic); `PR_SET_PDEATHSIG` kills it if we die.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The emulated CPU: AMD-flavoured with SVM and nested paging (TCG emulates no Intel VMX).
pub const DEFAULT_CPU: &str = "qemu64,+svm,+npt";

/// Kernel command line of the lab (`$XV6_LAB_KERNEL_ARGS` is appended, for debugging, e.g.
/// `loglevel=7` to see the whole boot on the console log).
pub const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet rdinit=/init";

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

/// QEMU's arguments (without the binary). `serial_fds` are the descriptor numbers QEMU
/// inherits for ttyS0..ttyS3.
pub fn qemu_args(
    kernel: &Path,
    initrd: &Path,
    bios: Option<&Path>,
    cpu: &str,
    mem_mib: u64,
    serial_fds: &[RawFd],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-accel", "tcg", "-cpu", cpu, "-m"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(format!("{mem_mib}M").into());
    for s in [
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ] {
        a.push(s.into());
    }
    if let Some(b) = bios {
        a.push("-bios".into());
        a.push(b.into());
    }
    a.push("-kernel".into());
    a.push(kernel.into());
    a.push("-initrd".into());
    a.push(initrd.into());
    a.push("-append".into());
    let mut cmdline = KERNEL_CMDLINE.to_string();
    if let Some(extra) = std::env::var("XV6_LAB_KERNEL_ARGS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        cmdline.push(' ');
        cmdline.push_str(&extra);
    }
    a.push(cmdline.into());
    for fd in serial_fds {
        a.push("-serial".into());
        a.push(format!("file:/dev/fd/{fd}").into());
    }
    a
}

/// A running QEMU, killed and reaped when dropped.
pub struct QemuGuard {
    child: Option<Child>,
}

impl QemuGuard {
    /// Spawns `cmd`, letting it inherit `keep` (cleared close-on-exec in the child only).
    pub fn spawn(mut cmd: Command, keep: &[RawFd]) -> io::Result<QemuGuard> {
        let keep = keep.to_vec();
        // SAFETY: the closure only calls async-signal-safe functions (fcntl, prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
            log::warn!("lab: read failed: {e}");
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
    fn args_name_the_serial_fds() {
        let a = qemu_args(
            Path::new("/k"),
            Path::new("/i"),
            None,
            DEFAULT_CPU,
            768,
            &[7, 8, 9, 10],
        );
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        let joined = s.join(" ");
        assert!(joined.contains("-m 768M"));
        assert!(joined.contains("-accel tcg -cpu qemu64,+svm,+npt"));
        assert!(joined.ends_with(
            "-serial file:/dev/fd/7 -serial file:/dev/fd/8 -serial file:/dev/fd/9 -serial file:/dev/fd/10"
        ));
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
}
