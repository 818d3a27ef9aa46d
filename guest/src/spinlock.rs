//! Mutual-exclusion spin locks (xv6 spinlock.c).
//!
//! `lock` disables interrupts on this CPU for as long as the guard lives (intr.rs's
//! pushcli/popcli: an interrupt handler taking the same lock would otherwise spin forever),
//! then spins on the lock word with an atomic exchange (`xchg`) and records which CPU holds
//! it. Acquiring a lock this CPU already holds panics (it would spin forever), as does
//! releasing one it does not hold: xv6's `holding` checks.
//!
//! The kernel's lock order (a lock may be taken while holding only locks left of it):
//! cons-in → ptable → fs → {kmem, cons-out, dirout page, symbol → log}. ptable is the lock
//! every sleep condition is checked under (proc.rs `sleep`), so a pipe holds it while it
//! takes fs for the pipe's bytes, and a read from a file takes it before fs to copy into
//! user memory.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::cpu::cpuid;
use crate::intr::PushCli;

/// The `cpu` of a lock nobody holds.
const NOBODY: usize = usize::MAX;

/// Whether lock misuse panics: on the kernel (one kernel thread per CPU holds a lock), not in
/// host tests (every test thread is "CPU 0").
const CHECKED: bool = cfg!(all(target_arch = "x86", not(test)));

/// A spin lock protecting a `T`.
pub struct Spinlock<T> {
    name: &'static str,
    locked: AtomicBool,
    /// The CPU holding it (xv6 `cpu`), NOBODY if none.
    cpu: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: the lock word hands out at most one guard at a time, so `&Spinlock<T>` gives
// exclusive access to the `T` just like a `&mut T` would; sending a `T` across is fine if
// `T: Send`.
unsafe impl<T: Send> Sync for Spinlock<T> {}

impl<T> Spinlock<T> {
    /// A new, unlocked lock (xv6 `initlock`).
    #[doc(alias = "initlock")]
    pub const fn new(name: &'static str, data: T) -> Spinlock<T> {
        Spinlock {
            name,
            locked: AtomicBool::new(false),
            cpu: AtomicUsize::new(NOBODY),
            data: UnsafeCell::new(data),
        }
    }

    /// Acquires the lock (xv6 `acquire`); the guard releases it.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> SpinlockGuard<'_, T> {
        self.acquire(Some(crate::intr::pushcli()))
    }

    /// Acquires the lock without touching the interrupt flag: for boot code that runs before
    /// interrupt state is set up (kalloc before kinit2; xv6 does not lock at all then).
    pub fn lock_early(&self) -> SpinlockGuard<'_, T> {
        self.acquire(None)
    }

    /// Releases the lock without a guard, with the popcli of its acquire: for a new
    /// process's first code (xv6 `forkret`), which inherits the hold of the scheduler that
    /// switched to it on this CPU.
    ///
    /// # Safety
    /// This CPU must hold the lock, through a guard (made by `lock`) that belongs to another
    /// kernel thread and whose drop will not run before the lock is acquired again (the
    /// scheduler's, parked in `swtch`).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: the caller's contract: the guard's pushcli is on this CPU and its owner
        // will not undo it.
        let intr = unsafe { PushCli::inherited() };
        self.release(Some(intr));
    }

    /// Does this CPU hold the lock (xv6 `holding`)? Interrupts must be off.
    #[must_use]
    pub fn holding(&self) -> bool {
        self.held_by(cpuid())
    }

    /// Does CPU `me` hold the lock?
    fn held_by(&self, me: usize) -> bool {
        self.locked.load(Ordering::Relaxed) && self.cpu.load(Ordering::Relaxed) == me
    }

    fn acquire(&self, intr: Option<PushCli>) -> SpinlockGuard<'_, T> {
        let me = cpuid();
        if CHECKED && self.held_by(me) {
            panic!("acquire: {} already held", self.name);
        }
        // An atomic exchange: `xchg` on x86, which is also a full barrier.
        while self.locked.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        self.cpu.store(me, Ordering::Relaxed);
        SpinlockGuard { lock: self, intr }
    }

    fn release(&self, intr: Option<PushCli>) {
        if CHECKED && !self.holding() {
            panic!("release: {} not held", self.name);
        }
        self.cpu.store(NOBODY, Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        if let Some(intr) = intr {
            crate::intr::popcli(intr);
        }
    }
}

/// Exclusive access to the data of a locked Spinlock.
pub struct SpinlockGuard<'a, T> {
    lock: &'a Spinlock<T>,
    intr: Option<PushCli>,
}

impl<T> Deref for SpinlockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `locked` is held by us (see `lock`).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinlockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinlockGuard<'_, T> {
    /// Releases the lock (xv6 `release`), then restores the interrupt flag (popcli).
    #[doc(alias = "release")]
    fn drop(&mut self) {
        self.lock.release(self.intr.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_data_and_releases() {
        let l = Spinlock::new("test", 1);
        *l.lock() += 1;
        assert_eq!(*l.lock(), 2);
        *l.lock_early() += 1;
        assert_eq!(*l.lock(), 3);
        assert!(!l.locked.load(Ordering::Relaxed));
        let g = l.lock();
        assert!(l.holding());
        drop(g);
        assert!(!l.holding());
        assert_eq!(l.cpu.load(Ordering::Relaxed), NOBODY);
    }
}
