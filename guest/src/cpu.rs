//! Per-CPU state (xv6 proc.h's `struct cpu` and proc.c's `mycpu`/`cpuid`): one `Cpu` per
//! processor in `CPUS`, found by the local APIC id of the CPU asking.
//!
//! What lives here is only ever touched by its own CPU with interrupts off (so nothing can
//! move the running code to another CPU in between): the pushcli depth and the interrupt flag
//! to restore (intr.rs), the scheduler's saved context and the running process (proc.rs).
//! The fields are atomics so that the table can be a plain `static` shared by all CPUs;
//! Relaxed is enough, as each field has one CPU writing and reading it. `apicid` and
//! `started` are written by the boot CPU (mpinit, startothers) and read by the others.
//!
//! Which CPU am I: xv6 reads the local APIC's id, but that is an MMIO read, a VM exit each
//! time (measured: usertests no longer finished in 300 s in the nested lab when every lock
//! operation asked). Here each CPU loads its own GDT (gdt.rs), so the GDT base (`sgdt`, no
//! exit) names the CPU: gdt.rs registers each CPU's GDT with `set_gdt`. The LAPIC id is read
//! once per CPU, when it starts (`by_apicid`). Before the boot CPU loads its GDT, the one
//! running is the boot CPU, index 0. On the host (unit tests) it is always CPU 0.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use crate::swtch::Context;

pub use xv6_abi::smp::NCPU;

/// No process (the `proc` field of a CPU running its scheduler).
pub const NO_PROC: usize = usize::MAX;

/// One CPU's state (xv6 `struct cpu`; the GDT and TSS are gdt.rs's, per CPU too).
pub struct Cpu {
    /// Local APIC id.
    pub apicid: AtomicU32,
    /// Has the CPU finished starting (startothers waits for it)?
    pub started: AtomicBool,
    /// Depth of pushcli nesting.
    pub ncli: AtomicU32,
    /// Were interrupts enabled before the outermost pushcli?
    pub intena: AtomicBool,
    /// The scheduler's saved context (xv6 `scheduler`): swtch here to enter it.
    pub scheduler: AtomicPtr<Context>,
    /// The slot of the process running on this CPU (xv6 `proc`), NO_PROC if none.
    pub proc: AtomicUsize,
}

impl Cpu {
    const fn new() -> Cpu {
        Cpu {
            apicid: AtomicU32::new(0),
            started: AtomicBool::new(false),
            ncli: AtomicU32::new(0),
            intena: AtomicBool::new(false),
            scheduler: AtomicPtr::new(core::ptr::null_mut()),
            proc: AtomicUsize::new(NO_PROC),
        }
    }
}

/// The CPUs (xv6 `cpus`); the first `ncpu()` are real.
pub static CPUS: [Cpu; NCPU] = [const { Cpu::new() }; NCPU];

/// How many CPUs the machine has (xv6 `ncpu`): 1 until mpinit finds more.
static NCPUS: AtomicUsize = AtomicUsize::new(1);

/// Index in CPUS of each local APIC id.
static BY_APICID: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];

/// The linear address of each CPU's GDT (0: not loaded yet).
static GDTS: [AtomicU32; NCPU] = [const { AtomicU32::new(0) }; NCPU];

/// How many CPUs there are.
#[must_use]
#[inline]
pub fn ncpu() -> usize {
    NCPUS.load(Ordering::Relaxed)
}

/// Records the CPUs the MP table lists, by local APIC id (mpinit, boot CPU, before any other
/// CPU runs). At most NCPU; the boot CPU must be among them.
pub fn set_cpus(apicids: &[u8]) {
    let n = apicids.len().min(NCPU);
    for (i, &id) in apicids[..n].iter().enumerate() {
        CPUS[i].apicid.store(u32::from(id), Ordering::Relaxed);
        BY_APICID[usize::from(id)].store(i as u8, Ordering::Relaxed);
    }
    NCPUS.store(n.max(1), Ordering::Release);
}

/// The index in CPUS of the CPU with local APIC id `apicid` (as mpinit listed it).
#[must_use]
pub fn by_apicid(apicid: u32) -> usize {
    usize::from(BY_APICID[apicid as usize & 0xFF].load(Ordering::Relaxed))
}

/// Records that CPU `i` runs on the GDT at linear address `base` (gdt.rs `seginit`).
pub fn set_gdt(i: usize, base: u32) {
    GDTS[i].store(base, Ordering::Release);
}

/// The index of the CPU this runs on (xv6 `cpuid`). Interrupts must be off, or the answer
/// may be stale by the time it is used.
#[must_use]
#[inline]
pub fn cpuid() -> usize {
    #[cfg(all(target_arch = "x86", not(test)))]
    {
        if ncpu() == 1 {
            // One CPU (and every CPU's answer before mpinit): the question needs no
            // answer from the hardware, and nothing could move us to another CPU.
            return 0;
        }
        // (The panic handler turns interrupts off before it asks.)
        assert!(
            crate::x86::readeflags() & crate::mmu::FL_IF == 0,
            "cpuid called with interrupts enabled"
        );
        let base = crate::x86::sgdt_base();
        GDTS.iter()
            .position(|g| g.load(Ordering::Relaxed) == base)
            .unwrap_or(0)
    }
    #[cfg(not(all(target_arch = "x86", not(test))))]
    0
}

/// This CPU's state (xv6 `mycpu`); interrupts must be off.
#[must_use]
#[inline]
pub fn mycpu() -> &'static Cpu {
    &CPUS[cpuid()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_cpu_0_of_one() {
        assert_eq!(ncpu(), 1);
        assert_eq!(cpuid(), 0);
        assert_eq!(mycpu().proc.load(Ordering::Relaxed), NO_PROC);
    }
}
