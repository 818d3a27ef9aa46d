//! The local APIC (xv6 lapic.c) and the 8259 PICs (xv6 picirq.c): each CPU's LAPIC timer
//! drives its clock at 100 Hz, the LAPIC's id says which CPU is asking (cpu.rs), its
//! interrupt command register starts the other CPUs (`lapicstartap`), and the PICs are masked
//! (no legacy interrupts). The LAPIC is KVM's in-kernel xAPIC at its default base, mapped by
//! the DEVSPACE row of kmap (so not before kvmalloc).
//! What a tick does is trap.rs's business (`clockintr`).

use crate::traps::{IRQ_ERROR, IRQ_SPURIOUS, IRQ_TIMER, T_IRQ0};
use crate::x86::outb;

/// Physical (= virtual, DEVSPACE is mapped one to one) base of the local APIC.
pub const LAPIC: u32 = 0xFEE0_0000;

// Local APIC registers, by byte offset.
const ID: u32 = 0x020;
const VER: u32 = 0x030;
const TPR: u32 = 0x080; // task priority
const EOI: u32 = 0x0B0;
const ICRLO: u32 = 0x300; // interrupt command
const INIT: u32 = 0x0000_0500; // INIT/RESET
const STARTUP: u32 = 0x0000_0600; // startup IPI
const DELIVS: u32 = 0x0000_1000; // delivery status
const ASSERT: u32 = 0x0000_4000; // assert interrupt (vs deassert)
const LEVEL: u32 = 0x0000_8000; // level triggered
const ICRHI: u32 = 0x310; // interrupt command, destination in bits 24-31
const SVR: u32 = 0x0F0; // spurious interrupt vector
const ENABLE: u32 = 0x0000_0100; // unit enable
const ESR: u32 = 0x280; // error status
const TIMER: u32 = 0x320; // local vector table 0 (timer)
const PERIODIC: u32 = 0x0002_0000;
const PCINT: u32 = 0x340; // performance counter LVT
const LINT0: u32 = 0x350;
const LINT1: u32 = 0x360;
const ERROR: u32 = 0x370;
const MASKED: u32 = 0x0001_0000;
const TICR: u32 = 0x380; // timer initial count
const TDCR: u32 = 0x3E0; // timer divide configuration
const X1: u32 = 0x0000_000B; // divide counts by 1

/// Timer ticks per second.
pub const HZ: u32 = 100;
/// KVM's APIC bus runs at 1 GHz: with divide-by-1 this many counts make one tick.
pub const TIMER_COUNT: u32 = 1_000_000_000 / HZ;

/// This CPU's local APIC id (xv6 `lapicid`). The kernel page directory (which maps the
/// LAPIC) must be loaded.
#[must_use]
pub fn lapicid() -> u32 {
    lapicr(ID) >> 24
}

fn lapicw(reg: u32, v: u32) {
    // SAFETY: LAPIC + reg is a register of the local APIC, mapped (writable, kernel) by
    // kmap's DEVSPACE row in every page directory; a volatile store is an MMIO write.
    unsafe { core::ptr::write_volatile((LAPIC + reg) as *mut u32, v) };
    // Wait for the write to finish, by reading (xv6 does the same).
    let _ = lapicr(ID);
}

fn lapicr(reg: u32) -> u32 {
    // SAFETY: as in lapicw; reading these registers has no side effects.
    unsafe { core::ptr::read_volatile((LAPIC + reg) as *const u32) }
}

/// Enables the local APIC, starts its timer (periodic, 100 Hz) and masks the local
/// interrupt lines (xv6 `lapicinit`).
pub fn lapicinit() {
    // Enable the local APIC; set the spurious interrupt vector.
    lapicw(SVR, ENABLE | (T_IRQ0 + IRQ_SPURIOUS));

    // The timer counts down from TICR at the bus frequency (divided by 1) and interrupts
    // at T_IRQ0 + IRQ_TIMER each time it reaches 0, then reloads.
    lapicw(TDCR, X1);
    lapicw(TIMER, PERIODIC | (T_IRQ0 + IRQ_TIMER));
    lapicw(TICR, TIMER_COUNT);

    // No local interrupt lines (LINT0 would bring in the PIC).
    lapicw(LINT0, MASKED);
    lapicw(LINT1, MASKED);
    // Performance counter overflow interrupts, on machines that have that LVT entry.
    if (lapicr(VER) >> 16) & 0xFF >= 4 {
        lapicw(PCINT, MASKED);
    }
    // Errors go to their own vector; clear the error status (back-to-back writes).
    lapicw(ERROR, T_IRQ0 + IRQ_ERROR);
    lapicw(ESR, 0);
    lapicw(ESR, 0);
    // Acknowledge any outstanding interrupt; accept all priorities.
    lapicw(EOI, 0);
    lapicw(TPR, 0);
}

/// Acknowledges the interrupt being handled (xv6 `lapiceoi`).
pub fn lapiceoi() {
    lapicw(EOI, 0);
}

/// Waits about `us` microseconds, by the TSC (at the frequency the VMM reported, or an
/// assumed 3 GHz when it did not).
pub fn microdelay(us: u32) {
    let khz = match crate::cmdline::config().tsc_khz {
        0 => 3_000_000,
        k => k,
    };
    let end = crate::x86::rdtsc() + u64::from(us) * u64::from(khz) / 1000;
    while crate::x86::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Sends an interprocessor interrupt command to the CPU with LAPIC id `apicid` and waits
/// (boundedly) for the LAPIC to take it.
fn ipi(apicid: u32, cmd: u32) {
    lapicw(ICRHI, apicid << 24);
    lapicw(ICRLO, cmd);
    for _ in 0..100_000 {
        if lapicr(ICRLO) & DELIVS == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Starts the CPU with LAPIC id `apicid` at physical address `addr` in real mode (xv6
/// `lapicstartap`, the MP spec's universal startup algorithm): INIT (assert, then
/// deassert), then two STARTUP IPIs whose vector is the page number of `addr`. No BIOS
/// runs here, so the warm-reset vector and CMOS shutdown code a PC would need are left out.
pub fn lapicstartap(apicid: u32, addr: u32) {
    ipi(apicid, INIT | LEVEL | ASSERT);
    microdelay(200);
    ipi(apicid, INIT | LEVEL);
    microdelay(100);
    for _ in 0..2 {
        ipi(apicid, STARTUP | (addr >> 12));
        microdelay(200);
    }
}

/// I/O addresses of the two 8259 programmable interrupt controllers.
const IO_PIC1: u16 = 0x20;
const IO_PIC2: u16 = 0xA0;

/// Masks every interrupt of the 8259 PICs: the kernel uses the LAPIC instead (xv6
/// `picinit`).
pub fn picinit() {
    outb(IO_PIC1 + 1, 0xFF);
    outb(IO_PIC2 + 1, 0xFF);
}
