//! The kernel command line: the words the VMM passes (docs/abi.md), and what the kernel keeps
//! of them for later — the TSC frequency (`tsc_khz=N`, from KVM_GET_TSC_KHZ), which user
//! programs read with the `tsckhz` system call to turn cycles into time.

use core::sync::atomic::{AtomicU32, Ordering};

/// Whether `word` is one of the command line's words.
#[must_use]
pub fn has_word(cmdline: &str, word: &str) -> bool {
    cmdline.split_ascii_whitespace().any(|w| w == word)
}

/// The value of the last `key=value` word, if any.
#[must_use]
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The TSC frequency the command line gives (`tsc_khz=N`, kHz); 0 if none or unreadable.
#[must_use]
pub fn parse_tsc_khz(cmdline: &str) -> u32 {
    value(cmdline, xv6_abi::cmdline::TSC_KHZ)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The TSC frequency in kHz, as the command line gave it at boot (0: unknown).
static TSC_KHZ: AtomicU32 = AtomicU32::new(0);

/// Remembers the TSC frequency (boot).
pub fn set_tsc_khz(khz: u32) {
    TSC_KHZ.store(khz, Ordering::Relaxed);
}

/// The TSC frequency in kHz (0: unknown).
#[must_use]
pub fn tsc_khz() -> u32 {
    TSC_KHZ.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_values() {
        let c = "console=com1 quiet lazy tsc_khz=2995200";
        assert!(has_word(c, "lazy") && has_word(c, "quiet"));
        assert!(!has_word(c, "laz") && !has_word("lazyx", "lazy") && !has_word("", "lazy"));
        assert_eq!(value(c, "console"), Some("com1"));
        assert_eq!(value(c, "tsc"), None);
        assert_eq!(parse_tsc_khz(c), 2_995_200);
        assert_eq!(parse_tsc_khz("tsc_khz=1 tsc_khz=7"), 7, "the last one wins");
        assert_eq!(parse_tsc_khz("tsc_khz=fast"), 0);
        assert_eq!(parse_tsc_khz("tsc_khz="), 0);
        assert_eq!(parse_tsc_khz("xtsc_khz=5 console=com1"), 0);
        assert_eq!(parse_tsc_khz(""), 0);
    }
}
