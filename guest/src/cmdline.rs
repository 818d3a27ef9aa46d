//! The kernel command line (docs/abi.md), parsed once at boot into one `BootConfig`: `quiet`
//! (no boot summary), `lazy` (demand-paged sbrk, lazy.rs), `cow` (copy-on-write fork,
//! cow.rs), `tsc_khz=N` (the TSC frequency from KVM_GET_TSC_KHZ, for the `tsckhz` system
//! call) and `selftest=...` (selftest.rs). kmain records it with `set_config`; the rest of
//! the kernel reads it with `config()`.

use core::sync::atomic::{AtomicU64, Ordering};

use xv6_abi::cmdline::{COW, LAZY, QUIET, TSC_KHZ};

/// What to do after `boot ok` (`selftest=`): the command-line test hooks that make the kernel
/// fail (or never finish) on purpose, so the integration tests can exercise the VMM's failure
/// paths on a real VM (selftest.rs runs them).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SelfTest {
    /// Nothing: go on and run the first program.
    #[default]
    None,
    /// panic("selftest").
    Panic,
    /// Exit with this status.
    Exit(u8),
    /// Read an address the kernel page directory does not map (no IDT: triple fault).
    PageFault,
    /// Load an x87 float from the MMIO hole: KVM's instruction emulator cannot do that MMIO
    /// access, so KVM_RUN ends with an internal error (an unexpected exit for the VMM).
    Emulation,
    /// Spin forever (for the VMM's `--timeout`).
    Spin,
    /// Unbounded kernel recursion, with the IDT loaded: the stack overflows into unmapped
    /// memory and the CPU raises a double fault.
    KStack,
    /// startothers sends CPU 1's INIT/SIPI to an APIC id no CPU has (with two CPUs or more):
    /// CPU 1 never starts, and the start bound must end the boot naming it.
    ApStart,
}

/// The kernel's boot options, from the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BootConfig {
    /// `quiet`: no boot summary (panics and fault lines still print).
    pub quiet: bool,
    /// `lazy`: sbrk only moves the break; pages are mapped on first touch (lazy.rs).
    pub lazy: bool,
    /// `cow`: fork shares pages copy-on-write (cow.rs).
    pub cow: bool,
    /// `tsc_khz=N`: the TSC frequency in kHz (0: unknown or unreadable; the last one wins).
    pub tsc_khz: u32,
    /// `selftest=...`: the last valid one wins; unknown values are ignored.
    pub selftest: SelfTest,
}

impl BootConfig {
    /// Parses the command line.
    #[must_use]
    pub fn parse(cmdline: &str) -> BootConfig {
        BootConfig {
            quiet: has_word(cmdline, QUIET),
            lazy: has_word(cmdline, LAZY),
            cow: has_word(cmdline, COW),
            tsc_khz: value(cmdline, TSC_KHZ)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            selftest: parse_selftest(cmdline),
        }
    }

    /// The configuration as one word: tsc_khz in the low half, then the flags and the self
    /// test (kind and exit status) above.
    fn pack(self) -> u64 {
        let (kind, arg): (u8, u8) = match self.selftest {
            SelfTest::None => (0, 0),
            SelfTest::Panic => (1, 0),
            SelfTest::Exit(n) => (2, n),
            SelfTest::PageFault => (3, 0),
            SelfTest::Emulation => (4, 0),
            SelfTest::Spin => (5, 0),
            SelfTest::KStack => (6, 0),
            SelfTest::ApStart => (7, 0),
        };
        u64::from(self.tsc_khz)
            | u64::from(self.quiet) << 32
            | u64::from(self.lazy) << 33
            | u64::from(self.cow) << 34
            | u64::from(kind) << 40
            | u64::from(arg) << 48
    }

    /// The configuration `pack` made the word of.
    fn unpack(w: u64) -> BootConfig {
        let bit = |n: u32| w >> n & 1 == 1;
        BootConfig {
            quiet: bit(32),
            lazy: bit(33),
            cow: bit(34),
            tsc_khz: w as u32,
            selftest: match (w >> 40) as u8 {
                1 => SelfTest::Panic,
                2 => SelfTest::Exit((w >> 48) as u8),
                3 => SelfTest::PageFault,
                4 => SelfTest::Emulation,
                5 => SelfTest::Spin,
                6 => SelfTest::KStack,
                7 => SelfTest::ApStart,
                _ => SelfTest::None,
            },
        }
    }
}

/// The boot configuration, packed (`BootConfig::pack`); all off until `set_config`.
static CONFIG: AtomicU64 = AtomicU64::new(0);

/// Records the boot configuration (kmain, once, before anything reads it).
pub fn set_config(c: BootConfig) {
    CONFIG.store(c.pack(), Ordering::Relaxed);
}

/// The boot configuration (the default, everything off, before `set_config`).
#[must_use]
pub fn config() -> BootConfig {
    BootConfig::unpack(CONFIG.load(Ordering::Relaxed))
}

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

/// The self test the command line asks for: the last `selftest=` word wins; unknown values
/// (or an exit status outside 0..=255) are ignored.
fn parse_selftest(cmdline: &str) -> SelfTest {
    let mut t = SelfTest::None;
    for word in cmdline.split_ascii_whitespace() {
        match word.strip_prefix("selftest=") {
            Some("panic") => t = SelfTest::Panic,
            Some("pagefault") => t = SelfTest::PageFault,
            Some("spin") => t = SelfTest::Spin,
            Some("emulation") => t = SelfTest::Emulation,
            Some("kstack") => t = SelfTest::KStack,
            Some("apstart") => t = SelfTest::ApStart,
            Some(v) => {
                if let Some(n) = v.strip_prefix("exit:").and_then(|n| n.parse().ok()) {
                    t = SelfTest::Exit(n);
                }
            }
            None => {}
        }
    }
    t
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
        let tsc = |c| BootConfig::parse(c).tsc_khz;
        assert_eq!(tsc(c), 2_995_200);
        assert_eq!(tsc("tsc_khz=1 tsc_khz=7"), 7, "the last one wins");
        assert_eq!(tsc("tsc_khz=fast"), 0);
        assert_eq!(tsc("tsc_khz="), 0);
        assert_eq!(tsc("xtsc_khz=5 console=com1"), 0);
        assert_eq!(tsc(""), 0);
    }

    #[test]
    fn parses_selftest_words() {
        let t = |c| BootConfig::parse(c).selftest;
        assert_eq!(t("console=com1"), SelfTest::None);
        assert_eq!(t("console=com1 selftest=panic"), SelfTest::Panic);
        assert_eq!(t("selftest=exit:42 quiet"), SelfTest::Exit(42));
        assert_eq!(t("selftest=exit:255"), SelfTest::Exit(255));
        assert_eq!(t("selftest=exit:256"), SelfTest::None);
        assert_eq!(t("selftest=pagefault"), SelfTest::PageFault);
        assert_eq!(t("selftest=spin"), SelfTest::Spin);
        assert_eq!(t("selftest=emulation"), SelfTest::Emulation);
        assert_eq!(t("selftest=kstack"), SelfTest::KStack);
        assert_eq!(t("selftest=apstart"), SelfTest::ApStart);
        assert_eq!(t("xselftest=panic selftest=panicky"), SelfTest::None);
        assert_eq!(t(""), SelfTest::None);
    }

    #[test]
    fn one_config_value_round_trips() {
        let c = BootConfig::parse("console=com1 quiet cow tsc_khz=4294967295 selftest=exit:7");
        assert_eq!(
            c,
            BootConfig {
                quiet: true,
                lazy: false,
                cow: true,
                tsc_khz: u32::MAX,
                selftest: SelfTest::Exit(7),
            }
        );
        assert_eq!(BootConfig::unpack(c.pack()), c);
        assert_eq!(BootConfig::unpack(0), BootConfig::default());
        for selftest in [
            SelfTest::Panic,
            SelfTest::PageFault,
            SelfTest::Emulation,
            SelfTest::Spin,
            SelfTest::KStack,
        ] {
            let c = BootConfig {
                lazy: true,
                selftest,
                ..BootConfig::default()
            };
            assert_eq!(BootConfig::unpack(c.pack()), c);
        }
    }
}
