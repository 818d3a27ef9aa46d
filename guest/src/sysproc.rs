//! The process system calls (xv6 sysproc.c) and this project's own (22–28): each fetches and
//! checks its arguments (sysarg.rs), then calls the kernel function that does the work. All
//! return the value for %eax: −1 on error.

use crate::kalloc::KMEM;
use crate::proc::{self, PTABLE};
use crate::ptable::Chan;
use crate::sysarg::{argaddr, argint, argptr};
use crate::ticks::ticks;
use crate::trapframe::TrapFrame;
use crate::{debugport, file, uaccess};

/// fork(): the child shares the parent's open files and directory (one more reference
/// each, taken before the child exists).
pub fn sys_fork(tf: &mut TrapFrame) -> i32 {
    let (ofile, cwd) = proc::files();
    file::dup_all(&ofile, cwd);
    let pid = proc::fork(tf);
    if pid < 0 {
        file::close_all(&ofile, cwd);
    }
    pid
}

/// Ends the current process (every way out: exit, a fault, kill): closes its files and
/// directory, then proc::exit.
pub fn exit(status: i32) -> ! {
    let (ofile, cwd) = proc::take_files();
    file::close_all(&ofile, cwd);
    // The first process's exit ends the machine: with `--dir …:rw`, what is under the
    // write-back GUESTDIRs goes to the VMM first (dirout.rs).
    let me = proc::myproc();
    if me.is_some() && PTABLE.lock().initproc == me {
        crate::dirout::export_trees();
    }
    proc::exit(status)
}

/// Exits with the kill status if the current process has been killed.
pub fn exit_if_killed() {
    if let Some(status) = proc::killed() {
        exit(status);
    }
}

/// exit(void), xv6-public's: ends the caller with status 0.
pub fn sys_exit(_tf: &mut TrapFrame) -> i32 {
    exit(0)
}

/// exit(status) (27): ends the caller with `status & 0xff`.
pub fn sys_exit_status(tf: &mut TrapFrame) -> i32 {
    // An unreadable status (a wild stack pointer) counts as exit(-1).
    let status = argint(tf, 0).unwrap_or(-1);
    exit(status)
}

/// wait(void), xv6-public's: the pid of an exited child; stores nothing.
pub fn sys_wait(_tf: &mut TrapFrame) -> i32 {
    proc::wait(None)
}

/// wait(status) (28): the pid of an exited child, whose status is stored at `status` (unless
/// it is 0).
pub fn sys_wait_status(tf: &mut TrapFrame) -> i32 {
    let Ok(addr) = argaddr(tf, 0) else { return -1 };
    if addr.0 != 0 && argptr(tf, 0, 4).is_err() {
        return -1;
    }
    proc::wait((addr.0 != 0).then_some(addr))
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
/// bad buffer or one the stream has no room left for (nothing exported then).
pub fn sys_export(tf: &mut TrapFrame) -> i32 {
    let (Ok(buf), Ok(len)) = (argaddr(tf, 0), argint(tf, 1)) else {
        return -1;
    };
    if len < 0 || len as u32 > debugport::export_room() {
        return -1;
    }
    let ok = proc::with_mem(|m| {
        uaccess::physchunks(m, buf, len as u32, |pa, n| debugport::export(pa.0, n))
    });
    if ok.is_ok() {
        0
    } else {
        -1
    }
}

/// tsckhz(): the TSC frequency in kHz the VMM passed on the command line (0: none).
pub fn sys_tsckhz(_tf: &mut TrapFrame) -> i32 {
    crate::cmdline::config().tsc_khz as i32
}

/// mark(n): asks the VMM to snapshot its VM-exit counters under mark `n`; 0.
pub fn sys_mark(tf: &mut TrapFrame) -> i32 {
    let Ok(n) = argint(tf, 0) else { return -1 };
    debugport::mark(n as u32);
    0
}
