//! Processes (xv6 proc.c): per-process kernel stacks, the scheduler and the operations on
//! processes — allocproc/forkret, userinit, fork, exit, wait, kill, growproc,
//! sched/yield/sleep/wakeup. The table itself (`struct proc`, slots, pids) is ptable.rs.
//!
//! One lock, `PTABLE`, guards the whole table, including each process's page directory and
//! size (xv6 leaves those to the running process alone; here the process takes the lock for
//! the moment it needs them, so all of it is safe Rust). The lock is held across `swtch`, as
//! in xv6: whoever switches acquires it, whoever is switched to releases it — on the same
//! CPU, so its holder and this CPU's pushcli depth stay right while a process moves from CPU
//! to CPU. Every CPU runs `scheduler`; which process a CPU runs and where its scheduler's
//! context is saved are that CPU's `Cpu` (cpu.rs).
//!
//! No TLB shootdown is needed (docs/processes.md "Several CPUs"): the kernel half of every
//! page directory is never changed after boot; a process runs on one CPU at a time, and a
//! CPU that stops running it loads the kernel page directory (`switchkvm`, under the ptable
//! lock, before another CPU can pick the process), which drops every user translation from
//! its TLB; fork (its copy-on-write marking), a copy-on-write break, a lazy fault, exec and
//! sbrk change only the running process's own tables, flushed on its own CPU (tlb.rs); and
//! freevm runs only on tables no CPU has loaded (a reaped zombie, exec's old image, a fork
//! that failed).

use core::sync::atomic::Ordering;

use crate::cmdline::config;
use crate::cpu::{mycpu, NO_PROC};
use crate::exec::Image;
use crate::fault::{pagefault_cause, FaultCause, FaultLine};
use crate::gdt::switchuvm;
use crate::kalloc::{kalloc, kfree};
use crate::memlayout::{KVAddr, UVAddr, KERNBASE};
use crate::mmu::{selector, DPL_USER, FL_IF, SEG_UCODE, SEG_UDATA};
pub use crate::ptable::KSTACKSIZE;
use crate::ptable::{
    name_str, Chan, Ofile, Proc, ProcState, ProcTable, KILLED_STATUS, NOFILE, NPROC,
};
use crate::spinlock::{Spinlock, SpinlockGuard};
use crate::swtch::{swtch, Context};
use crate::trapasm::trapret;
use crate::trapframe::TrapFrame;
use crate::traps::PfErr;
use crate::uaccess::UserMem;
use crate::vm::{self, PageDir};
use crate::{cow, debugport, lazy, uaccess, x86};

/// The process table and its lock.
pub static PTABLE: Spinlock<ProcTable<PageDir>> = Spinlock::new("ptable", ProcTable::new());

/// Written at the bottom of every kernel stack; sched checks it is still there.
const KSTACK_MAGIC: u32 = 0x6B53_7441;

pub type Ptable<'a> = SpinlockGuard<'a, ProcTable<PageDir>>;

/// The slot of the running process (xv6 `myproc`), if any.
#[must_use]
pub fn myproc() -> Option<usize> {
    // Interrupts off, so that the process cannot move to another CPU while we look.
    let intr = crate::intr::pushcli();
    let i = mycpu().proc.load(Ordering::Relaxed);
    crate::intr::popcli(intr);
    (i < NPROC).then_some(i)
}

fn current() -> usize {
    myproc().expect("no current process")
}

/// Claims a slot and sets up its kernel stack (xv6 `allocproc`): a trap frame at the
/// top, below it trapret's address, below that a context whose eip is forkret — so the
/// first swtch to the process "returns" into forkret, which returns into trapret, which
/// returns to user mode with the trap frame.
fn allocproc(pt: &mut Ptable<'_>) -> Option<usize> {
    let i = pt.alloc_slot()?;
    let Some(page) = kalloc() else {
        pt.clear_slot(i);
        return None;
    };
    let kstack = page.0 as usize;
    let mut sp = kstack + KSTACKSIZE as usize;
    sp -= core::mem::size_of::<TrapFrame>();
    let tf = sp;
    sp -= 4;
    let ret = sp;
    sp -= core::mem::size_of::<Context>();
    let context = sp;
    // SAFETY: the page is ours (fresh from kalloc) and all three addresses are inside it,
    // 4-byte aligned.
    unsafe {
        (kstack as *mut u32).write(KSTACK_MAGIC);
        (tf as *mut TrapFrame).write(TrapFrame::default());
        (ret as *mut u32).write(trapret as *const () as usize as u32);
        (context as *mut Context).write(Context {
            eip: forkret as *const () as usize as u32,
            ..Context::default()
        });
    }
    let p = &mut pt.procs[i];
    p.kstack = kstack;
    p.tf = tf;
    p.context = context;
    Some(i)
}

/// Frees what a dead (or never started) process owns and makes its slot unused.
fn freeproc(pt: &mut Ptable<'_>, i: usize) {
    let (kstack, pgdir) = pt.clear_slot(i);
    if kstack != 0 {
        // SAFETY: the kernel stack came from kalloc in allocproc, and its process will
        // never run again (it is a zombie being reaped, or an embryo that never ran).
        unsafe { kfree(KVAddr(kstack as u32)) };
    }
    if let Some(pgdir) = pgdir {
        vm::freevm(pgdir);
    }
}

/// A new process's first code in the kernel: it is scheduled with the ptable lock held
/// (by this CPU's scheduler), which it releases; then it returns into trapret.
extern "C" fn forkret() {
    // SAFETY: this CPU's scheduler acquired the lock and switched here while holding it; this
    // thread takes over that hold, as in xv6, and releases it. The scheduler turned
    // interrupts off before it took the lock, so they stay off until trapret's iret.
    unsafe { PTABLE.force_unlock() };
    crate::boottimes::first_user();
}

/// The trap frame of process `i` (at the top of its kernel stack).
fn trapframe<'a>(pt: &'a mut Ptable<'_>, i: usize) -> &'a mut TrapFrame {
    let tf = pt.procs[i].tf as *mut TrapFrame;
    // SAFETY: allocproc put the frame inside the process's kernel stack page, which the
    // process owns while its slot is in use; the ptable lock (borrowed for 'a) keeps
    // the slot from being freed. Only a process that is not running, or the current one
    // outside trap's own borrow, is accessed this way (userinit, fork's child).
    unsafe { &mut *tf }
}

/// Points process `p` at a new image (exec), naming it after `path`; returns the old
/// page directory for the caller to free.
fn install(
    p: &mut Proc<PageDir>,
    tf: &mut TrapFrame,
    image: Image,
    path: &[u8],
) -> Option<PageDir> {
    let old = p.pgdir.replace(image.pgdir);
    p.sz = image.sz;
    p.lazy_from = lazy::lazy_from_for(image.sz);
    p.set_name(path);
    tf.eip = image.entry.0;
    tf.esp = image.sp.0;
    old
}

/// Sets up the first process with an image from exec (xv6 `userinit`, with exec in
/// place of initcode): user segments, interrupts on, entry and stack from the image.
/// `ofile` and `cwd` are its descriptors and directory, opened by the file layer.
pub fn userinit(image: Image, path: &[u8], ofile: Ofile, cwd: u16) {
    let mut pt = PTABLE.lock();
    let i = allocproc(&mut pt).expect("userinit: out of memory");
    let tf = trapframe(&mut pt, i);
    let udata = u32::from(selector(SEG_UDATA, DPL_USER));
    tf.cs = u32::from(selector(SEG_UCODE, DPL_USER));
    tf.ds = udata;
    tf.es = udata;
    tf.ss = udata;
    tf.eflags = FL_IF;
    let tf: *mut TrapFrame = tf;
    // SAFETY: the frame pointer came from trapframe just above; the process is an
    // embryo, so nothing else refers to its frame.
    let old = install(&mut pt.procs[i], unsafe { &mut *tf }, image, path);
    debug_assert!(old.is_none());
    pt.initproc = Some(i);
    pt.procs[i].ofile = ofile;
    pt.procs[i].cwd = cwd;
    pt.procs[i].state = ProcState::Runnable;
}

/// Per-CPU process scheduler (xv6 `scheduler`), run by every CPU once it is set up: never
/// returns. Picks the next runnable process round robin, switches to its address space and
/// kernel stack and runs it until it gives the CPU back; halts until the next interrupt (its
/// own clock's, at the latest) when nothing is runnable.
pub fn scheduler() -> ! {
    let mut last = NPROC - 1;
    loop {
        // Interrupts off while choosing, so that "nothing to run" and halting are one
        // step (`sti; hlt`: the interrupt that makes a process runnable wakes the hlt).
        x86::cli();
        let mut pt = PTABLE.lock();
        let Some(i) = pt.next_runnable(last) else {
            drop(pt);
            x86::sti_hlt();
            continue;
        };
        last = i;
        let cpu = mycpu();
        cpu.proc.store(i, Ordering::Relaxed);
        let p = &mut pt.procs[i];
        switchuvm(
            p.kstack as u32,
            KSTACKSIZE,
            p.pgdir.as_ref().expect("no pgdir"),
        );
        p.state = ProcState::Running;
        let context = p.context as *mut Context;
        // SAFETY: the context was saved by swtch in sched (or built by allocproc) on the
        // process's kernel stack, which lives as long as its slot; the lock is held and
        // interrupts are off. The save slot is this CPU's.
        unsafe { swtch(cpu.scheduler.as_ptr(), context) };
        // The process is done running for now; it changed its state before coming back.
        // Its page directory leaves this CPU (and its TLB) before the lock is released.
        vm::switchkvm();
        cpu.proc.store(NO_PROC, Ordering::Relaxed);
        drop(pt);
    }
}

/// Switches to this CPU's scheduler (xv6 `sched`). The caller holds the ptable lock (`pt`),
/// and no other lock, and has changed the current process's state. The process may come
/// back on another CPU; whether interrupts were on before its pushcli (`intena`) belongs to
/// the process and goes with it.
fn sched(pt: &mut Ptable<'_>) {
    let i = current();
    assert!(PTABLE.holding(), "sched: ptable lock not held");
    assert!(crate::intr::depth() == 1, "sched: locks held");
    assert!(
        pt.procs[i].state != ProcState::Running,
        "sched: process running"
    );
    assert!(x86::readeflags() & FL_IF == 0, "sched: interruptible");
    // SAFETY: kstack is the process's own kernel stack page (we are running on it).
    let magic = unsafe { (pt.procs[i].kstack as *const u32).read() };
    assert!(
        magic == KSTACK_MAGIC,
        "sched: pid {} kernel stack overflow",
        pt.procs[i].pid
    );
    let save = core::ptr::addr_of_mut!(pt.procs[i].context).cast::<*mut Context>();
    let intena = mycpu().intena.load(Ordering::Relaxed);
    // SAFETY: this CPU's scheduler saved its context before switching to us and stays
    // parked in its swtch until we switch back; `save` is this process's context slot in
    // the locked table (usize and pointers have the same size here).
    unsafe { swtch(save, mycpu().scheduler.load(Ordering::Relaxed)) };
    mycpu().intena.store(intena, Ordering::Relaxed);
}

/// Gives up the CPU for one scheduling round, if a process is running (xv6 `yield`; the
/// clock interrupt calls this).
pub fn yield_if_running() {
    let Some(i) = myproc() else { return };
    let mut pt = PTABLE.lock();
    if pt.procs[i].state == ProcState::Running {
        pt.procs[i].state = ProcState::Runnable;
        sched(&mut pt);
    }
}

/// Sleeps on `chan` (xv6 `sleep`). The caller holds the ptable lock, which is the lock
/// the sleep condition is checked under: whoever changes the condition does so before it
/// takes the lock to wake the sleepers (`wakeup`), and the lock is held from the check until
/// the process is marked sleeping and its CPU's scheduler has it back, so no wakeup is lost
/// between the check and the sleep, on any CPU. The
/// lock is held again on return; the caller re-checks its condition.
pub fn sleep(chan: Chan, pt: &mut Ptable<'_>) {
    let i = current();
    pt.procs[i].chan = Some(chan);
    pt.procs[i].state = ProcState::Sleeping;
    sched(pt);
    pt.procs[i].chan = None;
}

/// Wakes every process sleeping on `chan` (xv6 `wakeup`).
pub fn wakeup(chan: Chan) {
    PTABLE.lock().wakeup(chan);
}

/// Creates a copy of the current process as its child (xv6 `fork`): same memory (copied
/// with copyuvm, or shared copy-on-write with cowuvm when `cow` is on), same registers
/// (`tf`, the parent's trap frame) except that the child returns 0. Returns the child's
/// pid, or −1.
pub fn fork(tf: &TrapFrame) -> i32 {
    let me = current();
    let mut pt = PTABLE.lock();
    let Some(np) = allocproc(&mut pt) else {
        return -1;
    };
    let (sz, lazy_from) = (pt.procs[me].sz, pt.procs[me].lazy_from);
    let parent = pt.procs[me].pgdir.as_mut().expect("no pgdir");
    let pgdir = if config().cow {
        // The parent is the running process: its pages just became read-only.
        cow::cowuvm(parent, sz).map(cow::Forked::flush)
    } else {
        vm::copyuvm(parent, sz)
    };
    let Some(pgdir) = pgdir else {
        freeproc(&mut pt, np);
        return -1;
    };
    let child_tf = trapframe(&mut pt, np);
    *child_tf = *tf;
    child_tf.eax = 0; // fork returns 0 in the child
    let (name, ofile, cwd) = (pt.procs[me].name, pt.procs[me].ofile, pt.procs[me].cwd);
    let c = &mut pt.procs[np];
    c.pgdir = Some(pgdir);
    c.sz = sz;
    c.lazy_from = lazy_from;
    c.parent = Some(me);
    c.name = name;
    // The caller (sys_fork) took the references for the child's copies.
    c.ofile = ofile;
    c.cwd = cwd;
    c.state = ProcState::Runnable;
    c.pid
}

/// Ends the current process with `status` (xv6-riscv `exit`): its children go to the
/// first process, its parent is woken, it stays a zombie until the parent's wait. When
/// the first process exits, the machine ends with its status.
pub fn exit(status: i32) -> ! {
    let me = current();
    let mut pt = PTABLE.lock();
    let status = status & 0xFF;
    let init = pt.initproc;
    if init == Some(me) {
        debugport::exit(status as u8);
    }
    if let Some(parent) = pt.procs[me].parent {
        pt.wakeup(Chan::Proc(parent));
    }
    if let Some(init) = init {
        if pt.reparent(me, init) {
            pt.wakeup(Chan::Proc(init));
        }
    }
    pt.procs[me].xstate = status;
    pt.procs[me].state = ProcState::Zombie;
    sched(&mut pt);
    panic!("zombie exit");
}

/// The status the current process was killed with, if it was.
#[must_use]
pub fn killed() -> Option<i32> {
    let i = myproc()?;
    PTABLE.lock().procs[i].killed
}

/// Waits for a child to exit (xv6-riscv `wait`): returns its pid and stores its exit
/// status at user address `addr` (if any); −1 if there are no children, the status
/// cannot be stored, or the caller is killed.
pub fn wait(addr: Option<UVAddr>) -> i32 {
    let me = current();
    let mut pt = PTABLE.lock();
    loop {
        let (havekids, zombie) = pt.zombie_child(me);
        if let Some(c) = zombie {
            let (pid, xstate) = (pt.procs[c].pid, pt.procs[c].xstate);
            if let Some(a) = addr {
                if uaccess::putint(&mut usermem(&mut pt, me), a, xstate as u32).is_err() {
                    return -1;
                }
            }
            freeproc(&mut pt, c);
            return pid;
        }
        if !havekids || pt.procs[me].killed.is_some() {
            return -1;
        }
        sleep(Chan::Proc(me), &mut pt);
    }
}

/// Kills the process with `pid` (xv6 `kill`): it exits with status 137 the next time it
/// is in the kernel. 0, or −1 if there is no such process.
pub fn kill(pid: i32) -> i32 {
    if PTABLE.lock().kill(pid, KILLED_STATUS) {
        0
    } else {
        -1
    }
}

/// The current process's pid.
#[must_use]
pub fn getpid() -> i32 {
    PTABLE.lock().procs[current()].pid
}

/// Grows (n > 0) or shrinks (n < 0) the current process's memory by `n` bytes (xv6
/// `growproc`); returns the old size. Fails (`None`), changing nothing, when the new size
/// would be negative or reach KERNBASE, or (eager sbrk) memory runs out. With lazy sbrk,
/// growing only moves the break: the new pages are mapped on first touch.
pub fn growproc(n: i32) -> Option<u32> {
    let me = current();
    let mut pt = PTABLE.lock();
    let p = &mut pt.procs[me];
    let sz = p.sz;
    let new = i64::from(sz) + i64::from(n);
    if new < 0 || new >= i64::from(KERNBASE) {
        return None;
    }
    let new = new as u32;
    let pgdir = p.pgdir.as_mut().expect("no pgdir");
    if new > sz {
        if config().lazy {
            p.lazy_from = lazy::lazy_from_after_growth(p.lazy_from, sz);
            p.sz = new;
        } else {
            p.sz = vm::allocuvm(pgdir, sz, new).ok()?;
        }
        // Only not-present entries became present: no TLB flush needed.
    } else if new < sz {
        // The process is the running one: its TLB holds the pages just unmapped.
        vm::deallocuvm(pgdir, sz, new).flush();
        p.sz = new;
    }
    Some(sz)
}

/// Replaces the current process's image with `image` from exec: its memory, its entry
/// point and stack in the trap frame `tf`, its name (the last component of `path`).
/// The old memory is freed.
pub fn exec_install(tf: &mut TrapFrame, image: Image, path: &[u8]) {
    let me = current();
    let mut pt = PTABLE.lock();
    let p = &mut pt.procs[me];
    let old = install(p, tf, image, path);
    switchuvm(
        p.kstack as u32,
        KSTACKSIZE,
        p.pgdir.as_ref().expect("no pgdir"),
    );
    drop(pt);
    if let Some(old) = old {
        vm::freevm(old);
    }
}

/// Process `i`'s memory, as uaccess reaches it.
fn usermem<'a>(pt: &'a mut Ptable<'_>, i: usize) -> UserMem<'a> {
    let p = &mut pt.procs[i];
    UserMem {
        pgdir: p.pgdir.as_mut().expect("no pgdir"),
        sz: p.sz,
        lazy_from: p.lazy_from,
    }
}

/// Runs `f` on the current process's memory (page directory, size, lazy region), under
/// the ptable lock (for copying to and from user memory).
pub fn with_mem<R>(f: impl FnOnce(&mut UserMem<'_>) -> R) -> R {
    let me = current();
    let mut pt = PTABLE.lock();
    f(&mut usermem(&mut pt, me))
}

/// Runs `f` on the current process's memory with the ptable lock already held (`pt`): for
/// a copy that must happen together with something else under the lock (a pipe read takes
/// its bytes only once they are in the reader's memory).
pub fn with_mem_locked<R>(pt: &mut Ptable<'_>, f: impl FnOnce(&mut UserMem<'_>) -> R) -> R {
    let me = current();
    f(&mut usermem(pt, me))
}

/// The current process's size.
#[must_use]
pub fn mysz() -> u32 {
    PTABLE.lock().procs[current()].sz
}

/// The page-fault handler's decision for a user page fault of the current process at
/// `va` with error code `err`: `Ok` once a lazy page has been mapped there, or a write
/// to a copy-on-write page made it the process's own (the process retries the
/// instruction), else why the process must die — out of memory for a page kalloc could
/// not provide, or the classification of a bad access (fault.rs).
pub fn pagefault(va: UVAddr, err: PfErr) -> Result<(), FaultCause> {
    with_mem(|m| {
        match lazy::lazyfault(m.pgdir, m.lazy_from, m.sz, va) {
            Some(Ok(())) => return Ok(()),
            Some(Err(_)) => return Err(FaultCause::OutOfMemory),
            None => {}
        }
        if err.contains(PfErr::W) && va.0 < m.sz {
            match cow::cowfault(m.pgdir, va) {
                // The running process's PTE changed.
                Some(Ok(flush)) => {
                    flush.flush();
                    return Ok(());
                }
                Some(Err(_)) => return Err(FaultCause::OutOfMemory),
                None => {}
            }
        }
        let flags = vm::getpte(m.pgdir, va).map(|p| p.flags());
        Err(pagefault_cause(va, m.sz, flags, err))
    })
}

/// Prints the one log line for the current process killed by trap `trapno`.
pub fn log_fault(trapno: u32, eip: u32, pf: Option<(UVAddr, FaultCause)>) {
    let (pid, name) = {
        let pt = PTABLE.lock();
        let p = &pt.procs[current()];
        (p.pid, p.name)
    };
    crate::debugport::with_user_symbol(&name, eip, |sym| {
        let line = FaultLine {
            pid,
            name: name_str(&name),
            trapno,
            eip,
            pf,
            sym,
        };
        crate::cprintln!("{line}");
    });
}

/// The current process's open file behind descriptor `fd`, if any.
#[must_use]
pub fn ofile(fd: i32) -> Option<u16> {
    let i = usize::try_from(fd).ok().filter(|&i| i < NOFILE)?;
    PTABLE.lock().procs[current()].ofile[i]
}

/// Gives open file `f` the lowest free descriptor of the current process (xv6 `fdalloc`).
#[must_use]
pub fn fdalloc(f: u16) -> Option<i32> {
    let mut pt = PTABLE.lock();
    let ofile = &mut pt.procs[current()].ofile;
    let fd = ofile.iter().position(Option::is_none)?;
    ofile[fd] = Some(f);
    Some(fd as i32)
}

/// Frees descriptor `fd` of the current process; returns the file it referred to.
pub fn fdclear(fd: i32) -> Option<u16> {
    let i = usize::try_from(fd).ok().filter(|&i| i < NOFILE)?;
    PTABLE.lock().procs[current()].ofile[i].take()
}

/// The current process's descriptors and directory (fork copies them).
#[must_use]
pub fn files() -> (Ofile, u16) {
    let pt = PTABLE.lock();
    let p = &pt.procs[current()];
    (p.ofile, p.cwd)
}

/// Takes the current process's descriptors and directory away (exit closes them).
pub fn take_files() -> (Ofile, u16) {
    let mut pt = PTABLE.lock();
    let p = &mut pt.procs[current()];
    (
        core::mem::replace(&mut p.ofile, [None; NOFILE]),
        core::mem::take(&mut p.cwd),
    )
}

/// The current process's directory (an inode number).
#[must_use]
pub fn cwd() -> u16 {
    PTABLE.lock().procs[current()].cwd
}

/// Makes `inum` the current process's directory; returns the old one.
pub fn set_cwd(inum: u16) -> u16 {
    core::mem::replace(&mut PTABLE.lock().procs[current()].cwd, inum)
}

/// Whether the current process has been killed, for a caller holding the ptable lock
/// (blocking loops that sleep under it).
#[must_use]
pub fn killed_locked(pt: &Ptable<'_>) -> bool {
    pt.procs[current()].killed.is_some()
}
