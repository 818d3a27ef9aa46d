//! SIGINT, SIGTERM and SIGHUP while a lab run (or anything else that waits on a child) is under
//! way: instead of dying on the spot — which leaves QEMU's temporary files behind and reports no
//! status — the process records the signal, the waiting loops see it within their next poll,
//! stop what they started, remove their files on the way out (by `Drop`), and `vmm` exits with
//! the shells' 128 + N.
//!
//! [`install`] is idempotent; before it is called, signals keep their default action.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Once};

/// The signals handled: interrupt (Ctrl-C), terminate, hang-up.
pub const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

static PENDING: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// Starts recording [`SIGNALS`] instead of dying of them. Call it before creating anything
/// that must be cleaned up.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in SIGNALS {
            // register_usize stores `sig` into PENDING from the handler (async-signal-safe).
            if let Err(e) =
                signal_hook::flag::register_usize(sig, Arc::clone(&PENDING), sig as usize)
            {
                log::warn!("cannot handle signal {sig}: {e}");
            }
        }
    });
}

/// The signal received since [`install`], if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

/// The exit status a shell gives a process killed by `sig`.
pub fn exit_status(sig: i32) -> i32 {
    128 + sig
}

/// The signal's conventional name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_recorded_not_fatal() {
        install();
        assert_eq!(pending(), None);
        // SAFETY: raise has no preconditions; the handler installed above only stores a word.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert_eq!(pending(), Some(libc::SIGHUP));
        assert_eq!(exit_status(libc::SIGINT), 130);
        assert_eq!(exit_status(libc::SIGTERM), 143);
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
    }
}
