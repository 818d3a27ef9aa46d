//! Starting the other CPUs (xv6 main.c's `mpinit` call, `startothers`, `mpenter` and
//! `mpmain`, and entryother.S): the boot CPU reads the MP table (mp.rs) to learn the CPUs,
//! copies a real-mode trampoline to AP_START (below 1 MiB, where a CPU starting from a
//! STARTUP IPI can run it), and wakes each other CPU with INIT/SIPI through its LAPIC, one at
//! a time, waiting a bounded time for each. The trampoline switches the CPU to protected mode
//! with its own small GDT, turns on paging with entrypgdir (as `entry` does on the boot CPU),
//! and calls `mpenter` on the CPU's own stack; mpenter loads the kernel page directory, the
//! CPU's GDT and TSS, its LAPIC timer and the IDT, and enters the scheduler.
//!
//! The trampoline reads three words the boot CPU leaves at the end of its page (AP_ARGS):
//! the physical address of entrypgdir, mpenter's address and the top of the CPU's stack.
//! Each CPU's stack is a static page below 4 MiB (entrypgdir maps only that much), which stays
//! its scheduler's stack.

use core::sync::atomic::{compiler_fence, Ordering};

use xv6_abi::mmu::{CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR0_WP, CR4_PSE};
use xv6_abi::smp::AP_START;

use crate::bootstack::BootStack;
use crate::cmdline::{config, SelfTest};
use crate::cpu::{self, CPUS, NCPU};
use crate::memlayout::{KVAddr, PhysAddr, P2V, V2P};
use crate::{cprintln, lapic, mp, proc, x86};

/// Where in the trampoline's page the boot CPU leaves its three words.
const AP_ARGS: u32 = AP_START + 0xFF4;

/// How long the boot CPU waits for each other CPU to start, in milliseconds.
const START_MS: u64 = 2000;

/// The other CPUs' stacks (index 0, the boot CPU's, is unused: it runs on the boot stack).
static AP_STACKS: [BootStack; NCPU] = [const { BootStack::new() }; NCPU];

core::arch::global_asm!(
    r#"
    .pushsection .rodata.ap_tramp, "a"
    .globl ap_tramp_start
    .globl ap_tramp_end
    .code16
ap_tramp_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    # Protected mode with the trampoline's own flat GDT (code 0x08, data 0x10, as the
    # kernel's), then a far jump to load CS from it.
    lgdtl ({ap_start} + (ap_gdtdesc - ap_tramp_start))
    # INIT leaves the caches off (CR0.CD and CR0.NW set): turn them on with protected mode.
    movl %cr0, %eax
    andl ${cr0_caches_off}, %eax
    orl ${cr0_pe}, %eax
    movl %eax, %cr0
    ljmpl $8, $({ap_start} + (ap_start32 - ap_tramp_start))

    .code32
ap_start32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    # Paging as entry does it: 4 MiB pages, entrypgdir, paging and write protection on.
    movl %cr4, %eax
    orl ${cr4_pse}, %eax
    movl %eax, %cr4
    movl ({ap_args}), %eax
    movl %eax, %cr3
    movl %cr0, %eax
    orl ${cr0_pg_wp}, %eax
    movl %eax, %cr0
    # This CPU's stack (a high address), then mpenter, which never returns.
    movl ({ap_args} + 8), %esp
    xorl %ebp, %ebp
    movl ({ap_args} + 4), %eax
    call *%eax
1:  cli
    hlt
    jmp 1b

    .p2align 3
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    # code: base 0, limit 4 GiB, execute/read, ring 0
    .quad 0x00CF92000000FFFF    # data: base 0, limit 4 GiB, read/write, ring 0
ap_gdtdesc:
    .word ap_gdtdesc - ap_gdt - 1
    .long {ap_start} + (ap_gdt - ap_tramp_start)
ap_tramp_end:
    .popsection
    "#,
    ap_start = const AP_START,
    ap_args = const AP_ARGS,
    cr4_pse = const CR4_PSE,
    cr0_pg_wp = const CR0_PG | CR0_WP,
    cr0_caches_off = const !(CR0_CD | CR0_NW),
    cr0_pe = const CR0_PE,
    options(att_syntax)
);

extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
    /// entry.rs's boot page directory, by its symbol (as xv6's main.c declares it), so that
    /// this file does not import entry.rs, which imports kmain, which imports this.
    static entrypgdir: u8;
}

/// Reads the MP table and records the CPUs (xv6 `mpinit`); without one, the machine has one
/// CPU. Panics on an MP table that is there but broken, or that does not list this CPU
/// (which booted as CPU 0) as the bootstrap processor.
pub fn mpinit() {
    let phys = |pa: u32, len: usize| -> &'static [u8] {
        // SAFETY: mp::find asks only for bytes below 1 MiB, which the kernel maps (kmap's
        // I/O space row) and nothing writes after boot (the VMM's boot data, zero RAM).
        unsafe { core::slice::from_raw_parts(P2V(PhysAddr(pa)).as_ptr::<u8>(), len) }
    };
    let cfg = match mp::find(phys) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return,
        Err(e) => panic!("mpinit: bad MP table: {:?}", e),
    };
    assert!(
        cfg.lapic == lapic::LAPIC,
        "mpinit: LAPIC at {:#x}, not {:#x}",
        cfg.lapic,
        lapic::LAPIC
    );
    let me = lapic::lapicid();
    assert!(
        u32::from(cfg.apicids[0]) == me,
        "mpinit: the boot CPU has APIC id {}, the MP table says {}",
        me,
        cfg.apicids[0]
    );
    cpu::set_cpus(&cfg.apicids[..cfg.ncpu]);
}

/// Starts every other CPU (xv6 `startothers`), one at a time: trampoline, arguments,
/// INIT/SIPI, then a bounded wait for the CPU to say it started. Panics naming the CPU that
/// does not.
pub fn startothers() {
    if cpu::ncpu() == 1 {
        return;
    }
    let code = P2V(PhysAddr(AP_START)).as_ptr::<u8>();
    // The linker symbols bound the trampoline's bytes in .rodata.
    let (start, end) = (
        core::ptr::addr_of!(ap_tramp_start),
        core::ptr::addr_of!(ap_tramp_end),
    );
    let len = end as usize - start as usize;
    assert!(
        len <= (AP_ARGS - AP_START) as usize,
        "startothers: trampoline too big"
    );
    // SAFETY: AP_START's page below 1 MiB is reserved for the trampoline (docs/abi.md),
    // mapped writable at P2V; the source is the kernel's read-only copy.
    unsafe { core::ptr::copy_nonoverlapping(start, code, len) };
    for i in 1..cpu::ncpu() {
        startap(i);
    }
}

/// Starts CPU `i` and waits for it.
fn startap(i: usize) {
    let stack_top = AP_STACKS[i].top();
    let pgdir = core::ptr::addr_of!(entrypgdir) as u32;
    let args = [V2P(KVAddr(pgdir)).0, mpenter as *const () as u32, stack_top];
    let at = P2V(PhysAddr(AP_ARGS)).as_ptr::<u32>();
    // SAFETY: AP_ARGS is inside the trampoline's reserved page (above its code), mapped
    // writable; no other CPU is starting now.
    unsafe { core::ptr::copy_nonoverlapping(args.as_ptr(), at, 3) };
    compiler_fence(Ordering::SeqCst);
    let apicid = CPUS[i].apicid.load(Ordering::Relaxed);
    // `selftest=apstart`: CPU 1's start goes to an APIC id no CPU has (ids are below NCPU).
    let target = match config().selftest {
        SelfTest::ApStart if i == 1 => NCPU as u32,
        _ => apicid,
    };
    lapic::lapicstartap(target, AP_START);
    let khz = match config().tsc_khz {
        0 => 3_000_000,
        k => u64::from(k),
    };
    let deadline = x86::rdtsc() + START_MS * khz;
    while !CPUS[i].started.load(Ordering::Acquire) {
        assert!(
            x86::rdtsc() < deadline,
            "startothers: cpu{} (APIC id {}) did not start within {} ms",
            i,
            apicid,
            START_MS
        );
        core::hint::spin_loop();
    }
}

/// Another CPU's first Rust code (the trampoline calls it, on entrypgdir and this CPU's
/// stack, interrupts off): the kernel page directory, this CPU's GDT (which makes `cpuid`
/// work), its LAPIC, then mpmain.
extern "C" fn mpenter() -> ! {
    crate::vm::switchkvm();
    let me = cpu::by_apicid(lapic::lapicid());
    crate::gdt::seginit(me);
    lapic::lapicinit();
    mpmain(me)
}

/// A CPU's last step before scheduling (xv6 `mpmain`): the IDT (and the task state
/// segments), the word startothers waits for, the scheduler.
fn mpmain(me: usize) -> ! {
    // The trampoline turned the caches on (the boot CPU starts with them on: the VMM sets
    // its CR0). Uncached, a CPU is many times slower, and under KVM every CR0 difference
    // from the hardware's can cost VM exits.
    let cr0 = x86::rcr0();
    assert!(
        cr0 & (CR0_CD | CR0_NW) == 0,
        "cpu{me}: caches off (CR0 {cr0:#010x})"
    );
    crate::trap::idtinit();
    if !config().quiet {
        cprintln!("xv6: cpu{}: starting", me);
    }
    CPUS[me].started.store(true, Ordering::Release);
    proc::scheduler()
}
