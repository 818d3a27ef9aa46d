//! The program's arguments, as exec put them on the stack page (argc, argv, the strings).
//!
//! `_start` records argc and argv here; [`args`] hands them out as `&'static CStr`: they
//! live on the stack page, which exists as long as the process.

use core::ffi::CStr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*const u8> = AtomicPtr::new(core::ptr::null_mut());

/// Records exec's argc/argv (called once, by `_start`).
///
/// # Safety
/// `argv` must point to `argc` pointers to NUL-terminated strings that stay valid for the
/// rest of the process.
pub(crate) unsafe fn init(argc: i32, argv: *const *const u8) {
    ARGV.store(argv.cast_mut(), Ordering::Relaxed);
    ARGC.store(usize::try_from(argc).unwrap_or(0), Ordering::Relaxed);
}

/// The number of arguments (argv[0], the program name, included).
pub fn argc() -> usize {
    ARGC.load(Ordering::Relaxed)
}

/// Argument `i` (0 = the program's name), if there is one.
pub fn arg(i: usize) -> Option<&'static CStr> {
    if i >= argc() {
        return None;
    }
    let argv = ARGV.load(Ordering::Relaxed);
    // SAFETY: i < argc, and init's contract says argv[i] is a valid NUL-terminated string
    // for the life of the process.
    Some(unsafe { CStr::from_ptr((*argv.add(i)).cast()) })
}

/// Argument `i` as text ("" if absent, "?" if not UTF-8).
pub fn arg_str(i: usize) -> &'static str {
    arg(i).map_or("", |a| a.to_str().unwrap_or("?"))
}

/// Argument `i` as a number in `1..=max`; `default` when there is no argument `i`, None
/// when it is not such a number.
pub fn arg_number(i: usize, default: usize, max: usize) -> Option<usize> {
    if argc() <= i {
        return Some(default);
    }
    arg_str(i).parse().ok().filter(|n| (1..=max).contains(n))
}

/// The arguments, argv[0] first.
pub fn args() -> impl Iterator<Item = &'static CStr> {
    (0..argc()).filter_map(arg)
}

/// An 8-bit checksum of argument strings (32-bit FNV-1a over their bytes, each followed by
/// its NUL, folded to 8 bits by xor). The `argsum` program exits with the checksum of its
/// arguments after argv[0], so a test can check what exec delivered through the exit status.
pub fn checksum<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for a in args {
        for &b in a.iter().chain(&[0]) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    h.to_le_bytes().iter().fold(0, |x, y| x ^ y)
}
