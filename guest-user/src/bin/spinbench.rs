//! spinbench [CHILDREN] [MILLIONS]: CPU-bound children at once, timed with the TSC — what
//! `vmm bench smp` runs at `--cpus 1` and `--cpus 2` to see several CPUs share the work.
//!
//! The parent forks CHILDREN children (default 4, at most 16); each runs MILLIONS million
//! steps of a linear congruential generator (default 20; no memory traffic, no system call)
//! and exits 0; the parent waits for them all. The cycles from just before the first fork
//! to just after the last wait leave through `export` (docs/abi.md, "spinbench export
//! record"); one line on stdout says the same.
//!
//! Exit status: 0; 2 for bad arguments; 1 if a fork, a child or the export fails.

#![no_std]
#![no_main]

use core::hint::black_box;
use ulib::{eprintln, exit, export, fork, println, tsckhz, wait};
use xv6_abi::spinbench::{MAGIC, WORDS};

/// `lfence; rdtsc`: the TSC, after every earlier instruction has finished.
fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc touch no memory; rdtsc writes edx:eax only.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// A child's work: `millions` million generator steps, kept from being optimized away.
fn spin(millions: usize) -> u32 {
    let mut x = 1u32;
    for _ in 0..millions {
        for _ in 0..1_000_000 {
            x = black_box(x.wrapping_mul(1_103_515_245).wrapping_add(12345));
        }
    }
    x
}

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let (Some(children), Some(millions)) =
        (ulib::arg_number(1, 4, 16), ulib::arg_number(2, 20, 10_000))
    else {
        eprintln!("usage: spinbench [CHILDREN (1 to 16)] [MILLIONS (1 to 10000)]");
        return 2;
    };
    let t0 = tsc();
    for _ in 0..children {
        let pid = fork();
        if pid == 0 {
            black_box(spin(millions));
            exit(0);
        }
        if pid < 0 {
            eprintln!("spinbench: fork failed");
            return 1;
        }
    }
    let mut failed = false;
    for _ in 0..children {
        let mut status = -1;
        if wait(Some(&mut status)) < 0 || status != 0 {
            failed = true;
        }
    }
    let cycles = tsc() - t0;
    if failed {
        eprintln!("spinbench: a child failed");
        return 1;
    }
    let rec: [u64; WORDS] = [
        u64::from(MAGIC) | u64::from(tsckhz()) << 32,
        children as u64,
        cycles,
    ];
    // SAFETY: a u64 array viewed as its bytes (u8 has no alignment or validity needs).
    let bytes = unsafe { core::slice::from_raw_parts(rec.as_ptr().cast::<u8>(), WORDS * 8) };
    if export(bytes) != 0 {
        eprintln!("spinbench: export failed");
        return 1;
    }
    println!("spinbench: {children} children x {millions}M steps: {cycles} cycles");
    0
}
