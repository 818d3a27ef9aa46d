//! The host side of the lab's channels: the pipes and sockets QEMU's character devices use
//! ([`Wiring`]), feeding the program's stdin as it arrives ([`feed_stdin`]) and counting the
//! output that has come back ([`Counter`]), which is how a run knows its output is complete
//! (see [`crate::script`], "The end of a run").

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::LabError;
use crate::qemu::{self, PortBackend, VirtPort};
use crate::request::LabStdin;
use crate::script::{COLLECT_PORT, REQUEST_PORT, STDERR_PORT, STDIN_PORT, STDOUT_PORT};

/// How long one wait on a descriptor lasts before the flags are looked at again (ms).
const STEP_MS: i32 = 50;

/// A pipe or socket pair: our end and QEMU's.
struct Pair {
    ours: OwnedFd,
    qemu: OwnedFd,
}

fn pipe_pair() -> Result<Pair, LabError> {
    let (ours, qemu) = qemu::pipe().map_err(|e| LabError::io("creating a pipe", e))?;
    Ok(Pair { ours, qemu })
}

fn socket_pair() -> Result<Pair, LabError> {
    let (ours, qemu) = qemu::socketpair().map_err(|e| LabError::io("creating a socket pair", e))?;
    Ok(Pair { ours, qemu })
}

/// Every descriptor of one run, before QEMU starts.
pub(crate) struct Wiring {
    console: Pair,
    /// A socket pair: markers come out, the warm start's go-ahead goes in.
    control: Pair,
    stdout: Pair,
    stderr: Pair,
    /// What the program leaves for the host after it exits (`LabRequest::collect`).
    collect: Pair,
    stdin: Option<Pair>,
    /// A warm start's request port (see [`crate::warm`]).
    request: Option<Pair>,
    tcp: Vec<(String, SocketAddr)>,
    unix: Vec<(String, PathBuf)>,
}

/// Our ends, once QEMU has its own.
pub(crate) struct HostEnds {
    pub console: OwnedFd,
    pub control: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub collect: OwnedFd,
    /// Our end of the stdin socket (non-blocking), when stdin is streamed.
    pub stdin: Option<OwnedFd>,
    /// Our end of the request socket (blocking), for a warm start.
    pub request: Option<OwnedFd>,
}

fn stdin_pair() -> Result<Pair, LabError> {
    let p = socket_pair()?;
    set_nonblocking(&p.ours).map_err(|e| LabError::io("setting up stdin", e))?;
    Ok(p)
}

impl Wiring {
    /// A cold boot's descriptors: pipes for the console and the output streams, socket
    /// pairs for control and (if `stdin` is streamed) stdin; the TCP bridges noted.
    pub fn new(
        stdin: bool,
        tcp: &[(String, SocketAddr)],
        unix: &[(String, PathBuf)],
    ) -> Result<Wiring, LabError> {
        Ok(Wiring {
            console: pipe_pair()?,
            control: socket_pair()?,
            stdout: pipe_pair()?,
            stderr: pipe_pair()?,
            collect: pipe_pair()?,
            stdin: stdin.then(stdin_pair).transpose()?,
            request: None,
            tcp: tcp.to_vec(),
            unix: unix.to_vec(),
        })
    }

    /// A warm machine's descriptors (the same devices at its build and at every restore):
    /// stdin is always a port, and the request port carries the run.
    pub fn warm() -> Result<Wiring, LabError> {
        Ok(Wiring {
            request: Some(socket_pair()?),
            ..Wiring::new(true, &[], &[])?
        })
    }

    /// ttyS0 (console, output only) and ttyS1 (control, both ways).
    pub fn serials(&self) -> Vec<PortBackend> {
        vec![
            PortBackend::Output(self.console.qemu.as_raw_fd()),
            PortBackend::Socket(self.control.qemu.as_raw_fd()),
        ]
    }

    /// The virtio-serial ports: the program's streams and the collect port, then the TCP
    /// bridges.
    pub fn ports(&self) -> Vec<VirtPort> {
        let port = |name: &str, backend| VirtPort {
            name: name.to_string(),
            backend,
        };
        let mut ports = vec![
            port(
                STDOUT_PORT,
                PortBackend::Output(self.stdout.qemu.as_raw_fd()),
            ),
            port(
                STDERR_PORT,
                PortBackend::Output(self.stderr.qemu.as_raw_fd()),
            ),
            port(
                COLLECT_PORT,
                PortBackend::Output(self.collect.qemu.as_raw_fd()),
            ),
        ];
        if let Some(p) = &self.stdin {
            ports.push(port(STDIN_PORT, PortBackend::Socket(p.qemu.as_raw_fd())));
        }
        if let Some(p) = &self.request {
            ports.push(port(REQUEST_PORT, PortBackend::Socket(p.qemu.as_raw_fd())));
        }
        for (name, addr) in &self.tcp {
            ports.push(port(name, PortBackend::TcpListen(*addr)));
        }
        for (name, path) in &self.unix {
            ports.push(port(name, PortBackend::UnixListen(path.clone())));
        }
        ports
    }

    /// The descriptors QEMU inherits.
    pub fn qemu_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.console.qemu.as_raw_fd(), self.control.qemu.as_raw_fd()];
        fds.extend([&self.stdout, &self.stderr, &self.collect].map(|p| p.qemu.as_raw_fd()));
        fds.extend(self.stdin.as_ref().map(|p| p.qemu.as_raw_fd()));
        fds.extend(self.request.as_ref().map(|p| p.qemu.as_raw_fd()));
        fds
    }

    /// Drops QEMU's ends (it has its copies; ours must go, or our readers never see EOF).
    pub fn into_host_ends(self) -> HostEnds {
        HostEnds {
            console: self.console.ours,
            control: self.control.ours,
            stdout: self.stdout.ours,
            stderr: self.stderr.ours,
            collect: self.collect.ours,
            stdin: self.stdin.map(|p| p.ours),
            request: self.request.map(|p| p.ours),
        }
    }
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is involved.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where the program's stdin comes from on the host.
pub(crate) enum StdinSource {
    /// This process's stdin (read directly, past std's buffer, which stays empty).
    Inherit(io::Stdin),
    /// An opened file.
    File(File),
}

impl StdinSource {
    /// Opens `stdin`'s source; `None` for [`LabStdin::Null`].
    pub fn open(stdin: &LabStdin) -> Result<Option<StdinSource>, LabError> {
        Ok(match stdin {
            LabStdin::Null => None,
            LabStdin::Inherit => Some(StdinSource::Inherit(io::stdin())),
            LabStdin::File(path) => Some(StdinSource::File(
                File::open(path).map_err(|e| LabError::io_path("reading", path, e))?,
            )),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            StdinSource::Inherit(s) => s.as_fd(),
            StdinSource::File(f) => f.as_fd(),
        }
    }
}

/// Waits up to [`STEP_MS`] for `events` on `fd`: whether they (or an error or hang-up) came.
fn wait_for(fd: BorrowedFd, events: libc::c_short) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call.
    match unsafe { libc::poll(&mut pfd, 1, STEP_MS) } {
        r if r < 0 => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            }
        }
        r => Ok(r > 0),
    }
}

/// Copies `src` into the stdin socket `sock` as data arrives, then, at end of input, shuts
/// down the socket's sending side: the guest reads what is left, then end of input. The
/// socket stays open (the caller drops it once QEMU is gone: closing it earlier could lose
/// what QEMU has not read yet). Returns when `done` is set, at end of input, or when QEMU's
/// side is gone. Reads only what the socket can take, so a program that does not read stops
/// the copying (and what it would have read is not consumed beyond the buffers in between).
pub(crate) fn feed_stdin(src: &StdinSource, sock: &OwnedFd, done: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !done.load(Ordering::Acquire) {
        match wait_for(src.fd(), libc::POLLIN) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("lab: cannot wait for stdin ({e}); the program sees end of input");
                break;
            }
        }
        match read_some(src.fd(), &mut buf) {
            Ok(None) => continue,
            Ok(Some(0)) => break,
            Ok(Some(n)) => {
                if !send_all(sock, &buf[..n], done) {
                    return;
                }
            }
            Err(e) => {
                log::warn!("lab: cannot read stdin ({e}); the program sees end of input");
                break;
            }
        }
    }
    shut_write(sock);
    log::debug!("lab: end of stdin sent");
}

/// Shuts down our sending side of `sock`: the guest reads end of input there.
pub(crate) fn shut_write(sock: &OwnedFd) {
    // SAFETY: shutdown on a descriptor we own; no memory is involved.
    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_WR) };
}

/// One `read`: `Some(n)` bytes (0 = end), `None` = nothing after all (EINTR, EAGAIN).
fn read_some(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(None),
        _ => Err(e),
    }
}

/// Sends all of `data` on the non-blocking `sock`, waiting for room in steps; false if the
/// run ended first or QEMU's side is gone.
pub(crate) fn send_all(sock: &OwnedFd, mut data: &[u8], done: &AtomicBool) -> bool {
    while !data.is_empty() {
        if done.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: data is valid for data.len() bytes; MSG_NOSIGNAL: EPIPE, not SIGPIPE.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                if let Err(e) = wait_for(sock.as_fd(), libc::POLLOUT) {
                    log::warn!("lab: waiting to send stdin: {e}");
                    return false;
                }
            }
            _ => {
                log::debug!("lab: stdin socket closed ({e})");
                return false;
            }
        }
    }
    true
}

/// Bytes of one output stream received from QEMU so far, and whether they are being
/// written out right now (a slow reader of ours is not a stalled lab).
#[derive(Debug, Default)]
pub(crate) struct Counter {
    bytes: AtomicU64,
    writing: AtomicBool,
}

impl Counter {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether a chunk is being written to our sink now.
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// Counts `n` received bytes; the sink write follows.
    pub fn received(&self, n: usize) {
        self.writing.store(true, Ordering::Release);
        self.bytes.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// The sink write is over.
    pub fn written(&self) {
        self.writing.store(false, Ordering::Release);
    }
}

/// Sends the go-ahead on the control socket `go`, then `request` on `sock` and its end
/// (bounded: gives up once `done` is set).
pub(crate) fn send_request(go: OwnedFd, sock: &OwnedFd, request: &[u8], done: &AtomicBool) {
    let mut go = std::fs::File::from(go);
    if let Err(e) = std::io::Write::write_all(&mut go, b"go\n") {
        log::warn!("lab: cannot send the go-ahead: {e}");
        return;
    }
    if let Err(e) = set_nonblocking(sock) {
        log::warn!("lab: cannot set up the request socket: {e}");
        return;
    }
    if send_all(sock, request, done) {
        shut_write(sock);
        log::debug!("lab: request sent ({} bytes)", request.len());
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A file is fed whole, then the sending side is shut: the reader sees every byte, then EOF.
    #[test]
    fn a_file_is_fed_then_end_of_input() {
        use std::io::Seek;
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.rewind().unwrap();
        let (ours, theirs) = qemu::socketpair().unwrap();
        set_nonblocking(&ours).unwrap();
        let done = AtomicBool::new(false);
        let mut got = Vec::new();
        std::thread::scope(|s| {
            s.spawn(|| feed_stdin(&StdinSource::File(f), &ours, &done));
            File::from(theirs).read_to_end(&mut got).unwrap();
        });
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
    }

    /// A source that never ends and a reader that never reads: the feeder returns once told.
    #[test]
    fn a_feeder_stops_when_the_run_is_over() {
        let (r, w) = qemu::pipe().unwrap();
        let mut w = File::from(w);
        w.write_all(&[1u8; 4096]).unwrap(); // data, then nothing, and no end
        let (ours, _theirs) = qemu::socketpair().unwrap();
        set_nonblocking(&ours).unwrap();
        let done = AtomicBool::new(false);
        let src = StdinSource::File(File::from(r));
        std::thread::scope(|s| {
            let t = s.spawn(|| feed_stdin(&src, &ours, &done));
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!t.is_finished(), "no end of input yet");
            done.store(true, Ordering::Release);
            let start = std::time::Instant::now();
            t.join().unwrap();
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        });
    }

    #[test]
    fn counters_count() {
        let c = Counter::default();
        c.received(10);
        assert!(c.writing());
        c.written();
        c.received(5);
        c.written();
        assert_eq!(c.bytes(), 15);
        assert!(!c.writing());
    }
}
