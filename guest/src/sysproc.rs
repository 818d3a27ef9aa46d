//! The system calls' implementations (xv6 sysproc.c, plus exec and the console's read and
//! write from sysfile.c): each fetches and checks its arguments (syscall.rs), then calls the
//! kernel function that does the work. All return the value for %eax: −1 on error.

use core::ptr::NonNull;

use crate::console::{self, Stream};
use crate::exec::{exec, MAXARG};
use crate::kalloc::{kalloc, kfree, KMEM};
use crate::lapic::ticks;
use crate::mmu::PGSIZE;
use crate::proc::{self, Chan, PTABLE};
use crate::syscall::{argint, argptr, argstr, fetchint, fetchstr};
use crate::trap::TrapFrame;
use crate::{debugport, uaccess};

/// Longest path exec accepts, with its NUL (xv6 MAXPATH).
pub const MAXPATH: usize = 128;

pub fn sys_fork(tf: &mut TrapFrame) -> i32 {
    proc::fork(tf)
}

pub fn sys_exit(tf: &mut TrapFrame) -> i32 {
    // An unreadable status (a wild stack pointer) counts as exit(-1).
    let status = argint(tf, 0).unwrap_or(-1);
    proc::exit(status)
}

pub fn sys_wait(tf: &mut TrapFrame) -> i32 {
    let Ok(addr) = argint(tf, 0) else { return -1 };
    let addr = addr as u32;
    if addr != 0 && argptr(tf, 0, 4).is_err() {
        return -1;
    }
    proc::wait(addr)
}

pub fn sys_kill(tf: &mut TrapFrame) -> i32 {
    match argint(tf, 0) {
        Ok(pid) => proc::kill(pid),
        Err(_) => -1,
    }
}

pub fn sys_getpid(_tf: &mut TrapFrame) -> i32 {
    proc::getpid()
}

/// sbrk(n): grows (or shrinks) the process by n bytes; returns the old size.
pub fn sys_sbrk(tf: &mut TrapFrame) -> i32 {
    let Ok(n) = argint(tf, 0) else { return -1 };
    match proc::growproc(n) {
        Some(old) => old as i32,
        None => -1,
    }
}

/// sleep(n): waits n clock ticks; −1 if killed meanwhile (or n < 0).
pub fn sys_sleep(tf: &mut TrapFrame) -> i32 {
    let Ok(n) = argint(tf, 0) else { return -1 };
    if n < 0 {
        return -1;
    }
    let mut pt = PTABLE.lock();
    let ticks0 = ticks();
    while ticks().wrapping_sub(ticks0) < n as u32 {
        if proc::myproc().is_some_and(|i| pt.procs[i].killed.is_some()) {
            return -1;
        }
        proc::sleep(Chan::Ticks, &mut pt);
    }
    0
}

/// uptime(): clock ticks since boot.
pub fn sys_uptime(_tf: &mut TrapFrame) -> i32 {
    ticks() as i32
}

/// pgdump(): the VMM walks the page tables in CR3 — the caller's, during its system call.
pub fn sys_pgdump(_tf: &mut TrapFrame) -> i32 {
    match debugport::pgdump() {
        Some(_) => 0,
        None => -1,
    }
}

/// countfree(): pages on the kernel's free list.
pub fn sys_countfree(_tf: &mut TrapFrame) -> i32 {
    KMEM.countfree() as i32
}

/// export(buf, len): hands `[buf, buf + len)` to the VMM's export stream (docs/abi.md),
/// page by page, by guest-physical address; lazy pages are faulted in first. 0, or −1 for a
/// bad buffer (nothing exported then).
pub fn sys_export(tf: &mut TrapFrame) -> i32 {
    let (Ok(buf), Ok(len)) = (argint(tf, 0), argint(tf, 1)) else {
        return -1;
    };
    let ok = proc::with_mem(|m| uaccess::physchunks(m, buf as u32, len as u32, debugport::export));
    if ok.is_ok() {
        0
    } else {
        -1
    }
}

/// tsckhz(): the TSC frequency in kHz the VMM passed on the command line (0: none).
pub fn sys_tsckhz(_tf: &mut TrapFrame) -> i32 {
    crate::cmdline::tsc_khz() as i32
}

/// mark(n): asks the VMM to snapshot its VM-exit counters under mark `n`; 0.
pub fn sys_mark(tf: &mut TrapFrame) -> i32 {
    let Ok(n) = argint(tf, 0) else { return -1 };
    debugport::mark(n as u32);
    0
}

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
struct ScratchPage(NonNull<u8>);

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
