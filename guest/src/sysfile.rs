//! The file system calls (xv6 sysfile.c): read, write, exec and, with the file layer, the
//! rest. Each fetches and checks its arguments (sysarg.rs); all return the value for %eax:
//! −1 on error.

use crate::console::{self, Stream};
use crate::exec::{exec, MAXARG};
use crate::kalloc::{kalloc, kfree};
use crate::memlayout::KVAddr;
use crate::mmu::PGSIZE;
use crate::proc;
use crate::sysarg::{argint, argptr, argstr, fetchint, fetchstr};
use crate::trapframe::TrapFrame;

/// Longest path exec accepts, with its NUL (xv6 MAXPATH).
pub const MAXPATH: usize = 128;

/// write(fd, buf, n): fd 1 and 2 are the console (stdout, stderr); returns the bytes
/// written (fewer if the buffer runs into memory the process cannot read after some were
/// written), −1 on a bad descriptor, count or buffer.
pub fn sys_write(tf: &mut TrapFrame) -> i32 {
    let (Ok(fd), Ok(buf), Ok(n)) = (argint(tf, 0), argint(tf, 1), argint(tf, 2)) else {
        return -1;
    };
    let stream = match fd {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return -1,
    };
    if n < 0 {
        return -1;
    }
    console::consolewrite(stream, buf as u32, n as u32)
}

/// read(0, buf, n): console input. Waits until at least one byte is there and returns up to
/// n of them; returns 0 at end of input, −1 on a bad descriptor, count or buffer, or if
/// killed.
pub fn sys_read(tf: &mut TrapFrame) -> i32 {
    let (Ok(fd), Ok(buf), Ok(n)) = (argint(tf, 0), argint(tf, 1), argint(tf, 2)) else {
        return -1;
    };
    if fd != 0 || n < 0 {
        return -1;
    }
    if n > 0 && argptr(tf, 1, n as u32).is_err() {
        return -1;
    }
    console::consoleread(buf as u32, n as u32)
}

/// A page from kalloc, freed on drop: exec's scratch space for the path and arguments.
struct ScratchPage(KVAddr);

impl ScratchPage {
    fn new() -> Option<ScratchPage> {
        kalloc().map(ScratchPage)
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the page came from kalloc and is ours until drop; `&mut self` makes this
        // the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_ptr(), PGSIZE as usize) }
    }
}

impl Drop for ScratchPage {
    fn drop(&mut self) {
        // SAFETY: allocated by kalloc in new; every borrow of it ended with `bytes`' borrow.
        unsafe { kfree(self.0) };
    }
}

/// exec(path, argv): replaces the process's image with the program `path` from the
/// archive; argv is a user array of string pointers ending with 0 (at most MAXARG). Does
/// not return to the old image on success; −1 (the caller untouched) on failure.
pub fn sys_exec(tf: &mut TrapFrame) -> i32 {
    let Ok(uargv) = argint(tf, 1) else { return -1 };
    let Some(mut page) = ScratchPage::new() else {
        return -1;
    };
    let (pathbuf, mut rest) = page.bytes().split_at_mut(MAXPATH);
    let Ok(path) = argstr(tf, 0, pathbuf) else {
        return -1;
    };
    let mut argv: [&[u8]; MAXARG] = [&[]; MAXARG];
    let mut argc = 0;
    loop {
        let Some(at) = (uargv as u32).checked_add(4 * argc as u32) else {
            return -1;
        };
        let Ok(uarg) = fetchint(at) else { return -1 };
        if uarg == 0 {
            break;
        }
        if argc == MAXARG {
            return -1; // MAXARG strings and still no terminating 0
        }
        let Ok(len) = fetchstr(uarg, rest).map(<[u8]>::len) else {
            return -1;
        };
        let (arg, tail) = core::mem::take(&mut rest).split_at_mut(len);
        argv[argc] = arg;
        rest = tail;
        argc += 1;
    }
    match exec(path, &argv[..argc]) {
        Ok(image) => {
            proc::exec_install(tf, image, path);
            0
        }
        Err(_) => -1,
    }
}

pub fn sys_pipe(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_fstat(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_chdir(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_dup(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_open(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_mknod(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_unlink(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_link(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_mkdir(_tf: &mut TrapFrame) -> i32 {
    -1
}
pub fn sys_close(_tf: &mut TrapFrame) -> i32 {
    -1
}
