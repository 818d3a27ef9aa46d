//! The kernel's page directory (xv6 vm.c, kernel half): walkpgdir finds or creates the PTE
//! for a virtual address, mappages installs a range of PTEs, setupkvm builds a page
//! directory mapping exactly the kmap rows, kvmalloc makes that the kernel's page directory
//! and switchkvm loads it. Page-table pages come from kalloc and are zeroed here (kalloc
//! hands out junk), and are reached through P2V, so all of physical memory they live in
//! must be mapped (entrypgdir's first 4 MiB during kvmalloc: hence kinit1).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::kalloc::{kalloc, kfree};
use crate::kmap::{kmap, Kmap};
use crate::linker;
use crate::memlayout::{phystop, PhysAddr, VirtAddr, KERNBASE, P2V, V2P};
use crate::mmu::{
    Pte, NPDENTRIES, NPTENTRIES, PDX, PGROUNDDOWN, PGSIZE, PTE_P, PTE_PS, PTE_U, PTE_W, PTX,
};

/// A page directory, by the physical address of its page. It owns the page-table pages its
/// present PDEs point to (freevm returns them).
#[derive(Debug)]
pub struct PageDir {
    pa: PhysAddr,
}

/// Out of physical memory while building page tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// The page at physical `pa` as an array of entries, through the kernel's P2V mapping.
fn entries(pa: PhysAddr) -> *mut Pte {
    P2V(pa).0 as *mut Pte
}

/// A fresh page from kalloc, zeroed (page directories and page tables start empty).
fn zalloc() -> Option<PhysAddr> {
    let page = kalloc()?;
    // SAFETY: kalloc returned a whole free page, now ours.
    unsafe { ptr::write_bytes(page.as_ptr(), 0, PGSIZE as usize) };
    Some(V2P(VirtAddr(page.as_ptr() as u32)))
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
/// rows (nothing in the user half). `None` (with nothing leaked) if memory runs out.
/// Panics if the kmap table cannot be built (P2V(PHYSTOP) > DEVSPACE).
pub fn setupkvm() -> Option<PageDir> {
    let rows = kernel_kmap();
    let mut pgdir = PageDir { pa: zalloc()? };
    for k in &rows {
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
    match kmap(linker::data(), phystop()) {
        Ok(rows) => rows,
        Err(e) => panic!("{}", e),
    }
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
                    unsafe { kfree(page_ptr(pte.addr())) };
                }
            }
        }
        // SAFETY: the page table belongs to this directory alone, which is going away.
        unsafe { kfree(page_ptr(pde.addr())) };
    }
    // SAFETY: as above, for the directory page.
    unsafe { kfree(page_ptr(pgdir.pa)) };
}

fn page_ptr(pa: PhysAddr) -> NonNull<u8> {
    NonNull::new(P2V(pa).0 as *mut u8).expect("P2V is never null")
}

/// Physical address of the kernel's page directory (for the scheduler, when no process runs).
static KPGDIR: AtomicU32 = AtomicU32::new(0);

/// Allocates the kernel's page directory and switches to it (xv6 `kvmalloc`).
pub fn kvmalloc() {
    let pgdir = setupkvm().expect("kvmalloc: out of memory");
    KPGDIR.store(pgdir.pa.0, Ordering::Relaxed);
    switchkvm();
}

/// Switches the hardware page table register to the kernel-only page directory, for when
/// no process is running (xv6 `switchkvm`).
pub fn switchkvm() {
    let pa = KPGDIR.load(Ordering::Relaxed);
    assert!(pa != 0, "switchkvm before kvmalloc");
    // SAFETY: KPGDIR maps the whole kernel (text, data, stack, all RAM below PHYSTOP) at the
    // same addresses as entrypgdir's high half, which is all the kernel uses.
    unsafe { crate::x86::lcr3(pa) };
}
