//! pfbench [PAGES [fresh|recycled|cow]]: page-fault latency of the kernel's demand paging
//! (`vmm run --lazy`) and of its copy-on-write fork (`vmm run --lazy --cow`).
//!
//! Grows the process by PAGES pages (default 16384 = 64 MiB) with one lazy sbrk, then writes
//! one byte to each page, timing each first touch — one demand fault: #PF, kalloc, zeroing,
//! mapping, iret — with the TSC (`lfence; rdtsc` before, `rdtscp; lfence` after). Then it
//! touches the same pages again the same way: the warm figures are the measurement's own
//! overhead. `mark(1)`/`mark(2)` around the cold pass let the VMM count the VM exits the
//! faults caused (none, if the fault path is right).
//!
//! The mode says which fault is timed: `fresh` (the default) a demand fault on pages never
//! used since boot (pristine: no zeroing needed); `recycled` a demand fault on pages used and
//! freed before (the heap is touched, given back with a negative sbrk, and grown again, so
//! the faults get freed pages, which must be zeroed); `cow` a copy-on-write break: the heap
//! is touched, then the process forks a child that waits on a pipe, and the parent's timed
//! writes each copy a page the child still shares.
//!
//! The samples go to the VMM in one record through `export` (docs/abi.md, "pfbench export
//! record"): u32 magic "PFB1", u32 pages, u32 tsc_khz, u32 0, the cold cycle counts, the warm
//! ones (u64 each, little-endian). The sample arrays are allocated and touched before the
//! measured pages are, so no sample lands on a page being measured. One line on stdout:
//! `pfbench: N pages, first touch p50 X cycles (Y ns), warm touch p50 Z cycles`.
//!
//! Without `rdtscp` (CPUID says so: the nested-KVM lab's CPU), the closing timestamp is
//! `lfence; rdtsc; lfence` instead, and a note says so on stderr.
//!
//! Exit status: 0; 2 when sbrk is not lazy (countfree drops as soon as sbrk returns), when
//! `cow` finds fork eager, or for bad arguments; 1 if memory, a fork or the export fails.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use ulib::{eprintln, export, mark, println, sbrk, sbrk_is_lazy, tsckhz, PGSIZE};

/// Pages measured when no count is given: 64 MiB.
const DEFAULT_PAGES: usize = 16384;
/// The record's magic: "PFB1" as a little-endian u32.
use xv6_abi::pfbench::{FLAG_NO_RDTSCP, MAGIC};
/// u64 words of the record header (magic, pages, tsc_khz, reserved: four u32).
const HEADER_WORDS: usize = 2;

/// Whether the CPU has `rdtscp` (CPUID 0x80000001, EDX bit 27). Some (the nested-KVM lab's
/// emulated CPU) do not: then the closing timestamp is `rdtsc` right after the store,
/// followed by `lfence` (the store still cannot drift past it).
fn has_rdtscp() -> bool {
    use core::arch::x86::__cpuid;
    // cpuid exists on every CPU this kernel runs on (i586 and up), and user mode may run it.
    let max = __cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 27) != 0
}

/// The timed store: `lfence; rdtsc`, the one-byte write to `$p`, then the closing stamp
/// `$end` followed by `lfence`. One template for both closings, so they cannot drift apart.
macro_rules! timed_store {
    ($end:literal, $p:expr, $lo0:ident, $hi0:ident, $lo1:ident, $hi1:ident) => {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            "mov {lo0}, eax",
            "mov {hi0}, edx",
            "mov byte ptr [{p}], 1",
            $end,
            "lfence",
            p = in(reg) $p,
            lo0 = out(reg) $lo0,
            hi0 = out(reg) $hi0,
            out("eax") $lo1,
            out("edx") $hi1,
            out("ecx") _,
            options(nostack, preserves_flags),
        )
    };
}

/// Cycles taken by a one-byte write to `addr`, TSC-timed: `lfence; rdtsc` … `rdtscp;
/// lfence` (`RDTSCP`), or `lfence; rdtsc` … `lfence; rdtsc; lfence` without it, so that
/// neither earlier nor later instructions overlap the timed store.
///
/// # Safety
/// `addr` must be writable memory of this process that holds no Rust object.
#[inline(always)]
unsafe fn timed_touch<const RDTSCP: bool>(addr: usize) -> u64 {
    let (lo0, hi0, lo1, hi1): (u32, u32, u32, u32);
    // SAFETY: (both) the store goes to `addr`, which the caller vouches for; rdtsc/rdtscp
    // only read the TSC (and TSC_AUX into ecx, declared clobbered).
    unsafe {
        if RDTSCP {
            timed_store!("rdtscp", addr, lo0, hi0, lo1, hi1);
        } else {
            timed_store!("lfence; rdtsc", addr, lo0, hi0, lo1, hi1);
        }
    }
    let t0 = u64::from(hi0) << 32 | u64::from(lo0);
    let t1 = u64::from(hi1) << 32 | u64::from(lo1);
    t1.wrapping_sub(t0)
}

/// Touches `out.len()` pages from `base`, one byte each, storing each touch's cycles in
/// `out`.
fn touch_all<const RDTSCP: bool>(base: usize, out: &mut [u64]) {
    for (i, t) in out.iter_mut().enumerate() {
        // SAFETY: [base, base + pages * PGSIZE) is memory this program got from sbrk for
        // the measurement alone.
        *t = unsafe { timed_touch::<RDTSCP>(base + i * PGSIZE) };
    }
}

/// Which fault the cold pass times.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fresh,
    Recycled,
    Cow,
}

/// Writes one byte in each of `pages` pages from `base`, untimed.
fn touch_untimed(base: usize, pages: usize) {
    for i in 0..pages {
        // SAFETY: the pages are this program's measurement heap (see touch_all).
        unsafe { ((base + i * PGSIZE) as *mut u8).write_volatile(1) };
    }
}

/// A child that holds a reference to every page until the parent closes the pipe: it
/// blocks in read until end of file, then exits. Returns (child pid, the write end).
fn sharing_child() -> Option<(i32, i32)> {
    let mut fds = [0i32; 2];
    if ulib::pipe(&mut fds) != 0 {
        return None;
    }
    let pid = ulib::fork();
    if pid == 0 {
        ulib::close(fds[1]);
        let mut b = [0u8; 1];
        while ulib::read(fds[0], &mut b) > 0 {}
        ulib::exit(0);
    }
    ulib::close(fds[0]);
    (pid > 0).then_some((pid, fds[1]))
}

/// Touches the pages, first cold (between marks 1 and 2: the demand faults), then warm.
fn measure<const RDTSCP: bool>(base: usize, cold: &mut [u64], warm: &mut [u64]) {
    mark(1);
    touch_all::<RDTSCP>(base, cold);
    mark(2);
    touch_all::<RDTSCP>(base, warm);
}

/// The median of `samples` (a sorted copy's middle element).
fn p50(samples: &[u64]) -> u64 {
    let mut s = samples.to_vec();
    heapsort(&mut s);
    s.get(s.len() / 2).copied().unwrap_or(0)
}

/// Sorts `v` in place, ascending, with a few words of stack: the user stack is one page,
/// and core's sort needs more than that for its small-sort scratch and recursion.
fn heapsort(v: &mut [u64]) {
    /// Moves `v[root]` down the max-heap `v[..end]` to where it belongs.
    fn sift_down(v: &mut [u64], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child + 1] > v[child] {
                child += 1;
            }
            if v[root] >= v[child] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    for i in (0..v.len() / 2).rev() {
        sift_down(v, i, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// The program.
#[no_mangle]
pub extern "C" fn main(argc: i32, _argv: *const *const u8) -> i32 {
    const USAGE: &str = "usage: pfbench [PAGES (1 to 524288) [fresh|recycled|cow]]";
    let pages = if argc > 1 {
        match ulib::arg_str(1).parse::<usize>().ok() {
            Some(n) if n > 0 && n <= (1 << 19) => n,
            _ => {
                eprintln!("{USAGE}");
                return 2;
            }
        }
    } else {
        DEFAULT_PAGES
    };
    let mode = match (argc > 2).then(|| ulib::arg_str(2)) {
        None | Some("fresh") => Mode::Fresh,
        Some("recycled") => Mode::Recycled,
        Some("cow") => Mode::Cow,
        Some(_) => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    if !sbrk_is_lazy() {
        println!("pfbench: needs vmm run --lazy");
        return 2;
    }
    let khz = tsckhz();

    // The record (header, cold, warm), allocated and touched before the measured pages.
    let mut rec: Vec<u64> = Vec::new();
    if rec.try_reserve_exact(HEADER_WORDS + 2 * pages).is_err() {
        eprintln!("pfbench: out of memory for {pages} samples");
        return 1;
    }
    rec.resize(HEADER_WORDS + 2 * pages, 0);
    rec[0] = u64::from(MAGIC) | (pages as u64) << 32;
    rec[1] = u64::from(khz);

    // The measured pages: whole pages above the break, untouched.
    let brk = sbrk(0) as usize;
    let base = brk.next_multiple_of(PGSIZE);
    let grow = base - brk + pages * PGSIZE;
    if sbrk(grow as i32) == -1 {
        eprintln!("pfbench: sbrk({grow}) failed");
        return 1;
    }
    let mut child = None;
    match mode {
        Mode::Fresh => {}
        Mode::Recycled => {
            // Use the pages, give them back, grow again: the faults now get freed pages.
            touch_untimed(base, pages);
            if sbrk(-(grow as i32)) == -1 || sbrk(grow as i32) == -1 {
                eprintln!("pfbench: sbrk to recycle the pages failed");
                return 1;
            }
        }
        Mode::Cow => {
            touch_untimed(base, pages);
            let before = ulib::countfree();
            let Some(c) = sharing_child() else {
                eprintln!("pfbench: fork failed");
                return 1;
            };
            // An eager fork copies every page at once: then there is nothing to time.
            if before - ulib::countfree() >= pages as i32 {
                println!("pfbench: cow needs vmm run --cow");
                ulib::close(c.1);
                ulib::wait(None);
                return 2;
            }
            child = Some(c);
        }
    }

    let rdtscp = has_rdtscp();
    if !rdtscp {
        // The VMM reports this once for the whole bench (the flags word), not once per boot.
        rec[1] |= u64::from(FLAG_NO_RDTSCP) << 32;
    }
    let (cold, warm) = rec[HEADER_WORDS..].split_at_mut(pages);
    if rdtscp {
        measure::<true>(base, cold, warm);
    } else {
        measure::<false>(base, cold, warm);
    }

    if let Some((_, pipe)) = child {
        ulib::close(pipe);
        ulib::wait(None);
    }
    let (cold_p50, warm_p50) = (p50(cold), p50(warm));
    // SAFETY: a u64 slice viewed as its bytes (u8 has no alignment or validity needs).
    let bytes = unsafe { core::slice::from_raw_parts(rec.as_ptr().cast::<u8>(), rec.len() * 8) };
    if export(bytes) != 0 {
        eprintln!("pfbench: export failed");
        return 1;
    }
    let ns = Ns(cold_p50, khz);
    println!(
        "pfbench: {pages} pages, first touch p50 {cold_p50} cycles ({ns}), warm touch p50 {warm_p50} cycles"
    );
    0
}

/// Cycles as nanoseconds at `khz` kHz (`? ns` when the frequency is unknown).
struct Ns(u64, u32);

impl core::fmt::Display for Ns {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.1 {
            0 => f.write_str("? ns"),
            khz => write!(f, "{} ns", self.0 * 1_000_000 / u64::from(khz)),
        }
    }
}
