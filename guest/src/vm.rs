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
#[path = "vm_tests.rs"]
mod tests;
