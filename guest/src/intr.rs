//! pushcli/popcli (xv6 spinlock.c): disable interrupts around critical sections, matched
//! pairs that nest, per CPU. The outermost pushcli records in this CPU's `Cpu` (cpu.rs)
//! whether interrupts were on; the popcli that brings the depth back to zero turns them on
//! again if they were. A process that gives up the CPU while holding the ptable lock takes
//! its recorded flag with it (proc.rs `sched`), since it may resume on another CPU. On the
//! host (unit tests) there are no interrupts and these only count.

use core::sync::atomic::Ordering;

use crate::cpu::mycpu;

/// Proof of one pushcli, to be handed to `popcli` (not Clone: one popcli per pushcli). It
/// names no CPU: the popcli may come on another CPU than the pushcli, when the lock it came
/// with was handed over across a context switch (the scheduler's hold of the ptable lock).
#[derive(Debug)]
#[must_use = "pass it to popcli to restore the interrupt flag"]
pub struct PushCli(());

impl PushCli {
    /// The pushcli another kernel thread did on this CPU and left for this one to undo: a
    /// new process's first code (forkret) releases the ptable lock the scheduler acquired.
    ///
    /// # Safety
    /// This CPU's pushcli depth must include that pushcli, and its owner must never popcli it.
    pub unsafe fn inherited() -> PushCli {
        PushCli(())
    }
}

/// Disables interrupts and counts one more level of nesting (xv6 `pushcli`); the first level
/// remembers whether interrupts were on.
#[inline]
pub fn pushcli() -> PushCli {
    #[cfg(all(target_arch = "x86", not(test)))]
    let was_enabled = {
        let on = crate::x86::readeflags() & crate::mmu::FL_IF != 0;
        crate::x86::cli();
        on
    };
    #[cfg(not(all(target_arch = "x86", not(test))))]
    let was_enabled = false;
    let c = mycpu();
    let n = c.ncli.load(Ordering::Relaxed);
    if n == 0 {
        c.intena.store(was_enabled, Ordering::Relaxed);
    }
    set_depth(&c.ncli, n, n + 1);
    PushCli(())
}

/// Undoes one pushcli (xv6 `popcli`): at depth zero, interrupts go back on if the outermost
/// pushcli found them on. Panics if interrupts are on (something enabled them inside a
/// critical section) or there is no pushcli to undo.
#[inline]
pub fn popcli(p: PushCli) {
    let PushCli(()) = p;
    #[cfg(all(target_arch = "x86", not(test)))]
    assert!(
        crate::x86::readeflags() & crate::mmu::FL_IF == 0,
        "popcli: interruptible"
    );
    let c = mycpu();
    let n = c.ncli.load(Ordering::Relaxed);
    assert!(n > 0, "popcli: no pushcli");
    set_depth(&c.ncli, n, n - 1);
    if n == 1 && c.intena.load(Ordering::Relaxed) {
        #[cfg(all(target_arch = "x86", not(test)))]
        crate::x86::sti();
    }
}

/// Moves a CPU's pushcli depth from `old` to `new`. In the kernel only that CPU, with
/// interrupts off, touches it: a plain store (no locked instruction on every lock
/// operation). Host tests share "CPU 0" between threads: an atomic update there.
#[inline]
fn set_depth(ncli: &core::sync::atomic::AtomicU32, old: u32, new: u32) {
    if cfg!(all(target_arch = "x86", not(test))) {
        ncli.store(new, Ordering::Relaxed);
    } else if new > old {
        ncli.fetch_add(1, Ordering::Relaxed);
    } else {
        ncli.fetch_sub(1, Ordering::Relaxed);
    }
}

/// This CPU's pushcli depth (sched checks that only the ptable lock is held).
#[must_use]
pub fn depth() -> u32 {
    mycpu().ncli.load(Ordering::Relaxed)
}
