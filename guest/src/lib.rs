//! xv6's kernel (x86 edition), chapter 2 "Page tables", in Rust: booted by a KVM VMM through
//! PVH, it sets up the page allocator and the kernel page directory exactly as xv6's main.c,
//! kalloc.c and vm.c do.
//!
//! Pure modules (layout arithmetic, the kmap table, the free list, boot-information parsing)
//! build for the host too and carry the unit tests; the modules that touch the hardware exist
//! only in the 32-bit x86 kernel.

#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// A dropped `TlbFlush` or `Forked` (tlb.rs, cow.rs) is a forgotten TLB flush: an error in every
// build, the nested one vmm/build.rs runs (without RUSTFLAGS) included. must_use_tests.rs
// proves it.
#![deny(unused_must_use)]

pub mod archive;
pub mod backtrace;
pub mod bootmods;
pub mod bootstack;
pub mod cmdline;
pub mod cow;
pub mod cpu;
pub mod dirout;
pub mod elf;
pub mod exec;
pub mod fault;
pub mod file;
pub mod fs;
pub mod inputbuf;
pub mod intr;
pub mod kalloc;
pub mod kmap;
pub mod kpage;
pub mod lazy;
pub mod memlayout;
pub mod mmu;
pub mod mp;
pub mod pipe;
pub mod ptable;
pub mod pvh;
pub mod spinlock;
pub mod string;
pub mod swtch;
pub mod sysarg;
pub mod syscall;
pub mod ticks;
pub mod tlb;
pub mod trapframe;
pub mod traps;
pub mod uaccess;
pub mod vm;

#[cfg(all(target_arch = "x86", not(test)))]
pub mod bootinfo;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod boottimes;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod console;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod debugport;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod entry;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod gdt;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod kmain;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod lapic;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod linker;
#[cfg(all(target_arch = "x86", not(test)))]
mod panic;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod printf;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod proc;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod selftest;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod smp;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod sysfile;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod sysproc;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod trap;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod trapasm;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod uart;
#[cfg(all(target_arch = "x86", not(test)))]
pub mod x86;

#[cfg(test)]
mod must_use_tests;
#[cfg(test)]
mod structure_tests;
