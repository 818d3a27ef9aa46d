//! `vmm`'s exit statuses (Docker / `timeout` conventions).

/// A bad command line or option value (clap's own status for syntax errors; `vmm` uses it
/// too for values it can only check after parsing, before any VM is booted).
pub const USAGE: i32 = 2;

/// An error in what the user asked for (an option value, a combination of options): reported
/// in one line like any error, but with [`USAGE`] as the status.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The status for an error: [`USAGE`] for a [`UsageError`], else [`FAILURE`].
pub fn status_of_error(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<UsageError>().is_some() {
        USAGE
    } else {
        FAILURE
    }
}

/// `--timeout` expired.
pub const TIMEOUT: i32 = 124;
/// The VMM or the guest kernel failed: no usable KVM, bad kernel, bad option value, kernel
/// panic, triple fault, unexpected VM exit. One line on stderr says what and what to do.
pub const FAILURE: i32 = 125;
/// The program exists but is not a runnable ELF32 i386 executable (issue B).
pub const NOT_EXECUTABLE: i32 = xv6_abi::status::NOT_EXECUTABLE as i32;
/// No such program (issue B).
pub const NOT_FOUND: i32 = xv6_abi::status::NOT_FOUND as i32;

/// Reports a run stopped by signal `sig` and returns the shells' status for it (130, 143, ...).
pub fn interrupted(sig: i32) -> i32 {
    eprintln!(
        "vmm: interrupted ({}); the run was stopped",
        term::interrupt::name(sig)
    );
    term::interrupt::exit_status(sig)
}
