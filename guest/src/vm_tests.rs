//! Host tests of vm.rs: page directories built in fake physical memory (`testmem`), with
//! the free-page count checked after each.

use super::*;
use crate::kalloc::KMEM;

/// A fresh address space (setupkvm: one page, the kernel half shared).
pub(crate) fn newdir() -> PageDir {
    setupkvm().unwrap()
}

pub(crate) fn u(va: u32) -> UVAddr {
    UVAddr(va)
}

pub(crate) fn pte(d: &PageDir, va: u32) -> Option<Pte> {
    getpte(d, u(va)).filter(|p| p.present())
}

pub(crate) fn read_user(d: &PageDir, va: u32, n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| {
            let p = getpte(d, u(va + i)).unwrap();
            // SAFETY: a present page of the test memory.
            unsafe { *((P2V(p.addr()).0 + (va + i) % PGSIZE) as *const u8) }
        })
        .collect()
}

/// Takes pages off the free list until `left` remain; returns them.
pub(crate) fn exhaust(left: usize) -> Vec<KVAddr> {
    let mut held = Vec::new();
    while KMEM.countfree() > left {
        held.push(kalloc().unwrap());
    }
    held
}

pub(crate) fn give_back(held: Vec<KVAddr>) {
    for p in held {
        // SAFETY: pages exhaust took from kalloc.
        unsafe { kfree(p) };
    }
}

/// Frees `d` and checks that the free count is back to `before`.
pub(crate) fn done(d: PageDir, before: usize) {
    freevm(d);
    assert_eq!(testmem::free(), before);
}

#[test]
fn allocuvm_maps_zeroed_user_pages_and_deallocuvm_frees_them() {
    let _g = testmem::lock();
    // Dirty some recycled pages first: allocuvm must zero those.
    give_back((0..8).map(|_| kalloc_zeroed().unwrap()).collect());
    let before = testmem::free();
    let mut d = newdir();
    assert_eq!(allocuvm(&mut d, 0, 0x2001), Ok(0x2001));
    for va in [0, 0x1000, 0x2000] {
        assert_eq!(pte(&d, va).unwrap().flags(), PTE_P | PTE_W | PTE_U);
    }
    assert!(pte(&d, 0x3000).is_none());
    assert!(read_user(&d, 0, 0x3000).iter().all(|&b| b == 0));
    // 3 pages + 1 page table + the directory.
    assert_eq!(testmem::free(), before - 5);
    // Growing from an unaligned size starts at the next page.
    assert_eq!(allocuvm(&mut d, 0x2001, 0x3000), Ok(0x3000));
    assert_eq!(testmem::free(), before - 5);
    assert_eq!(allocuvm(&mut d, 0x3000, 0x1000), Ok(0x3000));
    let f = deallocuvm(&mut d, 0x3000, 0x1800);
    assert_eq!(f, TlbFlush::page(u(0x2000)), "one page unmapped: invlpg");
    f.ignore("host test");
    assert!(pte(&d, 0x1000).is_some() && pte(&d, 0x2000).is_none());
    assert_eq!(testmem::free(), before - 4);
    assert!(!deallocuvm(&mut d, 0x1800, 0x2000).is_needed());
    allocuvm(&mut d, 0x1800, 0x4000).unwrap();
    assert!(
        deallocuvm(&mut d, 0x4000, 0).is_all(),
        "several pages: CR3 reload"
    );
    done(d, before);
}

#[test]
fn allocuvm_refuses_kernbase() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = newdir();
    assert_eq!(allocuvm(&mut d, 0, KERNBASE), Err(OutOfMemory));
    assert_eq!(allocuvm(&mut d, 0, u32::MAX), Err(OutOfMemory));
    // More than the test memory: runs out, and gives back every page it mapped.
    assert_eq!(allocuvm(&mut d, 0, KERNBASE - 1), Err(OutOfMemory));
    assert!(pte(&d, 0).is_none());
    let tables = (0..KERNBASE)
        .step_by(1 << 22)
        .filter(|&va| has_pgtab(&d, va));
    assert_eq!(
        tables.count(),
        0,
        "the page tables the failed growth made are freed too"
    );
    assert_eq!(testmem::free(), before - 1, "only the directory is held");
    // A region's table that still maps pages below oldsz stays.
    assert_eq!(allocuvm(&mut d, 0, 0x1000), Ok(0x1000));
    assert_eq!(allocuvm(&mut d, 0x1000, KERNBASE - 1), Err(OutOfMemory));
    assert!(pte(&d, 0).is_some() && has_pgtab(&d, 0));
    assert_eq!(
        testmem::free(),
        before - 3,
        "directory, one table, one page"
    );
    done(d, before);
}

#[test]
fn allocuvm_rolls_back_when_memory_runs_out() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = newdir();
    assert_eq!(allocuvm(&mut d, 0, 0x1000), Ok(0x1000));
    let mut held = exhaust(5);
    // Needs 8 pages: fails after mapping 5, which come back.
    assert_eq!(allocuvm(&mut d, 0x1000, 0x9000), Err(OutOfMemory));
    assert_eq!(KMEM.countfree(), 5);
    assert!(pte(&d, 0x1000).is_none());
    assert!(pte(&d, 0).is_some(), "memory below oldsz is untouched");
    // Across a page-table boundary: both pages are had, the new page table is not.
    held.extend(exhaust(2));
    assert_eq!(allocuvm(&mut d, 0x3F_F000, 0x40_1000), Err(OutOfMemory));
    assert_eq!(KMEM.countfree(), 2);
    assert!(pte(&d, 0x3F_F000).is_none() && !has_pgtab(&d, 0x40_0000));
    give_back(held);
    done(d, before);
}

#[test]
fn deallocuvm_skips_holes_and_missing_page_tables() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = newdir();
    allocuvm(&mut d, 0x0080_0000, 0x0080_2000).unwrap();
    allocuvm(&mut d, 0x1000_0000, 0x1000_1000).unwrap();
    deallocuvm(&mut d, 0x1000_1000, 0).ignore("host test");
    assert_eq!(
        testmem::free(),
        before - 3,
        "the directory and two page tables"
    );
    let f = deallocuvm(&mut d, u32::MAX, 0);
    assert!(!f.is_needed(), "clamped at KERNBASE, nothing left");
    done(d, before);
}

#[test]
fn loaduvm_copies_across_pages_at_any_alignment() {
    let _g = testmem::lock();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x3000).unwrap();
    let src: Vec<u8> = (0..0x1800u32).map(|i| (i % 251) as u8 + 1).collect();
    loaduvm(&mut d, u(0xF0C), &src);
    assert_eq!(read_user(&d, 0xF0C, src.len()), src);
    assert_eq!(read_user(&d, 0xF0B, 1), [0]);
    assert_eq!(read_user(&d, 0xF0C + 0x1800, 1), [0]);
    loaduvm(&mut d, u(0x2FFF), b"z");
    loaduvm(&mut d, u(0x1000), b"");
    assert_eq!(read_user(&d, 0x2FFF, 1), *b"z");
    freevm(d);
}

#[test]
#[should_panic(expected = "loaduvm: address 0x00001000 should exist")]
fn loaduvm_panics_on_unmapped_pages() {
    let _g = testmem::lock();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x1000).unwrap();
    loaduvm(&mut d, u(0xFFE), b"abcd");
}

#[test]
fn inituvm_loads_one_page_at_zero() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = newdir();
    inituvm(&mut d, b"\xcd\x40").unwrap();
    assert_eq!(read_user(&d, 0, 3), [0xcd, 0x40, 0]);
    assert_eq!(pte(&d, 0).unwrap().flags(), PTE_P | PTE_W | PTE_U);
    done(d, before);
}

#[test]
fn clearpteu_and_clearptew_keep_the_page() {
    let _g = testmem::lock();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x2000).unwrap();
    let pa = pte(&d, 0).unwrap().addr();
    assert_eq!(clearpteu(&mut d, u(0x10)), TlbFlush::page(u(0)));
    clearptew(&mut d, u(0x1010)).ignore("host test");
    assert_eq!(pte(&d, 0).unwrap(), Pte::new(pa, PTE_P | PTE_W));
    assert_eq!(pte(&d, 0x1000).unwrap().flags(), PTE_P | PTE_U);
    assert_eq!(uva2ka(&d, u(0x10)), None, "guard page: no user access");
    assert!(
        uva2ka(&d, u(0x1010)).is_some(),
        "read-only is still readable"
    );
    assert_eq!(
        copyout(&mut d, u(0x1010), b"x"),
        Err(BadAddr),
        "but not writable"
    );
    freevm(d);
}

#[test]
#[should_panic(expected = "clearpteu: 0x00005000 not mapped")]
fn clearpteu_panics_on_unmapped_pages() {
    let _g = testmem::lock();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x1000).unwrap();
    clearpteu(&mut d, u(0x5000)).ignore("unreachable");
}

#[test]
#[should_panic(expected = "walkpgdir: kernel address 0x80100000")]
fn walk_refuses_the_shared_kernel_half() {
    let _g = testmem::lock();
    let mut d = newdir();
    let _ = d.walk(u(0x8010_0000), false);
}

/// A parent of 3 pages and one after a 16 MiB hole: text at 0, data with "fork" at 0xFFE,
/// a guard page at 0x2000.
pub(crate) fn parent() -> PageDir {
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x3000).unwrap();
    allocuvm(&mut d, 0x0100_0000, 0x0100_1000).unwrap(); // after a 16 MiB hole
    loaduvm(&mut d, u(0xFFE), b"fork");
    clearptew(&mut d, u(0)).ignore("host test");
    clearpteu(&mut d, u(0x2000)).ignore("host test");
    d
}

#[test]
fn copyuvm_copies_pages_and_permissions() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = parent();
    let used = before - testmem::free();
    let c = copyuvm(&mut d, 0x0100_1000).unwrap();
    // The child: one directory page (the kernel half is shared), then the same user page
    // tables and pages as the parent.
    assert_eq!(before - testmem::free(), used + 1 + (used - 1));
    assert_eq!(read_user(&c, 0xFFE, 4), *b"fork");
    for va in [0, 0x1000, 0x2000, 0x0100_0000] {
        let (p, q) = (pte(&d, va).unwrap(), pte(&c, va).unwrap());
        assert_eq!(p.flags(), q.flags());
        assert_ne!(p.addr(), q.addr(), "a private copy");
    }
    assert!(pte(&c, 0x3000).is_none() && pte(&c, 0x0080_0000).is_none());
    // The child's pages are its own.
    copyout(&mut d, u(0x1000), b"!").unwrap();
    assert_eq!(read_user(&c, 0xFFE, 4), *b"fork");
    assert_eq!(read_user(&d, 0xFFE, 4), *b"fo!k");
    freevm(c);
    done(d, before);
}

#[test]
fn copyuvm_frees_everything_when_memory_runs_out() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x8000).unwrap();
    let used = before - testmem::free();
    for left in [0, 1, 2, 5, 9] {
        let held = exhaust(left);
        assert!(copyuvm(&mut d, 0x8000).is_none(), "{left} pages left");
        assert_eq!(KMEM.countfree(), left);
        give_back(held);
    }
    assert_eq!(testmem::free(), before - used);
    done(d, before);
}

#[test]
fn setupkvm_shares_the_kernel_half_built_once() {
    let _g = testmem::lock();
    let before = testmem::free();
    let (d, e) = (setupkvm().unwrap(), setupkvm().unwrap());
    assert_eq!(before - testmem::free(), 2, "a directory page each");
    let k = getpte(&d, KVAddr(0x8010_0000)).unwrap();
    assert_eq!(k, Pte::new(PhysAddr(0x10_0000), PTE_P));
    let data = getpte(&d, KVAddr(0x8dff_f000)).unwrap();
    assert_eq!(data, Pte::new(PhysAddr(0xdff_f000), PTE_P | PTE_W));
    let dev = getpte(&d, KVAddr(0xFEE0_0000)).unwrap();
    assert_eq!(dev, Pte::new(PhysAddr(0xFEE0_0000), PTE_P | PTE_W));
    assert!(
        getpte(&d, KVAddr(0x8e00_0000)).is_none(),
        "nothing between P2V(PHYSTOP) and DEVSPACE (no boot modules here)"
    );
    assert!(getpte(&d, u(0)).is_none(), "an empty user half");
    // The same kernel page tables in both: the PDEs are equal.
    for i in [KPDX, KPDX + 10, PDX(KVAddr(0xFE00_0000)), NPDENTRIES - 1] {
        assert!(d.pde(i).present());
        assert_eq!(d.pde(i), e.pde(i));
    }
    assert_eq!(
        uva2ka(&d, u(0x8010_0000)),
        None,
        "kernel pages are not user pages"
    );
    freevm(e);
    done(d, before);
    let held = exhaust(0);
    assert!(setupkvm().is_none());
    assert_eq!(KMEM.countfree(), 0);
    give_back(held);
}

#[test]
fn uva2ka_and_copyout() {
    let _g = testmem::lock();
    let mut d = newdir();
    allocuvm(&mut d, 0, 0x2000).unwrap();
    let ka = uva2ka(&d, u(0x1234)).unwrap();
    let pa = pte(&d, 0x1000).unwrap().addr();
    assert_eq!(ka.0, P2V(pa).0 + 0x234);
    assert_eq!(uva2ka(&d, u(0x2000)), None);
    assert_eq!(uva2ka(&d, u(0x9000_0000)), None);
    copyout(&mut d, u(0xFFD), b"across").unwrap();
    assert_eq!(read_user(&d, 0xFFD, 6), *b"across");
    copyout(&mut d, u(0x2000), b"").unwrap();
    assert_eq!(copyout(&mut d, u(0x1FFF), b"ab"), Err(BadAddr));
    assert_eq!(
        read_user(&d, 0x1FFF, 1),
        *b"a",
        "leading bytes may be written"
    );
    assert_eq!(copyout(&mut d, u(u32::MAX), b"ab"), Err(BadAddr));
    assert_eq!(copyout(&mut d, u(KERNBASE - 1), b"ab"), Err(BadAddr));
    // A copy-on-write page is read-only to copyout too (cow::cowcopyout copies it first).
    let mut c = crate::cow::cowuvm(&mut d, 0x2000)
        .unwrap()
        .ignore("host test");
    assert_eq!(copyout(&mut c, u(0x1000), b"x"), Err(BadAddr));
    freevm(c);
    freevm(d);
}
