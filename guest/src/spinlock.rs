//! Mutual-exclusion spin locks (xv6 spinlock.c, for one CPU for now).
//!
//! `lock` disables interrupts for as long as the guard lives (xv6's pushcli/popcli, restoring
//! the previous interrupt flag) and then takes the lock word. On this single-CPU kernel a lock
//! that is already held when interrupts are off can only mean a recursive acquire, which would
//! spin forever: that panics instead, like xv6's `holding` check in `acquire`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A spin lock protecting a `T`.
pub struct Spinlock<T> {
    name: &'static str,
    locked: AtomicBool,
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

    /// Releases the lock without a guard: for a new process's first code (xv6 `forkret`),
    /// which inherits the hold of the scheduler that switched to it. Interrupts are left as
    /// they are.
    ///
    /// # Safety
    /// The lock must be held, by a guard that belongs to another kernel thread and whose
    /// drop will not run before the lock is acquired again (the scheduler's, parked in
    /// `swtch`).
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn acquire(&self, intr: Option<crate::intr::PushCli>) -> SpinlockGuard<'_, T> {
        while self.locked.swap(true, Ordering::Acquire) {
            if cfg!(all(target_arch = "x86", not(test))) {
                panic!("acquire: {} already held", self.name);
            }
            core::hint::spin_loop();
        }
        SpinlockGuard { lock: self, intr }
    }
}

/// Exclusive access to the data of a locked Spinlock.
pub struct SpinlockGuard<'a, T> {
    lock: &'a Spinlock<T>,
    intr: Option<crate::intr::PushCli>,
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
        self.lock.locked.store(false, Ordering::Release);
        if let Some(intr) = &self.intr {
            crate::intr::popcli(intr);
        }
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
    }
}
