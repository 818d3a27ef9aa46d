//! Pages from kalloc owned by Rust values: `KPage`, one page freed on drop (exec's scratch
//! space, file data), and `PageVec`, a page that holds further pages (a file's indirect block,
//! xv6 fs.c's `NINDIRECT` addresses). Everything else uses them without `unsafe`.

use crate::kalloc::{kalloc, kalloc_zeroed, kfree};
use crate::memlayout::KVAddr;
use crate::mmu::PGSIZE;

/// Bytes of a page, as a usize.
const PAGE: usize = PGSIZE as usize;

/// One page from kalloc, owned; returned to the free list on drop.
#[derive(Debug)]
pub struct KPage(KVAddr);

impl KPage {
    /// A page with junk in it (kalloc does not zero); `None` if memory ran out.
    #[must_use]
    pub fn new() -> Option<KPage> {
        kalloc().map(KPage)
    }

    /// A page of zeroes; `None` if memory ran out.
    #[must_use]
    pub fn zeroed() -> Option<KPage> {
        kalloc_zeroed().map(KPage)
    }

    /// The page's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the page came from kalloc and is ours until drop; `&self` keeps it alive
        // and no `&mut` to it exists meanwhile (bytes_mut takes `&mut self`).
        unsafe { core::slice::from_raw_parts(self.0.as_ptr::<u8>(), PAGE) }
    }

    /// The page's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_ptr::<u8>(), PAGE) }
    }

    /// Gives up ownership: the page's address, for `from_raw`.
    fn into_raw(self) -> u32 {
        let a = self.0 .0;
        core::mem::forget(self);
        a
    }

    /// Takes ownership back of a page given up by `into_raw`.
    ///
    /// # Safety
    /// `a` must come from `into_raw` and be taken back only once.
    unsafe fn from_raw(a: u32) -> KPage {
        assert!(a != 0, "KPage::from_raw: null");
        KPage(KVAddr(a))
    }
}

impl Drop for KPage {
    fn drop(&mut self) {
        // SAFETY: allocated by kalloc; every borrow of the bytes ended before drop.
        unsafe { kfree(self.0) };
    }
}

/// A page holding up to `PageVec::LEN` owned pages (0: none), which it frees on drop.
#[derive(Debug)]
pub struct PageVec(KPage);

impl PageVec {
    /// How many pages one page of addresses holds.
    pub const LEN: usize = PAGE / 4;

    /// An empty vector; `None` if memory ran out.
    #[must_use]
    pub fn new() -> Option<PageVec> {
        KPage::zeroed().map(PageVec)
    }

    fn slot(&self, i: usize) -> u32 {
        let b = &self.0.bytes()[4 * i..4 * i + 4];
        u32::from_ne_bytes(b.try_into().expect("slot size"))
    }

    fn set_slot(&mut self, i: usize, v: u32) {
        self.0.bytes_mut()[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// Page `i`'s bytes, if there is one.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let a = self.slot(i);
        // SAFETY: a non-zero slot holds a page this vector owns (put there by `set` via
        // into_raw and not yet taken back); it lives as long as `&self`.
        (a != 0).then(|| unsafe { core::slice::from_raw_parts(KVAddr(a).as_ptr::<u8>(), PAGE) })
    }

    /// Page `i`'s bytes, writable, if there is one.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let a = self.slot(i);
        // SAFETY: as in `get`; `&mut self` makes this the only reference to the page.
        (a != 0).then(|| unsafe { core::slice::from_raw_parts_mut(KVAddr(a).as_ptr::<u8>(), PAGE) })
    }

    /// Puts `page` in slot `i`, freeing whatever was there.
    pub fn set(&mut self, i: usize, page: KPage) {
        drop(self.take(i));
        self.set_slot(i, page.into_raw());
    }

    /// Removes the page in slot `i`.
    pub fn take(&mut self, i: usize) -> Option<KPage> {
        let a = self.slot(i);
        if a == 0 {
            return None;
        }
        self.set_slot(i, 0);
        // SAFETY: the slot held a page from into_raw; it is cleared, so taken back once.
        Some(unsafe { KPage::from_raw(a) })
    }
}

impl Drop for PageVec {
    fn drop(&mut self) {
        for i in 0..PageVec::LEN {
            drop(self.take(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::testmem;

    #[test]
    fn pages_come_back_on_drop() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut p = KPage::zeroed().unwrap();
        assert!(p.bytes().iter().all(|&b| b == 0));
        p.bytes_mut()[7] = 9;
        let mut v = PageVec::new().unwrap();
        v.set(3, p);
        assert_eq!(v.get(3).unwrap()[7], 9);
        assert!(v.get(2).is_none());
        v.get_mut(3).unwrap()[8] = 1;
        v.set(PageVec::LEN - 1, KPage::new().unwrap());
        assert_eq!(before - testmem::free(), 3);
        let back = v.take(3).unwrap();
        assert_eq!(&back.bytes()[7..9], &[9, 1]);
        drop(back);
        assert_eq!(before - testmem::free(), 2);
        drop(v);
        assert_eq!(testmem::free(), before);
    }
}
