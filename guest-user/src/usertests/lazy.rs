//! Lazy sbrk (demand paging, `vmm run --lazy`): tests that pass with eager and lazy sbrk
//! alike, checking the lazy kernel's promises where it is lazy — pages cost memory only once
//! touched, the kernel's own accesses fault them in, fork copies only touched pages,
//! shrinking frees exactly what was mapped — and that bad accesses still kill.

use crate::check::{expect_segv, in_child, Outcome, EXEC_FAILED};
use crate::mem::{brk, lazy_mode, new_tables, pdx, PT_PAGES};
use ulib::probe::{guard_page, peek, poke};
use ulib::{countfree, fork, raw, sbrk, PGSIZE};

/// Bytes lazysbrk and lazyfork grow by: 32 MiB, several page tables' worth.
const BIG: usize = 32 << 20;

/// Grows the process by `pages` whole pages above the break; returns the old break and the
/// first whole page (or fails the test).
pub fn grow_pages(pages: usize) -> Result<(usize, usize), crate::check::Why> {
    let start = brk();
    let base = start.next_multiple_of(PGSIZE);
    let r = sbrk((base - start + pages * PGSIZE) as i32);
    ensure!(r as usize == start, "sbrk of {pages} pages returned {r:#x}");
    Ok((start, base))
}

/// lazysbrk: a big sbrk, then touching a few pages: with lazy sbrk the free count drops only
/// by those (and the page tables they need), eagerly by all at once; untouched pages read as
/// zeroes; shrinking gives back exactly the pages that were mapped.
pub fn lazysbrk() -> Outcome {
    let lazy = lazy_mode();
    let pages = BIG / PGSIZE;
    let free0 = countfree() as usize;
    let (start, base) = grow_pages(pages)?;
    let free1 = countfree() as usize;
    let all_tables = new_tables(start, (0..pages).map(|i| base + i * PGSIZE));
    if lazy {
        ensure!(free1 == free0, "lazy sbrk took {} pages", free0 - free1);
    } else {
        ensure!(
            free0 - free1 == pages + all_tables,
            "eager sbrk of {pages} pages took {} pages",
            free0 - free1
        );
    }
    let touched = [0, 1, pages / 2, pages - 1].map(|i| base + i * PGSIZE);
    for (k, &a) in touched.iter().enumerate() {
        // SAFETY: memory this test got from sbrk.
        unsafe { poke(a + 123, k as u8 + 1) };
    }
    let free2 = countfree() as usize;
    let tables = new_tables(start, touched.iter().copied());
    if lazy {
        ensure!(
            free1 - free2 == touched.len() + tables,
            "touching {} pages took {} pages (expected {} with {tables} page tables)",
            touched.len(),
            free1 - free2,
            touched.len() + tables
        );
    } else {
        ensure!(free2 == free1, "touching eager pages took memory");
    }
    for (k, &a) in touched.iter().enumerate() {
        ensure!(peek(a + 123) == k as u8 + 1, "page {a:#x} lost its byte");
    }
    let fresh = base + 7 * PGSIZE;
    ensure!(
        peek(fresh) == 0 && peek(fresh + PGSIZE - 1) == 0,
        "an untouched page is not zero"
    );
    let r = sbrk(-((brk() - start) as i32));
    ensure!(r != -1 && brk() == start, "shrinking back failed");
    // Page tables stay with the page directory (xv6); every page comes back.
    let free3 = countfree() as usize;
    let kept = if lazy { tables } else { all_tables };
    ensure!(
        free0 - free3 == kept,
        "after shrinking, {} pages are still taken, expected the {kept} page tables",
        free0 - free3
    );
    Ok(())
}

/// lazyargs: fresh, never touched sbrk memory as system-call arguments — `write()` from it,
/// `wait()`'s status into it, exec's argument strings in it: the kernel faults the pages in
/// (with lazy sbrk, one free page each) and the calls work.
pub fn lazyargs() -> Outcome {
    let lazy = lazy_mode();
    let cost = usize::from(lazy);
    let (start, base) = grow_pages(4)?;

    // write(): one byte (a NUL: fresh memory is zeroes) to the kernel log.
    let free = countfree() as usize;
    // SAFETY: [base, base + 1) is process memory.
    let n = unsafe { raw::sys_write(2, base as *const u8, 1) };
    ensure!(n == 1, "write from a fresh page returned {n}");
    let took = free - countfree() as usize;
    ensure!(took == cost, "write from a fresh page took {took} pages");

    // wait(): the status lands in a fresh page.
    let status = base + PGSIZE + 8;
    let free = countfree() as usize;
    let pid = fork();
    if pid == 0 {
        ulib::exit(77);
    }
    ensure!(pid > 0, "fork failed");
    // SAFETY: the status goes to process memory.
    let got = unsafe { raw::sys_wait_status(status as *mut i32) };
    ensure!(got == pid, "wait into a fresh page returned {got}");
    let took = free - countfree() as usize;
    ensure!(took == cost, "wait into a fresh page took {took} pages");
    let word = u32::from_le_bytes([0, 1, 2, 3].map(|i| peek(status + i)));
    ensure!(
        word == 77,
        "wait stored {word} into a fresh page, expected 77"
    );

    // exec(): argv[1] points into a fresh page (an empty string); then the argv array itself
    // lies in a fresh page (all nulls: no arguments at all).
    let empty = base + 2 * PGSIZE;
    let want = i32::from(ulib::args::checksum([&b""[..]]));
    let st = in_child(|| {
        let argv = [
            c"argsum".as_ptr().cast(),
            empty as *const u8,
            core::ptr::null(),
        ];
        // SAFETY: every pointer is process memory; exec replaces the child.
        unsafe { raw::sys_exec(c"argsum".as_ptr().cast(), argv.as_ptr()) };
        EXEC_FAILED
    })?;
    ensure!(st == want, "exec with argv[1] in a fresh page: status {st}");
    let argv = base + 3 * PGSIZE;
    let want = i32::from(ulib::args::checksum(core::iter::empty()));
    let st = in_child(|| {
        // SAFETY: as above.
        unsafe { raw::sys_exec(c"argsum".as_ptr().cast(), argv as *const *const u8) };
        EXEC_FAILED
    })?;
    ensure!(st == want, "exec with argv in a fresh page: status {st}");
    sbrk(-((brk() - start) as i32));
    Ok(())
}

/// lazyfork: fork of a process with untouched lazy pages copies only the touched ones; the
/// child finds the touched page's data, zeroes in the untouched ones, and its own touches
/// stay its own.
pub fn lazyfork() -> Outcome {
    let lazy = lazy_mode();
    let pages = BIG / PGSIZE;
    let (start, base) = grow_pages(pages)?;
    let (hot, cold) = (base + PGSIZE, base + (pages - 2) * PGSIZE);
    // SAFETY: memory this test got from sbrk.
    unsafe { poke(hot, 0x5a) };
    let free = countfree() as usize;
    let st = in_child(|| {
        // What fork took: at most the child's page directory, kernel half, kernel stack
        // and the present pages; nowhere near the 32 MiB of untouched ones.
        let took = free - countfree() as usize;
        if lazy && took >= PT_PAGES {
            return 1;
        }
        if peek(hot) != 0x5a {
            return 2;
        }
        if peek(cold) != 0 {
            return 3;
        }
        // SAFETY: the child's own copy of the test's sbrk memory.
        unsafe {
            poke(cold, 0xa5);
            poke(hot, 0xa5);
        }
        0
    })?;
    let why = [
        "",
        "fork copied untouched pages",
        "the touched page",
        "an untouched page",
    ];
    ensure!(
        st == 0,
        "child: {} wrong (status {st})",
        why[st.clamp(0, 3) as usize]
    );
    ensure!(peek(hot) == 0x5a, "the child's write reached the parent");
    let free_now = countfree() as usize;
    ensure!(
        peek(cold) == 0,
        "the child's write reached an untouched page"
    );
    let took = free_now - countfree() as usize;
    let table = usize::from(pdx(cold) != pdx(hot) && pdx(cold) != pdx(start - 1));
    ensure!(
        !lazy || took == 1 + table,
        "the parent's first touch after fork took {took} pages"
    );
    sbrk(-((brk() - start) as i32));
    Ok(())
}

/// lazybounds: with a grown break, accesses outside `[0, sz)` still kill (139): at the break,
/// far above it, in pages just given back (touched or not), the guard page.
pub fn lazybounds() -> Outcome {
    let (start, base) = grow_pages(64)?;
    let top = brk();
    for a in [top, top + 5 * PGSIZE, top + (64 << 20)] {
        expect_segv("reading above the break", || {
            peek(a);
        })?;
    }
    // SAFETY: memory this test got from sbrk.
    unsafe { poke(base + 62 * PGSIZE, 1) };
    sbrk(-(2 * PGSIZE as i32));
    for a in [base + 62 * PGSIZE, base + 63 * PGSIZE] {
        // SAFETY: no Rust object there; the write must kill the child.
        expect_segv("writing a page just given back", || unsafe { poke(a, 1) })?;
    }
    let guard = guard_page();
    // SAFETY: as above.
    expect_segv("writing the guard page", || unsafe { poke(guard, 1) })?;
    ensure!(brk() == top - 2 * PGSIZE, "the break moved");
    sbrk(-((brk() - start) as i32));
    Ok(())
}
