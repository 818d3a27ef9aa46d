//! Copy-on-write fork (on with the command-line word `cow`; not in xv6's vm.c).
//!
//! cowuvm gives the child the parent's user pages instead of copies: every writable page
//! (PTE_W, or already PTE_COW) becomes read-only with PTE_COW in both, and every page gains
//! a reference (kalloc's counts); read-only pages (text) are simply shared, read-only for
//! good. The first write to a PTE_COW page — a user write faulting, or the kernel's
//! `cowcopyout` — goes through cowfault: the page is copied into a fresh one mapped writable,
//! and the shared one loses a reference; if it has no other reference left, it is just made
//! writable again. freevm and deallocuvm drop references like any other; the last one frees.
//! The references a fork adds are taken in batches (`kalloc::RefBatch`): one hold of the kmem
//! lock per 64 pages, not one per page.

use core::ptr;

use crate::kalloc::{kfree, CowPage, RefBatch, KMEM};
use crate::memlayout::{UVAddr, KERNBASE, P2V, V2P};
use crate::mmu::{Pte, PteFlags, PGSIZE, PTE_COW, PTE_W};
use crate::tlb::TlbFlush;
use crate::vm::{copyout, for_each_present, freevm, page_chunks, setupkvm, BadAddr};
use crate::vm::{OutOfMemory, PageDir};

/// A child's page directory from cowuvm, with the flush the parent's changed PTEs need:
/// the child is only had by flushing (the parent is the running process) or ignoring.
#[must_use = "the parent's pages became read-only: flush its TLB"]
#[derive(Debug)]
pub struct Forked {
    child: PageDir,
    flush: TlbFlush,
}

impl Forked {
    /// Flushes the TLB of the current address space (the parent's) and returns the child.
    pub fn flush(self) -> PageDir {
        self.flush.flush();
        self.child
    }

    /// Returns the child without flushing; `why` says why the parent's directory is not
    /// in use.
    pub fn ignore(self, why: &'static str) -> PageDir {
        self.flush.ignore(why);
        self.child
    }
}

/// The flags a page gets when shared by a fork: writable ones become read-only COW.
fn cow_flags(f: PteFlags) -> PteFlags {
    if f.intersects(PTE_W | PTE_COW) {
        (f - PTE_W) | PTE_COW
    } else {
        f
    }
}

/// copyuvm for a copy-on-write fork: a new directory (setupkvm) mapping the parent's pages
/// themselves, writable ones read-only with PTE_COW in both (see above); each page gains a
/// reference. Costs the child its directory and page tables only. `None` if memory runs out
/// (the child freed again; the parent keeps whatever PTE_COW marks were made, which its next
/// write resolves by making the page writable again).
pub fn cowuvm(pgdir: &mut PageDir, sz: u32) -> Option<Forked> {
    let mut d = setupkvm()?;
    let mut flush = TlbFlush::nothing();
    // The references, a batch per hold of the kmem lock (kalloc.rs); the child's page
    // tables come from kalloc in between, so the lock cannot be held across the walk.
    let mut dups = RefBatch::dups();
    let shared = for_each_present(pgdir, sz, |va, pte| {
        let flags = cow_flags(pte.flags());
        let cpte = d.walk(va, true).ok_or(OutOfMemory)?;
        *cpte = pte.with_flags(flags);
        if *pte != pte.with_flags(flags) {
            *pte = pte.with_flags(flags);
            flush = TlbFlush::all();
        }
        // SAFETY: a batch of dups; the parent keeps its reference meanwhile.
        unsafe { dups.add(P2V(pte.addr())) };
        Ok::<(), OutOfMemory>(())
    });
    // Every page the child maps has its reference before the child runs or is freed.
    dups.apply();
    match shared {
        Ok(()) => Some(Forked { child: d, flush }),
        Err(OutOfMemory) => {
            freevm(d);
            flush.flush();
            None
        }
    }
}

/// Resolves a write to the copy-on-write page at `va`: `None` if the page is not PTE_COW
/// (not this handler's business); else the page is made the writer's own — copied, or, if
/// nobody else refers to it any more, made writable in place — and `Some(Ok(flush))` for its
/// changed PTE; `Some(Err)` when no page is free for the copy (nothing changed).
pub fn cowfault(pgdir: &mut PageDir, va: UVAddr) -> Option<Result<TlbFlush, OutOfMemory>> {
    if !va.is_user() {
        return None;
    }
    let pte = pgdir
        .walk(va, false)
        .filter(|p| p.present() && p.flags().contains(PTE_COW))?;
    let flags = (pte.flags() - PTE_COW) | PTE_W;
    let old = P2V(pte.addr());
    // Shared, and a page for the copy: one hold of the kmem lock for both questions.
    let mem = match KMEM.cow_page(old) {
        CowPage::Sole => {
            *pte = pte.with_flags(flags);
            return Some(Ok(TlbFlush::page(va)));
        }
        CowPage::Copy(mem) => mem,
        CowPage::NoMemory => return Some(Err(OutOfMemory)),
    };
    // SAFETY: both are whole pages: the shared one, mapped at P2V, and the new one (ours).
    unsafe { ptr::copy_nonoverlapping(old.as_ptr::<u8>(), mem.as_ptr(), PGSIZE as usize) };
    *pte = Pte::new(V2P(mem), flags);
    // SAFETY: this address space's reference to the shared page, just unmapped; others
    // remain (it was shared), so this only lowers its count.
    unsafe { kfree(old) };
    Some(Ok(TlbFlush::page(va)))
}

/// `vm::copyout` for an address space that may share pages copy-on-write: each page written
/// is made the writer's own first (`cowfault`), as a user write would make it. Fails as
/// copyout does, and when no page is free for a copy; some leading bytes may have been
/// written then.
pub fn cowcopyout(pgdir: &mut PageDir, va: UVAddr, src: &[u8]) -> Result<(), BadAddr> {
    let len = u32::try_from(src.len()).map_err(|_| BadAddr)?;
    if va.checked_add(len).is_none_or(|end| end.0 > KERNBASE) {
        return Err(BadAddr); // copyout's own check, before any page is copied
    }
    let mut at = va;
    for chunk in page_chunks(va, src) {
        if let Some(broken) = cowfault(pgdir, at) {
            broken.map_err(|_| BadAddr)?.flush();
        }
        copyout(pgdir, at, chunk)?;
        at = UVAddr(at.0.wrapping_add(chunk.len() as u32));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmu::{PTE_P, PTE_U};
    use crate::vm::tests::{done, exhaust, give_back, newdir, parent, pte, read_user, u};
    use crate::vm::{allocuvm, copyuvm, loaduvm, testmem};

    #[test]
    fn cowuvm_shares_pages_read_only_for_the_cost_of_page_tables() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = parent();
        let used = before - testmem::free();
        let f = cowuvm(&mut d, 0x0100_1000).unwrap();
        assert!(f.flush.is_all(), "the parent's PTEs changed");
        let mut c = f.ignore("host test");
        // The child: its directory and two page tables, no page.
        assert_eq!(before - testmem::free(), used + 3);
        let cow = PTE_P | PTE_U | PTE_COW;
        for (va, flags) in [
            (0, PTE_P | PTE_U),        // text: shared read-only, for good
            (0x1000, cow),             // data
            (0x2000, PTE_P | PTE_COW), // the guard page (no PTE_U)
            (0x0100_0000, cow),        // after the hole
        ] {
            let (p, q) = (pte(&d, va).unwrap(), pte(&c, va).unwrap());
            assert_eq!((p, q.flags()), (q, flags), "{va:#x}");
            assert!(KMEM.shared(P2V(p.addr())));
        }
        assert_eq!(read_user(&c, 0xFFE, 4), *b"fork");
        // The child writes (as copyout, or its page fault): it gets its own copy.
        cowcopyout(&mut c, u(0x1000), b"!").unwrap();
        assert_eq!(before - testmem::free(), used + 4);
        assert_eq!(pte(&c, 0x1000).unwrap().flags(), PTE_P | PTE_U | PTE_W);
        assert_eq!(read_user(&c, 0xFFE, 4), *b"fo!k");
        assert_eq!(
            read_user(&d, 0xFFE, 4),
            *b"fork",
            "the parent sees only its own"
        );
        // The parent writes the same page: now the last reference, made writable in place.
        let pa = pte(&d, 0x1000).unwrap().addr();
        assert!(!KMEM.shared(P2V(pa)));
        let r = cowfault(&mut d, u(0x1001)).unwrap().unwrap();
        assert_eq!(r, TlbFlush::page(u(0x1000)));
        r.flush();
        assert_eq!(
            pte(&d, 0x1000).unwrap(),
            Pte::new(pa, PTE_P | PTE_U | PTE_W)
        );
        assert_eq!(before - testmem::free(), used + 4, "no copy");
        // Not copy-on-write: text, a hole, the kernel half.
        assert!(cowfault(&mut d, u(0)).is_none());
        assert!(cowfault(&mut d, u(0x3000)).is_none());
        assert!(cowfault(&mut d, u(KERNBASE)).is_none());
        assert_eq!(
            cowcopyout(&mut c, u(0x10), b"x"),
            Err(BadAddr),
            "text stays read-only"
        );
        // Exiting drops references; the last one frees.
        freevm(c);
        assert_eq!(testmem::free(), before - used);
        assert!(!KMEM.shared(P2V(pte(&d, 0).unwrap().addr())));
        done(d, before);
    }

    #[test]
    fn cow_forks_of_forks_and_running_out_of_memory() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x4000).unwrap();
        loaduvm(&mut d, u(0x10), b"gen0");
        let mut c = cowuvm(&mut d, 0x4000).unwrap().ignore("host test");
        let mut g = cowuvm(&mut c, 0x4000).unwrap().ignore("host test");
        // Three address spaces share the pages; each write copies once.
        cowcopyout(&mut g, u(0x10), b"gen2").unwrap();
        cowcopyout(&mut c, u(0x10), b"gen1").unwrap();
        assert_eq!(read_user(&d, 0x10, 4), *b"gen0");
        assert_eq!(read_user(&c, 0x10, 4), *b"gen1");
        assert_eq!(read_user(&g, 0x10, 4), *b"gen2");
        // No page for a copy: the write fails, nothing changes, nothing is lost.
        let free = testmem::free();
        let held = exhaust(0);
        assert_eq!(cowfault(&mut g, u(0x1000)), Some(Err(OutOfMemory)));
        assert_eq!(cowcopyout(&mut c, u(0x1000), b"x"), Err(BadAddr));
        assert_eq!(pte(&g, 0x1000).unwrap().flags(), PTE_P | PTE_U | PTE_COW);
        // Nor for the child's directory or page table: cowuvm fails, with nothing lost.
        assert!(cowuvm(&mut d, 0x4000).is_none());
        give_back(held);
        let held = exhaust(1);
        assert!(
            cowuvm(&mut d, 0x4000).is_none(),
            "a directory but no page table"
        );
        assert_eq!(testmem::free(), 1);
        give_back(held);
        assert_eq!(testmem::free(), free);
        // An eager copy of a COW page is a private writable page.
        let e = copyuvm(&mut g, 0x4000).unwrap();
        assert_eq!(pte(&e, 0x2000).unwrap().flags(), PTE_P | PTE_U | PTE_W);
        for x in [e, g, c] {
            freevm(x);
        }
        done(d, before);
    }
}
