//! System calls (xv6 syscall.c's table): the numbers of the xv6 x86 ABI and the dispatch on
//! %eax to sysproc.rs and sysfile.rs. The argument fetchers are sysarg.rs.
//!
//! A user program calls `int $64` with the call number in %eax and its arguments where a
//! cdecl call left them: above the wrapper's return address, argument n at user
//! %esp + 4 + 4n. The result goes back in %eax; −1 means an error. Unknown numbers return
//! −1.

pub use xv6_abi::syscall::*;

/// The calls of the ABI: xv6-public's 1–21, then this project's 22–28.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Syscall {
    Fork,
    /// `exit(void)`: status 0.
    Exit,
    /// `wait(void)`: stores nothing.
    Wait,
    Pipe,
    Read,
    Kill,
    Exec,
    Fstat,
    Chdir,
    Dup,
    Getpid,
    Sbrk,
    Sleep,
    Uptime,
    Open,
    Write,
    Mknod,
    Unlink,
    Link,
    Mkdir,
    Close,
    Pgdump,
    Countfree,
    Export,
    Tsckhz,
    Mark,
    /// `exit(int status)`.
    ExitStatus,
    /// `wait(int *status)`.
    WaitStatus,
    /// No such call: −1.
    Unknown,
}

impl Syscall {
    /// The call with number `num` (the user's %eax).
    #[must_use]
    pub fn decode(num: u32) -> Syscall {
        use Syscall::*;
        const TABLE: [Syscall; 29] = [
            Unknown, Fork, Exit, Wait, Pipe, Read, Kill, Exec, Fstat, Chdir, Dup, Getpid, Sbrk,
            Sleep, Uptime, Open, Write, Mknod, Unlink, Link, Mkdir, Close, Pgdump, Countfree,
            Export, Tsckhz, Mark, ExitStatus, WaitStatus,
        ];
        TABLE.get(num as usize).copied().unwrap_or(Unknown)
    }
}

#[cfg(all(target_arch = "x86", not(test)))]
use crate::trapframe::TrapFrame;
#[cfg(all(target_arch = "x86", not(test)))]
use crate::{sysfile, sysproc};

/// Runs the system call the current process asked for in trap frame `tf` and puts the
/// result in its %eax (xv6 `syscall`).
#[cfg(all(target_arch = "x86", not(test)))]
pub fn syscall(tf: &mut TrapFrame) {
    use Syscall::*;
    let r = match Syscall::decode(tf.eax) {
        Fork => sysproc::sys_fork(tf),
        Exit => sysproc::sys_exit(tf),
        Wait => sysproc::sys_wait(tf),
        Pipe => sysfile::sys_pipe(tf),
        Read => sysfile::sys_read(tf),
        Kill => sysproc::sys_kill(tf),
        Exec => sysfile::sys_exec(tf),
        Fstat => sysfile::sys_fstat(tf),
        Chdir => sysfile::sys_chdir(tf),
        Dup => sysfile::sys_dup(tf),
        Getpid => sysproc::sys_getpid(tf),
        Sbrk => sysproc::sys_sbrk(tf),
        Sleep => sysproc::sys_sleep(tf),
        Uptime => sysproc::sys_uptime(tf),
        Open => sysfile::sys_open(tf),
        Write => sysfile::sys_write(tf),
        Mknod => sysfile::sys_mknod(tf),
        Unlink => sysfile::sys_unlink(tf),
        Link => sysfile::sys_link(tf),
        Mkdir => sysfile::sys_mkdir(tf),
        Close => sysfile::sys_close(tf),
        Pgdump => sysproc::sys_pgdump(tf),
        Countfree => sysproc::sys_countfree(tf),
        Export => sysproc::sys_export(tf),
        Tsckhz => sysproc::sys_tsckhz(tf),
        Mark => sysproc::sys_mark(tf),
        ExitStatus => sysproc::sys_exit_status(tf),
        WaitStatus => sysproc::sys_wait_status(tf),
        Unknown => -1,
    };
    tf.eax = r as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xv6_numbers() {
        let want = [
            (SYS_FORK, Syscall::Fork),
            (SYS_EXIT, Syscall::Exit),
            (SYS_WAIT, Syscall::Wait),
            (SYS_PIPE, Syscall::Pipe),
            (SYS_READ, Syscall::Read),
            (SYS_KILL, Syscall::Kill),
            (SYS_EXEC, Syscall::Exec),
            (SYS_FSTAT, Syscall::Fstat),
            (SYS_CHDIR, Syscall::Chdir),
            (SYS_DUP, Syscall::Dup),
            (SYS_GETPID, Syscall::Getpid),
            (SYS_SBRK, Syscall::Sbrk),
            (SYS_SLEEP, Syscall::Sleep),
            (SYS_UPTIME, Syscall::Uptime),
            (SYS_OPEN, Syscall::Open),
            (SYS_WRITE, Syscall::Write),
            (SYS_MKNOD, Syscall::Mknod),
            (SYS_UNLINK, Syscall::Unlink),
            (SYS_LINK, Syscall::Link),
            (SYS_MKDIR, Syscall::Mkdir),
            (SYS_CLOSE, Syscall::Close),
            (SYS_PGDUMP, Syscall::Pgdump),
            (SYS_COUNTFREE, Syscall::Countfree),
            (SYS_EXPORT, Syscall::Export),
            (SYS_TSCKHZ, Syscall::Tsckhz),
            (SYS_MARK, Syscall::Mark),
            (SYS_EXIT_STATUS, Syscall::ExitStatus),
            (SYS_WAIT_STATUS, Syscall::WaitStatus),
        ];
        for (n, c) in want {
            assert_eq!(Syscall::decode(n), c, "{n}");
        }
        // xv6-public's own numbers, as its syscall.h has them.
        assert_eq!((SYS_EXIT, SYS_WAIT, SYS_CLOSE), (2, 3, 21));
        assert_eq!((SYS_EXIT_STATUS, SYS_WAIT_STATUS), (27, 28));
    }

    #[test]
    fn unknown_calls() {
        for n in [0, 29, 99, 0xFFFF_FFFF] {
            assert_eq!(Syscall::decode(n), Syscall::Unknown, "{n}");
        }
    }
}
