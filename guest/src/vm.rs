//! Page directories (xv6 vm.c): the kernel half every address space shares, and the user
//! half each process owns.
//!
//! Kernel half: walkpgdir finds or creates the PTE for a virtual address, mappages installs
//! a range of PTEs, setupkvm builds a page directory mapping exactly the kmap rows plus the
//! boot modules, kvmalloc makes that the kernel's page directory and switchkvm loads it.
//! Page-table pages come from kalloc and are zeroed here (kalloc hands out junk), and are
//! reached through P2V, so all of physical memory they live in must be mapped (entrypgdir's
//! first 4 MiB during kvmalloc: hence kinit1).
//!
//! The one mapping beyond the four kmap rows: the PVH boot modules (the program archive and
//! the first process's argv, docs/abi.md), which the VMM puts in `[PHYSTOP, end of RAM)`, are
//! mapped read-only for the kernel at P2V — `[P2V(PHYSTOP), P2V(PHYSTOP) + extent)`, `r-k`,
//! see `bootmods::kmap_row` — so exec can read programs straight out of the archive. The row
//! is absent when the VMM passed no modules.
//!
//! User half, below KERNBASE: inituvm, loaduvm, allocuvm, deallocuvm, clearpteu (and
//! clearptew), copyuvm, uva2ka and copyout, with xv6's semantics; and demand paging for a
//! lazy sbrk (`lazyfault`, see its section below). A process's memory is
//! `[0, sz)`; unlike xv6, pages below sz may be unmapped (exec maps only the pages its
//! segments cover, so a program linked at 0x08048000 does not cost 128 MiB of zeroes):
//! deallocuvm, copyuvm and freevm skip holes, and uva2ka/copyout refuse them. Nothing is
//! ever mapped at or above `PGROUNDUP(sz)`. As in xv6, page-table pages stay with their
//! directory until freevm (deallocuvm frees only the pages it unmaps), and callers that
//! change the page directory the CPU is using reload CR3 afterwards (switchuvm).
//!
//! Everything here but CR3 handling is plain memory manipulation through P2V, so the host
//! unit tests run it over a buffer mapped at the P2V address of some fake physical pages
//! (`testmem`).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::bootmods;
use crate::kalloc::{kalloc, kfree};
use crate::kmap::{kmap, Kmap};
use crate::memlayout::{phystop, PhysAddr, VirtAddr, KERNBASE, P2V, V2P};
use crate::mmu::{
    Pte, NPDENTRIES, NPTENTRIES, PDX, PGADDR, PGROUNDDOWN, PGROUNDUP, PGSIZE, PTE_P, PTE_PS, PTE_U,
    PTE_W, PTX,
};
use crate::uaccess::BadAddr;

/// A page directory, by the physical address of its page. It owns the page-table pages its
/// present PDEs point to and the user pages its user-half PTEs map (freevm returns them).
#[derive(Debug)]
pub struct PageDir {
    pa: PhysAddr,
}

/// Out of physical memory while building page tables (or, for allocuvm, a size at or above
/// KERNBASE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// The page at physical `pa` as an array of entries, through the kernel's P2V mapping.
fn entries(pa: PhysAddr) -> *mut Pte {
    P2V(pa).0 as *mut Pte
}

/// A fresh page from kalloc, zeroed (page directories, page tables and new user memory
/// start empty).
fn zalloc() -> Option<PhysAddr> {
    let page = kalloc()?;
    // SAFETY: kalloc returned a whole free page, now ours.
    unsafe { ptr::write_bytes(page.as_ptr(), 0, PGSIZE as usize) };
    Some(V2P(VirtAddr(page.as_ptr() as u32)))
}

/// Gives the page at `pa` back to kalloc.
///
/// # Safety
/// The page came from kalloc and nothing refers to it any more.
unsafe fn kfree_pa(pa: PhysAddr) {
    // SAFETY: forwarded from the caller.
    unsafe { kfree(page_ptr(pa)) };
}

fn page_ptr(pa: PhysAddr) -> NonNull<u8> {
    NonNull::new(P2V(pa).0 as *mut u8).expect("P2V is never null")
}

impl PageDir {
    /// The physical address to load into CR3.
    #[must_use]
    pub fn pa(&self) -> PhysAddr {
        self.pa
    }
}

/// The address of the PTE in `pgdir` for virtual address `va`. If `alloc`, creates the page
/// table (zeroed; its PDE is P|W|U, the PTEs decide) when missing; otherwise returns `None`
/// for a missing one. `None` too when kalloc fails.
///
/// # Safety
/// `pgdir` must be a valid page directory whose page tables are all mapped at P2V.
pub unsafe fn walkpgdir(pgdir: &mut PageDir, va: VirtAddr, alloc: bool) -> Option<NonNull<Pte>> {
    // SAFETY: PDX < 1024 indexes the directory page, which is valid (caller).
    let pde = unsafe { entries(pgdir.pa).add(PDX(va)) };
    // SAFETY: pde points into the directory page.
    let d = unsafe { pde.read() };
    let pgtab = if d.present() {
        assert!(
            d.flags() & PTE_PS == 0,
            "walkpgdir: 4 MiB page at {:#010x}",
            va.0
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
    NonNull::new(unsafe { entries(pgtab).add(PTX(va)) })
}

/// The PTE for `va` in `pgdir`, if its page table exists (the entry may be non-present):
/// walkpgdir without `alloc`, for readers — e.g. the page-fault handler telling a guard page
/// (present, no PTE_U) from text (no PTE_W) from a hole (not present).
#[must_use]
pub fn getpte(pgdir: &PageDir, va: VirtAddr) -> Option<Pte> {
    // SAFETY: a PageDir is always a valid directory (setupkvm built it) whose tables are
    // mapped at P2V; PDX < 1024.
    let d = unsafe { entries(pgdir.pa).add(PDX(va)).read() };
    if !d.present() || d.flags() & PTE_PS != 0 {
        return None;
    }
    // SAFETY: PTX < 1024 indexes the page-table page the PDE points to.
    Some(unsafe { entries(d.addr()).add(PTX(va)).read() })
}

/// Whether `pgdir` has a page table for the 4 MiB region holding `va`.
fn has_pgtab(pgdir: &PageDir, va: u32) -> bool {
    // SAFETY: as in getpte.
    unsafe { entries(pgdir.pa).add(PDX(VirtAddr(va))).read() }.present()
}

/// The first address of the 4 MiB region after the one holding `va` (`None` past 4 GiB):
/// where a walk resumes when a whole page table is missing.
fn next_pde(va: u32) -> Option<u32> {
    let d = PDX(VirtAddr(va)) + 1;
    (d < NPDENTRIES).then(|| PGADDR(d, 0, 0).0)
}

/// Creates PTEs for virtual addresses starting at `va` that refer to physical addresses
/// starting at `pa`, for `size` bytes (> 0; `va + size` may be exactly 4 GiB); `perm` gives
/// the permissions besides PTE_P. Panics if a page is already mapped ("remap").
///
/// # Safety
/// As walkpgdir; the caller decides what the new mappings mean (and flushes the TLB if
/// `pgdir` is in use).
pub unsafe fn mappages(
    pgdir: &mut PageDir,
    va: VirtAddr,
    size: u32,
    pa: PhysAddr,
    perm: u32,
) -> Result<(), OutOfMemory> {
    assert!(size > 0, "mappages: size 0");
    let mut a = PGROUNDDOWN(va.0);
    let last = PGROUNDDOWN(va.0 + (size - 1));
    let mut pa = pa.0;
    loop {
        // SAFETY: forwarded from the caller.
        let pte = unsafe { walkpgdir(pgdir, VirtAddr(a), true) }.ok_or(OutOfMemory)?;
        // SAFETY: walkpgdir returned a PTE slot inside a page table.
        unsafe {
            if pte.read().present() {
                panic!("remap {:#010x}", a);
            }
            pte.write(Pte::new(PhysAddr(pa), perm | PTE_P));
        }
        if a == last {
            break; // before a += PGSIZE: the last page may end at 4 GiB
        }
        a += PGSIZE;
        pa += PGSIZE;
    }
    Ok(())
}

/// Builds a page directory with the kernel part of an address space: exactly the kmap
/// rows, then the boot modules read-only at P2V (`bootmods::kmap_row`, if any), and nothing
/// in the user half. `None` (with nothing leaked) if memory runs out. Panics if the kmap
/// table cannot be built (P2V(PHYSTOP) > DEVSPACE).
pub fn setupkvm() -> Option<PageDir> {
    let rows = kernel_kmap();
    let mods = bootmods::kmap_row();
    let mut pgdir = PageDir { pa: zalloc()? };
    for k in rows.iter().chain(mods.iter()) {
        // SAFETY: pgdir is a fresh, valid directory; its tables come from kalloc and are
        // mapped at P2V.
        if unsafe { mappages(&mut pgdir, k.virt, k.size, k.phys_start, k.perm) }.is_err() {
            freevm(pgdir);
            return None;
        }
    }
    Some(pgdir)
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
fn kernel_data() -> VirtAddr {
    crate::linker::data()
}

/// Host tests have no kernel image: a typical `data` of this kernel.
#[cfg(not(all(target_arch = "x86", not(test))))]
fn kernel_data() -> VirtAddr {
    VirtAddr(0x8011_2000)
}

/// Frees a page directory: the user pages it maps (present user-half PTEs, as xv6's
/// `deallocuvm(pgdir, KERNBASE, 0)`), then every page table, then the directory itself.
pub fn freevm(pgdir: PageDir) {
    let dir = entries(pgdir.pa);
    for i in 0..NPDENTRIES {
        // SAFETY: i < 1024, inside the directory page.
        let pde = unsafe { dir.add(i).read() };
        if !pde.present() {
            continue;
        }
        let table = entries(pde.addr());
        if i < PDX(VirtAddr(KERNBASE)) {
            for j in 0..NPTENTRIES {
                // SAFETY: j < 1024, inside a page table of this directory.
                let pte = unsafe { table.add(j).read() };
                if pte.present() {
                    // SAFETY: user pages of this address space belong to it alone.
                    unsafe { kfree_pa(pte.addr()) };
                }
            }
        }
        // SAFETY: the page table belongs to this directory alone, which is going away.
        unsafe { kfree_pa(pde.addr()) };
    }
    // SAFETY: as above, for the directory page.
    unsafe { kfree_pa(pgdir.pa) };
}

/// Physical address of the kernel's page directory (for the scheduler, when no process runs).
static KPGDIR: AtomicU32 = AtomicU32::new(0);

/// Whether kvmalloc has run: the kernel page directory (and so the boot-module mapping) is
/// in use.
#[must_use]
pub fn kvm_ready() -> bool {
    KPGDIR.load(Ordering::Relaxed) != 0
}

/// Allocates the kernel's page directory and switches to it (xv6 `kvmalloc`).
#[cfg(all(target_arch = "x86", not(test)))]
pub fn kvmalloc() {
    let pgdir = setupkvm().expect("kvmalloc: out of memory");
    KPGDIR.store(pgdir.pa.0, Ordering::Relaxed);
    switchkvm();
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
    // SAFETY: pgdir is valid; the new page is ours and goes into the user half.
    if unsafe { mappages(pgdir, VirtAddr(0), PGSIZE, mem, PTE_W | PTE_U) }.is_err() {
        // SAFETY: the page was never mapped.
        unsafe { kfree_pa(mem) };
        return Err(OutOfMemory);
    }
    // SAFETY: the page is a whole page of RAM, mapped at P2V; init fits in it.
    unsafe { ptr::copy(init.as_ptr(), P2V(mem).0 as *mut u8, init.len()) };
    Ok(())
}

/// Copies `src` into `pgdir`'s memory at user address `va`, which need not be page
/// aligned (xv6 `loaduvm`, with the program's bytes already in memory: exec hands it a
/// segment's file bytes straight from the archive, whatever their file offset). The pages
/// must already be mapped (allocuvm); panics if one is not.
pub fn loaduvm(pgdir: &mut PageDir, va: u32, src: &[u8]) {
    let mut va = va;
    for chunk in page_chunks(va, src) {
        let pte = getpte(pgdir, VirtAddr(va))
            .filter(|p| p.present())
            .unwrap_or_else(|| panic!("loaduvm: address {va:#010x} should exist"));
        let dst = P2V(pte.addr()).0 + va % PGSIZE;
        // SAFETY: dst..dst + chunk.len() stays inside one mapped user page (page_chunks),
        // reached through P2V; the source is kernel memory, distinct from that page.
        unsafe { ptr::copy(chunk.as_ptr(), dst as *mut u8, chunk.len()) };
        va = va.wrapping_add(chunk.len() as u32);
    }
}

/// Splits `src`, to be placed at `va`, at page boundaries.
fn page_chunks(va: u32, src: &[u8]) -> impl Iterator<Item = &[u8]> {
    let first = ((PGSIZE - va % PGSIZE) as usize).min(src.len());
    let (head, tail) = src.split_at(first);
    core::iter::once(head)
        .filter(|h| !h.is_empty())
        .chain(tail.chunks(PGSIZE as usize))
}

/// Grows a process from `oldsz` to `newsz` bytes (xv6 `allocuvm`): maps zeroed
/// user-writable pages (PTE_W|PTE_U) from `PGROUNDUP(oldsz)` up to `newsz`; returns the new
/// size (`oldsz` if `newsz < oldsz`). Fails if `newsz` is at or above KERNBASE or memory
/// runs out — then every page this call mapped is unmapped and freed again (deallocuvm).
pub fn allocuvm(pgdir: &mut PageDir, oldsz: u32, newsz: u32) -> Result<u32, OutOfMemory> {
    if newsz >= KERNBASE {
        return Err(OutOfMemory);
    }
    if newsz < oldsz {
        return Ok(oldsz);
    }
    let mut a = PGROUNDUP(oldsz).expect("oldsz <= newsz < KERNBASE");
    while a < newsz {
        let Some(mem) = zalloc() else {
            deallocuvm(pgdir, newsz, oldsz);
            return Err(OutOfMemory);
        };
        // SAFETY: pgdir is valid; a is a user address below KERNBASE, not mapped yet
        // (nothing is mapped at or above PGROUNDUP(oldsz)).
        if unsafe { mappages(pgdir, VirtAddr(a), PGSIZE, mem, PTE_W | PTE_U) }.is_err() {
            // SAFETY: the page was never mapped.
            unsafe { kfree_pa(mem) };
            deallocuvm(pgdir, newsz, oldsz);
            return Err(OutOfMemory);
        }
        a += PGSIZE;
    }
    Ok(newsz)
}

/// Shrinks a process from `oldsz` to `newsz` bytes (xv6 `deallocuvm`): unmaps and frees the
/// user pages from `PGROUNDUP(newsz)` up to `oldsz` (holes are skipped); returns the new size
/// (`oldsz` if `newsz >= oldsz`). Never touches the kernel half. The caller reloads CR3 if
/// `pgdir` is in use.
pub fn deallocuvm(pgdir: &mut PageDir, oldsz: u32, newsz: u32) -> u32 {
    if newsz >= oldsz {
        return oldsz;
    }
    let end = oldsz.min(KERNBASE);
    let mut a = PGROUNDUP(newsz).unwrap_or(KERNBASE);
    while a < end {
        if !has_pgtab(pgdir, a) {
            a = next_pde(a).unwrap_or(KERNBASE);
            continue;
        }
        // SAFETY: pgdir is valid; the page table exists (no allocation).
        let slot = unsafe { walkpgdir(pgdir, VirtAddr(a), false) }.expect("page table");
        // SAFETY: slot points at a PTE in a page table of pgdir.
        let pte = unsafe { slot.read() };
        if pte.present() {
            assert!(pte.addr().0 != 0, "deallocuvm: kfree of page 0");
            // SAFETY: a user page of this address space, which no other one maps; its PTE
            // goes away right here.
            unsafe {
                kfree_pa(pte.addr());
                slot.write(Pte(0));
            }
        }
        a += PGSIZE;
    }
    newsz
}

/// Changes the flags of the present PTE for `uva`; panics (naming `who`) if there is none.
fn update_pte(pgdir: &mut PageDir, uva: u32, who: &str, f: impl FnOnce(u32) -> u32) {
    // SAFETY: pgdir is valid; no allocation.
    let slot = unsafe { walkpgdir(pgdir, VirtAddr(uva), false) }
        .filter(|p| {
            // SAFETY: walkpgdir returned a PTE slot in a page table of pgdir.
            unsafe { p.read() }.present()
        })
        .unwrap_or_else(|| panic!("{who}: {uva:#010x} not mapped"));
    // SAFETY: as above; the entry keeps its page, only permission bits change.
    unsafe {
        let pte = slot.read();
        slot.write(Pte(pte.0 & !0xFFF | f(pte.flags())));
    }
}

/// Clears PTE_U on the page at `uva` (xv6 `clearpteu`): exec's guard page below the user
/// stack, present but out of the user's reach. Panics if the page is not mapped.
pub fn clearpteu(pgdir: &mut PageDir, uva: u32) {
    update_pte(pgdir, uva, "clearpteu", |f| f & !PTE_U);
}

/// Clears PTE_W on the page at `uva`: exec maps program text and read-only data so that
/// writing to them faults. Panics if the page is not mapped.
pub fn clearptew(pgdir: &mut PageDir, uva: u32) {
    update_pte(pgdir, uva, "clearptew", |f| f & !PTE_W);
}

/// Given a parent's page directory and size, makes a copy for a child (xv6 `copyuvm`, for
/// fork): a new kernel half (setupkvm) and a private copy of every present user page in
/// `[0, sz)` with the same permissions (guard page and read-only text included; holes stay
/// holes). `None`, with everything freed again, if memory runs out.
pub fn copyuvm(pgdir: &PageDir, sz: u32) -> Option<PageDir> {
    let mut d = setupkvm()?;
    let end = sz.min(KERNBASE);
    let mut i = 0;
    while i < end {
        if !has_pgtab(pgdir, i) {
            i = next_pde(i).unwrap_or(KERNBASE);
            continue;
        }
        let pte = getpte(pgdir, VirtAddr(i)).expect("page table");
        if pte.present() {
            let Some(mem) = kalloc() else {
                freevm(d);
                return None;
            };
            // SAFETY: both are whole pages: the parent's, mapped at P2V, and the new one.
            unsafe {
                ptr::copy_nonoverlapping(
                    P2V(pte.addr()).0 as *const u8,
                    mem.as_ptr(),
                    PGSIZE as usize,
                );
            }
            let pa = V2P(VirtAddr(mem.as_ptr() as u32));
            let perm = pte.flags() & (PTE_W | PTE_U);
            // SAFETY: d is valid; i is a user address not yet mapped in it.
            if unsafe { mappages(&mut d, VirtAddr(i), PGSIZE, pa, perm) }.is_err() {
                // SAFETY: the page was never mapped.
                unsafe { kfree(mem) };
                freevm(d);
                return None;
            }
        }
        i += PGSIZE;
    }
    Some(d)
}

// ---------------------------------------------------------------------------------------
// Demand paging ("lazy sbrk", on with the command-line word `lazy`).
//
// In lazy mode growproc only moves the break. The pages a process got that way, `[lazy_from,
// sz)` with `lazy_from` kept in the process (the size exec gave it, lowered by every lazy
// growth that starts below it), are mapped one at a time on first touch: by the page-fault
// handler for user accesses, and by uaccess for the kernel's accesses to user memory (so a
// system call never takes a page fault in kernel mode). Both go through `lazyfault`. A page
// that was never touched is simply not present, which deallocuvm, copyuvm and freevm
// already skip. A process with `lazy_from == KERNBASE` has no lazy pages (eager mode).

/// Whether demand paging is on (the command-line word `lazy`); set once at boot.
static LAZY: AtomicBool = AtomicBool::new(false);

/// Turns demand paging on or off (boot, before the first process).
pub fn set_lazy(on: bool) {
    LAZY.store(on, Ordering::Relaxed);
}

/// Whether sbrk grows lazily.
#[must_use]
pub fn lazy() -> bool {
    LAZY.load(Ordering::Relaxed)
}

/// The `lazy_from` of a fresh image of size `sz`: its top in lazy mode (the heap starts
/// there), KERNBASE (no lazy pages at all) otherwise.
#[must_use]
pub fn lazy_from_for(sz: u32) -> u32 {
    if lazy() {
        sz
    } else {
        KERNBASE
    }
}

/// Is a fault at user address `va` a first touch of a lazy page — one to allocate and map,
/// rather than a bad access to kill for? Yes if `va` lies in the lazy region `[lazy_from,
/// sz)` (below KERNBASE) and its page is not present (`pte`: the flags of its PTE, `None`
/// when there is no page table there). Everything else — the guard page and text (present),
/// holes below the heap, addresses at or above sz, the kernel half — is not.
#[must_use]
pub fn is_lazy_page(va: u32, lazy_from: u32, sz: u32, pte: Option<u32>) -> bool {
    lazy_from <= va && va < sz && va < KERNBASE && pte.is_none_or(|f| f & PTE_P == 0)
}

/// Maps a zeroed user-writable page (PTE_W|PTE_U) at the page holding `va` (not mapped yet):
/// the demand-paging half of allocuvm. Nothing is leaked if memory runs out (a page table
/// already made stays with the directory, as allocuvm's do). No TLB flush is needed: the
/// entry goes from not present to present, and the TLB never holds not-present entries.
pub fn lazyalloc(pgdir: &mut PageDir, va: u32) -> Result<(), OutOfMemory> {
    let mem = zalloc().ok_or(OutOfMemory)?;
    // SAFETY: pgdir is valid; the page at va is a user page below KERNBASE, not mapped
    // (the caller checked is_lazy_page).
    if unsafe { mappages(pgdir, VirtAddr(PGROUNDDOWN(va)), PGSIZE, mem, PTE_W | PTE_U) }.is_err() {
        // SAFETY: the page was never mapped.
        unsafe { kfree_pa(mem) };
        return Err(OutOfMemory);
    }
    Ok(())
}

/// The demand-paging fault handler, for the page fault handler and for uaccess alike: if
/// `va` is a lazy page of the process (`is_lazy_page`), maps it and returns `Some(Ok)`, or
/// `Some(Err)` when memory ran out; `None` if it is no lazy page (a real fault).
pub fn lazyfault(
    pgdir: &mut PageDir,
    lazy_from: u32,
    sz: u32,
    va: u32,
) -> Option<Result<(), OutOfMemory>> {
    let pte = getpte(pgdir, VirtAddr(va)).map(Pte::flags);
    is_lazy_page(va, lazy_from, sz, pte).then(|| lazyalloc(pgdir, va))
}

/// The kernel address of the byte at user address `uva` (xv6 `uva2ka`, which callers use
/// with page-aligned addresses: then it is the page's kernel address). `None` unless the
/// page is present and user-accessible (PTE_U: not the guard page, not the kernel half).
#[must_use]
pub fn uva2ka(pgdir: &PageDir, uva: u32) -> Option<*mut u8> {
    user_page(pgdir, uva, false)
}

/// uva2ka, optionally also requiring PTE_W.
fn user_page(pgdir: &PageDir, uva: u32, write: bool) -> Option<*mut u8> {
    let need = PTE_P | PTE_U | if write { PTE_W } else { 0 };
    let pte = getpte(pgdir, VirtAddr(uva))?;
    (pte.flags() & need == need).then(|| (P2V(pte.addr()).0 + uva % PGSIZE) as *mut u8)
}

/// Copies `src` to user address `va` in `pgdir` (xv6 `copyout`), which need not be the
/// page directory in use: exec builds the new stack with it, system calls store results.
/// Every page written must be present, user-accessible and writable (so text and the guard
/// page are refused), and `[va, va + len)` must lie below KERNBASE. On error some leading
/// bytes may have been written.
pub fn copyout(pgdir: &mut PageDir, va: u32, src: &[u8]) -> Result<(), BadAddr> {
    let len = u32::try_from(src.len()).map_err(|_| BadAddr)?;
    if va.checked_add(len).is_none_or(|end| end > KERNBASE) {
        return Err(BadAddr);
    }
    let mut va = va;
    for chunk in page_chunks(va, src) {
        let dst = user_page(pgdir, va, true).ok_or(BadAddr)?;
        // SAFETY: dst..dst + chunk.len() lies in one present, user-writable page of pgdir
        // (page_chunks), reached through P2V; src is kernel memory.
        unsafe { ptr::copy(chunk.as_ptr(), dst, chunk.len()) };
        va += chunk.len() as u32;
    }
    Ok(())
}

/// Host tests of page-directory code: fake physical memory at a fixed address, so that P2V
/// of it is a valid pointer in the test process, handed to the kernel's allocator (KMEM).
/// Tests that allocate take `testmem::lock()` (one at a time: they check that the number
/// of free pages comes back exactly).
#[cfg(test)]
pub(crate) mod testmem {
    use std::sync::{Mutex, MutexGuard, Once};

    use crate::kalloc::KMEM;
    use crate::memlayout::{set_phystop, PhysAddr, P2V};

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
            let len = PAGES * 4096;
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
            // SAFETY: the pages were just mapped for the allocator alone.
            unsafe { KMEM.kinit1(lo, lo + len, lo, lo + len) };
        });
        guard
    }

    /// Pages on the free list.
    pub fn free() -> usize {
        KMEM.countfree()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kalloc::KMEM;

    /// An empty user half (no kernel rows either: the user-half code never looks there).
    fn newdir() -> PageDir {
        PageDir {
            pa: zalloc().unwrap(),
        }
    }

    fn pte(d: &PageDir, va: u32) -> Option<Pte> {
        getpte(d, VirtAddr(va)).filter(|p| p.present())
    }

    fn read_user(d: &PageDir, va: u32, n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| {
                let p = getpte(d, VirtAddr(va + i)).unwrap();
                // SAFETY: a present page of the test memory.
                unsafe { *((P2V(p.addr()).0 + (va + i) % PGSIZE) as *const u8) }
            })
            .collect()
    }

    /// Takes pages off the free list until `left` remain; returns them.
    fn exhaust(left: usize) -> Vec<NonNull<u8>> {
        let mut held = Vec::new();
        while KMEM.countfree() > left {
            held.push(kalloc().unwrap());
        }
        held
    }

    fn give_back(held: Vec<NonNull<u8>>) {
        for p in held {
            // SAFETY: pages exhaust took from kalloc.
            unsafe { kfree(p) };
        }
    }

    #[test]
    fn allocuvm_maps_zeroed_user_pages_and_deallocuvm_frees_them() {
        let _g = testmem::lock();
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
        assert_eq!(deallocuvm(&mut d, 0x3000, 0x1800), 0x1800);
        assert!(pte(&d, 0x1000).is_some() && pte(&d, 0x2000).is_none());
        assert_eq!(testmem::free(), before - 4);
        assert_eq!(deallocuvm(&mut d, 0x1800, 0x2000), 0x1800);
        freevm(d);
        assert_eq!(testmem::free(), before);
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
            testmem::free(),
            before - 1 - tables.count(),
            "only page tables stay"
        );
        freevm(d);
        assert_eq!(testmem::free(), before);
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
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn deallocuvm_skips_holes_and_missing_page_tables() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0x0080_0000, 0x0080_2000).unwrap();
        allocuvm(&mut d, 0x1000_0000, 0x1000_1000).unwrap();
        assert_eq!(deallocuvm(&mut d, 0x1000_1000, 0), 0);
        assert_eq!(
            testmem::free(),
            before - 3,
            "the directory and two page tables"
        );
        assert_eq!(deallocuvm(&mut d, u32::MAX, 0), 0, "clamped at KERNBASE");
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn loaduvm_copies_across_pages_at_any_alignment() {
        let _g = testmem::lock();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x3000).unwrap();
        let src: Vec<u8> = (0..0x1800u32).map(|i| (i % 251) as u8 + 1).collect();
        loaduvm(&mut d, 0xF0C, &src);
        assert_eq!(read_user(&d, 0xF0C, src.len()), src);
        assert_eq!(read_user(&d, 0xF0B, 1), [0]);
        assert_eq!(read_user(&d, 0xF0C + 0x1800, 1), [0]);
        loaduvm(&mut d, 0x2FFF, b"z");
        loaduvm(&mut d, 0x1000, b"");
        assert_eq!(read_user(&d, 0x2FFF, 1), *b"z");
        freevm(d);
    }

    #[test]
    #[should_panic(expected = "loaduvm: address 0x00001000 should exist")]
    fn loaduvm_panics_on_unmapped_pages() {
        let _g = testmem::lock();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x1000).unwrap();
        loaduvm(&mut d, 0xFFE, b"abcd");
    }

    #[test]
    fn inituvm_loads_one_page_at_zero() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        inituvm(&mut d, b"\xcd\x40").unwrap();
        assert_eq!(read_user(&d, 0, 3), [0xcd, 0x40, 0]);
        assert_eq!(pte(&d, 0).unwrap().flags(), PTE_P | PTE_W | PTE_U);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn clearpteu_and_clearptew_keep_the_page() {
        let _g = testmem::lock();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x2000).unwrap();
        let pa = pte(&d, 0).unwrap().addr();
        clearpteu(&mut d, 0x10);
        clearptew(&mut d, 0x1010);
        assert_eq!(pte(&d, 0).unwrap(), Pte::new(pa, PTE_P | PTE_W));
        assert_eq!(pte(&d, 0x1000).unwrap().flags(), PTE_P | PTE_U);
        assert_eq!(uva2ka(&d, 0x10), None, "guard page: no user access");
        assert!(uva2ka(&d, 0x1010).is_some(), "read-only is still readable");
        assert_eq!(
            copyout(&mut d, 0x1010, b"x"),
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
        clearpteu(&mut d, 0x5000);
    }

    #[test]
    fn copyuvm_copies_pages_and_permissions() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x3000).unwrap();
        allocuvm(&mut d, 0x0100_0000, 0x0100_1000).unwrap(); // after a 16 MiB hole
        loaduvm(&mut d, 0xFFE, b"fork");
        clearptew(&mut d, 0);
        clearpteu(&mut d, 0x2000);
        let used = before - testmem::free();
        let c = copyuvm(&d, 0x0100_1000).unwrap();
        // The child: setupkvm's directory and 64 kernel page tables, then the same user
        // page tables and pages as the parent.
        assert_eq!(before - testmem::free(), used + 65 + (used - 1));
        assert_eq!(read_user(&c, 0xFFE, 4), *b"fork");
        for va in [0, 0x1000, 0x2000, 0x0100_0000] {
            let (p, q) = (pte(&d, va).unwrap(), pte(&c, va).unwrap());
            assert_eq!(p.flags(), q.flags());
            assert_ne!(p.addr(), q.addr(), "a private copy");
        }
        assert!(pte(&c, 0x3000).is_none() && pte(&c, 0x0080_0000).is_none());
        // The child's pages are its own.
        copyout(&mut d, 0x1000, b"!").unwrap();
        assert_eq!(read_user(&c, 0xFFE, 4), *b"fork");
        assert_eq!(read_user(&d, 0xFFE, 4), *b"fo!k");
        freevm(c);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn copyuvm_frees_everything_when_memory_runs_out() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x8000).unwrap();
        let used = before - testmem::free();
        for left in [0, 10, 64, 65, 66, 70, 73] {
            let held = exhaust(left);
            assert!(copyuvm(&d, 0x8000).is_none(), "{left} pages left");
            assert_eq!(KMEM.countfree(), left);
            give_back(held);
        }
        assert_eq!(testmem::free(), before - used);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn setupkvm_maps_the_kmap_rows_only() {
        let _g = testmem::lock();
        let before = testmem::free();
        let d = setupkvm().unwrap();
        assert_eq!(before - testmem::free(), 65);
        let k = getpte(&d, VirtAddr(0x8010_0000)).unwrap();
        assert_eq!(k, Pte::new(PhysAddr(0x10_0000), PTE_P));
        let data = getpte(&d, VirtAddr(0x8dff_f000)).unwrap();
        assert_eq!(data, Pte::new(PhysAddr(0xdff_f000), PTE_P | PTE_W));
        assert!(
            getpte(&d, VirtAddr(0x8e00_0000)).is_none(),
            "no boot modules here"
        );
        assert_eq!(
            uva2ka(&d, 0x8010_0000),
            None,
            "kernel pages are not user pages"
        );
        freevm(d);
        assert_eq!(testmem::free(), before);
        for left in [0, 1, 30, 64] {
            let held = exhaust(left);
            assert!(setupkvm().is_none());
            assert_eq!(KMEM.countfree(), left);
            give_back(held);
        }
    }

    #[test]
    fn lazy_pages_are_untouched_heap_pages_only() {
        let (sz, from) = (0x9000, 0x5000);
        let (urw, k) = (PTE_P | PTE_U | PTE_W, PTE_P | PTE_W);
        // Not present (or no page table) in [lazy_from, sz): lazy.
        assert!(is_lazy_page(0x5000, from, sz, None));
        assert!(is_lazy_page(0x8fff, from, sz, Some(0)));
        assert!(is_lazy_page(0x6123, from, sz, Some(PTE_W | PTE_U)));
        // Already present: a real fault (e.g. a protection fault), never remapped.
        assert!(!is_lazy_page(0x6000, from, sz, Some(urw)));
        // Below lazy_from: the guard page, text, holes below the image.
        assert!(!is_lazy_page(0x4fff, from, sz, Some(k)));
        assert!(!is_lazy_page(0x4fff, from, sz, None));
        assert!(!is_lazy_page(0, from, sz, None));
        // At or above sz, the kernel half.
        assert!(!is_lazy_page(sz, from, sz, None));
        assert!(!is_lazy_page(0x9fff, from, sz, None));
        assert!(!is_lazy_page(KERNBASE, from, u32::MAX, None));
        assert!(!is_lazy_page(0xFFFF_F000, 0, u32::MAX, None));
        // Eager mode: lazy_from is KERNBASE, nothing is lazy.
        assert!(!is_lazy_page(0x5000, KERNBASE, sz, None));
        assert_eq!(lazy_from_for(0x5000), KERNBASE, "lazy is off by default");
    }

    #[test]
    fn lazyfault_maps_one_zeroed_page_and_nothing_else() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x2000).unwrap();
        clearpteu(&mut d, 0);
        let (from, sz) = (0x2000, 0x0080_2000); // lazily grown by 8 MiB
        assert_eq!(lazyfault(&mut d, from, sz, 0x2010), Some(Ok(())));
        assert_eq!(pte(&d, 0x2000).unwrap().flags(), PTE_P | PTE_W | PTE_U);
        assert!(read_user(&d, 0x2000, 0x1000).iter().all(|&b| b == 0));
        assert_eq!(
            testmem::free(),
            before - 5,
            "dir, table, 2 pages, 1 lazy page"
        );
        // A second touch of the same page, the guard page, above sz: not lazy faults.
        assert_eq!(lazyfault(&mut d, from, sz, 0x2FFF), None);
        assert_eq!(lazyfault(&mut d, from, sz, 0x10), None);
        assert_eq!(lazyfault(&mut d, from, sz, sz), None);
        // In a new 4 MiB region: a page table too.
        assert_eq!(lazyfault(&mut d, from, sz, 0x0080_1000), Some(Ok(())));
        assert_eq!(testmem::free(), before - 7);
        assert!(pte(&d, 0x3000).is_none(), "untouched pages stay unmapped");
        // Out of memory: an error, nothing mapped, nothing lost.
        let held = exhaust(0);
        assert_eq!(lazyfault(&mut d, from, sz, 0x4000), Some(Err(OutOfMemory)));
        assert!(pte(&d, 0x4000).is_none());
        give_back(held);
        // Shrinking frees just what was mapped; fork copies just what was mapped.
        let c = copyuvm(&d, sz).unwrap();
        assert!(pte(&c, 0x0080_1000).is_some() && pte(&c, 0x0080_0000).is_none());
        freevm(c);
        assert_eq!(deallocuvm(&mut d, sz, from), from);
        assert_eq!(testmem::free(), before - 5, "the two lazy pages came back");
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn uva2ka_and_copyout() {
        let _g = testmem::lock();
        let mut d = newdir();
        allocuvm(&mut d, 0, 0x2000).unwrap();
        let ka = uva2ka(&d, 0x1234).unwrap();
        let pa = pte(&d, 0x1000).unwrap().addr();
        assert_eq!(ka as u32, P2V(pa).0 + 0x234);
        assert_eq!(uva2ka(&d, 0x2000), None);
        assert_eq!(uva2ka(&d, 0x9000_0000), None);
        copyout(&mut d, 0xFFD, b"across").unwrap();
        assert_eq!(read_user(&d, 0xFFD, 6), *b"across");
        copyout(&mut d, 0x2000, b"").unwrap();
        assert_eq!(copyout(&mut d, 0x1FFF, b"ab"), Err(BadAddr));
        assert_eq!(
            read_user(&d, 0x1FFF, 1),
            *b"a",
            "leading bytes may be written"
        );
        assert_eq!(copyout(&mut d, u32::MAX, b"ab"), Err(BadAddr));
        assert_eq!(copyout(&mut d, KERNBASE - 1, b"ab"), Err(BadAddr));
        freevm(d);
    }
}
