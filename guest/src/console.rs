//! The console device for user file descriptors (xv6 console.c's `consoleread` and
//! `consolewrite`): the program's stdout, stderr and stdin through the VMM's paravirtual
//! console, at one VM exit per piece rather than per byte (docs/abi.md, "Console").
//!
//! - `consolewrite` hands the VMM the guest-physical pieces of the user buffer
//!   (`uaccess::physchunks`: at most one per page), one request each; no copy.
//! - `consoleread` asks the VMM for at most what the reader wants (never more than the input
//!   buffer) in one request. When no byte is there yet, the VMM says so at once and the
//!   reader sleeps until the next clock tick and asks again: the VMM never blocks, and the
//!   waiting process stays preemptible and killable (a kill ends the wait with −1).
//!
//! The kernel's own log does not come here: it goes to a UART (`printf.rs`).

use core::sync::atomic::{compiler_fence, Ordering};

use crate::inputbuf::InputBuf;
use crate::memlayout::{KVAddr, UVAddr, V2P};
use crate::mmu::PGSIZE;
use crate::proc::{self, PTABLE};
use crate::ptable::Chan;
use crate::spinlock::Spinlock;
use crate::uaccess;
use crate::x86::outl;

use xv6_abi::console::{BAD_REQUEST, NOTHING_YET};
use xv6_abi::ports::{CONS_STDERR, CONS_STDIN, CONS_STDOUT};

/// A console output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The program's stdout (the host's stdout).
    Stdout,
    /// The program's stderr (the host's stderr).
    Stderr,
}

/// A request block (xv6-abi `console`: `{pa, len, ret}`), 4-byte aligned in kernel memory.
#[repr(C, align(16))]
struct Block {
    pa: u32,
    len: u32,
    ret: u32,
}

/// The output side's request block.
static OUTPUT: Spinlock<Block> = Spinlock::new("cons-out", Block::new());

/// The input side: its request block and the bytes the VMM delivered (xv6 `input`).
static INPUT: Spinlock<(Block, InputBuf)> =
    Spinlock::new("cons-in", (Block::new(), InputBuf::new()));

impl Block {
    const fn new() -> Block {
        Block {
            pa: 0,
            len: 0,
            ret: 0,
        }
    }

    /// One request: `len` bytes at guest-physical `pa` on `port`; the VMM's `ret`.
    fn request(&mut self, port: u16, pa: u32, len: u32) -> u32 {
        self.pa = pa;
        self.len = len;
        self.ret = BAD_REQUEST;
        compiler_fence(Ordering::SeqCst);
        outl(port, kernel_pa(core::ptr::from_mut(self).cast()));
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `self.ret` is a valid, aligned u32 of ours; the VMM wrote it during the
        // `out` (volatile: a write the compiler cannot see).
        unsafe { core::ptr::read_volatile(&self.ret) }
    }
}

/// The guest-physical address of kernel memory at `p` (kernel data sits at P2V of its
/// physical address, contiguously).
fn kernel_pa(p: *const u8) -> u32 {
    V2P(KVAddr(p as u32)).0
}

/// Writes the current process's user bytes `[src, src + n)` to `stream` (xv6
/// `consolewrite`). Returns the bytes written: fewer than n if the buffer runs into memory
/// the process cannot read after some were written, −1 if not even the first byte can be.
pub fn consolewrite(stream: Stream, src: UVAddr, n: u32) -> i32 {
    let port = match stream {
        Stream::Stdout => CONS_STDOUT,
        Stream::Stderr => CONS_STDERR,
    };
    let mut done = 0u32;
    while done < n {
        let Some(va) = src.checked_add(done) else {
            break;
        };
        let len = (PGSIZE - va.offset()).min(n - done);
        let mut ok = true;
        let piece = proc::with_mem(|m| {
            uaccess::physchunks(m, va, len, |pa, l| {
                ok &= OUTPUT.lock().request(port, pa.0, l) == l;
            })
        });
        if piece.is_err() || !ok {
            break;
        }
        done += len;
    }
    if done == 0 && n > 0 {
        -1
    } else {
        done as i32
    }
}

/// What one ask for input gave.
enum Asked {
    Bytes,
    End,
    NothingYet,
    Refused,
}

/// Reads up to `n` bytes of stdin into the current process's user memory at `dst` (xv6
/// `consoleread`). Waits until at least one byte is there; returns the count, 0 at end of
/// input, −1 for a bad buffer (the bytes stay for the next read) or if killed while waiting.
pub fn consoleread(dst: UVAddr, n: u32) -> i32 {
    if n == 0 {
        return 0;
    }
    loop {
        let mut input = INPUT.lock();
        let (block, buf) = &mut *input;
        if buf.is_empty() {
            match ask(block, buf, n as usize) {
                Asked::Bytes => {}
                Asked::End => return 0,
                Asked::Refused => return -1,
                Asked::NothingYet => {
                    drop(input);
                    if !sleep_a_tick() {
                        return -1;
                    }
                    continue;
                }
            }
        }
        let k = buf.bytes().len().min(n as usize);
        if proc::with_mem(|m| uaccess::copyto(m, dst, &buf.bytes()[..k])).is_err() {
            return -1;
        }
        buf.consume(k);
        return k as i32;
    }
}

/// Asks the VMM to fill the empty input buffer with at most `want` bytes.
fn ask(block: &mut Block, buf: &mut InputBuf, want: usize) -> Asked {
    let space = buf.space(want);
    let (pa, len) = (kernel_pa(space.as_ptr()), space.len() as u32);
    match block.request(CONS_STDIN, pa, len) {
        0 => Asked::End,
        NOTHING_YET => Asked::NothingYet,
        got if got <= len => {
            // The VMM wrote the bytes behind the compiler's back: make it reload them.
            compiler_fence(Ordering::SeqCst);
            buf.filled(got as usize);
            Asked::Bytes
        }
        _ => Asked::Refused,
    }
}

/// Sleeps until the next clock tick; false if the process was killed.
fn sleep_a_tick() -> bool {
    let me = proc::myproc().expect("consoleread: no process");
    let mut pt = PTABLE.lock();
    if pt.procs[me].killed.is_some() {
        return false;
    }
    proc::sleep(Chan::Ticks, &mut pt);
    pt.procs[me].killed.is_none()
}
