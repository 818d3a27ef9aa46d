//! pushcli/popcli: disable interrupts around critical sections and restore the interrupt
//! flag afterwards. On the host (unit tests) there are no interrupts and these do nothing.

/// What `pushcli` saw: whether interrupts were enabled before.
#[derive(Debug)]
pub struct PushCli {
    #[cfg_attr(not(all(target_arch = "x86", not(test))), allow(dead_code))]
    was_enabled: bool,
}

/// Disables interrupts and remembers whether they were on (xv6 `pushcli`).
#[must_use = "pass it to popcli to restore the interrupt flag"]
pub fn pushcli() -> PushCli {
    #[cfg(all(target_arch = "x86", not(test)))]
    {
        let was_enabled = crate::x86::readeflags() & crate::mmu::FL_IF != 0;
        crate::x86::cli();
        PushCli { was_enabled }
    }
    #[cfg(not(all(target_arch = "x86", not(test))))]
    PushCli { was_enabled: false }
}

/// Re-enables interrupts if `pushcli` found them on (xv6 `popcli`).
pub fn popcli(p: &PushCli) {
    #[cfg(all(target_arch = "x86", not(test)))]
    if p.was_enabled {
        crate::x86::sti();
    }
    #[cfg(not(all(target_arch = "x86", not(test))))]
    let _ = p;
}
