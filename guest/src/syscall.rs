//! System calls (xv6 syscall.c): the numbers of the xv6 x86 ABI, the dispatch on %eax, and
//! the helpers that fetch arguments from the user stack.
//!
//! A user program calls `int $64` with the call number in %eax and its arguments where a
//! cdecl call left them: above the wrapper's return address, argument n at user
//! %esp + 4 + 4n. The result goes back in %eax; −1 means an error. Every argument word and
//! every pointer the kernel follows is checked against the process's memory `[0, sz)` (no
//! kernel addresses, no wrap-around) by uaccess before it is touched. Calls that need a
//! file system, and unknown numbers, return −1.

pub use xv6_abi::syscall::*;

/// The calls this kernel implements; everything else (the file-system calls, unknown
/// numbers) is `NotImplemented` and returns −1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Syscall {
    Fork,
    Exit,
    Wait,
    Read,
    Kill,
    Exec,
    Getpid,
    Sbrk,
    Sleep,
    Uptime,
    Write,
    Pgdump,
    Countfree,
    Export,
    Tsckhz,
    Mark,
    NotImplemented,
}

impl Syscall {
    /// The call with number `num` (the user's %eax).
    #[must_use]
    pub fn decode(num: u32) -> Syscall {
        match num {
            SYS_FORK => Syscall::Fork,
            SYS_EXIT => Syscall::Exit,
            SYS_WAIT => Syscall::Wait,
            SYS_READ => Syscall::Read,
            SYS_KILL => Syscall::Kill,
            SYS_EXEC => Syscall::Exec,
            SYS_GETPID => Syscall::Getpid,
            SYS_SBRK => Syscall::Sbrk,
            SYS_SLEEP => Syscall::Sleep,
            SYS_UPTIME => Syscall::Uptime,
            SYS_WRITE => Syscall::Write,
            SYS_PGDUMP => Syscall::Pgdump,
            SYS_COUNTFREE => Syscall::Countfree,
            SYS_EXPORT => Syscall::Export,
            SYS_TSCKHZ => Syscall::Tsckhz,
            SYS_MARK => Syscall::Mark,
            _ => Syscall::NotImplemented,
        }
    }
}

/// The user address of argument `n` of a system call whose user stack pointer is `esp`:
/// esp + 4 + 4n. `None` if that wraps past 4 GiB.
#[must_use]
pub fn arg_addr(esp: u32, n: u32) -> Option<u32> {
    n.checked_mul(4)
        .and_then(|o| o.checked_add(4))
        .and_then(|o| esp.checked_add(o))
}

/// Whether `[addr, addr + len)` lies inside a process of size `sz` (xv6 `argptr`'s check),
/// without wrapping.
#[must_use]
pub fn in_user(addr: u32, len: u32, sz: u32) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= sz)
}

#[cfg(all(target_arch = "x86", not(test)))]
pub use hw::*;

/// The hardware half: dispatch and argument fetching through uaccess.
#[cfg(all(target_arch = "x86", not(test)))]
mod hw {
    use super::*;
    use crate::proc;
    use crate::sysproc;
    use crate::trap::TrapFrame;
    use crate::uaccess::{self, BadAddr};

    /// Runs the system call the current process asked for in trap frame `tf` and puts the
    /// result in its %eax (xv6 `syscall`).
    pub fn syscall(tf: &mut TrapFrame) {
        let r = match Syscall::decode(tf.eax) {
            Syscall::Fork => sysproc::sys_fork(tf),
            Syscall::Exit => sysproc::sys_exit(tf),
            Syscall::Wait => sysproc::sys_wait(tf),
            Syscall::Read => sysproc::sys_read(tf),
            Syscall::Kill => sysproc::sys_kill(tf),
            Syscall::Exec => sysproc::sys_exec(tf),
            Syscall::Getpid => sysproc::sys_getpid(tf),
            Syscall::Sbrk => sysproc::sys_sbrk(tf),
            Syscall::Sleep => sysproc::sys_sleep(tf),
            Syscall::Uptime => sysproc::sys_uptime(tf),
            Syscall::Write => sysproc::sys_write(tf),
            Syscall::Pgdump => sysproc::sys_pgdump(tf),
            Syscall::Countfree => sysproc::sys_countfree(tf),
            Syscall::Export => sysproc::sys_export(tf),
            Syscall::Tsckhz => sysproc::sys_tsckhz(tf),
            Syscall::Mark => sysproc::sys_mark(tf),
            Syscall::NotImplemented => -1,
        };
        tf.eax = r as u32;
    }

    /// Fetches the 32-bit word at user address `addr` (xv6 `fetchint`), checked against
    /// the current process's memory.
    pub fn fetchint(addr: u32) -> Result<u32, BadAddr> {
        proc::with_mem(|m| uaccess::fetchint(m, addr))
    }

    /// The `n`th argument word of the system call (xv6 `argint`).
    pub fn argint(tf: &TrapFrame, n: u32) -> Result<i32, BadAddr> {
        let addr = arg_addr(tf.esp, n).ok_or(BadAddr)?;
        fetchint(addr).map(|v| v as i32)
    }

    /// The `n`th argument as a pointer to a block of `size` bytes inside the process's
    /// memory (xv6 `argptr`).
    pub fn argptr(tf: &TrapFrame, n: u32, size: u32) -> Result<u32, BadAddr> {
        let p = argint(tf, n)? as u32;
        if !in_user(p, size, proc::mysz()) {
            return Err(BadAddr);
        }
        Ok(p)
    }

    /// The `n`th argument as a NUL-terminated string, copied into `buf` (xv6 `argstr`);
    /// returns the string without its NUL. Fails if the string leaves the process's memory
    /// or does not fit in `buf`.
    pub fn argstr<'a>(tf: &TrapFrame, n: u32, buf: &'a mut [u8]) -> Result<&'a [u8], BadAddr> {
        let addr = argint(tf, n)? as u32;
        fetchstr(addr, buf)
    }

    /// Copies the NUL-terminated string at user address `addr` into `buf` (xv6
    /// `fetchstr`); returns it without its NUL.
    pub fn fetchstr(addr: u32, buf: &mut [u8]) -> Result<&[u8], BadAddr> {
        let len = proc::with_mem(|m| uaccess::fetchstr(m, addr, buf).map(<[u8]>::len))?;
        Ok(&buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xv6_numbers() {
        assert_eq!(Syscall::decode(1), Syscall::Fork);
        assert_eq!(Syscall::decode(2), Syscall::Exit);
        assert_eq!(Syscall::decode(3), Syscall::Wait);
        assert_eq!(Syscall::decode(5), Syscall::Read);
        assert_eq!(Syscall::decode(6), Syscall::Kill);
        assert_eq!(Syscall::decode(7), Syscall::Exec);
        assert_eq!(Syscall::decode(11), Syscall::Getpid);
        assert_eq!(Syscall::decode(12), Syscall::Sbrk);
        assert_eq!(Syscall::decode(13), Syscall::Sleep);
        assert_eq!(Syscall::decode(14), Syscall::Uptime);
        assert_eq!(Syscall::decode(16), Syscall::Write);
        assert_eq!(Syscall::decode(22), Syscall::Pgdump);
        assert_eq!(Syscall::decode(23), Syscall::Countfree);
        assert_eq!(Syscall::decode(24), Syscall::Export);
        assert_eq!(Syscall::decode(25), Syscall::Tsckhz);
        assert_eq!(Syscall::decode(26), Syscall::Mark);
    }

    #[test]
    fn file_system_and_unknown_calls_are_not_implemented() {
        for n in [
            0,
            SYS_PIPE,
            SYS_FSTAT,
            SYS_CHDIR,
            SYS_DUP,
            SYS_OPEN,
            SYS_MKNOD,
            SYS_UNLINK,
            SYS_LINK,
            SYS_MKDIR,
            SYS_CLOSE,
            27,
            0xFFFF_FFFF,
        ] {
            assert_eq!(Syscall::decode(n), Syscall::NotImplemented, "{n}");
        }
    }

    #[test]
    fn argument_addresses() {
        assert_eq!(arg_addr(0x3fe0, 0), Some(0x3fe4));
        assert_eq!(arg_addr(0x3fe0, 2), Some(0x3fec));
        assert_eq!(arg_addr(0xFFFF_FFF8, 0), Some(0xFFFF_FFFC));
        assert_eq!(arg_addr(0xFFFF_FFFC, 0), None);
        assert_eq!(arg_addr(0xFFFF_FFF0, 3), None);
        assert_eq!(arg_addr(0, u32::MAX), None);
    }

    #[test]
    fn user_ranges() {
        assert!(in_user(0, 0x4000, 0x4000));
        assert!(in_user(0x3ffc, 4, 0x4000));
        assert!(!in_user(0x3ffd, 4, 0x4000));
        assert!(!in_user(0xFFFF_FFFF, 2, 0x4000));
        assert!(!in_user(0x8000_0000, 4, 0x4000));
        assert!(in_user(0x4000, 0, 0x4000));
    }
}
