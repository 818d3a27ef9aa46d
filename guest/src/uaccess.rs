//! Access to user memory for system calls (xv6 syscall.c's fetchint/fetchstr/argptr, and
//! copyin): every user pointer or string a system call gets goes through here.
//!
//! The rules: a user range `[va, va + len)` must lie inside the process's memory `[0, sz)`,
//! never reach KERNBASE, and not wrap around 4 GiB (`checkrange`); then the bytes are read or
//! written through the process's page directory (`vm::uva2ka`, `vm::copyout`), never by
//! dereferencing the user address itself — so a page that is not mapped (a hole below sz),
//! not user-accessible (the guard page) or, for writes, not writable (program text) is a
//! `BadAddr` too, not a kernel page fault. (A later milestone's lazy sbrk hooks in here.)

use crate::memlayout::KERNBASE;
use crate::mmu::PGSIZE;
use crate::vm::{copyout, uva2ka, PageDir};

/// A user address the process may not use: the system call fails with −1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAddr;

/// Checks that `[va, va + len)` lies in a process's memory `[0, sz)`: below sz and
/// KERNBASE, without u32 wrap-around. An empty range must start at or below sz.
pub fn checkrange(sz: u32, va: u32, len: usize) -> Result<(), BadAddr> {
    let len = u32::try_from(len).map_err(|_| BadAddr)?;
    match va.checked_add(len) {
        Some(end) if end <= sz && end <= KERNBASE => Ok(()),
        _ => Err(BadAddr),
    }
}

/// Bytes from `va` to the end of its page, at most `n`.
fn in_page(va: u32, n: usize) -> usize {
    ((PGSIZE - va % PGSIZE) as usize).min(n)
}

/// Copies `dst.len()` bytes from user address `va` of a process of size `sz` whose page
/// directory is `pgdir` (xv6-riscv `copyin`).
pub fn copyin(pgdir: &PageDir, sz: u32, va: u32, dst: &mut [u8]) -> Result<(), BadAddr> {
    checkrange(sz, va, dst.len())?;
    let (mut va, mut done) = (va, 0);
    while done < dst.len() {
        let n = in_page(va, dst.len() - done);
        let src = uva2ka(pgdir, va).ok_or(BadAddr)?;
        // SAFETY: uva2ka found a present user page; src..src + n stays inside it (in_page),
        // reached through P2V; dst is kernel memory, distinct from user pages.
        unsafe { core::ptr::copy(src, dst[done..].as_mut_ptr(), n) };
        done += n;
        va += n as u32;
    }
    Ok(())
}

/// Fetches the 32-bit word at user address `va` (xv6 `fetchint`): for system-call arguments
/// (at user %esp + 4 + 4n) and argv pointers.
pub fn fetchint(pgdir: &PageDir, sz: u32, va: u32) -> Result<u32, BadAddr> {
    let mut b = [0u8; 4];
    copyin(pgdir, sz, va, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Fetches the NUL-terminated string at user address `va` into `buf` (xv6 `fetchstr`);
/// returns it without the NUL. Fails if the string is not terminated inside the process's
/// memory, or is too long for `buf` (it needs `buf.len() - 1` bytes at most).
pub fn fetchstr<'b>(
    pgdir: &PageDir,
    sz: u32,
    va: u32,
    buf: &'b mut [u8],
) -> Result<&'b [u8], BadAddr> {
    checkrange(sz, va, 0)?;
    let (mut va, mut n) = (va, 0);
    while n < buf.len() && va < sz.min(KERNBASE) {
        let chunk = in_page(va, (buf.len() - n).min((sz.min(KERNBASE) - va) as usize));
        let src = uva2ka(pgdir, va).ok_or(BadAddr)?;
        // SAFETY: as in copyin: chunk bytes inside one present user page, into kernel memory.
        unsafe { core::ptr::copy(src, buf[n..].as_mut_ptr(), chunk) };
        if let Some(nul) = buf[n..n + chunk].iter().position(|&c| c == 0) {
            return Ok(&buf[..n + nul]);
        }
        n += chunk;
        va += chunk as u32;
    }
    Err(BadAddr)
}

/// Copies `src` to user address `va` of a process of size `sz`: `checkrange`, then
/// `vm::copyout` (which also refuses read-only pages). For results a system call stores in
/// user memory (wait's status, pipe's descriptors, read's data).
pub fn copyto(pgdir: &mut PageDir, sz: u32, va: u32, src: &[u8]) -> Result<(), BadAddr> {
    checkrange(sz, va, src.len())?;
    copyout(pgdir, va, src)
}

/// Stores the 32-bit word `v` at user address `va` (checked like `copyto`).
pub fn putint(pgdir: &mut PageDir, sz: u32, va: u32, v: u32) -> Result<(), BadAddr> {
    copyto(pgdir, sz, va, &v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{allocuvm, clearpteu, clearptew, freevm, setupkvm, testmem};

    #[test]
    fn checkrange_sz_kernbase_and_wrap() {
        let sz = 0x5000;
        assert_eq!(checkrange(sz, 0, 4), Ok(()));
        assert_eq!(checkrange(sz, 0x4FFC, 4), Ok(()));
        assert_eq!(checkrange(sz, 0x4FFD, 4), Err(BadAddr));
        assert_eq!(checkrange(sz, 0x5000, 0), Ok(()));
        assert_eq!(checkrange(sz, 0x5001, 0), Err(BadAddr));
        assert_eq!(checkrange(sz, 0x5000, 1), Err(BadAddr));
        // Wrap-around: a huge length, or an address near 4 GiB.
        assert_eq!(checkrange(sz, 0x10, usize::MAX), Err(BadAddr));
        assert_eq!(checkrange(sz, 0xFFFF_FFFF, 2), Err(BadAddr));
        assert_eq!(checkrange(sz, 0xFFFF_F000, 0x1001), Err(BadAddr));
        // Never the kernel half, whatever sz says.
        assert_eq!(checkrange(u32::MAX, KERNBASE, 1), Err(BadAddr));
        assert_eq!(checkrange(u32::MAX, KERNBASE - 4, 4), Ok(()));
        assert_eq!(checkrange(u32::MAX, KERNBASE - 4, 5), Err(BadAddr));
    }

    /// A process of 3 pages: data, a guard page, a page of text; then `sz`.
    fn process() -> (PageDir, u32) {
        let mut d = setupkvm().unwrap();
        let sz = allocuvm(&mut d, 0, 0x3000).unwrap();
        clearpteu(&mut d, 0x1000);
        clearptew(&mut d, 0x2000);
        (d, sz)
    }

    #[test]
    fn copyin_fetchint_fetchstr() {
        let _g = testmem::lock();
        let before = testmem::free();
        let (mut d, sz) = process();
        crate::vm::copyout(&mut d, 0xFF0, b"hello\0").unwrap();
        putint(&mut d, sz, 0x10, 0xdead_beef).unwrap();
        assert_eq!(fetchint(&d, sz, 0x10), Ok(0xdead_beef));
        let mut b = [0u8; 6];
        copyin(&d, sz, 0xFF0, &mut b).unwrap();
        assert_eq!(&b, b"hello\0");
        let mut buf = [0u8; 16];
        assert_eq!(fetchstr(&d, sz, 0xFF0, &mut buf), Ok(&b"hello"[..]));
        assert_eq!(fetchstr(&d, sz, 0xFF5, &mut buf), Ok(&b""[..]));
        // Too long for the buffer: 6 bytes with the NUL.
        assert_eq!(fetchstr(&d, sz, 0xFF0, &mut [0u8; 5]), Err(BadAddr));
        assert_eq!(fetchstr(&d, sz, 0xFF0, &mut [0u8; 6]), Ok(&b"hello"[..]));
        // Running into the guard page without a NUL; reading the guard page at all.
        crate::vm::copyout(&mut d, 0xFFC, b"abcd").unwrap();
        assert_eq!(fetchstr(&d, sz, 0xFFC, &mut buf), Err(BadAddr));
        assert_eq!(fetchint(&d, sz, 0xFFE), Err(BadAddr));
        assert_eq!(fetchint(&d, sz, 0x1000), Err(BadAddr));
        // Text is readable, not writable.
        assert_eq!(fetchint(&d, sz, 0x2000), Ok(0));
        assert_eq!(putint(&mut d, sz, 0x2000, 1), Err(BadAddr));
        // Beyond sz, at KERNBASE, wrapping.
        assert_eq!(fetchint(&d, sz, sz - 2), Err(BadAddr));
        assert_eq!(fetchint(&d, sz, sz), Err(BadAddr));
        assert_eq!(fetchint(&d, u32::MAX, KERNBASE), Err(BadAddr));
        assert_eq!(fetchint(&d, u32::MAX, 0xFFFF_FFFE), Err(BadAddr));
        assert_eq!(fetchstr(&d, sz, sz, &mut buf), Err(BadAddr));
        assert_eq!(copyto(&mut d, sz, 0xFFFF_FFFF, b"ab"), Err(BadAddr));
        // A string that is not terminated before sz.
        let mut e = setupkvm().unwrap();
        let esz = allocuvm(&mut e, 0, 0x1000).unwrap();
        crate::vm::copyout(&mut e, 0xFFE, b"ab").unwrap();
        assert_eq!(fetchstr(&e, esz, 0xFFE, &mut buf), Err(BadAddr));
        assert_eq!(fetchstr(&e, 0xFFF, 0xFFE, &mut buf), Err(BadAddr));
        freevm(e);
        freevm(d);
        assert_eq!(testmem::free(), before);
    }
}
