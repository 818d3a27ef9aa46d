//! Pipes (xv6 pipe.c): a 512-byte ring with a read end and a write end. This file is the
//! ring and its two flags, pure and tested on the host; the blocking (a reader waits for data
//! or for every writer to close, a writer for room or fails once no reader is left) is in
//! sysfile.rs, which sleeps on the pipe's channels.

/// Bytes a pipe buffers (xv6 PIPESIZE).
pub const PIPESIZE: usize = 512;

/// A pipe (xv6 `struct pipe`).
#[derive(Debug)]
pub struct Pipe {
    data: [u8; PIPESIZE],
    /// Bytes read and written since the start (wrapping); `nwrite - nread` are buffered.
    nread: u32,
    nwrite: u32,
    /// Is the read end still open?
    pub readopen: bool,
    /// Is the write end still open?
    pub writeopen: bool,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// A closed, empty pipe (a free slot).
    #[must_use]
    pub const fn new() -> Pipe {
        Pipe {
            data: [0; PIPESIZE],
            nread: 0,
            nwrite: 0,
            readopen: false,
            writeopen: false,
        }
    }

    /// Is the slot free (both ends closed)?
    #[must_use]
    pub fn is_free(&self) -> bool {
        !self.readopen && !self.writeopen
    }

    /// Bytes buffered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nwrite.wrapping_sub(self.nread) as usize
    }

    /// Nothing buffered?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies as much of `src` in as there is room for; returns how much.
    pub fn write(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(PIPESIZE - self.len());
        for &c in &src[..n] {
            self.data[self.nwrite as usize % PIPESIZE] = c;
            self.nwrite = self.nwrite.wrapping_add(1);
        }
        n
    }

    /// Copies up to `dst.len()` buffered bytes out; returns how many.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.peek(dst);
        self.consume(n);
        n
    }

    /// Copies up to `dst.len()` buffered bytes out without taking them; returns how many.
    /// (A reader takes them — `consume` — only once they reached its memory.)
    pub fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        for (i, d) in dst[..n].iter_mut().enumerate() {
            *d = self.data[self.nread.wrapping_add(i as u32) as usize % PIPESIZE];
        }
        n
    }

    /// Drops the first `n` buffered bytes (at most what is buffered).
    pub fn consume(&mut self, n: usize) {
        self.nread = self.nread.wrapping_add(n.min(self.len()) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_of_512_bytes() {
        let mut p = Pipe::new();
        assert!(p.is_free());
        let src: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        assert_eq!(p.write(&src), PIPESIZE);
        assert_eq!(p.write(&src), 0);
        let mut b = [0u8; 100];
        assert_eq!(p.read(&mut b), 100);
        assert_eq!(b[..], src[..100]);
        assert_eq!(p.write(&src[PIPESIZE..PIPESIZE + 100]), 100);
        let mut all = vec![0u8; 1000];
        assert_eq!(p.read(&mut all), PIPESIZE);
        assert_eq!(all[..PIPESIZE], src[100..612]);
        assert!(p.is_empty());
        assert_eq!(p.read(&mut all), 0);
    }

    #[test]
    fn peek_takes_nothing_until_consumed() {
        let mut p = Pipe::new();
        // Wrap the ring first so the peek crosses its end.
        assert_eq!(p.write(&[0; 500]), 500);
        p.consume(500);
        assert_eq!(p.write(b"abcdefghijklmnopqrstuvwxyz"), 26);
        let mut b = [0u8; 20];
        assert_eq!(p.peek(&mut b), 20);
        assert_eq!(&b, b"abcdefghijklmnopqrst");
        assert_eq!(p.len(), 26);
        p.consume(2);
        assert_eq!(p.peek(&mut b[..3]), 3);
        assert_eq!(&b[..3], b"cde");
        p.consume(1000);
        assert!(p.is_empty());
    }
}
