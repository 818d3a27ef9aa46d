//! The raw stubs, with the C prototypes of xv6-public's user.h (`exit(void)`, `wait(void)`),
//! then this project's calls (22–28, the status-carrying exit and wait of xv6-riscv among
//! them). Pointers are passed to the kernel unchecked: the kernel must refuse bad ones with
//! −1.

extern "C" {
    pub fn sys_fork() -> i32;
    /// xv6-public's `exit(void)`: status 0.
    pub fn sys_exit() -> !;
    /// xv6-public's `wait(void)`: a child's pid; stores nothing.
    pub fn sys_wait() -> i32;
    pub fn sys_pipe(fds: *mut i32) -> i32;
    pub fn sys_read(fd: i32, buf: *mut u8, n: i32) -> i32;
    pub fn sys_kill(pid: i32) -> i32;
    pub fn sys_exec(path: *const u8, argv: *const *const u8) -> i32;
    pub fn sys_fstat(fd: i32, st: *mut u8) -> i32;
    pub fn sys_chdir(path: *const u8) -> i32;
    pub fn sys_dup(fd: i32) -> i32;
    pub fn sys_getpid() -> i32;
    pub fn sys_sbrk(n: i32) -> *mut u8;
    pub fn sys_sleep(ticks: i32) -> i32;
    pub fn sys_uptime() -> i32;
    pub fn sys_open(path: *const u8, mode: i32) -> i32;
    pub fn sys_write(fd: i32, buf: *const u8, n: i32) -> i32;
    pub fn sys_mknod(path: *const u8, major: i16, minor: i16) -> i32;
    pub fn sys_unlink(path: *const u8) -> i32;
    pub fn sys_link(old: *const u8, new: *const u8) -> i32;
    pub fn sys_mkdir(path: *const u8) -> i32;
    pub fn sys_close(fd: i32) -> i32;
    pub fn sys_pgdump() -> i32;
    pub fn sys_countfree() -> i32;
    pub fn sys_export(buf: *const u8, len: i32) -> i32;
    pub fn sys_tsckhz() -> i32;
    pub fn sys_mark(n: i32) -> i32;
    /// `exit(int status)` (27).
    pub fn sys_exit_status(status: i32) -> !;
    /// `wait(int *status)` (28).
    pub fn sys_wait_status(status: *mut i32) -> i32;
    /// System call number `num` (also seen by the kernel as argument 0).
    pub fn sys_number(num: i32) -> i32;
}
