//! The paravirtual console: user programs' stdout, stderr and stdin at one VM exit per piece
//! of a `write()`/`read()`, not per byte (as Solo5's hvt and uhyve do it).
//!
//! The guest `out32`s the guest-physical address of a request block to the stream's port
//! (`CONS_STDOUT`, `CONS_STDERR`, `CONS_STDIN`); the block is three little-endian u32s
//! `{pa, len, ret}`:
//! - stdout/stderr: the VMM writes guest bytes `[pa, pa + len)` to the host stream and sets
//!   `ret = len`. A host write error (broken pipe, full disk) ends the run: `vmm` exits 125
//!   with one line saying so, never 0 with output lost.
//! - stdin: the VMM reads at most `len` bytes of its stdin that are available now (it never
//!   blocks: `poll` with no wait first) into `[pa, pa + len)` and sets `ret` to the count;
//!   0 = end of input; [`NOTHING_YET`] = no byte available yet (the kernel sleeps a tick and
//!   asks again, so a waiting reader stays preemptible and killable).
//!
//! A block the VMM cannot read, a piece outside guest RAM or longer than [`MAX_PIECE`] gets
//! `ret = ` [`BAD_REQUEST`] and no I/O.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::arch::layout::ports;
use crate::devices::bus::{le_value, PortDevice};
use crate::outcome::{Outcome, Request};

pub use xv6_abi::console::{BAD_REQUEST, MAX_PIECE, NOTHING_YET};
use xv6_abi::console::{OFF_LEN, OFF_PA, OFF_RET};

/// What a non-blocking read of the host's input gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// This many bytes.
    Data(usize),
    /// End of input.
    End,
    /// Nothing available yet.
    NotYet,
}

/// Reads of host input that never block.
pub trait InputSource: Send {
    /// Reads what is available now, at most `buf.len()` bytes.
    fn try_read(&mut self, buf: &mut [u8]) -> Input;
}

/// A host file descriptor (normally stdin) read with `poll` first, so the read cannot block.
pub struct FdInput<F>(pub F);

impl<F: AsFd + Send> InputSource for FdInput<F> {
    /// One read, then more while more is there now and `buf` has room: a source that hands
    /// data over in pieces (a virtio-serial port gives one 4 KiB buffer per `read`) still
    /// fills the guest's request in one exit.
    fn try_read(&mut self, buf: &mut [u8]) -> Input {
        let mut got = match self.read_once(buf) {
            Input::Data(n) => n,
            other => return other,
        };
        // Each round reads at least one byte into the room left: bounded by buf.len().
        while got < buf.len() {
            match self.read_once(&mut buf[got..]) {
                Input::Data(n) => got += n,
                Input::End | Input::NotYet => break,
            }
        }
        Input::Data(got)
    }
}

impl<F: AsFd> FdInput<F> {
    /// What one non-blocking `read` gives.
    fn read_once(&mut self, buf: &mut [u8]) -> Input {
        let fd = self.0.as_fd().as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: pfd is a valid pollfd for the duration of the call; no wait.
            let r = unsafe { libc::poll(&mut pfd, 1, 0) };
            if r == 0 {
                return Input::NotYet;
            }
            if r > 0 {
                break;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Input::End;
            }
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            return Input::End; // stdin is closed
        }
        loop {
            // SAFETY: buf is valid for buf.len() bytes; poll said a read will not block.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => return Input::End,
                n if n > 0 => return Input::Data(n as usize),
                _ => {
                    let e = std::io::Error::last_os_error();
                    match e.kind() {
                        std::io::ErrorKind::Interrupted => continue,
                        std::io::ErrorKind::WouldBlock => return Input::NotYet,
                        _ => {
                            log::warn!("reading stdin failed: {e}; the guest sees end of input");
                            return Input::End;
                        }
                    }
                }
            }
        }
    }
}

/// No input at all: every read is at its end (the probe guest).
pub struct NoInput;

impl InputSource for NoInput {
    fn try_read(&mut self, _buf: &mut [u8]) -> Input {
        Input::End
    }
}

/// Bytes and exits of one direction, for `--stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub bytes: u64,
    pub exits: u64,
}

/// The console device.
pub struct Console {
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    stdin: Box<dyn InputSource>,
    buf: Vec<u8>,
    /// Output (stdout and stderr together).
    pub output: Traffic,
    /// Input; `input_empty` counts the asks that found nothing yet.
    pub input: Traffic,
    pub input_empty: u64,
}

impl Console {
    pub fn new(
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        stdin: Box<dyn InputSource>,
    ) -> Console {
        Console {
            stdout,
            stderr,
            stdin,
            buf: Vec::new(),
            output: Traffic::default(),
            input: Traffic::default(),
            input_empty: 0,
        }
    }

    /// Carries out the request block at `block`; `Err` ends the run.
    fn request(&mut self, port: u16, block: u64, mem: &GuestMemoryMmap) -> Result<(), Outcome> {
        let mut raw = [0u8; OFF_RET];
        if mem.read_slice(&mut raw, GuestAddress(block)).is_err() {
            log::warn!("console: request block at {block:#x} is outside guest RAM");
            return Ok(());
        }
        let pa = u64::from(le_value(&raw[OFF_PA..OFF_PA + 4]));
        let len = le_value(&raw[OFF_LEN..OFF_LEN + 4]) as usize;
        let ret = self.piece(port, pa, len, mem)?;
        let at = GuestAddress(block + OFF_RET as u64);
        if mem.write_obj(ret, at).is_err() {
            log::warn!("console: cannot store the result at {:#x}", at.0);
        }
        Ok(())
    }

    fn piece(
        &mut self,
        port: u16,
        pa: u64,
        len: usize,
        mem: &GuestMemoryMmap,
    ) -> Result<u32, Outcome> {
        if len > MAX_PIECE as usize {
            log::warn!("console: a {len}-byte piece is over the {MAX_PIECE}-byte bound");
            return Ok(BAD_REQUEST);
        }
        self.buf.resize(len, 0);
        if port == ports::CONS_STDIN {
            return Ok(self.read_input(pa, len, mem));
        }
        if mem.read_slice(&mut self.buf, GuestAddress(pa)).is_err() {
            log::warn!("console: piece {pa:#x}+{len} is outside guest RAM");
            return Ok(BAD_REQUEST);
        }
        let (out, name) = if port == ports::CONS_STDOUT {
            (&mut self.stdout, "stdout")
        } else {
            (&mut self.stderr, "stderr")
        };
        if let Err(e) = out.write_all(&self.buf).and_then(|()| out.flush()) {
            return Err(Outcome::OutputFailed(format!(
                "cannot write the program's {name}: {e}"
            )));
        }
        self.output.bytes += len as u64;
        self.output.exits += 1;
        Ok(len as u32)
    }

    fn read_input(&mut self, pa: u64, len: usize, mem: &GuestMemoryMmap) -> u32 {
        if len == 0 || mem.get_slice(GuestAddress(pa), len).is_err() {
            return BAD_REQUEST;
        }
        match self.stdin.try_read(&mut self.buf) {
            Input::NotYet => {
                self.input_empty += 1;
                NOTHING_YET
            }
            Input::End => {
                self.input.exits += 1;
                0
            }
            Input::Data(n) => {
                if mem.write_slice(&self.buf[..n], GuestAddress(pa)).is_err() {
                    log::warn!("console: stdin bytes lost: {pa:#x}+{n} outside guest RAM");
                    return BAD_REQUEST;
                }
                self.input.bytes += n as u64;
                self.input.exits += 1;
                n as u32
            }
        }
    }
}

impl PortDevice for Console {
    fn owns(&self, port: u16) -> bool {
        matches!(
            port,
            ports::CONS_STDOUT | ports::CONS_STDERR | ports::CONS_STDIN
        )
    }

    fn read(&mut self, _port: u16, data: &mut [u8], _mem: &GuestMemoryMmap) {
        data.fill(0xff);
    }

    fn write(&mut self, port: u16, data: &[u8], mem: &GuestMemoryMmap) -> Request {
        match self.request(port, u64::from(le_value(data)), mem) {
            Ok(()) => Request::Continue,
            Err(outcome) => Request::End(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A host stream the test can look into.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A host stream whose reader has gone.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const BLOCK: u64 = 0x1000;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// Writes a request block `{pa, len}`, sends it to `port`, returns what the run loop is
    /// asked and the block's `ret`.
    fn send(
        c: &mut Console,
        mem: &GuestMemoryMmap,
        port: u16,
        pa: u32,
        len: u32,
    ) -> (Request, u32) {
        mem.write_obj(pa, GuestAddress(BLOCK)).unwrap();
        mem.write_obj(len, GuestAddress(BLOCK + 4)).unwrap();
        mem.write_obj(0xdead_beefu32, GuestAddress(BLOCK + 8))
            .unwrap();
        let r = c.write(port, &(BLOCK as u32).to_le_bytes(), mem);
        (r, mem.read_obj(GuestAddress(BLOCK + 8)).unwrap())
    }

    fn pipe() -> (std::os::fd::OwnedFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: pipe2 returned two fresh descriptors we now own.
        unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn a_write_is_one_request_for_the_whole_piece() {
        let mem = memory();
        let (out, err) = (Shared::default(), Shared::default());
        let mut c = Console::new(
            Box::new(out.clone()),
            Box::new(err.clone()),
            Box::new(NoInput),
        );
        let text = vec![b'x'; 4096];
        mem.write_slice(&text, GuestAddress(0x8000)).unwrap();
        mem.write_slice(b"oops", GuestAddress(0x9000)).unwrap();
        let (r, ret) = send(&mut c, &mem, ports::CONS_STDOUT, 0x8000, 4096);
        assert!(matches!(r, Request::Continue));
        assert_eq!(ret, 4096);
        assert_eq!(send(&mut c, &mem, ports::CONS_STDERR, 0x9000, 4).1, 4);
        assert_eq!(*out.0.lock().unwrap(), text);
        assert_eq!(*err.0.lock().unwrap(), b"oops");
        assert_eq!(
            c.output,
            Traffic {
                bytes: 4100,
                exits: 2
            }
        );
    }

    #[test]
    fn bad_pieces_are_refused_without_output() {
        let mem = memory();
        let out = Shared::default();
        let mut c = Console::new(Box::new(out.clone()), Box::new(Broken), Box::new(NoInput));
        let over = MAX_PIECE + 1;
        assert_eq!(
            send(&mut c, &mem, ports::CONS_STDOUT, 0, over).1,
            BAD_REQUEST
        );
        assert_eq!(
            send(&mut c, &mem, ports::CONS_STDOUT, 0xF_FFF0, 64).1,
            BAD_REQUEST
        );
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_host_write_error_ends_the_run_with_the_reason() {
        let mem = memory();
        let mut c = Console::new(Box::new(Broken), Box::new(Broken), Box::new(NoInput));
        match send(&mut c, &mem, ports::CONS_STDOUT, 0x8000, 10).0 {
            Request::End(Outcome::OutputFailed(why)) => {
                assert!(
                    why.contains("stdout") && why.contains("roken pipe"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A source that hands over one piece per read (datagrams here, 4 KiB buffers for a
    /// virtio-serial port): one request takes every piece there is, up to its length.
    #[test]
    fn stdin_takes_every_piece_that_is_there() {
        let (r, w) = std::os::unix::net::UnixDatagram::pair().unwrap();
        for piece in [&b"ab"[..], b"cd", b"efg"] {
            w.send(piece).unwrap();
        }
        let mut input = FdInput(r);
        let mut buf = [0u8; 4];
        assert_eq!(
            input.try_read(&mut buf),
            Input::Data(4),
            "ab + cd fill the request"
        );
        assert_eq!(&buf[..4], b"abcd");
        assert_eq!(input.try_read(&mut buf), Input::Data(3));
        assert_eq!(&buf[..3], b"efg");
        assert_eq!(input.try_read(&mut buf), Input::NotYet);
    }

    #[test]
    fn stdin_gives_what_is_there_nothing_yet_then_the_end() {
        let mem = memory();
        let (r, mut w) = pipe();
        let mut c = Console::new(
            Box::new(std::io::sink()),
            Box::new(std::io::sink()),
            Box::new(FdInput(r)),
        );
        // Nothing written yet: no wait, "nothing yet".
        assert_eq!(
            send(&mut c, &mem, ports::CONS_STDIN, 0x8000, 100).1,
            NOTHING_YET
        );
        w.write_all(b"hello world").unwrap();
        // At most len bytes, the rest stays in the pipe.
        assert_eq!(send(&mut c, &mem, ports::CONS_STDIN, 0x8000, 5).1, 5);
        assert_eq!(send(&mut c, &mem, ports::CONS_STDIN, 0x8005, 100).1, 6);
        let mut got = [0u8; 11];
        mem.read_slice(&mut got, GuestAddress(0x8000)).unwrap();
        assert_eq!(&got, b"hello world");
        drop(w);
        assert_eq!(send(&mut c, &mem, ports::CONS_STDIN, 0x8000, 100).1, 0);
        assert_eq!(
            send(&mut c, &mem, ports::CONS_STDIN, 0x8000, 0).1,
            BAD_REQUEST
        );
        assert_eq!((c.input.bytes, c.input_empty), (11, 1));
    }
}
