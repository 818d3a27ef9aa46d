//! `vmm`: a small KVM VMM that boots an xv6-style 32-bit Rust kernel (chapter 2 of the xv6
//! book, "Page tables") and runs user programs in it.
//!
//! Reading order: [`cli`] (what the user asks) → [`engine`] (this host's KVM, or the
//! nested-KVM lab) → [`machine`] (one boot) → [`boot`] and [`arch`] (what goes into guest
//! memory and the vCPU) → [`vstate`] (the VM and the vCPU run loop) → [`devices`]. Beside
//! the run: [`debug`] (gdb, page-table dumps, crash reports) and [`bench`](mod@bench).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod arch;
pub mod bench;
pub mod boot;
pub mod cli;
pub mod debug;
pub mod devices;
pub mod engine;
pub mod exit;
pub mod machine;
pub mod nested;
pub mod outcome;
pub mod outputs;
pub mod probe;
pub mod seccomp;
pub mod vstate;
pub mod writeback;
