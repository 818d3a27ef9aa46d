//! File system calls. Only the console exists: `read` on fd 0 (the VMM's stdin), `write` on
//! fd 1 (stdout) and fd 2 (stderr). The others are xv6's file-system calls, kept for the ABI:
//! this kernel has no file system and answers them with −1.

use super::raw;
use core::ffi::CStr;

/// Byte counts passed to the kernel are C ints.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Reads up to `buf.len()` bytes from `fd`; returns the count, 0 at end of file, −1 on error.
pub fn read(fd: i32, buf: &mut [u8]) -> i32 {
    // SAFETY: buf is writable for the length passed.
    unsafe { raw::sys_read(fd, buf.as_mut_ptr(), len_i32(buf.len())) }
}

/// Writes `buf` to `fd`; returns the count written or −1.
pub fn write(fd: i32, buf: &[u8]) -> i32 {
    // SAFETY: buf is readable for the length passed.
    unsafe { raw::sys_write(fd, buf.as_ptr(), len_i32(buf.len())) }
}

/// xv6's `struct stat` (stat.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    /// T_DIR, T_FILE or T_DEV.
    pub kind: i16,
    /// File system's disk device.
    pub dev: i32,
    /// Inode number.
    pub ino: u32,
    /// Number of links to the file.
    pub nlink: i16,
    /// Size of the file in bytes.
    pub size: u32,
}

/// Creates a pipe (−1: no pipes here).
pub fn pipe(fds: &mut [i32; 2]) -> i32 {
    // SAFETY: fds is writable for two ints.
    unsafe { raw::sys_pipe(fds.as_mut_ptr()) }
}

/// Describes an open file (−1: no files here).
pub fn fstat(fd: i32, st: &mut Stat) -> i32 {
    // SAFETY: st is a writable `struct stat`.
    unsafe { raw::sys_fstat(fd, (st as *mut Stat).cast()) }
}

/// Opens a file (−1: no file system here).
pub fn open(path: &CStr, mode: i32) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_open(path.as_ptr().cast(), mode) }
}

/// Closes a file descriptor.
pub fn close(fd: i32) -> i32 {
    // SAFETY: close takes no pointers.
    unsafe { raw::sys_close(fd) }
}

/// Duplicates a file descriptor.
pub fn dup(fd: i32) -> i32 {
    // SAFETY: dup takes no pointers.
    unsafe { raw::sys_dup(fd) }
}

/// Changes the current directory (−1: no file system here).
pub fn chdir(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_chdir(path.as_ptr().cast()) }
}

/// Creates a directory (−1: no file system here).
pub fn mkdir(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_mkdir(path.as_ptr().cast()) }
}

/// Creates a device file (−1: no file system here).
pub fn mknod(path: &CStr, major: i16, minor: i16) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_mknod(path.as_ptr().cast(), major, minor) }
}

/// Removes a name (−1: no file system here).
pub fn unlink(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_unlink(path.as_ptr().cast()) }
}

/// Gives `old` the new name `new` (−1: no file system here).
pub fn link(old: &CStr, new: &CStr) -> i32 {
    // SAFETY: both paths are NUL-terminated.
    unsafe { raw::sys_link(old.as_ptr().cast(), new.as_ptr().cast()) }
}
