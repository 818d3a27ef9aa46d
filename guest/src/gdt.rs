//! The kernel's own GDT and the task state segment (xv6 vm.c `seginit` and `switchuvm`).
//!
//! `seginit` replaces the boot GDT the VMM left in low memory with kernel code 0x08, kernel
//! data 0x10, user code 0x1b, user data 0x23 and a TSS slot 0x28. `switchuvm` points the TSS
//! at the process's kernel stack (ss0:esp0, where the CPU switches to on a trap from user
//! mode), loads it into the task register and loads the process's page directory into CR3.
//! Each CPU has its own GDT and TSS (xv6 keeps them in `struct cpu`), chosen by `cpuid`;
//! each is only written by its own CPU, with interrupts off.
//!
//! A second TSS (slot 0x30) belongs to the double-fault task: the IDT's #DF entry is a task
//! gate to it (as 32-bit Linux does), so a double fault — a kernel stack overflow, a fault
//! while the CPU delivers a fault — switches to a known-good stack and address space instead
//! of pushing onto the broken stack and triple-faulting. The switch saves the faulting task's
//! registers in the first TSS, where [`faulted_task`] reads them for the report. Each CPU
//! has its own double-fault task and stack too.

use core::arch::asm;
use core::cell::UnsafeCell;

use crate::cpu::{cpuid, NCPU};
use crate::mmu::{
    kernel_gdt, selector, SegDesc, NSEGS, SEG_DFTSS, SEG_KCODE, SEG_KDATA, SEG_TSS, STS_T32A,
};
use crate::vm::PageDir;

/// The 32-bit task state segment (xv6 `struct taskstate`). The kernel uses only ss0/esp0
/// (the stack for traps from user mode) and iomb (no I/O permission bitmap: user port I/O
/// faults).
#[repr(C)]
#[derive(Default)]
pub struct TaskState {
    link: u32,
    esp0: u32,
    ss0: u32,
    esp1: u32,
    ss1: u32,
    esp2: u32,
    ss2: u32,
    cr3: u32,
    eip: u32,
    eflags: u32,
    gpr: [u32; 8],
    seg: [u32; 6],
    ldt: u32,
    t: u16,
    iomb: u16,
}

const _: () = assert!(core::mem::size_of::<TaskState>() == 104);

/// What this CPU's segmentation hardware points at: the GDT and the TSS (xv6 keeps both in
/// `struct cpu`).
struct Segments {
    gdt: UnsafeCell<[SegDesc; NSEGS]>,
    ts: UnsafeCell<TaskState>,
    /// The double-fault task's TSS.
    dfts: UnsafeCell<TaskState>,
}

// SAFETY: each CPU uses only its own entry of SEGS (`cpuid`, interrupts off); the cells are
// written only by seginit and tssinit (that CPU's start, interrupts off) and switchuvm (under
// pushcli), and that CPU reads them (and writes the TSS on a task switch).
unsafe impl Sync for Segments {}

impl Segments {
    const fn new() -> Segments {
        Segments {
            gdt: UnsafeCell::new(kernel_gdt()),
            ts: UnsafeCell::new(TaskState::EMPTY),
            dfts: UnsafeCell::new(TaskState::EMPTY),
        }
    }
}

/// Each CPU's segments. In `.data` (writable): the CPU sets accessed and busy bits in
/// descriptors it loads.
#[link_section = ".data.gdt"]
static SEGS: [Segments; NCPU] = [const { Segments::new() }; NCPU];

/// This CPU's segments; interrupts must be off.
fn mysegs() -> &'static Segments {
    &SEGS[cpuid()]
}

impl TaskState {
    const EMPTY: TaskState = TaskState {
        link: 0,
        esp0: 0,
        ss0: 0,
        esp1: 0,
        ss1: 0,
        esp2: 0,
        ss2: 0,
        cr3: 0,
        eip: 0,
        eflags: 0,
        gpr: [0; 8],
        seg: [0; 6],
        ldt: 0,
        t: 0,
        // An I/O map base past the segment limit: user-mode in/out always faults.
        iomb: 0xFFFF,
    };
}

/// Bytes of the double-fault task's stack (the panic report runs on it).
const DF_STACK_SIZE: usize = 8192;

/// The double-fault task's stack.
#[repr(C, align(16))]
struct DfStack(UnsafeCell<[u8; DF_STACK_SIZE]>);

// SAFETY: only the CPU it belongs to uses it, as the stack of its double-fault task, which
// runs once.
unsafe impl Sync for DfStack {}

/// Each CPU's double-fault stack.
static DF_STACK: [DfStack; NCPU] = [const { DfStack(UnsafeCell::new([0; DF_STACK_SIZE])) }; NCPU];

extern "C" {
    /// The double-fault task's first instruction (trapasm.rs).
    fn dblflt_entry();
}

/// Sets up this CPU's two task state segments and loads the task register (at its start,
/// before the IDT is loaded; interrupts off): the first TSS is the one every kernel path runs under (switchuvm
/// points it at each process's kernel stack), the second the double-fault task's — its own
/// stack, the kernel page directory (CR3 now), interrupts off, and EIP at `dblflt_entry`.
pub fn tssinit() {
    let kdata = u32::from(selector(SEG_KDATA, 0));
    let size = core::mem::size_of::<TaskState>() as u32 - 1;
    let (segs, stack) = (mysegs(), &DF_STACK[cpuid()]);
    // SAFETY: this CPU's start, interrupts off: nothing else reads or writes its TSSes or
    // its GDT now. Both descriptors are written as available 32-bit TSSes over statics, so ltr
    // accepts the first (even if an earlier ltr marked it busy) and a task gate the second.
    unsafe {
        let df = &mut *segs.dfts.get();
        df.eip = dblflt_entry as *const () as u32;
        let top = stack.0.get() as u32 + DF_STACK_SIZE as u32;
        df.gpr[4] = top; // esp
        df.eflags = 0x2; // IF clear: nothing interrupts the report
        df.cr3 = crate::x86::rcr3();
        df.seg = [kdata, u32::from(selector(SEG_KCODE, 0)), kdata, kdata, 0, 0];
        df.ss0 = kdata;
        df.esp0 = top;
        let gdt = &mut *segs.gdt.get();
        gdt[SEG_DFTSS] = SegDesc::system(STS_T32A, segs.dfts.get() as u32, size, 0);
        (*segs.ts.get()).ss0 = kdata;
        gdt[SEG_TSS] = SegDesc::system(STS_T32A, segs.ts.get() as u32, size, 0);
        crate::x86::ltr(selector(SEG_TSS, 0));
    }
}

/// The registers of the task a double fault interrupted, as the task switch saved them.
#[derive(Clone, Copy, Debug)]
pub struct FaultedTask {
    pub eip: u32,
    pub eflags: u32,
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub cs: u32,
    pub ss: u32,
    /// The TSS selector the double-fault task links back to (0x28 when it was the kernel's).
    pub link: u32,
}

/// What the hardware task switch to the double-fault task saved of the faulting task (call
/// only on the double-fault task).
#[must_use]
pub fn faulted_task() -> FaultedTask {
    let segs = mysegs();
    // SAFETY: the double-fault task runs with interrupts off; this CPU's faulting task's TSS
    // was just written by the task switch and nothing else writes it now.
    let (ts, df) = unsafe { (&*segs.ts.get(), &*segs.dfts.get()) };
    let g = ts.gpr;
    FaultedTask {
        eip: ts.eip,
        eflags: ts.eflags,
        eax: g[0],
        ecx: g[1],
        edx: g[2],
        ebx: g[3],
        esp: g[4],
        ebp: g[5],
        esi: g[6],
        edi: g[7],
        cs: ts.seg[1] & 0xFFFF,
        ss: ts.seg[2] & 0xFFFF,
        link: df.link & 0xFFFF,
    }
}

/// Loads CPU `cpu`'s kernel GDT, which names this CPU from now on (cpu.rs `cpuid`), and
/// reloads every segment register from it (xv6 `seginit`, run by every CPU as it starts, with
/// its index in CPUS; interrupts off).
pub fn seginit(cpu: usize) {
    let base = SEGS[cpu].gdt.get() as u32;
    crate::cpu::set_gdt(cpu, base);
    let limit = (core::mem::size_of::<[SegDesc; NSEGS]>() - 1) as u16;
    // SAFETY: the GDT is a static, so it stays valid; its code and data descriptors are flat
    // 4 GiB segments like the boot GDT's, so reloading the registers below changes no
    // address translation.
    unsafe { crate::x86::lgdt(base, limit) };
    // SAFETY: reloads CS with a far return to the next instruction and the data segment
    // registers with the flat kernel data segment (fs/gs null, as xv6 leaves them until it
    // needs per-CPU data).
    unsafe {
        asm!(
            "mov ds, {d:x}",
            "mov es, {d:x}",
            "mov ss, {d:x}",
            "xor {t}, {t}",
            "mov fs, {t:x}",
            "mov gs, {t:x}",
            "push {c}",
            "lea {t}, [2f]",
            "push {t}",
            "retf",
            "2:",
            d = in(reg) u32::from(selector(SEG_KDATA, 0)),
            c = const selector(SEG_KCODE, 0) as u32,
            t = out(reg) _,
        );
    }
}

/// Switches the TSS and the hardware page table to a process (xv6 `switchuvm`): traps from
/// user mode will land on the top of the kernel stack page at `kstack` (KSTACKSIZE bytes),
/// and CR3 gets `pgdir`.
pub fn switchuvm(kstack: u32, kstacksize: u32, pgdir: &PageDir) {
    assert!(kstack != 0, "switchuvm: no kstack");
    let intr = crate::intr::pushcli();
    let segs = mysegs();
    let ts = segs.ts.get();
    // SAFETY: interrupts are off and these are this CPU's, so nothing else reads or writes
    // the TSS or the GDT now. The new descriptor is an available 32-bit TSS (busy bit clear, so
    // ltr accepts it even though the previous ltr marked the old one busy) over the static
    // TSS, which stays valid.
    unsafe {
        (*ts).ss0 = u32::from(selector(SEG_KDATA, 0));
        (*ts).esp0 = kstack + kstacksize;
        // An I/O map base past the segment limit: user-mode in/out always faults.
        (*ts).iomb = 0xFFFF;
        (*segs.gdt.get())[SEG_TSS] = SegDesc::system(
            STS_T32A,
            ts as u32,
            core::mem::size_of::<TaskState>() as u32 - 1,
            0,
        );
        crate::x86::ltr(selector(SEG_TSS, 0));
    }
    // SAFETY: every process page directory comes from setupkvm, so its kernel half is the
    // kernel page directory's (the running kernel stays mapped).
    unsafe { crate::x86::lcr3(pgdir.pa().0) };
    crate::intr::popcli(intr);
}
