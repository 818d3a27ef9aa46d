//! System calls (xv6 usys.S + user.h): one assembly stub per call, following xv6's x86 ABI —
//! the number in %eax, `int $64`, the arguments where a cdecl call left them (on the user
//! stack above the stub's return address, argument n at %esp + 4 + 4n), the result in
//! %eax (−1 on error) — and safe Rust wrappers around them.

use core::ffi::CStr;

/// System call numbers (xv6 syscall.h).
pub mod nr {
    pub const SYS_FORK: u32 = 1;
    pub const SYS_EXIT: u32 = 2;
    pub const SYS_WAIT: u32 = 3;
    pub const SYS_READ: u32 = 5;
    pub const SYS_KILL: u32 = 6;
    pub const SYS_EXEC: u32 = 7;
    pub const SYS_GETPID: u32 = 11;
    pub const SYS_SBRK: u32 = 12;
    pub const SYS_SLEEP: u32 = 13;
    pub const SYS_UPTIME: u32 = 14;
    pub const SYS_WRITE: u32 = 16;
}

/// `T_SYSCALL`: the trap vector of system calls.
pub const T_SYSCALL: u32 = 64;

core::arch::global_asm!(
    ".macro SYSCALL name, num",
    ".pushsection .text.sys_\\name, \"ax\"",
    ".globl sys_\\name",
    ".type sys_\\name, @function",
    "sys_\\name:",
    "mov eax, \\num",
    "int {t_syscall}",
    "ret",
    ".size sys_\\name, . - sys_\\name",
    ".popsection",
    ".endm",
    "SYSCALL fork, {fork}",
    "SYSCALL exit, {exit}",
    "SYSCALL wait, {wait}",
    "SYSCALL read, {read}",
    "SYSCALL kill, {kill}",
    "SYSCALL exec, {exec}",
    "SYSCALL getpid, {getpid}",
    "SYSCALL sbrk, {sbrk}",
    "SYSCALL sleep, {sleep}",
    "SYSCALL uptime, {uptime}",
    "SYSCALL write, {write}",
    t_syscall = const T_SYSCALL,
    fork = const nr::SYS_FORK,
    exit = const nr::SYS_EXIT,
    wait = const nr::SYS_WAIT,
    read = const nr::SYS_READ,
    kill = const nr::SYS_KILL,
    exec = const nr::SYS_EXEC,
    getpid = const nr::SYS_GETPID,
    sbrk = const nr::SYS_SBRK,
    sleep = const nr::SYS_SLEEP,
    uptime = const nr::SYS_UPTIME,
    write = const nr::SYS_WRITE,
);

/// The raw stubs, with the C prototypes of xv6's user.h (exit/wait as in xv6-riscv).
pub mod raw {
    extern "C" {
        pub fn sys_fork() -> i32;
        pub fn sys_exit(status: i32) -> !;
        pub fn sys_wait(status: *mut i32) -> i32;
        pub fn sys_read(fd: i32, buf: *mut u8, n: i32) -> i32;
        pub fn sys_kill(pid: i32) -> i32;
        pub fn sys_exec(path: *const u8, argv: *const *const u8) -> i32;
        pub fn sys_getpid() -> i32;
        pub fn sys_sbrk(n: i32) -> *mut u8;
        pub fn sys_sleep(ticks: i32) -> i32;
        pub fn sys_uptime() -> i32;
        pub fn sys_write(fd: i32, buf: *const u8, n: i32) -> i32;
    }
}

/// Byte counts passed to the kernel are C ints.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Creates a process; returns the child's pid in the parent, 0 in the child, −1 on error.
pub fn fork() -> i32 {
    // SAFETY: fork takes no pointers.
    unsafe { raw::sys_fork() }
}

/// Ends the calling process with `status`.
pub fn exit(status: i32) -> ! {
    // SAFETY: exit takes no pointers and does not return.
    unsafe { raw::sys_exit(status) }
}

/// Waits for a child to exit; returns its pid (−1 if none) and stores its exit status.
pub fn wait(status: Option<&mut i32>) -> i32 {
    let p = status.map_or(core::ptr::null_mut(), |s| s as *mut i32);
    // SAFETY: p is null or points to a writable i32.
    unsafe { raw::sys_wait(p) }
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

/// Kills process `pid`.
pub fn kill(pid: i32) -> i32 {
    // SAFETY: kill takes no pointers.
    unsafe { raw::sys_kill(pid) }
}

/// Replaces this program with `path`, whose arguments are the NUL-terminated strings of
/// `argv` (at most 31, as MAXARG 32 leaves room for the terminating null); returns −1 on error.
pub fn exec(path: &CStr, argv: &[&CStr]) -> i32 {
    let mut ptrs = [core::ptr::null::<u8>(); 32];
    if argv.len() >= ptrs.len() {
        return -1;
    }
    for (p, a) in ptrs.iter_mut().zip(argv) {
        *p = a.as_ptr().cast();
    }
    // SAFETY: path and every argv entry are NUL-terminated; the array ends with null.
    unsafe { raw::sys_exec(path.as_ptr().cast(), ptrs.as_ptr()) }
}

/// This process's pid.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no pointers.
    unsafe { raw::sys_getpid() }
}

/// Grows (or shrinks) the process's memory by `n` bytes; returns the old end, or
/// `usize::MAX as *mut u8` (−1) on error.
pub fn sbrk(n: i32) -> *mut u8 {
    // SAFETY: sbrk takes no pointers; using the returned memory is the caller's business.
    unsafe { raw::sys_sbrk(n) }
}

/// Sleeps for `ticks` clock ticks (100 Hz).
pub fn sleep(ticks: i32) -> i32 {
    // SAFETY: sleep takes no pointers.
    unsafe { raw::sys_sleep(ticks) }
}

/// Clock ticks since boot.
pub fn uptime() -> i32 {
    // SAFETY: uptime takes no pointers.
    unsafe { raw::sys_uptime() }
}
