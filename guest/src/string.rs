//! The memory functions the compiler calls (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`):
//! no libc here, so the kernel provides them. They are written so the compiler cannot turn
//! them back into calls to themselves: string instructions (`rep movsb`/`rep stosb`) on the
//! x86 kernel, and volatile byte accesses in the portable versions (also used by the host
//! tests, which check the semantics).

/// Copies `n` bytes forward, one at a time.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; if they overlap, `dst <= src`.
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, within both buffers (caller); forward order is overlap-safe for dst <= src.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// Copies `n` bytes backward, one at a time.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; if they overlap, `dst >= src`.
pub unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
    for i in (0..n).rev() {
        // SAFETY: as in copy_forward, in the order that is safe for dst >= src.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// Compares `n` bytes: negative, zero or positive like C's memcmp.
///
/// # Safety
/// Both pointers readable for `n` bytes.
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, within both buffers (caller).
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[cfg(all(target_arch = "x86", not(test)))]
mod exported {
    use core::arch::asm;

    /// C `memcpy`: whole aligned words with `rep movsd` (page copies — COW breaks,
    /// copyuvm, exec — are all of that kind), bytes with `rep movsb` otherwise.
    ///
    /// # Safety
    /// As C's: non-overlapping buffers valid for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        let words = (dst as usize | src as usize | n).is_multiple_of(4);
        // ESI is reserved by LLVM on 32-bit x86, so swap the source into it and back.
        // SAFETY: (both) the caller guarantees the buffers; with `words`, dst, src and n are
        // word multiples, so n / 4 words cover them exactly; DF is clear (ABI); ESI is
        // restored.
        unsafe {
            if words {
                asm!(
                    "xchg esi, {s}",
                    "rep movsd",
                    "mov esi, {s}",
                    s = inout(reg) src => _,
                    inout("edi") dst => _,
                    inout("ecx") n / 4 => _,
                    options(nostack, preserves_flags)
                );
            } else {
                asm!(
                    "xchg esi, {s}",
                    "rep movsb",
                    "mov esi, {s}",
                    s = inout(reg) src => _,
                    inout("edi") dst => _,
                    inout("ecx") n => _,
                    options(nostack, preserves_flags)
                );
            }
        }
        dst
    }

    /// C `memmove`.
    ///
    /// # Safety
    /// As C's: buffers valid for `n` bytes, overlap allowed.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller guarantees the buffers; the copy direction handles overlap.
        unsafe {
            if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
                memcpy(dst, src, n);
            } else {
                super::copy_backward(dst, src, n);
            }
        }
        dst
    }

    /// C `memset`, as xv6's: whole aligned words with `rep stosl` (page zeroing and kfree's
    /// junk fill are all of that kind), bytes with `rep stosb` otherwise.
    ///
    /// # Safety
    /// As C's: `dst` writable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        if (dst as usize).is_multiple_of(4) && n.is_multiple_of(4) {
            let word = (c as u32 & 0xff) * 0x0101_0101;
            // SAFETY: the caller guarantees the buffer; dst and n are word multiples; DF is
            // clear (ABI).
            unsafe {
                asm!(
                    "rep stosd",
                    inout("edi") dst => _,
                    inout("ecx") n / 4 => _,
                    in("eax") word,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            // SAFETY: the caller guarantees the buffer; DF is clear (ABI).
            unsafe {
                asm!(
                    "rep stosb",
                    inout("edi") dst => _,
                    inout("ecx") n => _,
                    in("eax") c,
                    options(nostack, preserves_flags)
                );
            }
        }
        dst
    }

    /// C `memcmp`.
    ///
    /// # Safety
    /// As C's: both buffers readable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: forwarded from the caller.
        unsafe { super::compare(a, b, n) }
    }

    /// `bcmp`: zero iff equal.
    ///
    /// # Safety
    /// As memcmp.
    #[no_mangle]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: forwarded from the caller.
        unsafe { super::compare(a, b, n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_copies() {
        let mut b = *b"abcdefgh";
        let p = b.as_mut_ptr();
        // SAFETY: both ranges lie in b; forward for dst < src, backward for dst > src.
        unsafe { copy_forward(p, p.add(2), 6) };
        assert_eq!(&b, b"cdefghgh");
        let mut b = *b"abcdefgh";
        let p = b.as_mut_ptr();
        // SAFETY: as above.
        unsafe { copy_backward(p.add(2), p, 6) };
        assert_eq!(&b, b"ababcdef");
    }

    #[test]
    fn compares_like_c() {
        // SAFETY: the arrays are 3 bytes long.
        unsafe {
            assert_eq!(compare(b"abc".as_ptr(), b"abc".as_ptr(), 3), 0);
            assert!(compare(b"abc".as_ptr(), b"abd".as_ptr(), 3) < 0);
            assert!(compare([b'b', 0, 0].as_ptr(), [b'a', 0xff, 0].as_ptr(), 3) > 0);
            assert_eq!(compare(b"abc".as_ptr(), b"xyz".as_ptr(), 0), 0);
        }
    }
}
