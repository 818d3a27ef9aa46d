//! The memory functions the compiler calls (`memcpy`, `memmove`, `memset`, `memcmp`,
//! `bcmp`, and `strlen` for `CStr`): no libc here. Volatile byte accesses keep the compiler
//! from turning the loops back into calls to these very functions. (The kernel has its own,
//! faster copy.)

/// C `memcpy`.
///
/// # Safety
/// As C's: non-overlapping buffers valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, inside both buffers (caller).
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dst
}

/// C `memmove`.
///
/// # Safety
/// As C's: buffers valid for `n` bytes, overlap allowed.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        // SAFETY: forward copying is overlap-safe for dst <= src.
        unsafe { memcpy(dst, src, n) };
    } else {
        for i in (0..n).rev() {
            // SAFETY: i < n, inside both buffers; backward order is safe for dst > src.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }
    dst
}

/// C `memset`.
///
/// # Safety
/// As C's: `dst` writable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, inside the buffer (caller).
        unsafe { dst.add(i).write_volatile(c as u8) };
    }
    dst
}

/// C `memcmp`.
///
/// # Safety
/// As C's: both buffers readable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, inside both buffers (caller).
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`: zero iff equal.
///
/// # Safety
/// As memcmp.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { memcmp(a, b, n) }
}

/// C `strlen` (`CStr::from_ptr` calls it).
///
/// # Safety
/// As C's: `s` points to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: every byte up to and including the NUL is readable (caller).
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
