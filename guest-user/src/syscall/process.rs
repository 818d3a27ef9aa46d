//! Process system calls: fork, exit, wait, kill, getpid, exec, sleep, uptime.

use super::raw;
use core::ffi::CStr;

/// xv6's MAXARG: the most arguments exec accepts (the kernel refuses more with −1).
pub const MAXARG: usize = xv6_abi::exec::MAXARG;

/// The most arguments [`exec`] passes on, more than [`MAXARG`] so that programs can check
/// that the kernel refuses too many.
pub const EXEC_WRAPPER_MAX: usize = 2 * MAXARG;

/// Creates a process; returns the child's pid in the parent, 0 in the child, −1 on error.
pub fn fork() -> i32 {
    // SAFETY: fork takes no pointers.
    unsafe { raw::sys_fork() }
}

/// Ends the calling process with `status` (its low 8 bits are what `wait` reports): the
/// status-carrying exit (27).
pub fn exit(status: i32) -> ! {
    // SAFETY: exit takes no pointers and does not return.
    unsafe { raw::sys_exit_status(status) }
}

/// Waits for a child to exit; returns its pid (−1 if there is none) and stores its exit
/// status: `exit`'s argument & 0xff, 139 for a bad memory access, 137 after `kill` (the
/// status-carrying wait, 28).
pub fn wait(status: Option<&mut i32>) -> i32 {
    let p = status.map_or(core::ptr::null_mut(), |s| s as *mut i32);
    // SAFETY: p is null or points to a writable i32.
    unsafe { raw::sys_wait_status(p) }
}

/// Kills process `pid` (it exits with 137); returns 0, or −1 if there is no such process.
pub fn kill(pid: i32) -> i32 {
    // SAFETY: kill takes no pointers.
    unsafe { raw::sys_kill(pid) }
}

/// This process's pid.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no pointers.
    unsafe { raw::sys_getpid() }
}

/// Replaces this program with the program `path` (a name in the VMM's program archive)
/// whose arguments are `argv` (argv[0] is, by convention, the program's name); returns −1 on
/// error and does not return on success. Up to [`EXEC_WRAPPER_MAX`] arguments are passed on
/// (more → −1 here); the kernel itself accepts [`MAXARG`].
pub fn exec(path: &CStr, argv: &[&CStr]) -> i32 {
    let mut ptrs = [core::ptr::null::<u8>(); EXEC_WRAPPER_MAX + 1];
    if argv.len() > EXEC_WRAPPER_MAX {
        return -1;
    }
    for (p, a) in ptrs.iter_mut().zip(argv) {
        *p = a.as_ptr().cast();
    }
    // SAFETY: path and every argv entry are NUL-terminated; the array ends with a null.
    unsafe { raw::sys_exec(path.as_ptr().cast(), ptrs.as_ptr()) }
}

/// Sleeps for `ticks` clock ticks (100 Hz); returns 0, or −1 if killed meanwhile.
pub fn sleep(ticks: i32) -> i32 {
    // SAFETY: sleep takes no pointers.
    unsafe { raw::sys_sleep(ticks) }
}

/// Clock ticks (100 Hz) since boot.
pub fn uptime() -> i32 {
    // SAFETY: uptime takes no pointers.
    unsafe { raw::sys_uptime() }
}
