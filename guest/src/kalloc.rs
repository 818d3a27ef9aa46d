//! Physical memory allocator (xv6 kalloc.c), for user processes, kernel stacks, page-table
//! pages and pipe buffers: whole 4096-byte pages.
//!
//! Free pages come from two places: xv6's LIFO free list of pages freed after use, whose
//! links live in the free pages themselves (kfree fills a page with junk, then links it),
//! and a range of **pristine** pages `[pristine, pristine_end)` that were never handed out.
//! Boot gives the allocator its memory as pristine ranges without touching a byte of it, so
//! boot costs O(1) however much RAM there is, and the host backs a guest page only when the
//! kernel first uses it. kalloc takes a freed page first, then the next pristine one.
//! Pristine pages read zero (the VMM backs guest RAM with anonymous memory, docs/abi.md), so
//! `kalloc_zeroed` skips the memset for them.
//!
//! Boot frees memory in two steps: `kinit1(end, P2V(4 MiB))` gives kvmalloc the pages that
//! entrypgdir already maps, `kinit2(P2V(4 MiB), P2V(PHYSTOP))` the rest once the kernel's own
//! page directory maps all of RAM. The lock is only used (`use_lock`) after kinit2.
//!
//! Reference counts (copy-on-write fork): a page may be mapped by several address spaces.
//! A per-page count of the *extra* references (0: one owner, the normal case) lives in a
//! table that kinit2 takes from the top of its range — pristine pages, so it reads zero and
//! costs nothing until a page is shared. `kdup` adds a reference; `kfree` drops one and
//! frees the page only when it was the last.
//!
//! Many pages at once (a fork sharing a heap, an exit freeing it) go through a `RefBatch`:
//! one hold of the kmem lock per 64 reference changes instead of one per page; the pages a
//! batch frees are junk-filled and chained to each other outside the lock and spliced into
//! the list under it. A copy-on-write break asks whether its page is shared and takes the
//! page for the copy under one hold (`Kmem::cow_page`).
//!
//! `FreeList` works on plain addresses within bounds given to it, so the host tests run it
//! over a heap buffer; the kernel's instance `KMEM` covers `[end, P2V(PHYSTOP))`, and its
//! API (`Kmem`, `kalloc`, `kfree`, `kdup`) takes and gives kernel virtual addresses.

use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::memlayout::KVAddr;
use crate::spinlock::{Spinlock, SpinlockGuard};

/// Page size, as a usize for address arithmetic.
const PGSIZE: usize = xv6_abi::mmu::PGSIZE as usize;

/// A free page; its first word links to the next free page (xv6 `struct run`).
#[repr(C)]
struct Run {
    next: *mut Run,
}

/// Where a page from `FreeList::pop` came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// Freed after use: holds junk.
    Recycled,
    /// Never used since boot: reads zero.
    Pristine,
}

/// The free pages: the list (most recently freed first) and the pristine range, all inside
/// `[lo, hi)` (kernel virtual addresses); and the reference-count table.
pub struct FreeList {
    head: *mut Run,
    /// Pages on the list (so countfree need not walk it).
    listed: usize,
    lo: usize,
    hi: usize,
    pristine: usize,
    pristine_end: usize,
    /// One byte per page of `[lo, lo + 4096 * nrefs)`: extra references.
    refs: *mut u8,
    nrefs: usize,
}

// SAFETY: the list owns the free pages it links and the reference table (nobody else uses
// them), so moving it to another CPU moves that ownership along; the raw pointers are not
// shared.
unsafe impl Send for FreeList {}

impl FreeList {
    /// An empty list that accepts no pages until `set_bounds`.
    pub const fn new() -> FreeList {
        FreeList {
            head: ptr::null_mut(),
            listed: 0,
            lo: 0,
            hi: 0,
            pristine: 0,
            pristine_end: 0,
            refs: ptr::null_mut(),
            nrefs: 0,
        }
    }

    /// Sets the range of pages kfree accepts: from `lo` (the kernel's `end`) to `hi`
    /// (P2V(PHYSTOP), page aligned).
    pub fn set_bounds(&mut self, lo: usize, hi: usize) {
        self.lo = lo;
        self.hi = hi;
    }

    /// Hands every whole page in `[vstart, vend)` to the allocator (xv6 `freerange`)
    /// without touching it: as pristine pages, extending the pristine range when it ends
    /// where this one starts (boot's two ranges are back to back), else one page at a time
    /// through `kfree` (junk-filled). Returns how many pages.
    ///
    /// # Safety
    /// The pages must be writable memory that nothing else uses from now on and, to be
    /// taken as pristine, must read zero.
    pub unsafe fn freerange(&mut self, vstart: usize, vend: usize) -> usize {
        let first = vstart.next_multiple_of(PGSIZE);
        let last = vend & !(PGSIZE - 1);
        if last <= first {
            return 0;
        }
        let n = (last - first) / PGSIZE;
        if self.pristine == self.pristine_end {
            (self.pristine, self.pristine_end) = (first, last);
        } else if self.pristine_end == first {
            self.pristine_end = last;
        } else {
            for p in (first..last).step_by(PGSIZE) {
                // SAFETY: the caller hands us [vstart, vend); p is a whole page inside it.
                unsafe { self.push(p) };
            }
        }
        n
    }

    /// Takes the top `pages` pristine pages as the reference-count table (one byte per page
    /// of `[lo, lo + 4096 * bytes)`, zero: no page is shared). Returns false if the
    /// pristine range is too small.
    pub fn reserve_refs(&mut self, pages: usize) -> bool {
        let bytes = pages * PGSIZE;
        if self.pristine_end - self.pristine < bytes {
            return false;
        }
        self.pristine_end -= bytes;
        self.refs = self.pristine_end as *mut u8;
        self.nrefs = bytes;
        true
    }

    /// Table pages needed for reference counts of every page in `[lo, hi)`.
    pub fn refs_pages(lo: usize, hi: usize) -> usize {
        ((hi - lo) / PGSIZE).div_ceil(PGSIZE)
    }

    /// The reference-count byte of page `v`, if the table covers it.
    fn refcell(&mut self, v: usize) -> Option<&mut u8> {
        let i = (v - self.lo) / PGSIZE;
        // SAFETY: the table is nrefs bytes of pages reserve_refs took for it alone.
        (i < self.nrefs).then(|| unsafe { &mut *self.refs.add(i) })
    }

    fn check(&self, v: usize) {
        if !v.is_multiple_of(PGSIZE) || v < self.lo || v >= self.hi {
            panic!("kfree");
        }
    }

    /// Drops a reference to the page at `v` (xv6 `kfree`, which knows only one): if other
    /// references remain, only the count goes down; otherwise the page is filled with junk
    /// (1s, to catch dangling references) and put on the list. Panics on a misaligned page,
    /// one below `end` or one at or above P2V(PHYSTOP). Returns whether the page was freed.
    ///
    /// # Safety
    /// The caller's reference to `v` must be its last use of it; a page with no other
    /// references must not be on the list already.
    pub unsafe fn kfree(&mut self, v: usize) -> bool {
        self.check(v);
        if let Some(r) = self.refcell(v).filter(|r| **r > 0) {
            *r -= 1;
            return false;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.push(v) };
        true
    }

    /// Junk-fills the page at `v` and links it into the list.
    ///
    /// # Safety
    /// As for kfree, for a page with no other reference.
    unsafe fn push(&mut self, v: usize) {
        self.check(v);
        // SAFETY: the page is in bounds, aligned and ours (caller's contract): fill it with
        // junk, then store the link in its first word.
        unsafe {
            junk(v);
            self.splice(&Chain::of(v));
        }
    }

    /// Adds a reference to the page at `v`, which kalloc handed out (copy-on-write sharing).
    /// Panics if the table does not cover it or the count would overflow.
    pub fn kdup(&mut self, v: usize) {
        self.check(v);
        let r = self.refcell(v).expect("kdup: no reference table");
        *r = r.checked_add(1).expect("kdup: too many references");
    }

    /// `kdup` of every page of `pages`.
    pub fn kdup_all(&mut self, pages: &[usize]) {
        for &v in pages {
            self.kdup(v);
        }
    }

    /// Drops a reference to each page of `pages` (the first half of `kfree`, for a batch):
    /// the pages whose last reference this was are moved to the front, in order, and their
    /// number returned; they are the caller's now, off the list, to junk-fill, chain and `splice`.
    pub fn unref_all(&mut self, pages: &mut [usize]) -> usize {
        let mut last = 0;
        for i in 0..pages.len() {
            let v = pages[i];
            self.check(v);
            match self.refcell(v).filter(|r| **r > 0) {
                Some(r) => *r -= 1,
                None => {
                    pages[last] = v;
                    last += 1;
                }
            }
        }
        last
    }

    /// Puts a chain of junk-filled pages, already linked to each other ([`Chain`]), at the
    /// head of the list: touches only the chain's last page.
    ///
    /// # Safety
    /// Every page of the chain must be one `unref_all` gave back (no reference left, not on
    /// the list), used by nobody from now on.
    pub unsafe fn splice(&mut self, chain: &Chain) {
        if chain.len == 0 {
            return;
        }
        self.check(chain.first);
        self.check(chain.last);
        // SAFETY: the chain's last page is in bounds, aligned and ours (caller's contract).
        unsafe { (*(chain.last as *mut Run)).next = self.head };
        self.head = chain.first as *mut Run;
        self.listed += chain.len;
    }

    /// Whether the page at `v` has other references besides the caller's.
    pub fn shared(&mut self, v: usize) -> bool {
        self.check(v);
        self.refcell(v).is_some_and(|r| *r > 0)
    }

    /// Allocates one page: a freed one (junk) if there is one, else a pristine one (zero).
    /// `None` when memory is exhausted.
    pub fn pop(&mut self) -> Option<(usize, Origin)> {
        if let Some(r) = ptr::NonNull::new(self.head) {
            // SAFETY: every page on the list is a free page holding a valid link (push).
            self.head = unsafe { (*r.as_ptr()).next };
            self.listed -= 1;
            return Some((r.as_ptr() as usize, Origin::Recycled));
        }
        (self.pristine < self.pristine_end).then(|| {
            self.pristine += PGSIZE;
            (self.pristine - PGSIZE, Origin::Pristine)
        })
    }

    /// The free pages: on the list plus pristine (xv6's usertests `countfree`, in the
    /// kernel).
    pub fn countfree(&self) -> usize {
        self.listed + (self.pristine_end - self.pristine) / PGSIZE
    }

    /// Counts the list by walking it (a consistency check for tests).
    pub fn walk_count(&self) -> usize {
        let mut n = 0;
        let mut r = self.head;
        while !r.is_null() {
            n += 1;
            // SAFETY: as in pop: list pages hold valid links.
            r = unsafe { (*r).next };
        }
        n
    }
}

/// Fills the page at `v` with junk (1s), to catch dangling references to a freed page.
///
/// # Safety
/// `v` must be a whole page nobody else uses.
pub unsafe fn junk(v: usize) {
    // SAFETY: the caller's contract.
    unsafe { ptr::write_bytes(v as *mut u8, 1, PGSIZE) };
}

/// Freed pages linked to each other outside the lock, in the order given: each is filled with
/// junk and its first word points to the next (the last one's is set by `splice`), so a page
/// is touched once, while it is filled, and the lock is held only to splice the chain in.
pub struct Chain {
    first: usize,
    last: usize,
    len: usize,
}

impl Chain {
    /// A chain of the single page `v` (not touched here).
    fn of(v: usize) -> Chain {
        Chain {
            first: v,
            last: v,
            len: 1,
        }
    }

    /// Junk-fills every page of `pages` and links each to the next.
    ///
    /// # Safety
    /// Every page must be a whole page nobody else uses, within the list's bounds.
    pub unsafe fn build(pages: &[usize]) -> Chain {
        for (i, &v) in pages.iter().enumerate() {
            // SAFETY: the caller's contract: the page is ours.
            unsafe {
                junk(v);
                if let Some(&next) = pages.get(i + 1) {
                    (*(v as *mut Run)).next = next as *mut Run;
                }
            }
        }
        Chain {
            first: pages.first().copied().unwrap_or(0),
            last: pages.last().copied().unwrap_or(0),
            len: pages.len(),
        }
    }
}

impl Default for FreeList {
    fn default() -> Self {
        Self::new()
    }
}

/// A kernel virtual address as the free list's plain address.
fn addr(v: KVAddr) -> usize {
    v.0 as usize
}

/// A page of the kernel's free list as the kernel virtual address it is.
fn kva(v: usize) -> KVAddr {
    KVAddr(u32::try_from(v).expect("kalloc: a page above 4 GiB"))
}

/// The answer of [`Kmem::cow_page`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CowPage {
    /// Nobody else refers to the page: the writer may take it over.
    Sole,
    /// The page is shared; here is a fresh one (junk or zero) for the copy.
    Copy(KVAddr),
    /// The page is shared and no page is free for the copy.
    NoMemory,
}

/// The kernel's allocator: the free list and xv6's `use_lock` flag; its API speaks kernel
/// virtual addresses (`KVAddr`).
pub struct Kmem {
    use_lock: AtomicBool,
    freelist: Spinlock<FreeList>,
}

impl Kmem {
    /// An empty allocator, lock off.
    pub const fn new() -> Kmem {
        Kmem {
            use_lock: AtomicBool::new(false),
            freelist: Spinlock::new("kmem", FreeList::new()),
        }
    }

    /// The list, locked as xv6 would: with interrupts off once `use_lock` is set (after
    /// kinit2). Before that Rust still needs the lock word for exclusive access; it is never
    /// contended (one CPU, interrupts never enabled yet).
    fn list(&self) -> SpinlockGuard<'_, FreeList> {
        if self.use_lock.load(Ordering::Relaxed) {
            self.freelist.lock()
        } else {
            self.freelist.lock_early()
        }
    }

    /// Whether kinit2 has turned the lock on.
    pub fn use_lock(&self) -> bool {
        self.use_lock.load(Ordering::Relaxed)
    }

    /// First step of boot (xv6 `kinit1`): sets the list's bounds to `[lo, hi)` and frees
    /// `[vstart, vend)` (pristine, untouched); returns the pages freed.
    ///
    /// # Safety
    /// As for `FreeList::freerange`; `[lo, hi)` must be the memory the list may ever own.
    pub unsafe fn kinit1(&self, lo: KVAddr, hi: KVAddr, vstart: KVAddr, vend: KVAddr) -> usize {
        let mut l = self.list();
        l.set_bounds(addr(lo), addr(hi));
        // SAFETY: forwarded from the caller.
        unsafe { l.freerange(addr(vstart), addr(vend)) }
    }

    /// Second step of boot (xv6 `kinit2`): frees `[vstart, vend)` (pristine, untouched),
    /// takes the reference-count table from its top and turns the lock on. Returns the pages
    /// freed (the table's pages not included).
    ///
    /// # Safety
    /// As for `FreeList::freerange`.
    pub unsafe fn kinit2(&self, vstart: KVAddr, vend: KVAddr) -> usize {
        let mut l = self.list();
        // SAFETY: forwarded from the caller.
        let n = unsafe { l.freerange(addr(vstart), addr(vend)) };
        let table = FreeList::refs_pages(l.lo, l.hi);
        assert!(
            l.reserve_refs(table),
            "kinit2: no room for reference counts"
        );
        drop(l);
        self.use_lock.store(true, Ordering::Relaxed);
        n - table
    }

    /// Allocates a page (junk or zero: the caller must not care).
    pub fn kalloc(&self) -> Option<KVAddr> {
        self.list().pop().map(|(v, _)| kva(v))
    }

    /// Allocates a zeroed page: zeroed here if it was freed before, as is if pristine.
    pub fn kalloc_zeroed(&self) -> Option<KVAddr> {
        let (v, origin) = self.list().pop()?;
        if origin == Origin::Recycled {
            // SAFETY: pop handed us this whole page; it is ours.
            unsafe { ptr::write_bytes(v as *mut u8, 0, PGSIZE) };
        }
        Some(kva(v))
    }

    /// Drops a reference to a page; frees it with the last one (`FreeList::kfree`).
    ///
    /// # Safety
    /// As for `FreeList::kfree`.
    pub unsafe fn kfree(&self, v: KVAddr) -> bool {
        // SAFETY: forwarded from the caller.
        unsafe { self.list().kfree(addr(v)) }
    }

    /// Adds a reference to a page (`FreeList::kdup`).
    pub fn kdup(&self, v: KVAddr) {
        self.list().kdup(addr(v));
    }

    /// `kdup` of every page of `pages` (kernel virtual addresses), under one hold of the
    /// lock.
    fn kdup_all(&self, pages: &[usize]) {
        self.list().kdup_all(pages);
    }

    /// `kfree` of every page of `pages` (kernel virtual addresses, whose order it changes),
    /// taking the lock twice in all: once to drop the references, once to splice in the
    /// pages that had their last; those are junk-filled and chained in between, without the
    /// lock ([`Chain`]), so another CPU's kalloc does not wait for the memsets.
    ///
    /// # Safety
    /// As for `kfree`, for each page.
    unsafe fn kfree_all(&self, pages: &mut [usize]) {
        let last = self.list().unref_all(pages);
        if last == 0 {
            return;
        }
        // SAFETY: unref_all gave those pages back: no reference is left but ours.
        let chain = unsafe { Chain::build(&pages[..last]) };
        // SAFETY: as above; the chain is those pages.
        unsafe { self.list().splice(&chain) };
    }

    /// What a copy-on-write break of the page at `v` needs, asked under one hold of the
    /// lock (see [`CowPage`]). The caller drops its reference to `v` (kfree) only after
    /// copying it: until then no other sharer can free the page or take it over.
    pub fn cow_page(&self, v: KVAddr) -> CowPage {
        let mut l = self.list();
        if !l.shared(addr(v)) {
            return CowPage::Sole;
        }
        l.pop()
            .map_or(CowPage::NoMemory, |(p, _)| CowPage::Copy(kva(p)))
    }

    /// Whether a page has references besides the caller's.
    pub fn shared(&self, v: KVAddr) -> bool {
        self.list().shared(addr(v))
    }

    /// The number of free pages: the list plus the pristine range.
    pub fn countfree(&self) -> usize {
        self.list().countfree()
    }
}

impl Default for Kmem {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's physical page allocator.
pub static KMEM: Kmem = Kmem::new();

/// Allocates a page of physical memory for the kernel (junk or zeroes: use kalloc_zeroed
/// for a zeroed one). `None` if out of memory.
pub fn kalloc() -> Option<KVAddr> {
    KMEM.kalloc()
}

/// Allocates a zeroed page (page tables, user memory); the memset is skipped for pristine
/// pages, which read zero already.
pub fn kalloc_zeroed() -> Option<KVAddr> {
    KMEM.kalloc_zeroed()
}

/// Drops a reference to the page at `v`; returns it to the free list if it was the last.
///
/// # Safety
/// `v` must be a page from kalloc (or from boot's ranges) that the caller no longer uses.
pub unsafe fn kfree(v: KVAddr) {
    // SAFETY: forwarded from the caller.
    unsafe { KMEM.kfree(v) };
}

/// Adds a reference to the page at `v` (copy-on-write fork shares it).
pub fn kdup(v: KVAddr) {
    KMEM.kdup(v);
}

/// Pages one hold of the kmem lock covers in a [`RefBatch`].
pub const BATCH: usize = 64;

/// What a [`RefBatch`] does to its pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RefOp {
    /// `kdup` each (a copy-on-write fork sharing an address space's pages).
    Dup,
    /// `kfree` each (an address space dropping its pages).
    Free,
}

/// Reference changes to many pages, collected and applied [`BATCH`] at a time: one hold of
/// the kmem lock per batch (two for frees) instead of one per page. A fork of a 64 MiB heap
/// takes 16384 references; each lock pair (pushcli, xchg, the release, popcli) costs ~200 ns
/// of emulated time in the lab. The changes are applied when the batch fills, at `apply`,
/// and at the latest when it is dropped.
///
/// Delaying them is safe where it is used: the pages are the calling address space's own
/// (it holds a reference to each for the whole time), so no other CPU can free one or see
/// its last reference in between; a fork's delayed `kdup`s are applied before the child
/// can run (or before it is freed on failure: `apply` first).
pub struct RefBatch {
    op: RefOp,
    /// Kernel virtual addresses (as the free list's plain addresses).
    pages: [usize; BATCH],
    n: usize,
}

impl RefBatch {
    /// An empty batch of `Dup`s.
    pub fn dups() -> RefBatch {
        RefBatch::new(RefOp::Dup)
    }

    /// An empty batch of `Free`s.
    pub fn frees() -> RefBatch {
        RefBatch::new(RefOp::Free)
    }

    fn new(op: RefOp) -> RefBatch {
        RefBatch {
            op,
            pages: [0; BATCH],
            n: 0,
        }
    }

    /// Adds the page at `v` (applied with the batch).
    ///
    /// # Safety
    /// For a batch of frees, as for `kfree`: the caller's reference to `v` is gone (unmapped)
    /// and nothing uses the page through it any more.
    pub unsafe fn add(&mut self, v: KVAddr) {
        if self.n == BATCH {
            self.apply();
        }
        self.pages[self.n] = addr(v);
        self.n += 1;
    }

    /// Applies the changes collected so far.
    pub fn apply(&mut self) {
        let pages = &mut self.pages[..self.n];
        self.n = 0;
        if pages.is_empty() {
            return;
        }
        match self.op {
            RefOp::Dup => KMEM.kdup_all(pages),
            // SAFETY: `add`'s contract for each page of a batch of frees.
            RefOp::Free => unsafe { KMEM.kfree_all(pages) },
        }
    }
}

impl Drop for RefBatch {
    fn drop(&mut self) {
        self.apply();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Page([u8; PGSIZE]);

    /// A buffer of n zeroed pages and its address range.
    fn pages(n: usize) -> (Vec<Page>, usize, usize) {
        let mut v: Vec<Page> = (0..n).map(|_| Page([0; PGSIZE])).collect();
        let lo = v.as_mut_ptr() as usize;
        (v, lo, lo + n * PGSIZE)
    }

    fn bytes(v: usize) -> &'static [u8] {
        // SAFETY: v is a whole page of a test buffer that outlives the check.
        unsafe { core::slice::from_raw_parts(v as *const u8, PGSIZE) }
    }

    #[test]
    fn pristine_pages_untouched_then_lifo_with_junk() {
        let (_buf, lo, hi) = pages(4);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours and outlives the list's use.
        let n = unsafe { fl.freerange(lo, hi) };
        assert_eq!(n, 4);
        assert_eq!(fl.countfree(), 4);
        assert_eq!(fl.walk_count(), 0, "nothing linked: no page was written");
        // Pristine pages come in address order, zero.
        let (a, oa) = fl.pop().unwrap();
        let (b, ob) = fl.pop().unwrap();
        assert_eq!(
            (a, oa, b, ob),
            (lo, Origin::Pristine, lo + PGSIZE, Origin::Pristine)
        );
        assert!(bytes(a).iter().all(|&x| x == 0));
        assert_eq!(fl.countfree(), 2);
        // A freed page goes on the list, junk-filled, and comes back first.
        // SAFETY: a is a page from this list that we no longer use.
        assert!(unsafe { fl.kfree(a) });
        assert_eq!((fl.countfree(), fl.walk_count()), (3, 1));
        assert!(bytes(a)[size_of::<usize>()..].iter().all(|&x| x == 1));
        assert_eq!(fl.pop(), Some((a, Origin::Recycled)));
        assert_eq!(fl.pop(), Some((lo + 2 * PGSIZE, Origin::Pristine)));
        fl.pop().unwrap();
        assert!(fl.pop().is_none());
        assert_eq!(fl.countfree(), 0);
    }

    #[test]
    fn freerange_skips_partial_pages_and_joins_ranges() {
        let (_buf, lo, hi) = pages(6);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours.
        unsafe {
            assert_eq!(fl.freerange(lo + 8, lo + 3 * PGSIZE - 8), 1);
            assert_eq!(fl.freerange(lo + 2 * PGSIZE, lo + 4 * PGSIZE), 2, "joins");
            assert_eq!(fl.freerange(lo + 5 * PGSIZE, hi), 1, "a gap: listed");
        }
        assert_eq!((fl.countfree(), fl.walk_count()), (4, 1));
        assert_eq!(fl.pop(), Some((lo + 5 * PGSIZE, Origin::Recycled)));
        assert_eq!(fl.pop(), Some((lo + PGSIZE, Origin::Pristine)));
    }

    fn kfree_at(offset: isize) {
        let (_buf, lo, hi) = pages(2);
        let mut fl = FreeList::new();
        fl.set_bounds(lo + PGSIZE, hi);
        // SAFETY: the call panics before touching memory (that is the test).
        unsafe { fl.kfree((lo as isize + offset) as usize) };
    }

    #[test]
    #[should_panic(expected = "kfree")]
    fn kfree_misaligned_panics() {
        kfree_at(PGSIZE as isize + 16);
    }

    #[test]
    #[should_panic(expected = "kfree")]
    fn kfree_below_end_panics() {
        kfree_at(0);
    }

    #[test]
    #[should_panic(expected = "kfree")]
    fn kfree_at_phystop_panics() {
        kfree_at(2 * PGSIZE as isize);
    }

    #[test]
    fn shared_pages_are_freed_with_the_last_reference() {
        let (_buf, lo, hi) = pages(8);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours.
        unsafe { fl.freerange(lo, hi) };
        assert!(fl.reserve_refs(1));
        assert_eq!(fl.countfree(), 7);
        assert!(!fl.reserve_refs(8), "more than is pristine");
        let (p, _) = fl.pop().unwrap();
        fl.kdup(p);
        fl.kdup(p);
        assert!(fl.shared(p));
        // SAFETY: p came from pop; each kfree drops one of its three references.
        unsafe {
            assert!(!fl.kfree(p));
            assert!(!fl.kfree(p));
            assert!(!fl.shared(p));
            assert_eq!(fl.countfree(), 6);
            assert!(fl.kfree(p));
        }
        assert_eq!(fl.countfree(), 7);
    }

    #[test]
    fn batches_drop_references_and_link_the_last_ones() {
        let (_buf, lo, hi) = pages(8);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours.
        unsafe { fl.freerange(lo, hi) };
        assert!(fl.reserve_refs(1));
        let (a, _) = fl.pop().unwrap();
        let (b, _) = fl.pop().unwrap();
        let (c, _) = fl.pop().unwrap();
        fl.kdup_all(&[b, c, c]);
        assert_eq!(fl.countfree(), 4);
        // One reference each goes: a had its last, b and c had more.
        let mut batch = [a, b, c];
        assert_eq!(fl.unref_all(&mut batch), 1);
        assert_eq!(batch[0], a);
        assert!(!fl.shared(b) && fl.shared(c));
        // SAFETY: a came back from unref_all and nothing uses it.
        unsafe {
            junk(a);
            fl.splice(&Chain::of(a));
        }
        assert_eq!((fl.countfree(), fl.walk_count()), (5, 1));
        assert!(bytes(a)[size_of::<usize>()..].iter().all(|&x| x == 1));
        let mut batch = [c, b, c];
        assert_eq!(fl.unref_all(&mut batch), 2, "b, then c's last");
        assert_eq!(&batch[..2], &[b, c]);
        // SAFETY: as above: a chain built outside the lock, spliced in.
        unsafe {
            let chain = Chain::build(&batch[..2]);
            fl.splice(&chain);
        }
        assert_eq!((fl.countfree(), fl.walk_count()), (7, 3));
        assert!(bytes(c)[size_of::<usize>()..].iter().all(|&x| x == 1));
        assert_eq!(fl.pop(), Some((b, Origin::Recycled)));
        assert_eq!(fl.pop(), Some((c, Origin::Recycled)));
        assert_eq!(fl.pop(), Some((a, Origin::Recycled)));
    }

    /// `n` zeroed pages below 4 GiB (mmap's MAP_32BIT), where kernel virtual addresses fit;
    /// never unmapped (a few pages per test run).
    fn low_pages(n: usize) -> (KVAddr, KVAddr) {
        extern "C" {
            fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64)
                -> *mut u8;
        }
        const PROT_READ_WRITE: i32 = 0x3;
        const MAP_PRIVATE_ANONYMOUS_32BIT: i32 = 0x02 | 0x20 | 0x40;
        // SAFETY: asks for fresh anonymous memory; nothing else refers to it.
        let p = unsafe {
            mmap(
                ptr::null_mut(),
                n * PGSIZE,
                PROT_READ_WRITE,
                MAP_PRIVATE_ANONYMOUS_32BIT,
                -1,
                0,
            )
        } as usize;
        assert!(p != usize::MAX && p + n * PGSIZE <= 1 << 32, "mmap: {p:#x}");
        (kva(p), kva(p + n * PGSIZE))
    }

    #[test]
    fn kmem_two_step_init_turns_lock_on() {
        let (lo, hi) = low_pages(6);
        let at = |off: usize| KVAddr(lo.0 + off as u32);
        let kmem = Kmem::new();
        // SAFETY: the pages are ours.
        let n = unsafe { kmem.kinit1(at(1), hi, at(1), at(3 * PGSIZE)) };
        assert_eq!(n, 2);
        assert!(!kmem.use_lock());
        assert_eq!(kmem.countfree(), 2);
        // SAFETY: the pages are ours. 3 pages, one of them becomes the reference table.
        assert_eq!(unsafe { kmem.kinit2(at(3 * PGSIZE), hi) }, 2);
        assert!(kmem.use_lock());
        assert_eq!(kmem.countfree(), 4);
        let p = kmem.kalloc().unwrap();
        assert!(
            at(0) < p && p < hi,
            "a page of the range, as a KVAddr: {p:?}"
        );
    }
}
