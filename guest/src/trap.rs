//! Traps (xv6 trap.c, trapasm.S, vectors.S): the interrupt descriptor table, the entry code
//! every vector runs, and `trap`, which decides what a trap means.
//!
//! Each of the 256 vectors has a stub that pushes an error code (a 0 where the CPU pushes
//! none, so every trap frame has the same layout) and its vector number, then jumps to
//! `alltraps`, which saves the segment and general registers to complete a `TrapFrame` and
//! calls `trap`; `trapret` undoes that and `iret`s. All gates are interrupt gates for the
//! kernel only, except T_SYSCALL (`int $64`): a trap gate user code may invoke.
//!
//! A trap from user mode that is not a system call or an interrupt kills the process (one
//! line on the log, exit status 128 + the Unix signal) — except a page fault on a lazy sbrk
//! page, which maps the page and returns to the faulting instruction (the short path at the
//! top of `trap`: no console, no port I/O, no TLB flush); a fault in the kernel is a panic. The
//! classification and the wording are pure functions, tested on the host.

use core::fmt;

use crate::memlayout::KERNBASE;
use crate::mmu::{PteFlags, PTE_P, PTE_U, PTE_W};

// Processor-defined trap numbers (xv6 traps.h).
/// Divide error.
pub const T_DIVIDE: u32 = 0;
/// Invalid opcode.
pub const T_ILLOP: u32 = 6;
/// Double fault.
pub const T_DBLFLT: u32 = 8;
/// General protection fault.
pub const T_GPFLT: u32 = 13;
/// Page fault.
pub const T_PGFLT: u32 = 14;
/// System call (`int $64`), the number user programs use too (xv6-abi).
pub use xv6_abi::syscall::T_SYSCALL;
/// First vector of the hardware interrupts (IRQ 0).
pub const T_IRQ0: u32 = 32;
/// LAPIC timer IRQ.
pub const IRQ_TIMER: u32 = 0;
/// LAPIC error IRQ.
pub const IRQ_ERROR: u32 = 19;
/// LAPIC spurious-interrupt IRQ.
pub const IRQ_SPURIOUS: u32 = 31;

/// Page-fault error code bit: the fault was a write.
pub const PF_WRITE: u32 = 0x2;

/// What `alltraps` leaves on the kernel stack (xv6 `struct trapframe`): the registers of
/// `pushal`, the data segment registers, the vector and error code the stub pushed, then
/// what the CPU pushed (esp and ss only on a trap from user mode). Segment selectors take
/// a 32-bit slot each; only their low 16 bits mean anything.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TrapFrame {
    // pushal
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    /// The esp pushal saw (useless, ignored by popal).
    pub oesp: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    // the rest of alltraps
    pub gs: u32,
    pub fs: u32,
    pub es: u32,
    pub ds: u32,
    pub trapno: u32,
    // the CPU, or the vector stub for err
    pub err: u32,
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
    // only on a crossing from user to kernel
    pub esp: u32,
    pub ss: u32,
}

impl TrapFrame {
    /// Did the trap come from user mode (CPL 3 in the saved cs)?
    #[must_use]
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// An IDT gate descriptor (xv6 `SETGATE`): `istrap` makes a trap gate (interrupts stay
/// enabled) rather than an interrupt gate; `dpl` is the privilege needed to `int` to it.
#[doc(alias = "SETGATE")]
#[must_use]
pub const fn gate(istrap: bool, sel: u16, off: u32, dpl: u32) -> u64 {
    let ty: u32 = if istrap { 0xF } else { 0xE }; // STS_TG32 / STS_IG32
    let lo = (off & 0xFFFF) | ((sel as u32) << 16);
    let hi = (off & 0xFFFF_0000) | (1 << 15) | ((dpl & 3) << 13) | (ty << 8);
    ((hi as u64) << 32) | lo as u64
}

/// Does the CPU push an error code for this vector? (The stubs push a 0 for the others.)
#[must_use]
pub const fn has_error_code(vec: u32) -> bool {
    matches!(vec, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// The name of a processor exception (vectors 0..32), as the Intel manual gives it.
#[must_use]
pub fn exception_name(trapno: u32) -> &'static str {
    const NAMES: [&str; 22] = [
        "divide error",
        "debug",
        "non-maskable interrupt",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point error",
        "virtualization exception",
        "control protection",
    ];
    NAMES
        .get(trapno as usize)
        .copied()
        .unwrap_or("unexpected trap")
}

/// The exit status of a process killed by exception `trapno` in user mode: 128 + the Unix
/// signal a shell would report (SIGFPE 8 for a divide error, SIGILL 4 for an invalid
/// opcode, SIGSEGV 11 for everything else: bad memory accesses above all).
#[must_use]
pub fn fault_status(trapno: u32) -> i32 {
    match trapno {
        T_DIVIDE => 128 + 8,
        T_ILLOP => 128 + 4,
        _ => 128 + 11,
    }
}

/// Why a user page fault happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultCause {
    /// The page below the stack page: mapped, but not for user mode (clearpteu).
    GuardPage,
    /// An address in the kernel half.
    KernelAddress,
    /// Nothing mapped there for the process (not present, or at/above its size).
    Unmapped,
    /// A write to a page mapped read-only (the text of a program linked with separate
    /// segments).
    WriteToReadOnly,
    /// The first touch of a lazy sbrk page, or the first write to a copy-on-write page, with
    /// no free page left to map there.
    OutOfMemory,
}

impl fmt::Display for FaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultCause::GuardPage => "guard page",
            FaultCause::KernelAddress => "kernel address",
            FaultCause::Unmapped => "unmapped",
            FaultCause::WriteToReadOnly => "write to read-only",
            FaultCause::OutOfMemory => "out of memory",
        })
    }
}

/// Classifies a user page fault at `va` (CR2) with error code `err`, in a process of size
/// `sz` whose PTE for `va` has the flags `pte` (`None`: no page table there).
#[must_use]
pub fn pagefault_cause(va: u32, sz: u32, pte: Option<PteFlags>, err: u32) -> FaultCause {
    if va >= KERNBASE {
        return FaultCause::KernelAddress;
    }
    let flags = match pte {
        Some(f) if f.contains(PTE_P) && va < sz => f,
        _ => return FaultCause::Unmapped,
    };
    if !flags.contains(PTE_U) {
        FaultCause::GuardPage
    } else if err & PF_WRITE != 0 && !flags.contains(PTE_W) {
        FaultCause::WriteToReadOnly
    } else {
        FaultCause::Unmapped
    }
}

/// The one log line for a process killed by a trap, e.g.
/// `pid 3 (sbrktest): page fault at 0x00003ff0 (guard page) eip 0x000012a4 — killed`.
/// `pf` is the faulting address and its cause, for page faults.
pub fn write_fault_line(
    w: &mut impl fmt::Write,
    pid: i32,
    name: &str,
    trapno: u32,
    eip: u32,
    pf: Option<(u32, FaultCause)>,
) -> fmt::Result {
    write!(w, "pid {pid} ({name}): ")?;
    match pf {
        Some((va, cause)) => write!(w, "page fault at {va:#010x} ({cause})")?,
        None => w.write_str(exception_name(trapno))?,
    }
    write!(w, " eip {eip:#010x} \u{2014} killed")
}

#[cfg(all(target_arch = "x86", not(test)))]
pub use hw::*;

/// The hardware half: the vectors, the IDT, `trap` itself.
#[cfg(all(target_arch = "x86", not(test)))]
mod hw {
    use core::cell::UnsafeCell;

    use super::*;
    use crate::mmu::{selector, DPL_USER, SEG_KCODE, SEG_KDATA};
    use crate::{lapic, proc, syscall, x86};

    core::arch::global_asm!(
        r#"
        # vectors: the address of each vector's stub.
        .pushsection .rodata.vectors, "a"
        .balign 4
        .globl vectors
vectors:
        .popsection

        .pushsection .text.vectors, "ax"
        .set vecno, 0
        .rept 256
        .pushsection .rodata.vectors, "a"
        .long 1f
        .popsection
1:
        .if (vecno == 8) || ((vecno >= 10) && (vecno <= 14)) || (vecno == 17) || (vecno == 21) || (vecno == 29) || (vecno == 30)
        .else
        pushl $0
        .endif
        pushl $vecno
        jmp alltraps
        .set vecno, vecno + 1
        .endr

        # Builds the rest of the trap frame and calls trap(tf).
        .globl alltraps
alltraps:
        pushl %ds
        pushl %es
        pushl %fs
        pushl %gs
        pushal
        # The kernel's data segment; the string instructions go forward.
        movw ${kdata}, %ax
        movw %ax, %ds
        movw %ax, %es
        cld
        pushl %esp
        call {trap}
        addl $4, %esp

        # Returns from a trap (and starts every new process, via forkret).
        .globl trapret
trapret:
        popal
        popl %gs
        popl %fs
        popl %es
        popl %ds
        addl $8, %esp           # trapno and err
        iret
        .popsection
        "#,
        kdata = const selector(SEG_KDATA, 0),
        trap = sym trap,
        options(att_syntax)
    );

    extern "C" {
        /// The entry stubs' addresses (above).
        #[link_name = "vectors"]
        static VECTORS: [u32; 256];
        /// The second half of alltraps: where a new process's kernel stack "returns" to.
        pub fn trapret();
    }

    /// The interrupt descriptor table.
    struct Idt(UnsafeCell<[u64; 256]>);

    // SAFETY: one CPU; written once by tvinit before idtinit loads it, read by the CPU.
    unsafe impl Sync for Idt {}

    static IDT: Idt = Idt(UnsafeCell::new([0; 256]));

    /// Fills the IDT (xv6 `tvinit`): every vector an interrupt gate for the kernel, the
    /// system-call vector a trap gate for user mode.
    pub fn tvinit() {
        let cs = selector(SEG_KCODE, 0);
        // SAFETY: called once at boot, before idtinit; nothing else holds the IDT.
        let idt = unsafe { &mut *IDT.0.get() };
        for (i, g) in idt.iter_mut().enumerate() {
            // SAFETY: VECTORS is the table the assembly above defines, 256 entries.
            let v = unsafe { VECTORS[i] };
            *g = if i as u32 == T_SYSCALL {
                gate(true, cs, v, DPL_USER)
            } else {
                gate(false, cs, v, 0)
            };
        }
    }

    /// Loads the IDT into this CPU (xv6 `idtinit`).
    pub fn idtinit() {
        // SAFETY: IDT is static and tvinit pointed every gate at a stub of the assembly
        // above, which saves a full frame and calls trap.
        unsafe { x86::lidt(IDT.0.get() as u32, (256 * 8 - 1) as u16) };
    }

    /// Every trap lands here, on the kernel stack, with interrupts off (an interrupt gate)
    /// or on (the system-call trap gate).
    extern "C" fn trap(tf: *mut TrapFrame) {
        // SAFETY: alltraps passes the frame it just built on this kernel stack; nothing else
        // refers to it while trap runs (a nested trap builds its own).
        let tf = unsafe { &mut *tf };
        if tf.trapno == T_PGFLT && tf.from_user() && proc::myproc().is_some() {
            let va = x86::rcr2();
            match proc::pagefault(va, tf.err) {
                // Demand paging: back to the instruction, which now finds its page. (A
                // kill() meanwhile is noticed at the next trap: only a running process
                // takes page faults, and with one CPU nobody else ran since its last trap.)
                Ok(()) => return,
                Err(cause) => user_fault(tf, Some((va, cause))),
            }
        }
        if tf.trapno == T_SYSCALL {
            proc::exit_if_killed();
            syscall::syscall(tf);
            proc::exit_if_killed();
            return;
        }

        let mut timer = false;
        match tf.trapno {
            n if n == T_IRQ0 + IRQ_TIMER => {
                lapic::clockintr();
                lapic::lapiceoi();
                timer = true;
            }
            n if n == T_IRQ0 + IRQ_ERROR => lapic::lapiceoi(),
            n if n == T_IRQ0 + IRQ_SPURIOUS => {} // no EOI for a spurious interrupt
            _ if tf.from_user() && proc::myproc().is_some() => user_fault(tf, None),
            _ => kernel_fault(tf),
        }

        if tf.from_user() {
            proc::exit_if_killed();
        }
        // Give up the CPU on a clock tick (xv6 preempts kernel code too).
        if timer {
            proc::yield_if_running();
        }
        if tf.from_user() {
            proc::exit_if_killed();
        }
    }

    /// A user-mode exception: one log line, then the process exits with 128 + signal. `pf`:
    /// the address and cause of a page fault.
    fn user_fault(tf: &TrapFrame, pf: Option<(u32, FaultCause)>) -> ! {
        proc::log_fault(tf.trapno, tf.eip, pf);
        proc::exit(fault_status(tf.trapno))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapframe_layout() {
        assert_eq!(core::mem::size_of::<TrapFrame>(), 19 * 4);
        assert_eq!(core::mem::offset_of!(TrapFrame, eax), 28);
        assert_eq!(core::mem::offset_of!(TrapFrame, trapno), 48);
        assert_eq!(core::mem::offset_of!(TrapFrame, eip), 56);
        assert_eq!(core::mem::offset_of!(TrapFrame, esp), 68);
        let mut tf = TrapFrame {
            cs: 0x1b,
            ..Default::default()
        };
        assert!(tf.from_user());
        tf.cs = 0x08;
        assert!(!tf.from_user());
    }

    #[test]
    fn gates_match_xv6_setgate() {
        // SETGATE(idt[64], 1, SEG_KCODE<<3, 0x80105a2c, DPL_USER)
        assert_eq!(gate(true, 0x08, 0x8010_5A2C, 3), 0x8010_EF00_0008_5A2C);
        // SETGATE(idt[14], 0, SEG_KCODE<<3, 0x80105a2c, 0)
        assert_eq!(gate(false, 0x08, 0x8010_5A2C, 0), 0x8010_8E00_0008_5A2C);
    }

    #[test]
    fn error_code_vectors() {
        let with: Vec<u32> = (0..256).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(fault_status(T_PGFLT), 139);
        assert_eq!(fault_status(T_GPFLT), 139);
        assert_eq!(fault_status(T_ILLOP), 132);
        assert_eq!(fault_status(T_DIVIDE), 136);
        assert_eq!(fault_status(3), 139);
    }

    #[test]
    fn exception_names() {
        assert_eq!(exception_name(0), "divide error");
        assert_eq!(exception_name(6), "invalid opcode");
        assert_eq!(exception_name(13), "general protection");
        assert_eq!(exception_name(14), "page fault");
        assert_eq!(exception_name(40), "unexpected trap");
    }

    #[test]
    fn pagefault_causes() {
        let sz = 0x5000;
        let (urw, ur, k) = (PTE_P | PTE_U | PTE_W, PTE_P | PTE_U, PTE_P | PTE_W);
        // The guard page: present, not user, below sz.
        assert_eq!(
            pagefault_cause(0x3ff0, sz, Some(k), 0x4),
            FaultCause::GuardPage
        );
        assert_eq!(
            pagefault_cause(0x8000_0000, sz, Some(k), 0x5),
            FaultCause::KernelAddress
        );
        assert_eq!(
            pagefault_cause(0xFFFF_FFFC, sz, None, 0x4),
            FaultCause::KernelAddress
        );
        assert_eq!(pagefault_cause(0x5000, sz, None, 0x4), FaultCause::Unmapped);
        assert_eq!(
            pagefault_cause(0x1000, sz, Some(PteFlags::empty()), 0x6),
            FaultCause::Unmapped
        );
        // At or above sz, even if something stale were mapped.
        assert_eq!(
            pagefault_cause(0x6000, sz, Some(urw), 0x6),
            FaultCause::Unmapped
        );
        assert_eq!(
            pagefault_cause(0x1000, sz, Some(ur), 0x7),
            FaultCause::WriteToReadOnly
        );
        // A read of a present user page cannot fault for the page's sake.
        assert_eq!(
            pagefault_cause(0x1000, sz, Some(ur), 0x5),
            FaultCause::Unmapped
        );
    }

    #[test]
    fn fault_lines() {
        let mut s = String::new();
        write_fault_line(
            &mut s,
            3,
            "sbrktest",
            T_PGFLT,
            0x12a4,
            Some((0x3ff0, FaultCause::GuardPage)),
        )
        .unwrap();
        assert_eq!(
            s,
            "pid 3 (sbrktest): page fault at 0x00003ff0 (guard page) eip 0x000012a4 \u{2014} killed"
        );
        s.clear();
        let oom = Some((0x0100_0000, FaultCause::OutOfMemory));
        write_fault_line(&mut s, 5, "pfbench", T_PGFLT, 0x42, oom).unwrap();
        assert_eq!(
            s,
            "pid 5 (pfbench): page fault at 0x01000000 (out of memory) eip 0x00000042 \u{2014} killed"
        );
        s.clear();
        write_fault_line(&mut s, 4, "t", T_ILLOP, 0x10, None).unwrap();
        assert_eq!(
            s,
            "pid 4 (t): invalid opcode eip 0x00000010 \u{2014} killed"
        );
    }
}
