//! The console input buffer (xv6 console.c's `input`): the bytes of the host's stdin that the
//! VMM has put here on a `read()`'s request and that no `read()` has taken yet — so a read
//! whose copy to user memory fails loses nothing. Filled only when empty, with at most what
//! the reader asked for (the VMM never reads ahead of the program). Pure: tested on the host.

/// Bytes the buffer holds: the most one console read request asks of the VMM.
pub const INPUT_BUF: usize = 16 << 10;

/// Buffered bytes are `buf[r..w]`.
pub struct InputBuf {
    buf: [u8; INPUT_BUF],
    r: usize,
    w: usize,
}

impl InputBuf {
    /// An empty buffer.
    pub const fn new() -> InputBuf {
        InputBuf {
            buf: [0; INPUT_BUF],
            r: 0,
            w: 0,
        }
    }

    /// Nothing buffered?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.r == self.w
    }

    /// The empty buffer's first `want` bytes (at most INPUT_BUF), for the VMM to fill; then
    /// [`InputBuf::filled`] says how many it did. Panics if bytes are still buffered.
    pub fn space(&mut self, want: usize) -> &mut [u8] {
        assert!(self.is_empty(), "input refilled while not empty");
        self.r = 0;
        self.w = 0;
        &mut self.buf[..want.min(INPUT_BUF)]
    }

    /// The VMM put `n` bytes at the start of [`InputBuf::space`].
    pub fn filled(&mut self, n: usize) {
        assert!(self.is_empty() && n <= INPUT_BUF, "bad fill of {n} bytes");
        self.w = n;
    }

    /// The bytes buffered, oldest first.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.r..self.w]
    }

    /// Drops the oldest `n` buffered bytes (they were read).
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.w - self.r, "consumed more than buffered");
        self.r += n;
    }
}

impl Default for InputBuf {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_read_in_parts_then_refill() {
        let mut b = InputBuf::new();
        assert!(b.is_empty());
        let space = b.space(5);
        assert_eq!(space.len(), 5);
        space.copy_from_slice(b"hello");
        b.filled(5);
        assert_eq!(b.bytes(), b"hello");
        b.consume(2);
        assert_eq!(b.bytes(), b"llo");
        b.consume(3);
        assert!(b.is_empty());
        b.space(2).copy_from_slice(b"ab");
        b.filled(1);
        assert_eq!(b.bytes(), b"a");
    }

    #[test]
    fn space_is_bounded_by_the_buffer() {
        let mut b = InputBuf::new();
        assert_eq!(b.space(usize::MAX).len(), INPUT_BUF);
        b.filled(INPUT_BUF);
        assert_eq!(b.bytes().len(), INPUT_BUF);
    }

    #[test]
    #[should_panic(expected = "not empty")]
    fn refilling_a_nonempty_buffer_is_a_bug() {
        let mut b = InputBuf::new();
        b.space(1);
        b.filled(1);
        b.space(1);
    }
}
