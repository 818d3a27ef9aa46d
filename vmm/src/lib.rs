//! `vmm`: a small KVM VMM that boots an xv6-style 32-bit Rust kernel (chapter 2 of the xv6
//! book, "Page tables") and runs user programs in it.
//!
//! Reading order: [`cli`] (what the user asks) → [`engine`] (this host's KVM, or the
//! nested-KVM lab) → [`machine`] (one boot) → [`vm`] + [`memory`] + [`loader`] + [`boot`] +
//! [`regs`] (building the VM) → [`vcpu`] (the run loop) → [`devices`], [`pgdump`] (+ [`pgdump_svg`]).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod bench_boot;
pub mod bench_console;
pub mod bench_fork;
pub mod bench_lab;
pub mod boot;
pub mod cli;
pub mod crash;
pub mod devices;
pub mod dirs;
pub mod engine;
pub mod exit;
pub mod gdb;
pub mod gdb_conn;
pub mod gdb_debugregs;
pub mod gdb_regs;
pub mod gdt;
pub mod images;
pub mod layout;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod outputs;
pub mod panic_report;
pub mod pgdump;
pub mod pgdump_svg;
pub mod probe;
pub mod programs;
pub mod regs;
pub mod seccomp;
pub mod symbols;
pub mod syscall_names;
pub mod vcpu;
pub mod vm;
pub mod vmexit;
pub mod writeback;
