//! The file system calls (xv6 sysfile.c): read, write, exec and, with the file layer, the
//! rest. Each fetches and checks its arguments (sysarg.rs); all return the value for %eax:
//! −1 on error.

use core::sync::atomic::Ordering;

use crate::console::{self, INPUT};
use crate::exec::{exec, MAXARG};
use crate::kalloc::{kalloc, kfree};
use crate::memlayout::KVAddr;
use crate::mmu::PGSIZE;
use crate::proc::{self, PTABLE};
use crate::ptable::Chan;
use crate::sysarg::{argint, argptr, argstr, fetchint, fetchstr};
use crate::trapframe::TrapFrame;
use crate::uaccess;

/// Longest path exec accepts, with its NUL (xv6 MAXPATH).
pub const MAXPATH: usize = 128;
/// Bytes moved between user memory and a device per step of read/write.
const CHUNK: usize = 128;

/// write(fd, buf, n): fd 1 and 2 are the console; returns the bytes written (fewer if the
/// buffer runs into memory the process cannot read after some were written), −1 on a bad
/// descriptor, count or buffer.
pub fn sys_write(tf: &mut TrapFrame) -> i32 {
    let (Ok(fd), Ok(buf), Ok(n)) = (argint(tf, 0), argint(tf, 1), argint(tf, 2)) else {
        return -1;
    };
    if n < 0 || !matches!(fd, 1 | 2) {
        return -1;
    }
    let (buf, n) = (buf as u32, n as u32);
    let mut done = 0u32;
    let mut chunk = [0u8; CHUNK];
    while done < n {
        let len = (n - done).min(CHUNK as u32) as usize;
        let copied = buf.checked_add(done).is_some_and(|va| {
            proc::with_mem(|m| uaccess::copyin(m, va, &mut chunk[..len])).is_ok()
        });
        if !copied {
            break;
        }
        console::consolewrite(fd as u32, &chunk[..len]);
        done += len as u32;
    }
    if done == 0 && n > 0 {
        -1
    } else {
        done as i32
    }
}

/// read(0, buf, n): console input from COM1. Waits until at least one byte is buffered
/// and returns up to n of them; returns 0 at end of input (the VMM's stdin is exhausted and
/// every byte was read), −1 on a bad descriptor, count or buffer, or if killed.
pub fn sys_read(tf: &mut TrapFrame) -> i32 {
    let (Ok(fd), Ok(buf), Ok(n)) = (argint(tf, 0), argint(tf, 1), argint(tf, 2)) else {
        return -1;
    };
    if fd != 0 || n < 0 {
        return -1;
    }
    let (buf, n) = (buf as u32, n as u32);
    if n == 0 {
        return 0;
    }
    if argptr(tf, 1, n).is_err() {
        return -1;
    }
    let me = proc::myproc().expect("read: no process");
    let mut pt = PTABLE.lock();
    loop {
        console::consoleintr();
        let mut chunk = [0u8; CHUNK];
        let got = INPUT.lock().pop_into(&mut chunk[..(n as usize).min(CHUNK)]);
        if got > 0 {
            drop(pt);
            return match proc::with_mem(|m| uaccess::copyto(m, buf, &chunk[..got])) {
                Ok(()) => got as i32,
                Err(_) => -1,
            };
        }
        // End of input: the VMM delivered everything, and we have drained the UART.
        if console::input_ended() {
            console::consoleintr();
            if INPUT.lock().is_empty() {
                return 0;
            }
            continue;
        }
        if pt.procs[me].killed.is_some() {
            return -1;
        }
        console::READERS_WAITING.fetch_add(1, Ordering::Relaxed);
        proc::sleep(Chan::Input, &mut pt);
        console::READERS_WAITING.fetch_sub(1, Ordering::Relaxed);
    }
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
