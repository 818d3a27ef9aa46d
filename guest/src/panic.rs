//! The kernel's panic handler: prints `xv6: panic: <message> at <file>:<line>`, fills the
//! panic report the VMM reads (xv6-abi `panic`: the message and the frame-pointer backtrace),
//! hands the VMM its physical address (debug port 0x502) and halts this CPU forever.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use xv6_abi::panic as report;

use crate::backtrace::{self, Bounds};
use crate::memlayout::{phystop, KVAddr, KERNBASE, KERNLINK, V2P};

/// The report block (one CPU, written only here, with interrupts off).
struct Report(UnsafeCell<[u8; report::SIZE]>);

// SAFETY: only the panic handler touches it, once, on the one CPU with interrupts off.
unsafe impl Sync for Report {}

static REPORT: Report = Report(UnsafeCell::new([0; report::SIZE]));

/// Where the backtrace starts when not at the panic's own frame: the frame pointer of the
/// task a double fault interrupted (0: the panicking code's own chain).
static BACKTRACE_FROM: AtomicU32 = AtomicU32::new(0);

/// Makes the next panic's backtrace walk the frame-pointer chain from `ebp` (the double-fault
/// task reports the faulting task's frames, not its own).
pub fn backtrace_from(ebp: u32) {
    BACKTRACE_FROM.store(ebp, Ordering::Relaxed);
}

/// Writes text into the report's message area, cutting what does not fit.
struct MsgWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for MsgWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::x86::cli();
    crate::printf::print_unlocked(format_args!("xv6: panic: {}\n", Located(info)));
    // SAFETY: see `Report`'s Sync: nothing else refers to the block.
    let block = unsafe { &mut *REPORT.0.get() };
    fill_report(block, info);
    crate::debugport::panic_notify(V2P(KVAddr(block.as_ptr() as u32)).0);
    crate::x86::halt_forever()
}

/// `MESSAGE at FILE:LINE` (or just the message).
struct Located<'a, 'b>(&'a PanicInfo<'b>);

impl fmt::Display for Located<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.location() {
            Some(l) => write!(f, "{} at {}:{}", self.0.message(), l.file(), l.line()),
            None => write!(f, "{}", self.0.message()),
        }
    }
}

fn fill_report(block: &mut [u8; report::SIZE], info: &PanicInfo<'_>) {
    let mut frames = [0u32; report::MAX_FRAMES];
    let from = match BACKTRACE_FROM.load(Ordering::Relaxed) {
        0 => current_ebp(),
        ebp => ebp,
    };
    let n = backtrace::walk(from, &bounds(), read_word, &mut frames);
    let mut w = MsgWriter {
        buf: &mut block[report::OFF_MSG..],
        len: 0,
    };
    let _ = write!(w, "{}", Located(info));
    let len = w.len as u32;
    put(block, 0, report::MAGIC);
    put(block, report::OFF_MSG_LEN, len);
    put(block, report::OFF_NFRAMES, n as u32);
    for (i, f) in frames[..n].iter().enumerate() {
        put(block, report::OFF_FRAMES + 4 * i, *f);
    }
}

fn put(block: &mut [u8], off: usize, v: u32) {
    block[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Where the frame chain may go: kernel stacks live in the kernel half's RAM (the boot stack
/// in the image, the others in kalloc pages); return addresses in kernel text.
fn bounds() -> Bounds {
    // Before the memory map is read, only the first 4 MiB are known to be mapped.
    let ram = phystop().0.max(4 << 20);
    Bounds {
        stack_lo: KERNBASE,
        stack_hi: KERNBASE + ram,
        text_lo: KERNLINK,
        text_hi: crate::linker::data().0,
    }
}

fn read_word(va: u32) -> u32 {
    // SAFETY: `backtrace::walk` reads only 4-aligned addresses inside `bounds()`' stack range,
    // which the kernel maps (RAM at KERNBASE; the first 4 MiB from entrypgdir on).
    unsafe { core::ptr::read_volatile(va as *const u32) }
}

/// This function's caller's frame pointer chain starts at EBP.
#[inline(always)]
fn current_ebp() -> u32 {
    let ebp: u32;
    // SAFETY: reads a register; no memory, no stack.
    unsafe {
        core::arch::asm!("mov {}, ebp", out(reg) ebp, options(nomem, nostack, preserves_flags))
    };
    ebp
}

/// The prebuilt `core` was compiled with unwinding and references the personality routine;
/// the kernel aborts on panic, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
