//! Page directories (xv6 vm.c): the kernel half every address space shares, and the user
//! half each process owns.
//!
//! Kernel half, built once: kvmalloc makes the kernel's page directory with exactly the kmap
//! rows plus the boot-module row it is given (`bootmods::kmap_row`, read-only: the PVH
//! modules the VMM put in `[PHYSTOP, end of RAM)`, see docs/abi.md), and switchkvm loads it.
//! Its page-table pages are the only ones that map the kernel: setupkvm gives a process a
//! fresh page directory whose kernel PDEs are copies of the kernel directory's, so every
//! address space shares those tables, and freevm never frees them. Nothing is ever mapped
//! in the kernel half after kvmalloc, so the copies never go stale.
//!
//! User half, below KERNBASE: inituvm, loaduvm, allocuvm, deallocuvm, clearpteu (and
//! clearptew), copyuvm, uva2ka and copyout, with xv6's semantics. Demand paging for a lazy
//! sbrk is lazy.rs, copy-on-write fork cow.rs; both build on this file. A process's memory
//! is `[0, sz)`; unlike xv6, pages below sz may be unmapped (exec maps only the pages its
//! segments cover): deallocuvm, copyuvm and freevm skip holes, and uva2ka/copyout refuse
//! them. Nothing is ever mapped at or above `PGROUNDUP(sz)`. As in
//! xv6, page-table pages stay with their directory until freevm.
//!
//! Types: user addresses are `UVAddr`, kernel ones `KVAddr`, physical ones `PhysAddr`; PTE
//! flags are `PteFlags`. `PageDir::walk` (xv6's walkpgdir) hands out `&mut Pte` for user
//! addresses only — the kernel tables are shared and never change. Every function that
//! takes a mapping away or lowers its rights returns a `TlbFlush` token (tlb.rs) the caller
//! must flush or ignore with a reason.
//!
//! Everything here but CR3 handling is plain memory manipulation through P2V, so the host
//! unit tests run it over a buffer mapped at the P2V address of some fake physical pages
//! (`testmem`).

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::kalloc::{kalloc, kalloc_zeroed, kfree, RefBatch};
use crate::kmap::{kmap, Kmap};
use crate::memlayout::{phystop, KVAddr, Linear, PhysAddr, UVAddr, KERNBASE, P2V, V2P};
use crate::mmu::{
    Pte, PteFlags, NPDENTRIES, NPTENTRIES, PDX, PGADDR, PGROUNDUP, PGSIZE, PTE_COW, PTE_P, PTE_PS,
    PTE_U, PTE_W, PTX,
};
use crate::tlb::TlbFlush;

/// A page directory, by the physical address of its page. It owns its user-half page-table
/// pages and (one reference to) the user pages they map; its kernel half points at the
/// kernel's shared tables.
#[derive(Debug)]
pub struct PageDir {
    pa: PhysAddr,
}

/// Out of physical memory while building page tables (or, for allocuvm, a size at or above
/// KERNBASE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// A user address the process may not use: the system call fails with −1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAddr;

/// The PDE of the first kernel-half entry.
const KPDX: usize = (KERNBASE >> 22) as usize;

/// The page at physical `pa` as an array of entries, through the kernel's P2V mapping.
fn entries(pa: PhysAddr) -> *mut Pte {
    P2V(pa).as_ptr()
}

/// A fresh zeroed page (page directories, page tables and new user memory start empty):
/// pristine pages come as they are, recycled ones are zeroed (kalloc_zeroed).
pub(crate) fn zalloc() -> Option<PhysAddr> {
    kalloc_zeroed().map(V2P)
}

/// Drops this address space's reference to the page at `pa` (kfree frees it with the last).
///
/// # Safety
/// The page came from kalloc and the caller's reference to it is gone (unmapped).
pub(crate) unsafe fn kfree_pa(pa: PhysAddr) {
    // SAFETY: forwarded from the caller.
    unsafe { kfree(P2V(pa)) };
}

/// The PTE slot for linear address `va` in the directory at `dir`, creating the page table
/// (zeroed; its PDE is P|W|U, the PTEs decide) when missing if `alloc`; `None` for a missing
/// one otherwise, or when kalloc fails.
///
/// # Safety
/// `dir` must be a valid page directory whose page tables are all mapped at P2V, and the
/// caller must not create a second live reference to the slot.
unsafe fn walk_raw(dir: PhysAddr, va: u32, alloc: bool) -> Option<*mut Pte> {
    // SAFETY: PDX < 1024 indexes the directory page, which is valid (caller).
    let pde = unsafe { entries(dir).add(PDX(UVAddr(va))) };
    // SAFETY: pde points into the directory page.
    let d = unsafe { pde.read() };
    let pgtab = if d.present() {
        assert!(
            !d.flags().contains(PTE_PS),
            "walkpgdir: 4 MiB page at {va:#010x}"
        );
        d.addr()
    } else {
        if !alloc {
            return None;
        }
        let pa = zalloc()?;
        // SAFETY: pde points into the directory page; the new table is zeroed.
        unsafe { pde.write(Pte::new(pa, PTE_P | PTE_W | PTE_U)) };
        pa
    };
    // SAFETY: PTX < 1024 indexes the page-table page.
    Some(unsafe { entries(pgtab).add(PTX(UVAddr(va))) })
}

impl PageDir {
    /// The physical address to load into CR3.
    #[must_use]
    pub fn pa(&self) -> PhysAddr {
        self.pa
    }

    /// The PTE for user address `va` (xv6 `walkpgdir`). If `alloc`, creates the page table
    /// when missing; otherwise `None` for a missing one. `None` too when kalloc fails.
    /// Panics for a kernel address: the kernel half is shared and never changes.
    #[doc(alias = "walkpgdir")]
    pub fn walk(&mut self, va: UVAddr, alloc: bool) -> Option<&mut Pte> {
        assert!(va.is_user(), "walkpgdir: kernel address {:#010x}", va.0);
        // SAFETY: a PageDir is a valid directory (setupkvm) whose tables are mapped at P2V;
        // its user-half tables belong to it alone, and `&mut self` makes this the only
        // reference into them for the returned lifetime.
        unsafe { walk_raw(self.pa, va.0, alloc).map(|p| &mut *p) }
    }

    /// The PDE at index `i`.
    fn pde(&self, i: usize) -> Pte {
        assert!(i < NPDENTRIES);
        // SAFETY: i < 1024 indexes the valid directory page.
        unsafe { entries(self.pa).add(i).read() }
    }
}

/// The PTE for `va` (either half) in `pgdir`, if its page table exists (the entry may be
/// non-present): a reader's walk — e.g. the page-fault handler telling a guard page
/// (present, no PTE_U) from text (no PTE_W) from a hole (not present).
#[must_use]
pub fn getpte(pgdir: &PageDir, va: impl Linear) -> Option<Pte> {
    let d = pgdir.pde(PDX(va));
    if !d.present() || d.flags().contains(PTE_PS) {
        return None;
    }
    // SAFETY: PTX < 1024 indexes the page-table page the PDE points to.
    Some(unsafe { entries(d.addr()).add(PTX(va)).read() })
}

/// Whether `pgdir` has a page table for the 4 MiB region holding `va`.
#[cfg(test)]
fn has_pgtab(pgdir: &PageDir, va: u32) -> bool {
    pgdir.pde(PDX(UVAddr(va))).present()
}

/// The first address of the 4 MiB region after the one holding `va` (`None` past 4 GiB):
/// where a walk resumes when a whole page table is missing.
fn next_pde(va: u32) -> Option<u32> {
    let d = PDX(UVAddr(va)) + 1;
    (d < NPDENTRIES).then(|| PGADDR(d, 0, 0))
}

/// Creates PTEs for user addresses starting at `va` that refer to physical addresses
/// starting at `pa`, for `size` bytes (> 0, below KERNBASE); `perm` gives the permissions
/// besides PTE_P. Panics if a page is already mapped ("remap"). Only not-present entries
/// become present, so no TLB flush is needed.
pub fn mappages(
    pgdir: &mut PageDir,
    va: UVAddr,
    size: u32,
    pa: PhysAddr,
    perm: PteFlags,
) -> Result<(), OutOfMemory> {
    assert!(size > 0, "mappages: size 0");
    let last = UVAddr(va.0 + (size - 1)).page();
    let (mut a, mut pa) = (va.page(), pa);
    loop {
        let pte = pgdir.walk(a, true).ok_or(OutOfMemory)?;
        if pte.present() {
            panic!("remap {:#010x}", a.0);
        }
        *pte = Pte::new(pa, perm | PTE_P);
        if a == last {
            return Ok(());
        }
        a = UVAddr(a.0 + PGSIZE);
        pa = PhysAddr(pa.0 + PGSIZE);
    }
}

/// Installs one kmap row in the kernel directory at `dir` (the kernel half's mappages;
/// the last page may end at 4 GiB): one walk per page table, then its run of PTEs, written
/// in a tight loop — at 2016 MiB of RAM this is half a million PTEs, the one part of boot
/// that grows with RAM. kmap's rows never overlap (kmap.rs), so only the ends of each run
/// are checked for a remap.
///
/// # Safety
/// `dir` is the kernel directory being built by kvmalloc, not yet in use.
unsafe fn kmappages(dir: PhysAddr, k: &Kmap) -> Result<(), OutOfMemory> {
    let last = k.last_virt().0 & !(PGSIZE - 1);
    let (mut a, mut pa) = (k.virt.0, k.phys_start.0);
    loop {
        // SAFETY: forwarded from the caller; the slots are used right here only.
        let first = unsafe { walk_raw(dir, a, true) }.ok_or(OutOfMemory)?;
        let n = (NPTENTRIES - PTX(UVAddr(a))).min(((last - a) / PGSIZE) as usize + 1);
        let pte = Pte::new(PhysAddr(pa), k.perm | PTE_P).0;
        // SAFETY: slots PTX(a) .. PTX(a) + n <= 1024 of one page table of dir.
        unsafe {
            assert!(
                !first.read().present() && !first.add(n - 1).read().present(),
                "remap {a:#010x}"
            );
            for i in 0..n {
                first.add(i).write(Pte(pte + i as u32 * PGSIZE));
            }
        }
        let done = n as u32 - 1;
        if a + done * PGSIZE == last {
            return Ok(()); // before stepping on: the last page may end at 4 GiB
        }
        a += n as u32 * PGSIZE;
        pa += n as u32 * PGSIZE;
    }
}

/// The kmap rows of this kernel (from the symbol `data` and PHYSTOP); panics as xv6 does if
/// P2V(PHYSTOP) would run into DEVSPACE.
#[must_use]
pub fn kernel_kmap() -> [Kmap; 4] {
    match kmap(kernel_data(), phystop()) {
        Ok(rows) => rows,
        Err(e) => panic!("{}", e),
    }
}

/// The symbol `data` (kernel.ld).
#[cfg(all(target_arch = "x86", not(test)))]
fn kernel_data() -> KVAddr {
    crate::linker::data()
}

/// Host tests have no kernel image: a typical `data` of this kernel.
#[cfg(not(all(target_arch = "x86", not(test))))]
fn kernel_data() -> KVAddr {
    KVAddr(0x8011_2000)
}

/// Physical address of the kernel's page directory (0 until kvmalloc).
static KPGDIR: AtomicU32 = AtomicU32::new(0);

/// Whether kvmalloc has run: the kernel page directory exists.
#[must_use]
pub fn kvm_ready() -> bool {
    KPGDIR.load(Ordering::Relaxed) != 0
}

/// Builds the kernel's page directory, the one set of page tables that maps the kernel —
/// the kmap rows, then the boot-module row `mods` if there are modules — and (in the
/// kernel) switches to it (xv6 `kvmalloc`). Panics if memory runs out or kmap cannot be
/// built (P2V(PHYSTOP) > DEVSPACE).
pub fn kvmalloc(mods: Option<Kmap>) {
    assert!(!kvm_ready(), "kvmalloc twice");
    let dir = zalloc().expect("kvmalloc: out of memory");
    for k in kernel_kmap().iter().chain(mods.iter()) {
        // SAFETY: dir is the fresh kernel directory; nothing uses it yet.
        unsafe { kmappages(dir, k) }.expect("kvmalloc: out of memory");
    }
    KPGDIR.store(dir.0, Ordering::Relaxed);
    #[cfg(all(target_arch = "x86", not(test)))]
    switchkvm();
}

/// A page directory for a new address space (xv6 `setupkvm`): one fresh page whose kernel
/// half is a copy of the kernel directory's PDEs (kvmalloc's shared tables) and whose user
/// half is empty. `None` if memory runs out.
pub fn setupkvm() -> Option<PageDir> {
    let k = KPGDIR.load(Ordering::Relaxed);
    assert!(k != 0, "setupkvm before kvmalloc");
    let pa = zalloc()?;
    // SAFETY: both are whole directory pages mapped at P2V: the kernel's (only read) and
    // the fresh one (ours); the kernel half is entries KPDX..1024.
    unsafe {
        ptr::copy_nonoverlapping(
            entries(PhysAddr(k)).add(KPDX),
            entries(pa).add(KPDX),
            NPDENTRIES - KPDX,
        );
    }
    Some(PageDir { pa })
}

/// Frees a page directory: its references to the user pages it maps (as xv6's
/// `deallocuvm(pgdir, KERNBASE, 0)`), its user-half page tables, then the directory itself.
/// The kernel half's tables are shared and stay.
pub fn freevm(pgdir: PageDir) {
    // Freed in batches: one hold of the kmem lock per 64 pages (kalloc::RefBatch).
    let mut frees = RefBatch::frees();
    for i in 0..KPDX {
        let pde = pgdir.pde(i);
        if !pde.present() {
            continue;
        }
        let table = entries(pde.addr());
        for j in 0..NPTENTRIES {
            // SAFETY: j < 1024, inside a user page table of this directory.
            let pte = unsafe { table.add(j).read() };
            if pte.present() {
                // SAFETY: this address space's reference to a user page, going away (the
                // table is read before it is freed: it joins the batch after its pages).
                unsafe { frees.add(P2V(pte.addr())) };
            }
        }
        // SAFETY: the user page table belongs to this directory alone, which is going away;
        // nothing reads it after this.
        unsafe { frees.add(P2V(pde.addr())) };
    }
    // SAFETY: as above, for the directory page (read no more: pde() was the last use).
    unsafe { frees.add(P2V(pgdir.pa)) };
}

/// Switches the hardware page table register to the kernel-only page directory, for when
/// no process is running (xv6 `switchkvm`).
#[cfg(all(target_arch = "x86", not(test)))]
pub fn switchkvm() {
    let pa = KPGDIR.load(Ordering::Relaxed);
    assert!(pa != 0, "switchkvm before kvmalloc");
    // SAFETY: KPGDIR maps the whole kernel (text, data, stack, all RAM below PHYSTOP) at the
    // same addresses as entrypgdir's high half, which is all the kernel uses.
    unsafe { crate::x86::lcr3(pa) };
}

// ---------------------------------------------------------------------------------------
// The user half.

/// Loads `init` (at most a page: xv6's initcode) at address 0 of `pgdir`, in a zeroed
/// user-writable page (xv6 `inituvm`).
pub fn inituvm(pgdir: &mut PageDir, init: &[u8]) -> Result<(), OutOfMemory> {
    assert!(init.len() <= PGSIZE as usize, "inituvm: more than a page");
    let mem = zalloc().ok_or(OutOfMemory)?;
    if mappages(pgdir, UVAddr(0), PGSIZE, mem, PTE_W | PTE_U).is_err() {
        // SAFETY: the page was never mapped.
        unsafe { kfree_pa(mem) };
        return Err(OutOfMemory);
    }
    // SAFETY: the page is a whole page of RAM, mapped at P2V; init fits in it.
    unsafe { ptr::copy(init.as_ptr(), P2V(mem).as_ptr(), init.len()) };
    Ok(())
}

/// Copies `src` into `pgdir`'s memory at user address `va`, which need not be page
/// aligned (xv6 `loaduvm`, with the program's bytes already in memory: exec hands it a
/// segment's file bytes straight from the archive, whatever their file offset). The pages
/// must already be mapped (allocuvm); panics if one is not.
pub fn loaduvm(pgdir: &mut PageDir, va: UVAddr, src: &[u8]) {
    loaduvm_from(pgdir, va, src.len(), |off, dst| {
        dst.copy_from_slice(&src[off..off + dst.len()]);
    });
}

/// loaduvm with the bytes coming from `read(offset, dst)`, which fills `dst` with the
/// source's bytes `[offset, offset + dst.len())` (xv6's loaduvm reads an inode this way):
/// `n` bytes in all, a page-sized piece at a time, straight into the user pages.
pub fn loaduvm_from(
    pgdir: &mut PageDir,
    va: UVAddr,
    n: usize,
    mut read: impl FnMut(usize, &mut [u8]),
) {
    let mut done = 0;
    while done < n {
        let at = UVAddr(va.0.wrapping_add(done as u32));
        let len = ((PGSIZE - at.offset()) as usize).min(n - done);
        let pte = getpte(pgdir, at)
            .filter(|p| p.present())
            .unwrap_or_else(|| panic!("loaduvm: address {:#010x} should exist", at.0));
        let dst = KVAddr(P2V(pte.addr()).0 + at.offset());
        // SAFETY: dst..dst + len stays inside one mapped user page (len ends at its page
        // boundary at most), reached through P2V; no other reference to it exists while exec
        // builds the image.
        let page = unsafe { core::slice::from_raw_parts_mut(dst.as_ptr::<u8>(), len) };
        read(done, page);
        done += len;
    }
}

/// Splits `src`, to be placed at `va`, at page boundaries.
pub(crate) fn page_chunks(va: UVAddr, src: &[u8]) -> impl Iterator<Item = &[u8]> {
    let first = ((PGSIZE - va.offset()) as usize).min(src.len());
    let (head, tail) = src.split_at(first);
    core::iter::once(head)
        .filter(|h| !h.is_empty())
        .chain(tail.chunks(PGSIZE as usize))
}

/// Grows a process from `oldsz` to `newsz` bytes (xv6 `allocuvm`): maps zeroed
/// user-writable pages (PTE_W|PTE_U) from `PGROUNDUP(oldsz)` up to `newsz`; returns the new
/// size (`oldsz` if `newsz < oldsz`). Fails if `newsz` is at or above KERNBASE or memory
/// runs out — then every page this call mapped is unmapped and freed again (deallocuvm).
/// Only adds mappings: no TLB flush.
pub fn allocuvm(pgdir: &mut PageDir, oldsz: u32, newsz: u32) -> Result<u32, OutOfMemory> {
    if newsz >= KERNBASE {
        return Err(OutOfMemory);
    }
    if newsz < oldsz {
        return Ok(oldsz);
    }
    let mut a = PGROUNDUP(oldsz).expect("oldsz <= newsz < KERNBASE");
    while a < newsz {
        let mapped = zalloc().ok_or(OutOfMemory).and_then(|mem| {
            mappages(pgdir, UVAddr(a), PGSIZE, mem, PTE_W | PTE_U).inspect_err(|_| {
                // SAFETY: the page was never mapped.
                unsafe { kfree_pa(mem) };
            })
        });
        if mapped.is_err() {
            // Give back what this growth took: its pages, then the page tables it created
            // (now empty). The pages may have been cached by a speculative walk: flush.
            let pages = deallocuvm(pgdir, newsz, oldsz);
            pages.and(freeemptytables(pgdir, oldsz, newsz)).flush();
            return Err(OutOfMemory);
        }
        a += PGSIZE;
    }
    Ok(newsz)
}

/// Frees the page tables of the user regions from the one holding `from` up to the one holding
/// `to` that map nothing at all (every entry zero): what a failed `allocuvm` created. xv6
/// keeps them until exit; a failed `sbrk` of 2 GiB would then hold ~500 of them.
fn freeemptytables(pgdir: &mut PageDir, from: u32, to: u32) -> TlbFlush {
    let last = PDX(UVAddr(to.min(KERNBASE - 1)));
    let mut flush = TlbFlush::nothing();
    for i in PDX(UVAddr(from))..=last {
        let pde = pgdir.pde(i);
        if !pde.present() {
            continue;
        }
        let table = entries(pde.addr());
        // SAFETY: j < 1024, inside a user page table of this directory.
        if (0..NPTENTRIES).any(|j| unsafe { table.add(j).read() } != Pte(0)) {
            continue;
        }
        // SAFETY: i < KPDX indexes the user half of the directory page.
        unsafe { entries(pgdir.pa).add(i).write(Pte(0)) };
        // SAFETY: the table belonged to this directory alone and is no longer referenced.
        unsafe { kfree_pa(pde.addr()) };
        // Paging-structure caches may hold the freed table: a full flush drops them.
        flush = TlbFlush::all();
    }
    flush
}

/// Shrinks a process from `oldsz` to `newsz` bytes (xv6 `deallocuvm`): unmaps the user
/// pages from `PGROUNDUP(newsz)` up to `oldsz` and drops its references to them (holes are
/// skipped). The new size is `min(oldsz, newsz)`. Never touches the kernel half.
pub fn deallocuvm(pgdir: &mut PageDir, oldsz: u32, newsz: u32) -> TlbFlush {
    if newsz >= oldsz {
        return TlbFlush::nothing();
    }
    let end = oldsz.min(KERNBASE);
    let mut a = PGROUNDUP(newsz).unwrap_or(KERNBASE);
    let mut flush = TlbFlush::nothing();
    let mut frees = RefBatch::frees();
    while a < end {
        let Some(pte) = pgdir.walk(UVAddr(a), false) else {
            a = next_pde(a).unwrap_or(KERNBASE);
            continue;
        };
        if pte.present() {
            assert!(pte.addr().0 != 0, "deallocuvm: kfree of page 0");
            let pa = pte.addr();
            *pte = Pte(0);
            // SAFETY: this address space's reference to a user page, just unmapped.
            unsafe { frees.add(P2V(pa)) };
            flush = flush.and(TlbFlush::page(UVAddr(a)));
        }
        a += PGSIZE;
    }
    flush
}

/// Changes the flags of the present PTE for `uva`; panics (naming `who`) if there is none.
fn update_pte(
    pgdir: &mut PageDir,
    uva: UVAddr,
    who: &str,
    f: impl FnOnce(PteFlags) -> PteFlags,
) -> TlbFlush {
    let pte = pgdir
        .walk(uva, false)
        .filter(|p| p.present())
        .unwrap_or_else(|| panic!("{who}: {:#010x} not mapped", uva.0));
    *pte = pte.with_flags(f(pte.flags()));
    TlbFlush::page(uva)
}

/// Clears PTE_U on the page at `uva` (xv6 `clearpteu`): exec's guard page below the user
/// stack, present but out of the user's reach. Panics if the page is not mapped.
pub fn clearpteu(pgdir: &mut PageDir, uva: UVAddr) -> TlbFlush {
    update_pte(pgdir, uva, "clearpteu", |f| f - PTE_U)
}

/// Clears PTE_W on the page at `uva`: exec maps program text and read-only data so that
/// writing to them faults. Panics if the page is not mapped.
pub fn clearptew(pgdir: &mut PageDir, uva: UVAddr) -> TlbFlush {
    update_pte(pgdir, uva, "clearptew", |f| f - PTE_W)
}

/// Calls `f(va, pte)` for every present user PTE of `pgdir` in `[0, sz)`, in order,
/// skipping missing page tables; stops at the first error.
pub(crate) fn for_each_present<E>(
    pgdir: &mut PageDir,
    sz: u32,
    mut f: impl FnMut(UVAddr, &mut Pte) -> Result<(), E>,
) -> Result<(), E> {
    let end = sz.min(KERNBASE);
    let mut i = 0;
    while i < end {
        match pgdir.walk(UVAddr(i), false) {
            None => {
                i = next_pde(i).unwrap_or(KERNBASE);
                continue;
            }
            Some(pte) if pte.present() => f(UVAddr(i), pte)?,
            Some(_) => {}
        }
        i += PGSIZE;
    }
    Ok(())
}

/// Given a parent's page directory and size, makes a copy for a child (xv6 `copyuvm`, for
/// fork): a new directory (setupkvm) and a private copy of every present user page in
/// `[0, sz)` with the same permissions (guard page and read-only text included; holes stay
/// holes). `None`, with everything freed again, if memory runs out. The parent is not
/// changed (it is `&mut` only for the walk).
pub fn copyuvm(pgdir: &mut PageDir, sz: u32) -> Option<PageDir> {
    let mut d = setupkvm()?;
    let copied = for_each_present(pgdir, sz, |va, pte| {
        let mem = kalloc().ok_or(OutOfMemory)?;
        // SAFETY: both are whole pages: the parent's, mapped at P2V, and the new one.
        unsafe {
            ptr::copy_nonoverlapping(
                P2V(pte.addr()).as_ptr::<u8>(),
                mem.as_ptr(),
                PGSIZE as usize,
            );
        }
        let mut perm = pte.flags() & (PTE_W | PTE_U);
        if pte.flags().contains(PTE_COW) {
            perm |= PTE_W; // a private copy needs no copy-on-write
        }
        mappages(&mut d, va, PGSIZE, V2P(mem), perm).inspect_err(|_| {
            // SAFETY: the page was never mapped.
            unsafe { kfree(mem) };
        })
    });
    match copied {
        Ok(()) => Some(d),
        Err(OutOfMemory) => {
            freevm(d);
            None
        }
    }
}

/// The kernel address of the byte at user address `uva` (xv6 `uva2ka`, which callers use
/// with page-aligned addresses: then it is the page's kernel address). `None` unless the
/// page is present and user-accessible (PTE_U: not the guard page, not the kernel half).
#[must_use]
pub fn uva2ka(pgdir: &PageDir, uva: UVAddr) -> Option<KVAddr> {
    let pte = getpte(pgdir, uva).filter(|_| uva.is_user())?;
    pte.flags()
        .contains(PTE_P | PTE_U)
        .then(|| KVAddr(P2V(pte.addr()).0 + uva.offset()))
}

/// Copies `src` to user address `va` in `pgdir` (xv6 `copyout`), which need not be the
/// page directory in use: exec builds the new stack with it, system calls store results.
/// Every page written must be present, user-accessible and writable, so text, the guard page
/// and a copy-on-write page are refused (`cow::cowcopyout` copies the latter first, as a user
/// write would), and `[va, va + len)` must lie below KERNBASE. On error some leading bytes
/// may have been written.
pub fn copyout(pgdir: &mut PageDir, va: UVAddr, src: &[u8]) -> Result<(), BadAddr> {
    let len = u32::try_from(src.len()).map_err(|_| BadAddr)?;
    if va.checked_add(len).is_none_or(|end| end.0 > KERNBASE) {
        return Err(BadAddr);
    }
    let mut va = va;
    for chunk in page_chunks(va, src) {
        let writable = getpte(pgdir, va).is_some_and(|p| p.flags().contains(PTE_W));
        let dst = uva2ka(pgdir, va).filter(|_| writable).ok_or(BadAddr)?;
        // SAFETY: dst..dst + chunk.len() lies in one present, user-writable page of pgdir
        // (page_chunks), reached through P2V; src is kernel memory.
        unsafe { ptr::copy(chunk.as_ptr(), dst.as_ptr(), chunk.len()) };
        va = UVAddr(va.0 + chunk.len() as u32);
    }
    Ok(())
}

/// Host tests of page-directory code: fake physical memory at a fixed address, so that P2V
/// of it is a valid pointer in the test process, handed to the kernel's allocator (KMEM),
/// and the kernel page directory built in it (kvmalloc). Tests that allocate take
/// `testmem::lock()` (one at a time: they check that the number of free pages comes back
/// exactly).
#[cfg(test)]
pub(crate) mod testmem {
    use std::sync::{Mutex, MutexGuard, Once};

    use crate::kalloc::KMEM;
    use crate::memlayout::{set_phystop, KVAddr, PhysAddr, P2V};
    use crate::mmu::PGSIZE;

    /// First fake physical page (16 MiB; its P2V address, 0x81000000, is free in an
    /// x86-64 Linux process).
    pub const BASE: PhysAddr = PhysAddr(0x0100_0000);
    /// Pages of fake memory.
    pub const PAGES: usize = 2048;

    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    }
    const PROT_READ_WRITE: i32 = 0x3;
    const MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE: i32 = 0x02 | 0x20 | 0x10_0000;

    static INIT: Once = Once::new();
    static LOCK: Mutex<()> = Mutex::new(());

    /// Sets the fake memory up once, then serialises the test.
    pub fn lock() -> MutexGuard<'static, ()> {
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        INIT.call_once(|| {
            let lo = P2V(BASE).0 as usize;
            let len = PAGES * PGSIZE as usize;
            // SAFETY: maps fresh anonymous memory at an address nothing uses (NOREPLACE
            // fails rather than clobber a mapping).
            let p = unsafe {
                mmap(
                    lo as *mut u8,
                    len,
                    PROT_READ_WRITE,
                    MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert_eq!(p as usize, lo, "testmem: cannot map fake RAM at {lo:#x}");
            set_phystop(PhysAddr(0x0E00_0000));
            // SAFETY: the pages were just mapped for the allocator alone, and read zero.
            unsafe {
                let at = |off: usize| KVAddr((lo + off) as u32);
                KMEM.kinit1(at(0), at(len), at(0), at(len / 2));
                KMEM.kinit2(at(len / 2), at(len));
            }
            super::kvmalloc(None);
        });
        guard
    }

    /// Free pages.
    pub fn free() -> usize {
        KMEM.countfree()
    }
}

#[cfg(test)]
#[path = "vm_tests.rs"]
pub(crate) mod tests;
