//! The host's stdin, read on its own thread into a queue that COM1's receive FIFO drains.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    bytes: VecDeque<u8>,
    ended: bool,
}

/// Bytes read from the host's stdin, not yet handed to the guest.
#[derive(Clone, Default)]
pub struct StdinQueue(Arc<Mutex<State>>);

impl StdinQueue {
    /// Starts a thread that reads `source` to its end into the queue.
    pub fn spawn(mut source: impl Read + Send + 'static) -> StdinQueue {
        let q = StdinQueue::default();
        let writer = q.clone();
        let spawned = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match source.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => writer.push(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::warn!("reading stdin failed: {e}; the guest sees end of input");
                            break;
                        }
                    }
                }
                writer.end();
            });
        if spawned.is_err() {
            q.end();
        }
        q
    }

    /// Appends bytes (the reader thread).
    pub fn push(&self, bytes: &[u8]) {
        self.0.lock().unwrap().bytes.extend(bytes);
    }

    /// Marks the end of input.
    pub fn end(&self) {
        self.0.lock().unwrap().ended = true;
    }

    /// Takes up to `n` bytes.
    pub fn take(&self, n: usize) -> Vec<u8> {
        let mut s = self.0.lock().unwrap();
        let n = n.min(s.bytes.len());
        s.bytes.drain(..n).collect()
    }

    /// Whether the input has ended and every byte was taken.
    pub fn ended_and_empty(&self) -> bool {
        let s = self.0.lock().unwrap();
        s.ended && s.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_in_order_and_reports_the_end_only_when_drained() {
        let q = StdinQueue::default();
        q.push(b"hello");
        assert_eq!(q.take(2), b"he");
        q.end();
        assert!(!q.ended_and_empty());
        assert_eq!(q.take(10), b"llo");
        assert!(q.ended_and_empty());
    }

    #[test]
    fn reader_thread_reads_to_the_end() {
        let q = StdinQueue::spawn(&b"abc"[..]);
        for _ in 0..200 {
            if q.0.lock().unwrap().ended {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(q.take(100), b"abc");
        assert!(q.ended_and_empty());
    }
}
