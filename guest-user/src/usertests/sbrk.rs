//! sbrk (xv6's growproc, allocuvm, deallocuvm): growing, shrinking, zeroed fresh memory,
//! failure without side effects, sbrk memory as a system-call argument.

use crate::check::{expect_segv, in_child, Outcome};
use crate::mem::{brk, fill, first_not, hog, lazy_mode, put, touch_pages};
use ulib::probe::{peek, poke};
use ulib::{countfree, fork, kill, raw, sbrk, sleep, uptime, wait, KERNBASE, PGSIZE};

/// sbrkbasic: sbrk(0) is the break; sbrk(n) returns the old break; byte-sized steps;
/// shrinking and growing again gives zeroed pages; a child's sbrk is its own.
pub fn sbrkbasic() -> Outcome {
    let start = brk();
    let mut a = start;
    for i in 0..5000 {
        let b = sbrk(1) as usize;
        ensure!(b == a, "sbrk(1) #{i} returned {b:#x}, expected {a:#x}");
        // SAFETY: the byte sbrk(1) just added.
        unsafe { poke(b, 1) };
        a = b + 1;
    }
    ensure!(
        brk() == start + 5000,
        "sbrk(0) is {:#x} after 5000 sbrk(1)",
        brk()
    );
    let old = sbrk(-5000) as usize;
    ensure!(old == start + 5000, "sbrk(-5000) returned {old:#x}");
    ensure!(brk() == start, "sbrk(-5000) left the break at {:#x}", brk());

    // The pages above the first (partly kept) page went back; new ones come zeroed.
    let n = 3 * PGSIZE;
    let old = sbrk(n as i32) as usize;
    ensure!(
        old == start,
        "sbrk({n}) returned {old:#x}, expected {start:#x}"
    );
    let whole = start.next_multiple_of(PGSIZE);
    if let Some(i) = first_not(whole, start + n - whole, 0) {
        fail!("re-grown memory not zeroed at {:#x}", whole + i);
    }
    // SAFETY: memory this test got from sbrk.
    unsafe { fill(start, n, 0x5a) };

    // A child gets a copy and grows on its own.
    let status = in_child(|| {
        if first_not(start, n, 0x5a).is_some() {
            return 1;
        }
        if sbrk(PGSIZE as i32) as usize != start + n {
            return 2;
        }
        // SAFETY: the page the child just got.
        unsafe { fill(start, n + PGSIZE, 0xa5) };
        0
    })?;
    ensure!(status == 0, "child: memory or sbrk wrong (status {status})");
    ensure!(
        brk() == start + n,
        "the child's sbrk moved the parent's break"
    );
    ensure!(
        first_not(start, n, 0x5a).is_none(),
        "the child's writes reached the parent"
    );
    ensure!(
        sbrk(-(n as i32)) as usize == start + n,
        "shrinking back failed"
    );
    Ok(())
}

/// Size the process grows to in sbrkmuch.
const BIG: usize = 64 << 20;

/// sbrkmuch: grow to 64 MiB, touch every page and the last byte, shrink by a page (which
/// unmaps it), grow it back zeroed, shrink all.
pub fn sbrkmuch() -> Outcome {
    let a = brk();
    let amt = BIG - a;
    let p = sbrk(amt as i32);
    ensure!(
        p as usize == a,
        "sbrk({amt}) returned {p:#x}, expected {a:#x}"
    );
    for page in (a.next_multiple_of(PGSIZE)..BIG).step_by(PGSIZE) {
        ensure!(peek(page) == 0, "fresh page {page:#x} not zeroed");
        // SAFETY: memory this test got from sbrk.
        unsafe { poke(page, 1) };
    }
    let last = BIG - 1;
    // SAFETY: the last byte sbrk gave.
    unsafe { poke(last, 99) };

    let c = sbrk(-(PGSIZE as i32)) as usize;
    ensure!(c == BIG, "sbrk(-PGSIZE) returned {c:#x}, expected {BIG:#x}");
    ensure!(
        brk() == BIG - PGSIZE,
        "sbrk(-PGSIZE) left the break at {:#x}",
        brk()
    );
    expect_segv("reading the page just given back", || {
        peek(last);
    })?;
    let c = sbrk(PGSIZE as i32) as usize;
    ensure!(c == BIG - PGSIZE, "re-growing returned {c:#x}");
    ensure!(peek(last) == 0, "the re-grown page still holds old data");

    let c = sbrk(-(amt as i32)) as usize;
    ensure!(c == BIG, "shrinking all returned {c:#x}");
    ensure!(brk() == a, "shrinking all left the break at {:#x}", brk());
    Ok(())
}

/// sbrkarg: fresh sbrk memory as system-call arguments — write from it, wait's status into
/// it — and ranges crossing the break refused.
pub fn sbrkarg() -> Outcome {
    let a = sbrk(PGSIZE as i32) as usize;
    let top = a + PGSIZE;
    let msg = b"  sbrkarg: this line was written from fresh sbrk memory\n";
    // SAFETY: memory this test got from sbrk.
    unsafe { put(a, msg) };
    // SAFETY: [a, a + len) is mapped process memory.
    let n = unsafe { raw::sys_write(1, a as *const u8, msg.len() as i32) };
    ensure!(n == msg.len() as i32, "write from sbrk memory returned {n}");

    let status = (top - 4) as *mut i32;
    let pid = fork();
    if pid == 0 {
        ulib::exit(77);
    }
    // SAFETY: the status lands in the last word of this test's sbrk page.
    let got = unsafe { raw::sys_wait_status(status) };
    ensure!(
        got == pid,
        "wait into sbrk memory returned {got}, expected {pid}"
    );
    let word = u32::from_le_bytes([0, 1, 2, 3].map(|i| peek(top - 4 + i)));
    ensure!(
        word == 77,
        "wait stored {word} into sbrk memory, expected 77"
    );

    // SAFETY: the range crosses the break: the kernel checks the whole buffer first and
    // writes nothing (xv6-public's argptr).
    let n = unsafe { raw::sys_write(2, (top - 1) as *const u8, 2) };
    ensure!(
        n == -1,
        "write of 2 bytes at the break - 1 returned {n}, expected -1"
    );
    // SAFETY: the kernel must refuse the range: it crosses the break.
    let n = unsafe { raw::sys_read(0, (top - 1) as *mut u8, 2) };
    ensure!(n == -1, "read of 2 bytes at the break - 1 returned {n}");
    // SAFETY: as above.
    let got = unsafe { raw::sys_wait_status((top - 2) as *mut i32) };
    ensure!(
        got == -1,
        "wait with status at the break - 2 returned {got}"
    );
    sbrk(-(PGSIZE as i32));
    Ok(())
}

/// maxva: sbrk that would reach KERNBASE, overflow or shrink below 0 fails with −1 and
/// leaves the break alone.
pub fn maxva() -> Outcome {
    let sz = brk();
    for (what, n) in [
        ("up to KERNBASE", (KERNBASE - sz) as i32),
        ("past KERNBASE", i32::MAX),
        ("below address 0", i32::MIN),
        ("to below 0 by one page", -((sz + PGSIZE) as i32)),
    ] {
        let r = sbrk(n);
        ensure!(r == -1, "sbrk({n}) ({what}) returned {r:#x}, expected -1");
        ensure!(brk() == sz, "sbrk {what} moved the break to {:#x}", brk());
    }
    Ok(())
}

/// Number of children taking all memory at once in sbrkfail.
const HOGS: usize = 4;

/// sbrkfail: children take all free memory at once, each until sbrk fails (which must
/// change nothing); then sbrk and fork in the parent fail; killing the children gives every
/// page back (checked at the end of usertests, by countfree).
///
/// With lazy sbrk, sbrk never runs out: see `sbrkfail_lazy`.
pub fn sbrkfail() -> Outcome {
    if lazy_mode() {
        return sbrkfail_lazy();
    }
    let mut pids = [0; HOGS];
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            let ok = hog().is_ok();
            // Hold the memory until killed.
            loop {
                if !ok {
                    ulib::exit(1);
                }
                sleep(100);
            }
        }
        ensure!(*p > 0, "fork failed");
    }
    // Wait until the children have all the memory: the free count stays low.
    let t0 = uptime();
    let mut low = 0;
    while low < 3 {
        sleep(10);
        low = if countfree() <= 16 { low + 1 } else { 0 };
        if uptime() - t0 > 6000 {
            for p in pids {
                kill(p);
            }
            while wait(None) > 0 {}
            fail!("free pages still {} after 60 s", countfree());
        }
    }
    let free = countfree();
    let sz = brk();
    let r = sbrk((64 * PGSIZE) as i32);
    let no_sbrk = r == -1 && brk() == sz;
    let pid = fork();
    if pid == 0 {
        ulib::exit(0);
    }
    for p in pids {
        kill(p);
    }
    let mut hog_status = [-1; HOGS];
    loop {
        let mut st = -1;
        let got = wait(Some(&mut st));
        if got < 0 {
            break;
        }
        if let Some(i) = pids.iter().position(|&p| p == got) {
            hog_status[i] = st;
        }
    }
    ensure!(
        no_sbrk,
        "sbrk(64 pages) with {free} pages free returned {r:#x}"
    );
    ensure!(pid < 0, "fork with {free} free pages succeeded");
    for st in hog_status {
        ensure!(st != 1, "a failed sbrk moved the break of a memory hog");
        ensure!(
            st == 137,
            "a killed memory hog exited with {st}, expected 137"
        );
    }
    Ok(())
}

/// sbrkfail with lazy sbrk: children grow far beyond memory (sbrk succeeds: it only moves
/// the break) and touch page after page; when a first touch finds no free page the kernel
/// kills the toucher (139, "out of memory" on the log) — and loses no page, checked at the
/// end of usertests by countfree.
fn sbrkfail_lazy() -> Outcome {
    let mut pids = [0; HOGS];
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            let start = brk();
            let base = start.next_multiple_of(PGSIZE);
            // All the way up to the last page below KERNBASE: more than any RAM (PHYSTOP <
            // 2 GiB).
            let pages = (KERNBASE - PGSIZE - base) / PGSIZE;
            if sbrk((base - start + pages * PGSIZE) as i32) == -1 {
                ulib::exit(1);
            }
            touch_pages(base, pages);
            ulib::exit(2);
        }
        ensure!(*p > 0, "fork failed");
    }
    for _ in pids {
        let mut st = -1;
        let got = wait(Some(&mut st));
        ensure!(pids.contains(&got), "wait returned {got}");
        ensure!(st != 1, "a lazy sbrk to just below KERNBASE failed");
        ensure!(st != 2, "a memory hog touched 2 GiB without running out");
        ensure!(
            st == 139,
            "a memory hog out of memory exited with {st}, expected 139"
        );
    }
    Ok(())
}
