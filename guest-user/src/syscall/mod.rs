//! System calls (xv6 usys.S + user.h): one assembly stub per call, following xv6's x86 ABI —
//! the number in %eax, `int $64`, the arguments where a cdecl call left them (on the user
//! stack above the stub's return address, argument n at %esp + 4 + 4n), the result in
//! %eax (−1 on error) — and safe Rust wrappers around them (`process`, `memory`, `file`).
//!
//! [`raw`] has the stubs themselves with C prototypes: they take any pointer or integer, which
//! is what the tests of the kernel's argument checking (usertests' validatetest) need.

mod file;
mod memory;
mod process;

pub use file::*;
pub use memory::*;
pub use process::*;

/// System call numbers and `T_SYSCALL` (the shared xv6-abi crate; docs/abi.md).
pub use xv6_abi::syscall as nr;
pub use xv6_abi::syscall::T_SYSCALL;

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
    "SYSCALL pipe, {pipe}",
    "SYSCALL read, {read}",
    "SYSCALL kill, {kill}",
    "SYSCALL exec, {exec}",
    "SYSCALL fstat, {fstat}",
    "SYSCALL chdir, {chdir}",
    "SYSCALL dup, {dup}",
    "SYSCALL getpid, {getpid}",
    "SYSCALL sbrk, {sbrk}",
    "SYSCALL sleep, {sleep}",
    "SYSCALL uptime, {uptime}",
    "SYSCALL open, {open}",
    "SYSCALL write, {write}",
    "SYSCALL mknod, {mknod}",
    "SYSCALL unlink, {unlink}",
    "SYSCALL link, {link}",
    "SYSCALL mkdir, {mkdir}",
    "SYSCALL close, {close}",
    "SYSCALL pgdump, {pgdump}",
    "SYSCALL countfree, {countfree}",
    "SYSCALL export, {export}",
    "SYSCALL tsckhz, {tsckhz}",
    "SYSCALL mark, {mark}",
    "SYSCALL exit_status, {exit_status}",
    "SYSCALL wait_status, {wait_status}",
    // A system call by number (its only argument), for trying numbers the kernel lacks.
    ".pushsection .text.sys_number, \"ax\"",
    ".globl sys_number",
    ".type sys_number, @function",
    "sys_number:",
    "mov eax, [esp + 4]",
    "int {t_syscall}",
    "ret",
    ".size sys_number, . - sys_number",
    ".popsection",
    t_syscall = const T_SYSCALL,
    fork = const nr::SYS_FORK,
    exit = const nr::SYS_EXIT,
    wait = const nr::SYS_WAIT,
    pipe = const nr::SYS_PIPE,
    read = const nr::SYS_READ,
    kill = const nr::SYS_KILL,
    exec = const nr::SYS_EXEC,
    fstat = const nr::SYS_FSTAT,
    chdir = const nr::SYS_CHDIR,
    dup = const nr::SYS_DUP,
    getpid = const nr::SYS_GETPID,
    sbrk = const nr::SYS_SBRK,
    sleep = const nr::SYS_SLEEP,
    uptime = const nr::SYS_UPTIME,
    open = const nr::SYS_OPEN,
    write = const nr::SYS_WRITE,
    mknod = const nr::SYS_MKNOD,
    unlink = const nr::SYS_UNLINK,
    link = const nr::SYS_LINK,
    mkdir = const nr::SYS_MKDIR,
    close = const nr::SYS_CLOSE,
    pgdump = const nr::SYS_PGDUMP,
    countfree = const nr::SYS_COUNTFREE,
    export = const nr::SYS_EXPORT,
    tsckhz = const nr::SYS_TSCKHZ,
    mark = const nr::SYS_MARK,
    exit_status = const nr::SYS_EXIT_STATUS,
    wait_status = const nr::SYS_WAIT_STATUS,
);

pub mod raw;
