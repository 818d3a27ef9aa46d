//! The system-call argument fetchers (xv6 syscall.c's fetchint/fetchstr/argint/argptr/
//! argstr): argument n of a call is the word at user %esp + 4 + 4n. Every argument word and
//! every pointer the kernel follows is checked against the process's memory `[0, sz)` (no
//! kernel addresses, no wrap-around) by uaccess before it is touched.

use crate::memlayout::UVAddr;
#[cfg(all(target_arch = "x86", not(test)))]
use crate::proc;
#[cfg(all(target_arch = "x86", not(test)))]
use crate::trapframe::TrapFrame;
#[cfg(all(target_arch = "x86", not(test)))]
use crate::uaccess::{self, BadAddr};

/// The user address of argument `n` of a system call whose user stack pointer is `esp`:
/// esp + 4 + 4n. `None` if that wraps past 4 GiB.
#[must_use]
pub fn arg_addr(esp: UVAddr, n: u32) -> Option<UVAddr> {
    n.checked_mul(4)
        .and_then(|o| o.checked_add(4))
        .and_then(|o| esp.checked_add(o))
}

/// Whether `[addr, addr + len)` lies inside a process of size `sz` (xv6 `argptr`'s check),
/// without wrapping.
#[must_use]
pub fn in_user(addr: UVAddr, len: u32, sz: u32) -> bool {
    addr.checked_add(len).is_some_and(|end| end.0 <= sz)
}

/// Fetches the 32-bit word at user address `addr` (xv6 `fetchint`), checked against
/// the current process's memory.
#[cfg(all(target_arch = "x86", not(test)))]
pub fn fetchint(addr: UVAddr) -> Result<u32, BadAddr> {
    proc::with_mem(|m| uaccess::fetchint(m, addr))
}

/// The `n`th argument word of the system call (xv6 `argint`).
#[cfg(all(target_arch = "x86", not(test)))]
pub fn argint(tf: &TrapFrame, n: u32) -> Result<i32, BadAddr> {
    let addr = arg_addr(UVAddr(tf.esp), n).ok_or(BadAddr)?;
    fetchint(addr).map(|v| v as i32)
}

/// The `n`th argument word as a user address, unchecked (xv6-riscv `argaddr`): for buffers
/// that uaccess checks when it moves their bytes.
#[cfg(all(target_arch = "x86", not(test)))]
pub fn argaddr(tf: &TrapFrame, n: u32) -> Result<UVAddr, BadAddr> {
    argint(tf, n).map(|v| UVAddr(v as u32))
}

/// The `n`th argument as a pointer to a block of `size` bytes inside the process's
/// memory (xv6 `argptr`).
#[cfg(all(target_arch = "x86", not(test)))]
pub fn argptr(tf: &TrapFrame, n: u32, size: u32) -> Result<UVAddr, BadAddr> {
    let p = argaddr(tf, n)?;
    if !in_user(p, size, proc::mysz()) {
        return Err(BadAddr);
    }
    Ok(p)
}

/// The `n`th argument as a NUL-terminated string, copied into `buf` (xv6 `argstr`);
/// returns the string without its NUL. Fails if the string leaves the process's memory
/// or does not fit in `buf`.
#[cfg(all(target_arch = "x86", not(test)))]
pub fn argstr<'a>(tf: &TrapFrame, n: u32, buf: &'a mut [u8]) -> Result<&'a [u8], BadAddr> {
    let addr = argaddr(tf, n)?;
    fetchstr(addr, buf)
}

/// Copies the NUL-terminated string at user address `addr` into `buf` (xv6
/// `fetchstr`); returns it without its NUL.
#[cfg(all(target_arch = "x86", not(test)))]
pub fn fetchstr(addr: UVAddr, buf: &mut [u8]) -> Result<&[u8], BadAddr> {
    let len = proc::with_mem(|m| uaccess::fetchstr(m, addr, buf).map(<[u8]>::len))?;
    Ok(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_addresses() {
        let at = |esp, n| arg_addr(UVAddr(esp), n).map(|a| a.0);
        assert_eq!(at(0x3fe0, 0), Some(0x3fe4));
        assert_eq!(at(0x3fe0, 2), Some(0x3fec));
        assert_eq!(at(0xFFFF_FFF8, 0), Some(0xFFFF_FFFC));
        assert_eq!(at(0xFFFF_FFFC, 0), None);
        assert_eq!(at(0xFFFF_FFF0, 3), None);
        assert_eq!(at(0, u32::MAX), None);
    }

    #[test]
    fn user_ranges() {
        let inside = |a, len, sz| in_user(UVAddr(a), len, sz);
        assert!(inside(0, 0x4000, 0x4000));
        assert!(inside(0x3ffc, 4, 0x4000));
        assert!(!inside(0x3ffd, 4, 0x4000));
        assert!(!inside(0xFFFF_FFFF, 2, 0x4000));
        assert!(!inside(0x8000_0000, 4, 0x4000));
        assert!(inside(0x4000, 0, 0x4000));
    }
}
