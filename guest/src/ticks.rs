//! The clock (xv6 trap.c's `ticks`): timer interrupts of the boot CPU since boot. trap.rs
//! counts them and wakes the sleepers; `sleep` and `uptime` read them. An atomic in place of
//! xv6's tickslock: the count is one word, and a sleeper checks it under the ptable lock,
//! which the clock takes after counting to wake it, so no wakeup is lost.

use core::sync::atomic::{AtomicU32, Ordering};

/// Clock ticks since the timer started (xv6 `ticks`, under tickslock there; an atomic here).
static TICKS: AtomicU32 = AtomicU32::new(0);

/// Ticks since boot.
#[must_use]
pub fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

/// One more tick (the timer interrupt).
pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_count_up() {
        let t0 = ticks();
        tick();
        tick();
        assert!(ticks().wrapping_sub(t0) >= 2);
    }
}
