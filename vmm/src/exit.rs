//! `vmm`'s exit statuses (Docker / `timeout` conventions).

/// `--timeout` expired.
pub const TIMEOUT: i32 = 124;
/// The VMM or the guest kernel failed: no usable KVM, bad kernel, bad option value, kernel
/// panic, triple fault, unexpected VM exit. One line on stderr says what and what to do.
pub const FAILURE: i32 = 125;
/// The program exists but is not a runnable ELF32 i386 executable (issue B).
pub const NOT_EXECUTABLE: i32 = 126;
/// No such program (issue B).
pub const NOT_FOUND: i32 = 127;
