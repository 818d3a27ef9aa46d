//! Physical memory allocator (xv6 kalloc.c), for user processes, kernel stacks, page-table
//! pages and pipe buffers: whole 4096-byte pages, kept on a LIFO free list whose links live
//! in the free pages themselves.
//!
//! Boot frees memory in two steps: `kinit1(end, P2V(4 MiB))` gives kvmalloc the pages that
//! entrypgdir already maps, `kinit2(P2V(4 MiB), P2V(PHYSTOP))` the rest once the kernel's own
//! page directory maps all of RAM. The lock is only used (`use_lock`) after kinit2.
//!
//! `FreeList` works on plain addresses within bounds given to it, so the host tests run it
//! over a heap buffer; the kernel's instance `KMEM` covers `[end, P2V(PHYSTOP))`.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::spinlock::{Spinlock, SpinlockGuard};

/// Page size, as a usize for address arithmetic.
const PGSIZE: usize = crate::mmu::PGSIZE as usize;

/// A free page; its first word links to the next free page (xv6 `struct run`).
#[repr(C)]
struct Run {
    next: *mut Run,
}

/// The free list: pages in `[lo, hi)` (kernel virtual addresses), most recently freed first.
pub struct FreeList {
    head: *mut Run,
    lo: usize,
    hi: usize,
}

// SAFETY: the list owns the free pages it links (nobody else uses them), so moving it to
// another CPU moves that ownership along; the raw pointers are not shared.
unsafe impl Send for FreeList {}

impl FreeList {
    /// An empty list that accepts no pages until `set_bounds`.
    pub const fn new() -> FreeList {
        FreeList {
            head: ptr::null_mut(),
            lo: 0,
            hi: 0,
        }
    }

    /// Sets the range of pages kfree accepts: from `lo` (the kernel's `end`) to `hi`
    /// (P2V(PHYSTOP), page aligned).
    pub fn set_bounds(&mut self, lo: usize, hi: usize) {
        self.lo = lo;
        self.hi = hi;
    }

    /// Frees every whole page in `[vstart, vend)` (xv6 `freerange`); returns how many.
    ///
    /// # Safety
    /// The pages must be writable memory that nothing else uses from now on.
    pub unsafe fn freerange(&mut self, vstart: usize, vend: usize) -> usize {
        let mut p = vstart.next_multiple_of(PGSIZE);
        let mut n = 0;
        while p.checked_add(PGSIZE).is_some_and(|e| e <= vend) {
            // SAFETY: the caller hands us [vstart, vend); p is a whole page inside it.
            unsafe { self.kfree(p) };
            p += PGSIZE;
            n += 1;
        }
        n
    }

    /// Frees the page at `v`, which kalloc returned (or which boot hands over), filling it
    /// with junk (1s) to catch dangling references. Panics on a misaligned page, one below
    /// `end` or one at or above P2V(PHYSTOP).
    ///
    /// # Safety
    /// `v` must be a page nothing uses any more; it must not be on the list already.
    pub unsafe fn kfree(&mut self, v: usize) {
        if !v.is_multiple_of(PGSIZE) || v < self.lo || v >= self.hi {
            panic!("kfree");
        }
        let r = v as *mut Run;
        // SAFETY: the page is in bounds, aligned and ours (caller's contract): fill it with
        // junk, then store the link in its first word.
        unsafe {
            ptr::write_bytes(r.cast::<u8>(), 1, PGSIZE);
            (*r).next = self.head;
        }
        self.head = r;
    }

    /// Allocates one page (xv6 `kalloc`); its contents are junk, not zeroes. `None` when
    /// memory is exhausted.
    pub fn kalloc(&mut self) -> Option<NonNull<u8>> {
        let r = NonNull::new(self.head)?;
        // SAFETY: every page on the list is a free page holding a valid link (kfree).
        self.head = unsafe { (*r.as_ptr()).next };
        Some(r.cast())
    }

    /// Counts the free pages by walking the list (xv6's usertests `countfree`, in the kernel).
    pub fn countfree(&self) -> usize {
        let mut n = 0;
        let mut r = self.head;
        while !r.is_null() {
            n += 1;
            // SAFETY: as in kalloc: list pages hold valid links.
            r = unsafe { (*r).next };
        }
        n
    }
}

impl Default for FreeList {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's allocator: the free list and xv6's `use_lock` flag.
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
    /// `[vstart, vend)`; returns the pages freed.
    ///
    /// # Safety
    /// As for `FreeList::freerange`; `[lo, hi)` must be the memory the list may ever own.
    pub unsafe fn kinit1(&self, lo: usize, hi: usize, vstart: usize, vend: usize) -> usize {
        let mut l = self.list();
        l.set_bounds(lo, hi);
        // SAFETY: forwarded from the caller.
        unsafe { l.freerange(vstart, vend) }
    }

    /// Second step of boot (xv6 `kinit2`): frees `[vstart, vend)` and turns the lock on.
    ///
    /// # Safety
    /// As for `FreeList::freerange`.
    pub unsafe fn kinit2(&self, vstart: usize, vend: usize) -> usize {
        // SAFETY: forwarded from the caller.
        let n = unsafe { self.list().freerange(vstart, vend) };
        self.use_lock.store(true, Ordering::Relaxed);
        n
    }

    /// Allocates a page (junk-filled).
    pub fn kalloc(&self) -> Option<NonNull<u8>> {
        self.list().kalloc()
    }

    /// Frees a page.
    ///
    /// # Safety
    /// As for `FreeList::kfree`.
    pub unsafe fn kfree(&self, v: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.list().kfree(v) }
    }

    /// The number of free pages, counted by walking the list.
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

/// Allocates a page of physical memory for the kernel; junk-filled. `None` if out of memory.
pub fn kalloc() -> Option<NonNull<u8>> {
    KMEM.kalloc()
}

/// Returns a page to the free list.
///
/// # Safety
/// `v` must be a page from kalloc (or from boot's ranges) that nothing uses any more.
pub unsafe fn kfree(v: NonNull<u8>) {
    // SAFETY: forwarded from the caller.
    unsafe { KMEM.kfree(v.as_ptr() as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Page([u8; PGSIZE]);

    /// A buffer of n pages and its address range.
    fn pages(n: usize) -> (Vec<Page>, usize, usize) {
        let mut v: Vec<Page> = (0..n).map(|_| Page([0; PGSIZE])).collect();
        let lo = v.as_mut_ptr() as usize;
        (v, lo, lo + n * PGSIZE)
    }

    #[test]
    fn lifo_junk_and_count() {
        let (_buf, lo, hi) = pages(4);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours and outlives the list's use.
        let n = unsafe { fl.freerange(lo, hi) };
        assert_eq!(n, 4);
        assert_eq!(fl.countfree(), 4);
        // The most recently freed (highest) page comes back first.
        let a = fl.kalloc().unwrap().as_ptr() as usize;
        assert_eq!(a, lo + 3 * PGSIZE);
        let b = fl.kalloc().unwrap().as_ptr() as usize;
        assert_eq!(b, lo + 2 * PGSIZE);
        // SAFETY: a is a page from this list that we no longer use.
        unsafe { fl.kfree(a) };
        assert_eq!(fl.kalloc().unwrap().as_ptr() as usize, a);
        // Junk: all but the link word of a freed page are 1s, and kalloc does not zero.
        // SAFETY: b is a whole page of the buffer.
        let bytes = unsafe { core::slice::from_raw_parts(b as *const u8, PGSIZE) };
        assert!(bytes[size_of::<usize>()..].iter().all(|&x| x == 1));
        fl.kalloc().unwrap();
        fl.kalloc().unwrap();
        assert!(fl.kalloc().is_none());
        assert_eq!(fl.countfree(), 0);
    }

    #[test]
    fn freerange_skips_partial_pages() {
        let (_buf, lo, hi) = pages(4);
        let mut fl = FreeList::new();
        fl.set_bounds(lo, hi);
        // SAFETY: the buffer is ours.
        let n = unsafe { fl.freerange(lo + 8, hi - 8) };
        assert_eq!(n, 2);
        assert_eq!(fl.kalloc().unwrap().as_ptr() as usize, lo + 2 * PGSIZE);
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
    fn kmem_two_step_init_turns_lock_on() {
        let (_buf, lo, hi) = pages(6);
        let kmem = Kmem::new();
        // SAFETY: the buffer is ours.
        let n = unsafe { kmem.kinit1(lo + 1, hi, lo + 1, lo + 3 * PGSIZE) };
        assert_eq!(n, 2);
        assert!(!kmem.use_lock());
        assert_eq!(kmem.countfree(), 2);
        // SAFETY: the buffer is ours.
        assert_eq!(unsafe { kmem.kinit2(lo + 3 * PGSIZE, hi) }, 3);
        assert!(kmem.use_lock());
        assert_eq!(kmem.countfree(), 5);
        assert_eq!(kmem.kalloc().unwrap().as_ptr() as usize, lo + 5 * PGSIZE);
    }
}
