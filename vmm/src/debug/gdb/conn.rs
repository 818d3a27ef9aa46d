//! The debugger's connection for `vmm run --gdb`, one of:
//!
//! - a TCP listen address (`[ADDR:]PORT`, default address 127.0.0.1) accepting one gdb. As
//!   with QEMU's gdbstub there is no authentication: any local user (any host that can reach
//!   ADDR) who connects first controls the guest and reads its memory;
//! - a Unix socket path (any path with a `/` that is not a character device). The socket is
//!   created mode 0600, so only its owner (and root) can connect. It must not exist yet, and
//!   it is removed once gdb connects (or when waiting ends by error or SIGINT/SIGTERM/SIGHUP);
//! - a character device (the lab's inner `vmm` uses `/dev/virtio-ports/gdb`, which the lab
//!   bridges to the outer `vmm`'s TCP port).
//!
//! Each becomes a [`GdbConn`]: a byte stream with gdbstub's `Connection` and
//! `ConnectionExt` (a peek that never blocks, for Ctrl-C while the guest runs).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// Where `--gdb` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbEndpoint {
    /// Listen on this TCP address.
    Tcp(SocketAddr),
    /// Open this character device (the lab's virtio-serial port).
    Device(PathBuf),
    /// Create a Unix socket here (mode 0600) and accept one gdb on it.
    Unix(PathBuf),
}

/// Parses `--gdb`'s value: `PORT`, `ADDR:PORT`, or a path (with a `/`): a character device
/// if one exists there, else a Unix socket to create.
pub fn parse_endpoint(text: &str) -> Result<GdbEndpoint, String> {
    if text.contains('/') {
        let path = PathBuf::from(text);
        let device = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_char_device());
        return Ok(if device {
            GdbEndpoint::Device(path)
        } else {
            GdbEndpoint::Unix(path)
        });
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(GdbEndpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    text.parse::<SocketAddr>()
        .map(GdbEndpoint::Tcp)
        .map_err(|_| {
            "expected PORT, ADDR:PORT, or a path for a Unix socket (e.g. ./gdb.sock)".to_string()
        })
}

/// A connected debugger.
pub struct GdbConn {
    file: File,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

impl GdbConn {
    /// Waits for the debugger at `ep` (saying where on stderr).
    pub fn wait(ep: &GdbEndpoint) -> Result<GdbConn> {
        let (file, first) = match ep {
            GdbEndpoint::Tcp(addr) => (accept(*addr)?, Vec::new()),
            GdbEndpoint::Device(path) => open_device(path)?,
            GdbEndpoint::Unix(path) => (accept_unix(path)?, Vec::new()),
        };
        Ok(GdbConn {
            file,
            inbuf: first,
            outbuf: Vec::new(),
        })
    }

    /// The descriptor to poll for incoming bytes.
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Reads what is there into the buffer; blocks if `block`. Err on end of stream.
    fn fill(&mut self, block: bool) -> std::io::Result<()> {
        if !block && !readable(self.fd(), 0) {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        let n = self.file.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.inbuf.extend_from_slice(&buf[..n]);
        Ok(())
    }
}

fn accept(addr: SocketAddr) -> Result<File> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("--gdb: cannot listen on {addr}"))?;
    eprintln!("vmm: gdb: waiting for a debugger on {addr} (target remote {addr})");
    let (stream, peer) = listener.accept().context("--gdb: accept failed")?;
    stream.set_nodelay(true).ok();
    eprintln!("vmm: gdb: debugger connected from {peer}");
    Ok(File::from(OwnedFd::from(stream)))
}

/// The signal that interrupted the wait for a debugger on a Unix socket (0: none).
static WAIT_INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The signals that end a wait on a Unix socket (after the socket file is removed).
const WAIT_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Creates a Unix socket at `path`, mode 0600, and accepts one debugger. The socket file is
/// removed on every way out: the debugger connected, an error, or a signal (which is then
/// delivered again with its previous action, so the process ends as it would have).
fn accept_unix(path: &Path) -> Result<File> {
    if std::fs::symlink_metadata(path).is_ok() {
        anyhow::bail!(crate::exit::UsageError(format!(
            "--gdb {}: the path exists; remove it or choose another (vmm creates the socket)",
            path.display()
        )));
    }
    // The socket file takes its mode from the umask: 0600, for this bind alone (nothing else
    // creates files now: the other thread only waits for this one).
    // SAFETY: umask only changes this process's file-creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("--gdb: cannot create {}", path.display()))?;
    let result = wait_for_unix_client(&listener, path);
    let _ = std::fs::remove_file(path);
    result
}

fn wait_for_unix_client(listener: &UnixListener, path: &Path) -> Result<File> {
    extern "C" fn note(sig: libc::c_int) {
        WAIT_INTERRUPTED.store(sig, Ordering::SeqCst);
    }
    listener
        .set_nonblocking(true)
        .context("--gdb: cannot poll the socket")?;
    eprintln!(
        "vmm: gdb: waiting for a debugger on {} (target remote {})",
        path.display(),
        path.display()
    );
    let mut old = [0 as libc::sighandler_t; WAIT_SIGNALS.len()];
    for (i, &sig) in WAIT_SIGNALS.iter().enumerate() {
        // SAFETY: `note` only stores into an atomic (async-signal-safe); the previous action
        // is put back below before this function returns.
        old[i] = unsafe { libc::signal(sig, note as *const () as libc::sighandler_t) };
    }
    let restore = |old: &[libc::sighandler_t]| {
        for (i, &sig) in WAIT_SIGNALS.iter().enumerate() {
            // SAFETY: restores the action that was in place before the wait.
            unsafe { libc::signal(sig, old[i]) };
        }
    };
    let result = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                eprintln!("vmm: gdb: debugger connected");
                break stream
                    .set_nonblocking(false)
                    .map(|()| File::from(OwnedFd::from(stream)))
                    .context("--gdb: cannot set up the connection");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e).context("--gdb: accept failed"),
        }
        let sig = WAIT_INTERRUPTED.swap(0, Ordering::SeqCst);
        if sig != 0 {
            let _ = std::fs::remove_file(path);
            restore(&old);
            // SAFETY: delivers the signal again under its previous action (default: the
            // process ends with it).
            unsafe { libc::raise(sig) };
            break Err(anyhow::anyhow!(
                "--gdb: interrupted while waiting for a debugger"
            ));
        }
        // The wait is the user's (no --timeout with gdb); this is only the polling period.
        readable(listener.as_raw_fd(), 100);
    };
    restore(&old);
    result
}

/// Opens the device and waits for the first bytes: a virtio-serial port reads end-of-file at
/// once while no client is connected on the host side.
fn open_device(path: &PathBuf) -> Result<(File, Vec<u8>)> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("--gdb: cannot open {}", path.display()))?;
    eprintln!("vmm: gdb: waiting for a debugger on {}", path.display());
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read(&mut buf).context("--gdb: read failed")?;
        if n > 0 {
            eprintln!("vmm: gdb: debugger connected");
            return Ok((file, buf[..n].to_vec()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `fd` has bytes to read within `timeout_ms` (POLLHUP alone is not "readable").
pub fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count 1; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    n > 0 && p.revents & libc::POLLIN != 0
}

impl gdbstub::conn::Connection for GdbConn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.outbuf.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.outbuf.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.file.write_all(&self.outbuf)?;
        self.outbuf.clear();
        Ok(())
    }
}

impl gdbstub::conn::ConnectionExt for GdbConn {
    fn read(&mut self) -> Result<u8, Self::Error> {
        if self.inbuf.is_empty() {
            self.fill(true)?;
        }
        Ok(self.inbuf.remove(0))
    }

    fn peek(&mut self) -> Result<Option<u8>, Self::Error> {
        if self.inbuf.is_empty() {
            self.fill(false)?;
        }
        Ok(self.inbuf.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("1234"),
            Ok(GdbEndpoint::Tcp("127.0.0.1:1234".parse().unwrap()))
        );
        assert_eq!(
            parse_endpoint("0.0.0.0:9"),
            Ok(GdbEndpoint::Tcp("0.0.0.0:9".parse().unwrap()))
        );
        assert_eq!(
            parse_endpoint("/dev/null"),
            Ok(GdbEndpoint::Device("/dev/null".into()))
        );
        assert_eq!(
            parse_endpoint("./gdb.sock"),
            Ok(GdbEndpoint::Unix("./gdb.sock".into()))
        );
        assert_eq!(
            parse_endpoint("/tmp/x/gdb.sock"),
            Ok(GdbEndpoint::Unix("/tmp/x/gdb.sock".into()))
        );
        assert!(parse_endpoint("host:x").is_err());
        assert!(parse_endpoint("70000").is_err());
    }

    /// A real socket: created 0600, a client's bytes arrive, the file is gone once connected.
    #[test]
    fn unix_socket_is_private_and_removed_once_connected() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::UnixStream;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gdb.sock");
        let p = path.clone();
        let client = std::thread::spawn(move || {
            // Bounded: 5 s for the socket to appear.
            for _ in 0..500 {
                if let Ok(m) = std::fs::symlink_metadata(&p) {
                    let mode = m.permissions().mode() & 0o777;
                    let mut s = UnixStream::connect(&p).unwrap();
                    s.write_all(b"$?#3f").unwrap();
                    return mode;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("the socket never appeared");
        });
        let mut conn = GdbConn::wait(&GdbEndpoint::Unix(path.clone())).unwrap();
        assert_eq!(client.join().unwrap(), 0o600);
        assert!(
            !path.exists(),
            "the socket file is removed once gdb is connected"
        );
        use gdbstub::conn::ConnectionExt;
        assert_eq!(conn.read().unwrap(), b'$');
        // An existing path is refused (not replaced), as a usage error.
        std::fs::write(&path, b"x").unwrap();
        let err = GdbConn::wait(&GdbEndpoint::Unix(path.clone()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("the path exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
