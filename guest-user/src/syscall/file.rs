//! File system calls (xv6's): descriptors (fd 0 is the VMM's stdin, 1 its stdout, 2 its
//! stderr — all three the console), pipes, and the in-memory file system with xv6's
//! semantics (docs/abi.md).

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

/// open's modes (xv6 fcntl.h), and O_TRUNC (xv6-riscv's, an extension: docs/abi.md).
pub use xv6_abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};

/// Inode types of [`Stat::kind`] (xv6 stat.h).
pub const T_DIR: i16 = 1;
pub const T_FILE: i16 = 2;
pub const T_DEV: i16 = 3;

/// Bytes of a name in a directory entry (xv6 DIRSIZ).
pub const DIRSIZ: usize = 14;

/// A directory entry as `read` of a directory returns it (xv6's `struct dirent`); inum 0 is
/// a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Dirent {
    pub inum: u16,
    pub name: [u8; DIRSIZ],
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

/// Creates a pipe: `fds[0]` reads, `fds[1]` writes; 0 or −1.
pub fn pipe(fds: &mut [i32; 2]) -> i32 {
    // SAFETY: fds is writable for two ints.
    unsafe { raw::sys_pipe(fds.as_mut_ptr()) }
}

/// Describes an open file (−1 for a pipe).
pub fn fstat(fd: i32, st: &mut Stat) -> i32 {
    // SAFETY: st is a writable `struct stat`.
    unsafe { raw::sys_fstat(fd, (st as *mut Stat).cast()) }
}

/// Opens `path` with `mode` (O_RDONLY, O_WRONLY, O_RDWR, | O_CREATE, | O_TRUNC); a
/// descriptor or −1.
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

/// Changes the current directory.
pub fn chdir(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_chdir(path.as_ptr().cast()) }
}

/// Creates a directory.
pub fn mkdir(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_mkdir(path.as_ptr().cast()) }
}

/// Creates a device file (major 1: the console).
pub fn mknod(path: &CStr, major: i16, minor: i16) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_mknod(path.as_ptr().cast(), major, minor) }
}

/// Removes a name.
pub fn unlink(path: &CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { raw::sys_unlink(path.as_ptr().cast()) }
}

/// Gives `old` the additional name `new`.
pub fn link(old: &CStr, new: &CStr) -> i32 {
    // SAFETY: both paths are NUL-terminated.
    unsafe { raw::sys_link(old.as_ptr().cast(), new.as_ptr().cast()) }
}
