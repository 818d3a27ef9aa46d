//! The VMM's integration tests, as one test binary: each module is one area (boot, programs,
//! the console, gdb, the labs, ...), and every test runs the real `vmm` binary, most of them
//! booting a real VM (see `common::engine`). One binary links once and lets libtest's threads
//! share every test, so the slow lab tests of one area overlap those of another.
//!
//! Run one area with `cargo test --release -p vmm --test suite AREA::`, e.g. `programs::`.

mod common;

mod bad_input;
mod bench;
mod boot;
mod console;
mod crash;
mod dirs;
mod dirs_rw;
mod files;
mod fuzz;
mod gdb;
mod host_safety;
mod intel_lab;
mod lab_cache;
mod lab_warm;
mod logging;
mod pgdump_svg;
mod programs;
mod seccomp;
mod smp;
mod stats;
mod vmm_core;
