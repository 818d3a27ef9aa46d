//! forkbench [N] [HEAP_MIB]: the cost of process creation, timed with the TSC.
//!
//! Three loops, each iteration timed from just before `fork` to just after `wait` returns
//! in the parent (`lfence; rdtsc` at both ends):
//! 1. N × fork, the child exits at once, wait;
//! 2. N × fork, the child execs `exitcode` (a built-in that exits 0), wait;
//! 3. after growing the heap by HEAP_MIB MiB (default 64) and writing every page of it,
//!    HEAP_N = min(N, 8) × fork, the child exits at once, wait — the fork of a big process.
//!
//! The samples leave in one record through `export` (docs/abi.md, "forkbench export
//! record"): u64 words `MAGIC | tsc_khz << 32`, the three counts, then the samples of each
//! loop in order. One line on stdout with each loop's median. Run it with and without
//! `vmm run --cow` to compare eager `copyuvm` with copy-on-write fork (`vmm bench fork`).
//!
//! Exit status: 0; 2 for bad arguments; 1 if memory, a fork, an exec or the export fails.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use ulib::{eprintln, exec, exit, export, fork, println, sbrk, tsckhz, wait, PGSIZE};
use xv6_abi::forkbench::{HEADER_WORDS, MAGIC};

/// Iterations when none are given.
const DEFAULT_N: usize = 200;
/// Heap of the third loop when none is given (MiB).
const DEFAULT_HEAP_MIB: usize = 64;
/// At most this many forks of the big process (each copies it all without `--cow`).
const HEAP_FORKS: usize = 8;

/// `lfence; rdtsc`: the TSC, after every earlier instruction has finished.
fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc touch no memory; rdtsc writes edx:eax only.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// What the child of one timed fork does.
#[derive(Clone, Copy)]
enum Child {
    Exit,
    Exec,
}

/// One fork … wait round trip, in cycles; None if fork or the child failed.
fn round_trip(child: Child) -> Option<u64> {
    let t0 = tsc();
    let pid = fork();
    if pid == 0 {
        if let Child::Exec = child {
            exec(c"exitcode", &[c"exitcode"]);
        }
        exit(if let Child::Exit = child { 0 } else { 1 });
    }
    if pid < 0 {
        return None;
    }
    let mut status = -1;
    let reaped = wait(Some(&mut status));
    let t1 = tsc();
    (reaped == pid && status == 0).then(|| t1 - t0)
}

/// Fills `out` with round trips of `child`; false (after a message) if one failed.
fn measure(child: Child, out: &mut [u64], what: &str) -> bool {
    for t in out.iter_mut() {
        match round_trip(child) {
            Some(c) => *t = c,
            None => {
                eprintln!("forkbench: {what} failed");
                return false;
            }
        }
    }
    true
}

/// Grows the heap by `mib` MiB and writes one byte in every page of it.
fn grow_and_touch(mib: usize) -> bool {
    let bytes = mib << 20;
    let Ok(n) = i32::try_from(bytes) else {
        return false;
    };
    let base = sbrk(n);
    if base == -1 {
        return false;
    }
    for off in (0..bytes).step_by(PGSIZE) {
        // SAFETY: [base, base + bytes) was just given to this process by sbrk and holds no
        // Rust object.
        unsafe { ((base as usize + off) as *mut u8).write_volatile(1) };
    }
    true
}

/// The median of `s` (sorted in place; insertion sort: the counts are small).
fn p50(s: &mut [u64]) -> u64 {
    for i in 1..s.len() {
        let mut j = i;
        while j > 0 && s[j - 1] > s[j] {
            s.swap(j - 1, j);
            j -= 1;
        }
    }
    s.get(s.len() / 2).copied().unwrap_or(0)
}

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let (Some(n), Some(heap_mib)) = (
        ulib::arg_number(1, DEFAULT_N, 100_000),
        ulib::arg_number(2, DEFAULT_HEAP_MIB, 1024),
    ) else {
        eprintln!("usage: forkbench [N (1 to 100000)] [HEAP_MIB (1 to 1024)]");
        return 2;
    };
    let heap_n = n.min(HEAP_FORKS);
    let mut rec: Vec<u64> = Vec::new();
    if rec
        .try_reserve_exact(HEADER_WORDS + 2 * n + heap_n)
        .is_err()
    {
        eprintln!("forkbench: out of memory for the samples");
        return 1;
    }
    rec.resize(HEADER_WORDS + 2 * n + heap_n, 0);
    rec[..HEADER_WORDS].copy_from_slice(&[
        u64::from(MAGIC) | u64::from(tsckhz()) << 32,
        n as u64,
        n as u64,
        heap_n as u64,
    ]);
    let (forks, rest) = rec[HEADER_WORDS..].split_at_mut(n);
    let (execs, heaps) = rest.split_at_mut(n);
    if !measure(Child::Exit, forks, "fork+exit+wait")
        || !measure(Child::Exec, execs, "fork+exec+exit+wait")
    {
        return 1;
    }
    if !grow_and_touch(heap_mib) {
        eprintln!("forkbench: cannot grow the heap by {heap_mib} MiB");
        return 1;
    }
    if !measure(Child::Exit, heaps, "fork of the big process") {
        return 1;
    }
    let (a, b, c) = (
        p50(&mut forks.to_vec()),
        p50(&mut execs.to_vec()),
        p50(&mut heaps.to_vec()),
    );
    // SAFETY: a u64 slice viewed as its bytes (u8 has no alignment or validity needs).
    let bytes = unsafe { core::slice::from_raw_parts(rec.as_ptr().cast::<u8>(), rec.len() * 8) };
    if export(bytes) != 0 {
        eprintln!("forkbench: export failed");
        return 1;
    }
    println!(
        "forkbench: p50 cycles: fork+exit+wait {a}, fork+exec+exit+wait {b}, fork of a {heap_mib} MiB process {c}"
    );
    0
}
