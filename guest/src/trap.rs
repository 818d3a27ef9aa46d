//! Traps (xv6 trap.c): the interrupt descriptor table and `trap`, which decides what a trap
//! means. The entry code is in trapasm.rs, the frame in trapframe.rs, the numbers in traps.rs.
//!
//! All gates are interrupt gates for the kernel only, except T_SYSCALL (`int $64`): a trap
//! gate user code may invoke, and the double fault (T_DBLFLT): a task gate to the
//! double-fault task (gdt.rs), which reports the fault as a panic (`double_fault`). A trap from user mode that is not a system call or an interrupt
//! kills the process (one line on the log, exit status 128 + the Unix signal; fault.rs) —
//! except a page fault on a lazy sbrk page, which maps the page and returns to the faulting
//! instruction (the short path at the top of `trap`: no console, no port I/O, no TLB flush); a
//! fault in the kernel is a panic. The timer interrupt counts ticks and wakes sleepers here,
//! as in xv6.

use core::cell::UnsafeCell;

use crate::fault::{exception_name, fault_status, FaultCause};
use crate::memlayout::{UVAddr, KERNBASE};
use crate::mmu::SEG_DFTSS;
use crate::mmu::{selector, DPL_USER, PGSIZE, SEG_KCODE};
use crate::ptable::Chan;
use crate::trapasm::VECTORS;
use crate::trapframe::TrapFrame;
use crate::traps::{
    gate, task_gate, PfErr, IRQ_ERROR, IRQ_SPURIOUS, IRQ_TIMER, T_DBLFLT, T_IRQ0, T_PGFLT,
    T_SYSCALL,
};
use crate::{lapic, proc, syscall, sysproc, ticks, x86};

/// The interrupt descriptor table.
struct Idt(UnsafeCell<[u64; 256]>);

// SAFETY: written once by tvinit (boot CPU) before any CPU loads it; then only read, by the
// CPUs.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([0; 256]));

/// Fills the IDT (xv6 `tvinit`): every vector an interrupt gate for the kernel, the
/// system-call vector a trap gate for user mode.
pub fn tvinit() {
    let cs = selector(SEG_KCODE, 0);
    // SAFETY: called once at boot, before idtinit; nothing else holds the IDT.
    let idt = unsafe { &mut *IDT.0.get() };
    for (i, g) in idt.iter_mut().enumerate() {
        // SAFETY: VECTORS is the table trapasm.rs defines, 256 entries.
        let v = unsafe { VECTORS[i] };
        *g = if i as u32 == T_SYSCALL {
            gate(true, cs, v, DPL_USER)
        } else if i as u32 == T_DBLFLT {
            task_gate(selector(SEG_DFTSS, 0))
        } else {
            gate(false, cs, v, 0)
        };
    }
}

/// Loads the IDT into this CPU (xv6 `idtinit`; every CPU, as it starts), after this CPU's
/// task state segments that its #DF task gate needs.
pub fn idtinit() {
    crate::gdt::tssinit();
    // SAFETY: IDT is static and tvinit pointed every gate at a stub of trapasm.rs,
    // which saves a full frame and calls trap.
    unsafe { x86::lidt(IDT.0.get() as u32, (256 * 8 - 1) as u16) };
}

/// Every trap lands here (alltraps calls it by name), on the kernel stack, with interrupts
/// off (an interrupt gate) or on (the system-call trap gate).
#[no_mangle]
extern "C" fn trap(tf: *mut TrapFrame) {
    // SAFETY: alltraps passes the frame it just built on this kernel stack; nothing else
    // refers to it while trap runs (a nested trap builds its own).
    let tf = unsafe { &mut *tf };
    if tf.trapno == T_PGFLT && tf.from_user() && proc::myproc().is_some() {
        // A fault in user mode: CR2 is the user address the process touched.
        let va = UVAddr(x86::rcr2());
        match proc::pagefault(va, PfErr::from_bits_retain(tf.err)) {
            // Demand paging: back to the instruction, which now finds its page. (A
            // kill() meanwhile, from another CPU, is noticed at the next trap: the
            // clock's, at the latest.)
            Ok(()) => return,
            Err(cause) => user_fault(tf, Some((va, cause))),
        }
    }
    if tf.trapno == T_SYSCALL {
        sysproc::exit_if_killed();
        syscall::syscall(tf);
        sysproc::exit_if_killed();
        return;
    }

    let mut timer = false;
    match tf.trapno {
        n if n == T_IRQ0 + IRQ_TIMER => {
            clockintr();
            lapic::lapiceoi();
            timer = true;
        }
        n if n == T_IRQ0 + IRQ_ERROR => lapic::lapiceoi(),
        n if n == T_IRQ0 + IRQ_SPURIOUS => {} // no EOI for a spurious interrupt
        _ if tf.from_user() && proc::myproc().is_some() => user_fault(tf, None),
        _ => kernel_fault(tf),
    }

    if tf.from_user() {
        sysproc::exit_if_killed();
    }
    // Give up the CPU on a clock tick (xv6 preempts kernel code too).
    if timer {
        proc::yield_if_running();
    }
    if tf.from_user() {
        sysproc::exit_if_killed();
    }
}

/// A user-mode exception: one log line, then the process exits with 128 + signal. `pf`:
/// the address and cause of a page fault.
fn user_fault(tf: &TrapFrame, pf: Option<(UVAddr, FaultCause)>) -> ! {
    proc::log_fault(tf.trapno, tf.eip, pf);
    sysproc::exit(fault_status(tf.trapno))
}

/// A trap in the kernel (or with no process): panic with the registers.
fn kernel_fault(tf: &TrapFrame) -> ! {
    // A same-privilege trap pushes no esp/ss: the kernel's esp was just above eflags.
    let esp = if tf.from_user() {
        tf.esp
    } else {
        core::ptr::addr_of!(tf.esp) as u32
    };
    panic!(
        "trap {} ({}) err {:#x} eip {:#010x} cr2 {:#010x} cs {:#x}\n  \
         eax {:#010x} ebx {:#010x} ecx {:#010x} edx {:#010x}\n  \
         esi {:#010x} edi {:#010x} ebp {:#010x} esp {:#010x} eflags {:#010x}",
        tf.trapno,
        exception_name(tf.trapno),
        tf.err,
        tf.eip,
        x86::rcr2(),
        tf.cs & 0xFFFF,
        tf.eax,
        tf.ebx,
        tf.ecx,
        tf.edx,
        tf.esi,
        tf.edi,
        tf.ebp,
        esp,
        tf.eflags
    );
}

/// How many words of the faulting stack a double-fault report shows.
const DF_STACK_WORDS: u32 = 8;

/// The double-fault task's work (dblflt_entry calls it, on the double-fault task's own
/// stack): a panic with the faulting task's registers (saved by the task switch), CR2, the top
/// of its stack, and a backtrace from its frame pointer. Never returns.
#[no_mangle]
extern "C" fn double_fault() -> ! {
    let t = crate::gdt::faulted_task();
    let mut stack = [0u32; DF_STACK_WORDS as usize];
    let ram = KERNBASE..KERNBASE + crate::memlayout::phystop().0;
    // Only what the kernel half maps is read (the same in every page directory): from ESP,
    // or from KERNBASE when ESP just ran off the bottom of the kernel half.
    let from = match t.esp {
        esp if ram.contains(&esp) => Some(esp & !3),
        esp if esp < KERNBASE && KERNBASE - esp <= PGSIZE => Some(KERNBASE),
        _ => None,
    }
    .filter(|&a| ram.contains(&(a + 4 * DF_STACK_WORDS - 1)));
    if let Some(a) = from {
        for (i, w) in stack.iter_mut().enumerate() {
            // SAFETY: inside the kernel's RAM mapping, checked above; aligned.
            *w = unsafe { core::ptr::read_volatile((a + 4 * i as u32) as *const u32) };
        }
    }
    crate::panic::backtrace_from(t.ebp);
    panic!(
        "double fault (#DF): eip {:#010x} esp {:#010x} cr2 {:#010x} cs {:#x} ss {:#x} \
         (a kernel stack overflow, or a fault while delivering a fault)\n  \
         eax {:#010x} ebx {:#010x} ecx {:#010x} edx {:#010x}\n  \
         esi {:#010x} edi {:#010x} ebp {:#010x} eflags {:#010x}\n  \
         stack {}",
        t.eip,
        t.esp,
        x86::rcr2(),
        t.cs,
        t.ss,
        t.eax,
        t.ebx,
        t.ecx,
        t.edx,
        t.esi,
        t.edi,
        t.ebp,
        t.eflags,
        StackWords(from.map(|a| (a, &stack[..]))),
    );
}

/// The top words of the faulting stack, or why they are not shown.
struct StackWords<'a>(Option<(u32, &'a [u32])>);

impl core::fmt::Display for StackWords<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            None => write!(f, "not shown (esp outside the kernel's RAM mapping)"),
            Some((at, words)) => {
                write!(f, "at {at:#010x}:")?;
                for w in words {
                    write!(f, " {w:08x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The timer interrupt's work (xv6 trap.c's IRQ_TIMER case): on the boot CPU only (every
/// CPU's LAPIC ticks, the clock counts one of them), one more tick and wake the processes
/// sleeping on ticks (console readers waiting for input among them: they ask the VMM again).
fn clockintr() {
    if crate::cpu::cpuid() == 0 {
        ticks::tick();
        proc::wakeup(Chan::Ticks);
    }
}
