//! Command-line test hooks: `selftest=panic`, `selftest=exit:N`, `selftest=pagefault`,
//! `selftest=emulation` and `selftest=spin` make the kernel fail (or never finish) on purpose after `boot ok`, so the integration tests can exercise the
//! VMM's failure paths on a real VM.

/// What to do after `boot ok`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SelfTest {
    /// Nothing: exit with status 0.
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
}

/// The self test the command line asks for: the last `selftest=` word wins; unknown values
/// (or an exit status outside 0..=255) are ignored.
#[must_use]
pub fn parse(cmdline: &str) -> SelfTest {
    let mut t = SelfTest::None;
    for word in cmdline.split_ascii_whitespace() {
        match word.strip_prefix("selftest=") {
            Some("panic") => t = SelfTest::Panic,
            Some("pagefault") => t = SelfTest::PageFault,
            Some("spin") => t = SelfTest::Spin,
            Some("emulation") => t = SelfTest::Emulation,
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
    fn parses_words() {
        assert_eq!(parse("console=com1"), SelfTest::None);
        assert_eq!(parse("console=com1 selftest=panic"), SelfTest::Panic);
        assert_eq!(parse("selftest=exit:42 quiet"), SelfTest::Exit(42));
        assert_eq!(parse("selftest=exit:255"), SelfTest::Exit(255));
        assert_eq!(parse("selftest=exit:256"), SelfTest::None);
        assert_eq!(parse("selftest=pagefault"), SelfTest::PageFault);
        assert_eq!(parse("selftest=spin"), SelfTest::Spin);
        assert_eq!(parse("selftest=emulation"), SelfTest::Emulation);
        assert_eq!(parse("xselftest=panic selftest=panicky"), SelfTest::None);
        assert_eq!(parse(""), SelfTest::None);
    }
}
