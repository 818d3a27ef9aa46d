//! Copy-on-write fork (`vmm run --cow`): tests that pass with eager and copy-on-write fork
//! alike, checking what copy-on-write promises where it is on — fork costs page tables, not
//! pages; the first write by either side copies one page; the kernel's stores into user
//! memory copy as well; the last reference just becomes writable; out of memory during a
//! copy kills only the writer (139); a kill in the middle of copying loses nothing — and
//! that each side only ever sees its own writes.

use crate::check::{in_child, reap, Outcome, Why};
use crate::lazy::grow_pages;
use crate::mem::{brk, first_not, hog, touch_pages};
use ulib::probe::{peek, poke};
use ulib::{countfree, exit, fork, kill, raw, read, sbrk, sleep, PGSIZE};

/// A heap of `pages` present pages (touched, so lazy sbrk maps them too), each holding 1s
/// in its first byte; returns the old break and the first page.
fn heap(pages: usize) -> Result<(usize, usize), Why> {
    let (start, base) = grow_pages(pages)?;
    touch_pages(base, pages);
    Ok((start, base))
}

/// Gives back everything above `start`.
fn shrink_to(start: usize) {
    sbrk(-((brk() - start) as i32));
}

/// Pages the first process writes after fork cost at most: its stack page and a data page.
const SLACK: usize = 8;

/// Whether fork is copy-on-write: a fork of 64 present pages costs the child fewer than 64.
fn cow_mode() -> Result<bool, Why> {
    let pages = 64;
    let (start, _) = heap(pages)?;
    let free = countfree() as usize;
    let st = in_child(|| i32::from(free - (countfree() as usize) < pages))?;
    shrink_to(start);
    Ok(st == 1)
}

fn fill(addr: usize, len: usize, v: u8) {
    // SAFETY: callers pass memory their test got from sbrk.
    unsafe { crate::mem::fill(addr, len, v) };
}

/// cowfork: after fork, parent and child each see only their own writes; with copy-on-write
/// the child's first write to a page costs exactly that page, and once the child is gone the
/// parent's writes cost nothing (the last reference is made writable in place).
pub fn cowfork() -> Outcome {
    let cow = cow_mode()?;
    let pages = 16;
    let (start, base) = heap(pages)?;
    let (lo, hi) = (base, base + 8 * PGSIZE);
    fill(base, pages * PGSIZE, b'p');
    let free = countfree() as usize;
    let pid = fork();
    if pid == 0 {
        let took = free - countfree() as usize;
        if cow && took >= pages {
            exit(10);
        }
        sleep(3); // the parent writes meanwhile
        if first_not(base, pages * PGSIZE, b'p').is_some() {
            exit(11);
        }
        let before = countfree() as usize;
        // SAFETY: the child's share of the test's sbrk memory.
        unsafe { poke(lo + 5, b'c') };
        if cow && before - countfree() as usize != 1 {
            exit(12);
        }
        fill(lo, PGSIZE, b'c');
        exit(if peek(lo + PGSIZE) == b'p' { 0 } else { 13 });
    }
    ensure!(pid > 0, "fork failed");
    fill(hi, 8 * PGSIZE, b'P');
    let st = reap(pid)?;
    let why = [
        "",
        "fork took a page per heap page",
        "the parent's writes reached the child",
        "its first write did not copy exactly one page",
        "a write spilled into the next page",
    ];
    ensure!(
        st == 0,
        "child: {} (status {st})",
        why[(st - 9).clamp(0, 4) as usize]
    );
    ensure!(
        first_not(lo, 8 * PGSIZE, b'p').is_none(),
        "the child's writes reached the parent"
    );
    ensure!(
        first_not(hi, 8 * PGSIZE, b'P').is_none(),
        "the parent lost its writes"
    );
    let before = countfree();
    fill(lo, 8 * PGSIZE, b'q');
    let took = before - countfree();
    ensure!(took == 0, "writes after the child exited took {took} pages");
    shrink_to(start);
    Ok(())
}

/// Reads the 32-bit word at `addr`.
fn word(addr: usize) -> u32 {
    u32::from_le_bytes([0, 1, 2, 3].map(|i| peek(addr + i)))
}

/// cowkernel: the kernel's own stores into a page shared with a child — wait()'s status —
/// copy it like a user write: the parent gets the status, the child keeps its value.
pub fn cowkernel() -> Outcome {
    let (start, base) = heap(1)?;
    let at = base + 16;
    const MARK: u32 = 0x5eed_c0de;
    // SAFETY: memory this test got from sbrk.
    unsafe { crate::mem::put(at, &MARK.to_le_bytes()) };
    let keeper = fork();
    if keeper == 0 {
        sleep(5); // until the parent's wait stored into its copy of the page
        exit(i32::from(word(at) != MARK));
    }
    ensure!(keeper > 0, "fork failed");
    let quick = fork();
    if quick == 0 {
        exit(77);
    }
    ensure!(quick > 0, "fork failed");
    // SAFETY: the status goes to process memory.
    let got = unsafe { raw::sys_wait_status(at as *mut i32) };
    ensure!(got == quick, "wait returned {got}, expected {quick}");
    ensure!(
        word(at) == 77,
        "wait stored {} into a shared page",
        word(at)
    );
    let st = reap(keeper)?;
    ensure!(
        st == 0,
        "the kernel's store into the parent's page reached the child"
    );
    shrink_to(start);
    Ok(())
}

/// cowread: read() into a page shared with a child copies it for the reader alone. Reads
/// stdin; with no input (read returns 0) there is nothing to store and only the sharing is
/// checked (`vmm run --cow usertests cowread < FILE` gives it input).
pub fn cowread() -> Outcome {
    let (start, base) = heap(1)?;
    fill(base, PGSIZE, b'.');
    let pid = fork();
    if pid == 0 {
        sleep(5); // until the parent's read stored into its copy of the page
        exit(i32::from(first_not(base, PGSIZE, b'.').is_some()));
    }
    ensure!(pid > 0, "fork failed");
    // SAFETY: [base, base + PGSIZE) is memory this test got from sbrk.
    let buf = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, PGSIZE) };
    let n = read(0, &mut buf[..64]);
    ensure!(n >= 0, "read into a shared page returned {n}");
    if n > 0 {
        ensure!(peek(base) != b'.', "read returned {n} but stored nothing");
        ulib::println!("  cowread: read {n} bytes into a shared page");
    }
    let st = reap(pid)?;
    ensure!(
        st == 0,
        "read()'s store into the parent's page reached the child"
    );
    shrink_to(start);
    Ok(())
}

/// forkcost: what a fork of this (small) process costs, measured in the child right after
/// fork: with copy-on-write at most 4 pages besides its user page tables (kernel stack,
/// page directory — the kernel half is shared — and the stack page it has written since);
/// eagerly, those plus a copy of each of its user pages.
pub fn forkcost() -> Outcome {
    let cow = cow_mode()?;
    let free = countfree() as usize;
    let tables = brk().div_ceil(4 << 20); // at most one per 4 MiB of [0, sz)
    let st = in_child(|| {
        let took = free - countfree() as usize;
        ulib::println!(
            "  forkcost: fork of a {} KiB process took {took} pages ({})",
            brk() / 1024,
            if cow { "copy-on-write" } else { "eager copy" }
        );
        // Eagerly: the directory, kernel stack, page tables and at least one user page.
        i32::from(if cow {
            took > 4 + tables
        } else {
            took < 3 + tables
        })
    })?;
    ensure!(st == 0, "fork cost more than expected");
    Ok(())
}

/// cowbig: fork of a process with a 64 MiB heap. With copy-on-write it costs the child its
/// page directory, page tables and kernel stack (and the pages it writes), not 16384 pages.
pub fn cowbig() -> Outcome {
    let cow = cow_mode()?;
    let pages = (64 << 20) / PGSIZE;
    let (start, base) = heap(pages)?;
    let free = countfree() as usize;
    let st = in_child(|| {
        let took = free - countfree() as usize;
        ulib::println!("  cowbig: fork of a 64 MiB heap took {took} pages");
        // 17 page tables for the heap, the program's own, directory, kernel stack, stack.
        if cow && took > 17 + SLACK {
            return 1;
        }
        if !cow && took < pages {
            return 2;
        }
        let f = countfree() as usize;
        // SAFETY: the child's share of the heap.
        unsafe { poke(base + 4321 * PGSIZE, 9) };
        if cow && f - countfree() as usize != 1 {
            return 3;
        }
        i32::from(peek(base + 4322 * PGSIZE) != 1) * 4
    })?;
    ensure!(
        st == 0,
        "child: status {st} (1: fork too dear, 3: a write cost more than one page, 4: lost data)"
    );
    ensure!(
        peek(base + 4321 * PGSIZE) == 1,
        "the child's write reached the parent"
    );
    shrink_to(start);
    Ok(())
}

/// cowkill: a child killed while it copies shared pages (it writes them in a loop) leaves
/// the free count exactly as before the fork, and the parent's pages unchanged.
pub fn cowkill() -> Outcome {
    let pages = 256;
    let (start, base) = heap(pages)?;
    let free = countfree();
    let pid = fork();
    if pid == 0 {
        loop {
            for i in 0..pages {
                // SAFETY: the child's share of the heap.
                unsafe { poke(base + i * PGSIZE, 2) };
            }
        }
    }
    ensure!(pid > 0, "fork failed");
    sleep(2);
    ensure!(kill(pid) == 0, "kill failed");
    let st = reap(pid)?;
    ensure!(st == 137, "killed child: status {st}, expected 137");
    let lost = free - countfree();
    ensure!(
        lost == 0,
        "{lost} pages lost to a child killed while copying"
    );
    let changed = (0..pages).find(|i| peek(base + i * PGSIZE) != 1);
    ensure!(
        changed.is_none(),
        "the child's writes reached the parent's page {changed:?}"
    );
    shrink_to(start);
    Ok(())
}

/// cowoom: a child that took all free memory and then writes to pages it shares with its
/// parent is killed for want of a page to copy into (139, "(out of memory)" in its kill
/// line) with copy-on-write; with eager fork the pages are its own and it exits 0. Either
/// way every page comes back and the parent's pages are untouched.
pub fn cowoom() -> Outcome {
    let cow = cow_mode()?;
    let pages = 64;
    let (start, base) = heap(pages)?;
    let free = countfree();
    let st = in_child(|| {
        if hog().is_err() {
            return 2;
        }
        for i in 0..pages {
            // SAFETY: the child's share of the heap.
            unsafe { poke(base + i * PGSIZE, 3) };
        }
        0
    })?;
    let want = if cow { 139 } else { 0 };
    ensure!(
        st == want,
        "child writing shared pages with no memory left: status {st}, expected {want}"
    );
    let lost = free - countfree();
    ensure!(lost == 0, "{lost} pages lost");
    let changed = (0..pages).find(|i| peek(base + i * PGSIZE) != 1);
    ensure!(
        changed.is_none(),
        "the child's writes reached the parent's page {changed:?}"
    );
    shrink_to(start);
    Ok(())
}
