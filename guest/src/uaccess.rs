//! Access to user memory for system calls (xv6 syscall.c's fetchint/fetchstr/argptr, and
//! copyin): every user pointer or string a system call gets goes through here.
//!
//! The rules: a user range `[va, va + len)` must lie inside the process's memory `[0, sz)`,
//! never reach KERNBASE, and not wrap around 4 GiB (`checkrange`); then the bytes are read or
//! written through the process's page directory (`vm::uva2ka`, `cow::cowcopyout`), never by
//! dereferencing the user address itself — so a page that is not mapped (a hole below sz),
//! not user-accessible (the guard page) or, for writes, not writable (program text) is a
//! `BadAddr` too, not a kernel page fault.
//!
//! Demand paging: a page of the process's lazy sbrk region that was never touched is mapped
//! here before the kernel reads or writes it (`lazy::lazyfault`, the page-fault handler's
//! helper), so `write()` from a fresh lazy buffer, `read()` or `wait()` into one, and exec's
//! argument strings there work without a page fault in kernel mode. If memory runs out
//! doing so, the access is a `BadAddr` (the call returns −1).

use crate::cow::{cowcopyout, cowfault};
use crate::lazy::{is_lazy_page, lazyfault};
use crate::memlayout::{KVAddr, PhysAddr, UVAddr, KERNBASE, V2P};
use crate::mmu::{PGSIZE, PTE_COW, PTE_P, PTE_U, PTE_W};
use crate::vm::{getpte, uva2ka, PageDir};

pub use crate::vm::BadAddr;

/// A process's memory as the kernel reaches it: its page directory, its size, and where its
/// lazy sbrk region starts (`lazy_from`; `None`: no lazy pages, see lazy.rs).
#[derive(Debug)]
pub struct UserMem<'a> {
    pub pgdir: &'a mut PageDir,
    pub sz: u32,
    pub lazy_from: Option<UVAddr>,
}

/// Checks that `[va, va + len)` lies in a process's memory `[0, sz)`: below sz and
/// KERNBASE, without u32 wrap-around. An empty range must start at or below sz.
pub fn checkrange(sz: u32, va: UVAddr, len: usize) -> Result<(), BadAddr> {
    let len = u32::try_from(len).map_err(|_| BadAddr)?;
    match va.checked_add(len) {
        Some(end) if end.0 <= sz && end.0 <= KERNBASE => Ok(()),
        _ => Err(BadAddr),
    }
}

/// Bytes from `va` to the end of its page, at most `n`.
fn in_page(va: UVAddr, n: usize) -> usize {
    ((PGSIZE - va.offset()) as usize).min(n)
}

/// `va + n` within a range checked not to wrap.
fn plus(va: UVAddr, n: usize) -> UVAddr {
    UVAddr(va.0 + n as u32)
}

/// Maps the not-yet-touched lazy pages of `[va, va + len)` (checked by the caller), so that
/// the kernel can use the range like any other present memory.
pub fn fault_in(m: &mut UserMem<'_>, va: UVAddr, len: usize) -> Result<(), BadAddr> {
    for a in pages(va, len) {
        if let Some(r) = lazyfault(m.pgdir, m.lazy_from, m.sz, a) {
            r.map_err(|_| BadAddr)?;
        }
    }
    Ok(())
}

/// The page addresses of the (checked, non-wrapping) range `[va, va + len)`.
fn pages(va: UVAddr, len: usize) -> impl Iterator<Item = UVAddr> {
    let first = va.page();
    let count = if len == 0 {
        0
    } else {
        (plus(va, len - 1).page().0 - first.0) / PGSIZE + 1
    };
    (0..count).map(move |i| UVAddr(first.0 + i * PGSIZE))
}

/// What the kernel may do with a user page as it is mapped now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Nothing: a hole, the guard page, beyond the process.
    None,
    /// Read it (text, or a page shared read-only for good).
    Read,
    /// Read it, and write once it is made the process's own (a copy-on-write page).
    Cow,
    /// Read and write it.
    Write,
    /// A lazy page not touched yet: it becomes a fresh writable page on first use.
    Lazy,
}

fn access(m: &UserMem<'_>, a: UVAddr) -> Access {
    let pte = getpte(m.pgdir, a).map(|p| p.flags());
    if is_lazy_page(a, m.lazy_from, m.sz, pte) {
        return Access::Lazy;
    }
    match pte {
        Some(f) if f.contains(PTE_P | PTE_U | PTE_W) => Access::Write,
        Some(f) if f.contains(PTE_P | PTE_U | PTE_COW) => Access::Cow,
        Some(f) if f.contains(PTE_P | PTE_U) => Access::Read,
        _ => Access::None,
    }
}

/// Makes the whole user buffer `[va, va + len)` ready for the kernel to read (write()'s
/// source), before a byte moves: inside the process, every page present and user-accessible
/// or a lazy page, which is then mapped. `BadAddr` — and nothing moved — for a buffer that
/// runs off the process, into the guard page or a hole, or needs a lazy page when memory is
/// out (xv6-public's `argptr`, which checks the whole buffer before read or write start).
pub fn prepare_read(m: &mut UserMem<'_>, va: UVAddr, len: usize) -> Result<(), BadAddr> {
    checkrange(m.sz, va, len)?;
    if pages(va, len).any(|a| access(m, a) == Access::None) {
        return Err(BadAddr);
    }
    fault_in(m, va, len)
}

/// Makes the whole user buffer `[va, va + len)` ready for the kernel to write (read()'s
/// destination), before a byte moves: inside the process, and every page writable — lazy
/// pages mapped, copy-on-write pages made the process's own — so that the copy that follows
/// cannot fail and nothing is taken from a pipe, the console or a file for a buffer that
/// could not hold it. `BadAddr` for text, the guard page, a hole, or memory running out for
/// a lazy page or a copy; the pages already made ready stay the process's (no leak: they
/// are its pages, freed with it).
pub fn prepare_write(m: &mut UserMem<'_>, va: UVAddr, len: usize) -> Result<(), BadAddr> {
    checkrange(m.sz, va, len)?;
    if pages(va, len).any(|a| matches!(access(m, a), Access::None | Access::Read)) {
        return Err(BadAddr);
    }
    fault_in(m, va, len)?;
    for a in pages(va, len) {
        if let Some(broken) = cowfault(m.pgdir, a) {
            broken.map_err(|_| BadAddr)?.flush();
        }
    }
    Ok(())
}

/// The kernel address of user byte `va` of a present user page (uva2ka), faulting the page
/// in first if it is an untouched lazy page.
fn user_byte(m: &mut UserMem<'_>, va: UVAddr) -> Result<*mut u8, BadAddr> {
    if let Some(ka) = uva2ka(m.pgdir, va) {
        return Ok(ka.as_ptr());
    }
    lazyfault(m.pgdir, m.lazy_from, m.sz, va)
        .ok_or(BadAddr)?
        .map_err(|_| BadAddr)?;
    uva2ka(m.pgdir, va).map(KVAddr::as_ptr::<u8>).ok_or(BadAddr)
}

/// Copies `dst.len()` bytes from user address `va` of the process `m` (xv6-riscv
/// `copyin`).
pub fn copyin(m: &mut UserMem<'_>, va: UVAddr, dst: &mut [u8]) -> Result<(), BadAddr> {
    checkrange(m.sz, va, dst.len())?;
    let mut done = 0;
    while done < dst.len() {
        let at = plus(va, done);
        let n = in_page(at, dst.len() - done);
        let src = user_byte(m, at)?;
        // SAFETY: user_byte found a present user page; src..src + n stays inside it
        // (in_page), reached through P2V; dst is kernel memory, distinct from user pages.
        unsafe { core::ptr::copy(src, dst[done..].as_mut_ptr(), n) };
        done += n;
    }
    Ok(())
}

/// Fetches the 32-bit word at user address `va` (xv6 `fetchint`): for system-call arguments
/// (at user %esp + 4 + 4n) and argv pointers.
pub fn fetchint(m: &mut UserMem<'_>, va: UVAddr) -> Result<u32, BadAddr> {
    let mut b = [0u8; 4];
    copyin(m, va, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Fetches the NUL-terminated string at user address `va` into `buf` (xv6 `fetchstr`);
/// returns it without the NUL. Fails if the string is not terminated inside the process's
/// memory, or is too long for `buf` (it needs `buf.len() - 1` bytes at most).
pub fn fetchstr<'b>(
    m: &mut UserMem<'_>,
    va: UVAddr,
    buf: &'b mut [u8],
) -> Result<&'b [u8], BadAddr> {
    checkrange(m.sz, va, 0)?;
    let top = m.sz.min(KERNBASE);
    let mut n = 0;
    while n < buf.len() && plus(va, n).0 < top {
        let at = plus(va, n);
        let chunk = in_page(at, (buf.len() - n).min((top - at.0) as usize));
        let src = user_byte(m, at)?;
        // SAFETY: as in copyin: chunk bytes inside one present user page, into kernel memory.
        unsafe { core::ptr::copy(src, buf[n..].as_mut_ptr(), chunk) };
        if let Some(nul) = buf[n..n + chunk].iter().position(|&c| c == 0) {
            return Ok(&buf[..n + nul]);
        }
        n += chunk;
    }
    Err(BadAddr)
}

/// Copies `src` to user address `va` of the process `m`: `checkrange`, lazy pages faulted
/// in, then `cow::cowcopyout` (which copies copy-on-write pages first and refuses read-only
/// ones). For results a system call stores in user memory (wait's status, pipe's
/// descriptors, read's data).
pub fn copyto(m: &mut UserMem<'_>, va: UVAddr, src: &[u8]) -> Result<(), BadAddr> {
    checkrange(m.sz, va, src.len())?;
    fault_in(m, va, src.len())?;
    cowcopyout(m.pgdir, va, src)
}

/// Splits the user range `[va, va + len)` of the process `m` into its page-sized pieces and
/// calls `f(pa, n)` with each piece's guest-physical address and length, in order (export
/// hands them to the VMM). The range is checked like any user buffer and its lazy pages
/// are faulted in; every page must be a present user page — checked for all of them before
/// `f` is called at all, so a bad buffer yields nothing.
pub fn physchunks(
    m: &mut UserMem<'_>,
    va: UVAddr,
    len: u32,
    mut f: impl FnMut(PhysAddr, u32),
) -> Result<(), BadAddr> {
    checkrange(m.sz, va, len as usize)?;
    fault_in(m, va, len as usize)?;
    let end = va.0 + len; // checkrange: no wrap
    let chunks = || {
        let mut a = va.0;
        core::iter::from_fn(move || {
            (a < end).then(|| {
                let n = in_page(UVAddr(a), (end - a) as usize) as u32;
                a += n;
                (UVAddr(a - n), n)
            })
        })
    };
    for (a, _) in chunks() {
        uva2ka(m.pgdir, a).ok_or(BadAddr)?;
    }
    for (a, n) in chunks() {
        let ka = uva2ka(m.pgdir, a).ok_or(BadAddr)?;
        f(V2P(ka), n);
    }
    Ok(())
}

/// Stores the 32-bit word `v` at user address `va` (checked like `copyto`).
pub fn putint(m: &mut UserMem<'_>, va: UVAddr, v: u32) -> Result<(), BadAddr> {
    copyto(m, va, &v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{allocuvm, clearpteu, clearptew, freevm, setupkvm, testmem};

    #[test]
    fn checkrange_sz_kernbase_and_wrap() {
        let sz = 0x5000;
        assert_eq!(checkrange(sz, UVAddr(0), 4), Ok(()));
        assert_eq!(checkrange(sz, UVAddr(0x4FFC), 4), Ok(()));
        assert_eq!(checkrange(sz, UVAddr(0x4FFD), 4), Err(BadAddr));
        assert_eq!(checkrange(sz, UVAddr(0x5000), 0), Ok(()));
        assert_eq!(checkrange(sz, UVAddr(0x5001), 0), Err(BadAddr));
        assert_eq!(checkrange(sz, UVAddr(0x5000), 1), Err(BadAddr));
        // Wrap-around: a huge length, or an address near 4 GiB.
        assert_eq!(checkrange(sz, UVAddr(0x10), usize::MAX), Err(BadAddr));
        assert_eq!(checkrange(sz, UVAddr(0xFFFF_FFFF), 2), Err(BadAddr));
        assert_eq!(checkrange(sz, UVAddr(0xFFFF_F000), 0x1001), Err(BadAddr));
        // Never the kernel half, whatever sz says.
        assert_eq!(checkrange(u32::MAX, UVAddr(KERNBASE), 1), Err(BadAddr));
        assert_eq!(checkrange(u32::MAX, UVAddr(KERNBASE - 4), 4), Ok(()));
        assert_eq!(checkrange(u32::MAX, UVAddr(KERNBASE - 4), 5), Err(BadAddr));
    }

    /// An eager process's memory (no lazy pages).
    fn um(pgdir: &mut PageDir, sz: u32) -> UserMem<'_> {
        UserMem {
            pgdir,
            sz,
            lazy_from: None,
        }
    }

    /// A process of 3 pages: data, a guard page, a page of text; then `sz`.
    fn process() -> (PageDir, u32) {
        let mut d = setupkvm().unwrap();
        let sz = allocuvm(&mut d, 0, 0x3000).unwrap();
        clearpteu(&mut d, UVAddr(0x1000)).ignore("not in use");
        clearptew(&mut d, UVAddr(0x2000)).ignore("not in use");
        (d, sz)
    }

    #[test]
    fn copyin_fetchint_fetchstr() {
        let _g = testmem::lock();
        let before = testmem::free();
        let (mut d, sz) = process();
        crate::vm::copyout(&mut d, UVAddr(0xFF0), b"hello\0").unwrap();
        putint(&mut um(&mut d, sz), UVAddr(0x10), 0xdead_beef).unwrap();
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(0x10)), Ok(0xdead_beef));
        let mut b = [0u8; 6];
        copyin(&mut um(&mut d, sz), UVAddr(0xFF0), &mut b).unwrap();
        assert_eq!(&b, b"hello\0");
        let mut buf = [0u8; 16];
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(0xFF0), &mut buf),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(0xFF5), &mut buf),
            Ok(&b""[..])
        );
        // Too long for the buffer: 6 bytes with the NUL.
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(0xFF0), &mut [0u8; 5]),
            Err(BadAddr)
        );
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(0xFF0), &mut [0u8; 6]),
            Ok(&b"hello"[..])
        );
        // Running into the guard page without a NUL; reading the guard page at all.
        crate::vm::copyout(&mut d, UVAddr(0xFFC), b"abcd").unwrap();
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(0xFFC), &mut buf),
            Err(BadAddr)
        );
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(0xFFE)), Err(BadAddr));
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(0x1000)), Err(BadAddr));
        // Text is readable, not writable.
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(0x2000)), Ok(0));
        assert_eq!(putint(&mut um(&mut d, sz), UVAddr(0x2000), 1), Err(BadAddr));
        // Beyond sz, at KERNBASE, wrapping.
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(sz - 2)), Err(BadAddr));
        assert_eq!(fetchint(&mut um(&mut d, sz), UVAddr(sz)), Err(BadAddr));
        assert_eq!(
            fetchint(&mut um(&mut d, u32::MAX), UVAddr(KERNBASE)),
            Err(BadAddr)
        );
        assert_eq!(
            fetchint(&mut um(&mut d, u32::MAX), UVAddr(0xFFFF_FFFE)),
            Err(BadAddr)
        );
        assert_eq!(
            fetchstr(&mut um(&mut d, sz), UVAddr(sz), &mut buf),
            Err(BadAddr)
        );
        assert_eq!(
            copyto(&mut um(&mut d, sz), UVAddr(0xFFFF_FFFF), b"ab"),
            Err(BadAddr)
        );
        // A string that is not terminated before sz.
        let mut e = setupkvm().unwrap();
        let esz = allocuvm(&mut e, 0, 0x1000).unwrap();
        crate::vm::copyout(&mut e, UVAddr(0xFFE), b"ab").unwrap();
        assert_eq!(
            fetchstr(&mut um(&mut e, esz), UVAddr(0xFFE), &mut buf),
            Err(BadAddr)
        );
        assert_eq!(
            fetchstr(&mut um(&mut e, 0xFFF), UVAddr(0xFFE), &mut buf),
            Err(BadAddr)
        );
        freevm(e);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn kernel_accesses_fault_lazy_pages_in() {
        let _g = testmem::lock();
        let before = testmem::free();
        let (mut d, from) = process();
        // Lazily grown by 4 pages: none mapped yet.
        let sz = from + 4 * PGSIZE;
        let mut m = UserMem {
            pgdir: &mut d,
            sz,
            lazy_from: Some(UVAddr(from)),
        };
        let used = before - testmem::free();
        // Reading a fresh page gives zeroes and maps it (copyin, fetchint).
        assert_eq!(fetchint(&mut m, UVAddr(from + 8)), Ok(0));
        assert_eq!(before - testmem::free(), used + 1);
        // A store across two fresh pages maps both (copyto, as wait and read do).
        copyto(&mut m, UVAddr(from + 2 * PGSIZE - 2), b"lazy").unwrap();
        assert_eq!(before - testmem::free(), used + 3);
        let mut b = [0u8; 4];
        copyin(&mut m, UVAddr(from + 2 * PGSIZE - 2), &mut b).unwrap();
        assert_eq!(&b, b"lazy");
        // A string running through the last fresh page up to sz: mapped, no NUL: refused.
        copyto(&mut m, UVAddr(sz - 1), b"x").unwrap();
        assert_eq!(
            fetchstr(&mut m, UVAddr(sz - 1), &mut [0u8; 8]),
            Err(BadAddr)
        );
        assert_eq!(before - testmem::free(), used + 4);
        // Still refused: beyond sz, the guard page, text (for writes).
        assert_eq!(fetchint(&mut m, UVAddr(sz)), Err(BadAddr));
        assert_eq!(fetchint(&mut m, UVAddr(0x1000)), Err(BadAddr));
        assert_eq!(putint(&mut m, UVAddr(0x2000), 1), Err(BadAddr));
        // Out of memory while faulting in: BadAddr, nothing lost.
        let mut e = setupkvm().unwrap();
        let esz = allocuvm(&mut e, 0, PGSIZE).unwrap();
        let mut held = Vec::new();
        while let Some(p) = crate::kalloc::kalloc() {
            held.push(p);
        }
        let mut me = UserMem {
            pgdir: &mut e,
            sz: esz + PGSIZE,
            lazy_from: Some(UVAddr(esz)),
        };
        assert_eq!(putint(&mut me, UVAddr(esz), 1), Err(BadAddr));
        for p in held {
            // SAFETY: pages just taken from kalloc.
            unsafe { crate::kalloc::kfree(p) };
        }
        freevm(e);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn whole_buffers_are_checked_before_anything_moves() {
        let _g = testmem::lock();
        let before = testmem::free();
        let (mut d, from) = process();
        let sz = from + 2 * PGSIZE;
        let mut m = UserMem {
            pgdir: &mut d,
            sz,
            lazy_from: Some(UVAddr(from)),
        };
        // Data: readable and writable; text: readable only; the guard page: neither.
        assert_eq!(prepare_write(&mut m, UVAddr(0x10), 8), Ok(()));
        assert_eq!(prepare_read(&mut m, UVAddr(0x2000), 8), Ok(()));
        assert_eq!(prepare_write(&mut m, UVAddr(0x2000), 8), Err(BadAddr));
        assert_eq!(prepare_write(&mut m, UVAddr(0xFFC), 8), Err(BadAddr));
        assert_eq!(prepare_read(&mut m, UVAddr(0xFFC), 8), Err(BadAddr));
        assert_eq!(prepare_read(&mut m, UVAddr(0x1FFC), 8), Err(BadAddr));
        // Straddling sz; empty at sz; nothing allocated for a refused buffer that would
        // also have needed a lazy page.
        let used = before - testmem::free();
        assert_eq!(prepare_read(&mut m, UVAddr(sz - 4), 8), Err(BadAddr));
        assert_eq!(prepare_write(&mut m, UVAddr(0x2FFC), 8), Err(BadAddr));
        assert_eq!(before - testmem::free(), used);
        assert_eq!(prepare_write(&mut m, UVAddr(sz), 0), Ok(()));
        // Lazy pages are mapped for either direction.
        assert_eq!(prepare_write(&mut m, UVAddr(from + PGSIZE - 2), 4), Ok(()));
        assert_eq!(before - testmem::free(), used + 2);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn prepare_write_copies_cow_pages_or_fails_when_memory_is_out() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut d = setupkvm().unwrap();
        let sz = allocuvm(&mut d, 0, 2 * PGSIZE).unwrap();
        let child = crate::cow::cowuvm(&mut d, sz).unwrap().ignore("host test");
        let mut m = um(&mut d, sz);
        let mut held = Vec::new();
        while let Some(p) = crate::kalloc::kalloc() {
            held.push(p);
        }
        assert_eq!(prepare_write(&mut m, UVAddr(0), 8), Err(BadAddr));
        assert_eq!(prepare_read(&mut m, UVAddr(0), 8), Ok(()));
        for p in held.drain(..) {
            // SAFETY: pages just taken from kalloc.
            unsafe { crate::kalloc::kfree(p) };
        }
        assert_eq!(prepare_write(&mut m, UVAddr(PGSIZE - 4), 8), Ok(()));
        for a in [0, PGSIZE] {
            let f = crate::vm::getpte(m.pgdir, UVAddr(a)).unwrap().flags();
            assert!(f.contains(PTE_W) && !f.contains(PTE_COW));
        }
        freevm(child);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn physchunks_splits_at_pages_after_faulting_in() {
        let _g = testmem::lock();
        let before = testmem::free();
        let (mut d, from) = process();
        let sz = from + 3 * PGSIZE;
        let mut m = UserMem {
            pgdir: &mut d,
            sz,
            lazy_from: Some(UVAddr(from)),
        };
        let mut got = Vec::new();
        physchunks(&mut m, UVAddr(from + 0xF00), 0x1200, |pa, n| {
            got.push((pa.0, n))
        })
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0 % PGSIZE, got[0].1), (0xF00, 0x100));
        assert_eq!((got[1].0 % PGSIZE, got[1].1), (0, 0x1000));
        assert_eq!((got[2].0 % PGSIZE, got[2].1), (0, 0x100));
        let pa = crate::vm::getpte(m.pgdir, UVAddr(from + PGSIZE))
            .unwrap()
            .addr();
        assert_eq!(got[1].0, pa.0);
        got.clear();
        physchunks(&mut m, UVAddr(from), 0, |pa, n| got.push((pa.0, n))).unwrap();
        assert!(got.is_empty());
        // Bad buffers yield nothing: past sz, through the guard page.
        assert_eq!(
            physchunks(&mut m, UVAddr(sz - 4), 8, |pa, n| got.push((pa.0, n))),
            Err(BadAddr)
        );
        assert_eq!(
            physchunks(&mut m, UVAddr(0xF00), 0x200, |pa, n| got.push((pa.0, n))),
            Err(BadAddr)
        );
        assert!(got.is_empty());
        freevm(d);
        assert_eq!(testmem::free(), before);
    }
}
