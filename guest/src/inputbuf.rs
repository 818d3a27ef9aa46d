//! The console input buffer (xv6 console.c's `input`): a ring of bytes received on COM1,
//! filled by the timer interrupt's poll of the UART (`console::consoleintr`) and emptied by
//! `read(0, ...)`. Pure: tested on the host.

/// Bytes the ring holds (xv6 INPUT_BUF is 128; the host may paste more at once).
pub const INPUT_BUF: usize = 1024;

/// A fixed-size FIFO of bytes. `r` and `w` count bytes read and written since the start
/// (wrapping), as xv6's `input.r` / `input.w` do; `w - r` is the number buffered.
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

    /// Bytes buffered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.w.wrapping_sub(self.r)
    }

    /// Nothing buffered?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No room for another byte?
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.len() == INPUT_BUF
    }

    /// Appends `c`; false (and nothing stored) when full.
    pub fn push(&mut self, c: u8) -> bool {
        if self.is_full() {
            return false;
        }
        self.buf[self.w % INPUT_BUF] = c;
        self.w = self.w.wrapping_add(1);
        true
    }

    /// Moves up to `dst.len()` bytes, oldest first, into `dst`; returns how many.
    pub fn pop_into(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        for d in &mut dst[..n] {
            *d = self.buf[self.r % INPUT_BUF];
            self.r = self.r.wrapping_add(1);
        }
        n
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
    fn fifo_order_and_counts() {
        let mut b = InputBuf::new();
        assert!(b.is_empty());
        for c in b"hello" {
            assert!(b.push(*c));
        }
        assert_eq!(b.len(), 5);
        let mut out = [0u8; 3];
        assert_eq!(b.pop_into(&mut out), 3);
        assert_eq!(&out, b"hel");
        let mut out = [0u8; 8];
        assert_eq!(b.pop_into(&mut out), 2);
        assert_eq!(&out[..2], b"lo");
        assert!(b.is_empty());
        assert_eq!(b.pop_into(&mut out), 0);
    }

    #[test]
    fn full_ring_refuses_and_wraps() {
        let mut b = InputBuf::new();
        for i in 0..INPUT_BUF {
            assert!(b.push(i as u8));
        }
        assert!(b.is_full());
        assert!(!b.push(0xAA));
        let mut out = [0u8; 10];
        assert_eq!(b.pop_into(&mut out), 10);
        assert_eq!(out[9], 9);
        for i in 0..10u8 {
            assert!(b.push(200 + i));
        }
        let mut all = vec![0u8; INPUT_BUF + 5];
        assert_eq!(b.pop_into(&mut all), INPUT_BUF);
        assert_eq!(all[0], 10);
        assert_eq!(all[INPUT_BUF - 1], 209);
    }

    #[test]
    fn counters_wrap_around() {
        let mut b = InputBuf::new();
        b.r = usize::MAX - 1;
        b.w = usize::MAX - 1;
        for c in b"abcd" {
            assert!(b.push(*c));
        }
        assert_eq!(b.len(), 4);
        let mut out = [0u8; 4];
        assert_eq!(b.pop_into(&mut out), 4);
        assert_eq!(&out, b"abcd");
    }
}
