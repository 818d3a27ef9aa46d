//! Demand paging ("lazy sbrk", on with the command-line word `lazy`; not in xv6's vm.c).
//!
//! In lazy mode growproc only moves the break. The pages a process got that way, `[lazy_from,
//! sz)` with `lazy_from` kept in the process (the size exec gave it, lowered by every lazy
//! growth that starts below it), are mapped one at a time on first touch: by the page-fault
//! handler for user accesses, and by uaccess for the kernel's accesses to user memory (so a
//! system call never takes a page fault in kernel mode). Both go through `lazyfault`. A page
//! that was never touched is simply not present, which deallocuvm, copyuvm and freevm
//! already skip. A process whose `lazy_from` is `None` has no lazy pages (eager mode, and a
//! fresh process-table slot).

use crate::cmdline::config;
use crate::memlayout::UVAddr;
use crate::mmu::{Pte, PteFlags, PGSIZE, PTE_P, PTE_U, PTE_W};
use crate::vm::{getpte, kfree_pa, mappages, zalloc, OutOfMemory, PageDir};

/// The `lazy_from` of a fresh image of size `sz`: its top in lazy mode (the heap starts
/// there), `None` (no lazy pages at all) otherwise.
#[must_use]
pub fn lazy_from_for(sz: u32) -> Option<UVAddr> {
    config().lazy.then_some(UVAddr(sz))
}

/// The `lazy_from` after the process grew lazily from size `oldsz`: lowered to `oldsz` if that
/// is below it; unchanged (`None`) in eager mode.
#[must_use]
pub fn lazy_from_after_growth(lazy_from: Option<UVAddr>, oldsz: u32) -> Option<UVAddr> {
    lazy_from.map(|f| f.min(UVAddr(oldsz)))
}

/// Is a fault at user address `va` a first touch of a lazy page — one to allocate and map,
/// rather than a bad access to kill for? Yes if `va` lies in the lazy region `[lazy_from,
/// sz)` (below KERNBASE) and its page is not present (`pte`: the flags of its PTE, `None`
/// when there is no page table there). Everything else — the guard page and text (present),
/// holes below the heap, addresses at or above sz, the kernel half, any address of a process
/// with no lazy region — is not.
#[must_use]
pub fn is_lazy_page(va: UVAddr, lazy_from: Option<UVAddr>, sz: u32, pte: Option<PteFlags>) -> bool {
    lazy_from.is_some_and(|from| from <= va)
        && va.0 < sz
        && va.is_user()
        && pte.is_none_or(|f| !f.contains(PTE_P))
}

/// Maps a zeroed user-writable page (PTE_W|PTE_U) at the page holding `va` (not mapped yet):
/// the demand-paging half of allocuvm. Nothing is leaked if memory runs out (a page table
/// already made stays with the directory, as allocuvm's do). No TLB flush is needed: the
/// entry goes from not present to present, and the TLB never holds not-present entries.
pub fn lazyalloc(pgdir: &mut PageDir, va: UVAddr) -> Result<(), OutOfMemory> {
    let mem = zalloc().ok_or(OutOfMemory)?;
    mappages(pgdir, va.page(), PGSIZE, mem, PTE_W | PTE_U).inspect_err(|_| {
        // SAFETY: the page was never mapped.
        unsafe { kfree_pa(mem) };
    })
}

/// The demand-paging fault handler, for the page fault handler and for uaccess alike: if
/// `va` is a lazy page of the process (`is_lazy_page`), maps it and returns `Some(Ok)`, or
/// `Some(Err)` when memory ran out; `None` if it is no lazy page (a real fault).
pub fn lazyfault(
    pgdir: &mut PageDir,
    lazy_from: Option<UVAddr>,
    sz: u32,
    va: UVAddr,
) -> Option<Result<(), OutOfMemory>> {
    let pte = getpte(pgdir, va).map(Pte::flags);
    is_lazy_page(va, lazy_from, sz, pte).then(|| lazyalloc(pgdir, va))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memlayout::KERNBASE;
    use crate::vm::tests::{done, exhaust, give_back, newdir, pte, read_user, u};
    use crate::vm::{allocuvm, clearpteu, copyuvm, deallocuvm, freevm, testmem};

    #[test]
    fn lazy_pages_are_untouched_heap_pages_only() {
        let (sz, from) = (0x9000, Some(u(0x5000)));
        let (urw, k) = (PTE_P | PTE_U | PTE_W, PTE_P | PTE_W);
        let lazy = |va, from, sz, f| is_lazy_page(u(va), from, sz, f);
        // Not present (or no page table) in [lazy_from, sz): lazy.
        assert!(lazy(0x5000, from, sz, None));
        assert!(lazy(0x8fff, from, sz, Some(PteFlags::empty())));
        assert!(lazy(0x6123, from, sz, Some(PTE_W | PTE_U)));
        // Already present: a real fault (e.g. a protection fault), never remapped.
        assert!(!lazy(0x6000, from, sz, Some(urw)));
        // Below lazy_from: the guard page, text, holes below the image.
        assert!(!lazy(0x4fff, from, sz, Some(k)));
        assert!(!lazy(0x4fff, from, sz, None));
        assert!(!lazy(0, from, sz, None));
        // At or above sz, the kernel half.
        assert!(!lazy(sz, from, sz, None));
        assert!(!lazy(0x9fff, from, sz, None));
        assert!(!lazy(KERNBASE, from, u32::MAX, None));
        assert!(!lazy(0xFFFF_F000, Some(u(0)), u32::MAX, None));
        // Eager mode (and a fresh slot): no lazy region, nothing is lazy.
        assert!(!lazy(0x5000, None, sz, None));
        assert!(!lazy(0, None, sz, None));
        assert_eq!(lazy_from_for(0x5000), None, "lazy is off by default");
        // Growth lowers the region's start, never raises it; eager stays eager.
        assert_eq!(lazy_from_after_growth(from, 0x4000), Some(u(0x4000)));
        assert_eq!(lazy_from_after_growth(from, 0x6000), from);
        assert_eq!(lazy_from_after_growth(None, 0x4000), None);
    }

    #[test]
    fn lazyfault_maps_one_zeroed_page_and_nothing_else() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x2000).unwrap();
        clearpteu(&mut d, u(0)).ignore("host test");
        let (from, sz) = (0x2000, 0x0080_2000); // lazily grown by 8 MiB
        let lf = |d: &mut PageDir, va| lazyfault(d, Some(u(from)), sz, u(va));
        assert_eq!(lf(&mut d, 0x2010), Some(Ok(())));
        assert_eq!(pte(&d, 0x2000).unwrap().flags(), PTE_P | PTE_W | PTE_U);
        assert!(read_user(&d, 0x2000, 0x1000).iter().all(|&b| b == 0));
        assert_eq!(
            testmem::free(),
            before - 5,
            "dir, table, 2 pages, 1 lazy page"
        );
        // A second touch of the same page, the guard page, above sz: not lazy faults.
        assert_eq!(lf(&mut d, 0x2FFF), None);
        assert_eq!(lf(&mut d, 0x10), None);
        assert_eq!(lf(&mut d, sz), None);
        // In a new 4 MiB region: a page table too.
        assert_eq!(lf(&mut d, 0x0080_1000), Some(Ok(())));
        assert_eq!(testmem::free(), before - 7);
        assert!(pte(&d, 0x3000).is_none(), "untouched pages stay unmapped");
        // Out of memory: an error, nothing mapped, nothing lost.
        let held = exhaust(0);
        assert_eq!(lf(&mut d, 0x4000), Some(Err(OutOfMemory)));
        assert!(pte(&d, 0x4000).is_none());
        give_back(held);
        // Shrinking frees just what was mapped; fork copies just what was mapped.
        let c = copyuvm(&mut d, sz).unwrap();
        assert!(pte(&c, 0x0080_1000).is_some() && pte(&c, 0x0080_0000).is_none());
        freevm(c);
        deallocuvm(&mut d, sz, from).ignore("host test");
        assert_eq!(testmem::free(), before - 5, "the two lazy pages came back");
        done(d, before);
    }
}
