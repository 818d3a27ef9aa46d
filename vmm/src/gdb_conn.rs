//! The debugger's connection for `vmm run --gdb`: a TCP listen address (`[ADDR:]PORT`,
//! default address 127.0.0.1) accepting one gdb, or a character device (an absolute path; the
//! lab's inner `vmm` uses `/dev/virtio-ports/gdb`, which the lab bridges to the outer
//! `vmm`'s TCP port). Both become a [`GdbConn`]: a byte stream with gdbstub's `Connection`
//! and `ConnectionExt` (a peek that never blocks, for Ctrl-C while the guest runs).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// Where `--gdb` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbEndpoint {
    /// Listen on this TCP address.
    Tcp(SocketAddr),
    /// Open this character device (the lab's virtio-serial port).
    Device(PathBuf),
}

/// Parses `--gdb`'s value: `PORT`, `ADDR:PORT` or an absolute device path.
pub fn parse_endpoint(text: &str) -> Result<GdbEndpoint, String> {
    if text.starts_with('/') {
        return Ok(GdbEndpoint::Device(PathBuf::from(text)));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(GdbEndpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    text.parse::<SocketAddr>()
        .map(GdbEndpoint::Tcp)
        .map_err(|_| "expected PORT, ADDR:PORT or an absolute device path".to_string())
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
            parse_endpoint("/dev/virtio-ports/gdb"),
            Ok(GdbEndpoint::Device("/dev/virtio-ports/gdb".into()))
        );
        assert!(parse_endpoint("host:x").is_err());
        assert!(parse_endpoint("70000").is_err());
    }
}
