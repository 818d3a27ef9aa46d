//! Processes: exit statuses, fork's copy of the address space (copyuvm), the NPROC limit,
//! preemption by the timer, kill; and the zeroed bss of a fresh image.

extern crate alloc;

use crate::check::{expect_status, in_child, kill_all, reap, Outcome};
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use ulib::{exit, fork, getpid, kill, println, sleep, uptime, wait};

/// A large zero-initialized writable static: in .bss, which exec must zero (an immutable
/// one would land in .rodata).
static BSS: [AtomicU8; 20000] = [const { AtomicU8::new(0) }; 20000];
/// A static with a value: in .data, loaded from the file.
static DATA: AtomicU32 = AtomicU32::new(0x600d_da7a);

/// bsstest: the bss is zero and the data has its initial value.
pub fn bsstest() -> Outcome {
    // black_box: the address escapes, so the compiler cannot know the array stays zero.
    if let Some(i) = black_box(&BSS)
        .iter()
        .position(|b| b.load(Ordering::Relaxed) != 0)
    {
        fail!("bss byte {i} is not zero");
    }
    let d = DATA.load(Ordering::Relaxed);
    ensure!(d == 0x600d_da7a, "data static is {d:#x}");
    Ok(())
}

/// exitstatus: wait reports exit's status & 0xff and the child's pid; wait without
/// children is −1.
pub fn exitstatus() -> Outcome {
    ensure!(wait(None) == -1, "wait without children did not return -1");
    expect_status("exit(0)", 0, || 0)?;
    expect_status("exit(300)", 300 & 0xff, || 300)?;
    expect_status("exit(-1)", 255, || -1)?;
    let pid = fork();
    if pid == 0 {
        exit(getpid() & 0xff);
    }
    ensure!(pid > 0, "fork failed");
    let st = reap(pid)?;
    ensure!(
        st == pid & 0xff,
        "child's getpid() & 0xff is {st}, fork said {pid}"
    );
    ensure!(wait(None) == -1, "a second wait found another child");
    Ok(())
}

extern "C" {
    /// xv6-public's `exit(void)` stub, declared with a parameter so the test controls the
    /// word where a status argument would be.
    #[link_name = "sys_exit"]
    fn exit_void_with(garbage: i32) -> !;
    /// xv6-public's `wait(void)` stub, likewise: the word is a pointer it must not use.
    #[link_name = "sys_wait"]
    fn wait_void_with(garbage: *mut i32) -> i32;
}

/// xv6abi: xv6-public's exit(void) (2) exits with 0 whatever lies on the stack, and its
/// wait(void) (3) returns the child's pid and writes nothing, not even through a valid
/// pointer where an argument would be.
pub fn xv6abi() -> Outcome {
    let pid = fork();
    if pid == 0 {
        // SAFETY: exit takes no argument; the word is ignored.
        unsafe { exit_void_with(77) }
    }
    ensure!(pid > 0, "fork failed");
    let st = reap(pid)?;
    ensure!(st == 0, "exit(void) with 77 on the stack gave status {st}");
    let pid = fork();
    if pid == 0 {
        exit(5);
    }
    let mut canary = 0x5a5a_5a5a;
    // SAFETY: wait(void) takes no argument; the pointer (valid) must not be written.
    let got = unsafe { wait_void_with(&mut canary) };
    ensure!(got == pid, "wait(void) returned {got}, expected {pid}");
    ensure!(canary == 0x5a5a_5a5a, "wait(void) wrote {canary:#x}");
    // SAFETY: as above.
    let got = unsafe { wait_void_with(&mut canary) };
    ensure!(got == -1, "wait(void) without children returned {got}");
    Ok(())
}

/// forkcopy: the child gets a copy of data, stack and heap; its writes stay its own.
pub fn forkcopy() -> Outcome {
    let mut local = black_box([3u8; 64]);
    let heap = alloc::vec![5u8; 10000];
    let st = in_child(|| {
        let ok = DATA.load(Ordering::Relaxed) == 0x600d_da7a
            && local.iter().all(|&b| b == 3)
            && heap.iter().all(|&b| b == 5);
        DATA.store(1, Ordering::Relaxed);
        local.fill(0);
        black_box(&local);
        i32::from(!ok)
    })?;
    ensure!(st == 0, "the child saw other values");
    ensure!(
        DATA.load(Ordering::Relaxed) == 0x600d_da7a,
        "the child's write reached the parent"
    );
    ensure!(
        black_box(&local).iter().all(|&b| b == 3),
        "the parent's stack changed"
    );
    ensure!(heap.iter().all(|&b| b == 5), "the parent's heap changed");
    Ok(())
}

/// forktest: fork until the process table (NPROC 64) is full, then reap every child.
pub fn forktest() -> Outcome {
    let mut n = 0;
    while n < 1000 {
        let pid = fork();
        if pid < 0 {
            break;
        }
        if pid == 0 {
            exit(0);
        }
        n += 1;
    }
    ensure!(n < 1000, "fork never failed (NPROC 64)");
    println!("  forktest: {n} children forked before fork failed (NPROC 64; 2 were in use)");
    ensure!(n > 0 && n <= 62, "{n} children, NPROC 64 allows 62 here");
    for i in 0..n {
        ensure!(wait(None) > 0, "wait stopped early: {i} of {n}");
    }
    ensure!(wait(None) == -1, "wait found a child too many");
    ensure!(fork_reap_ok(), "fork after forktest failed");
    Ok(())
}

/// One more fork works once the table is free again.
fn fork_reap_ok() -> bool {
    matches!(in_child(|| 0), Ok(0))
}

/// Spinning children in preemption.
const SPINNERS: usize = 3;

/// preemption: children spinning forever do not stop the parent (the timer preempts them):
/// its sleep returns; killed, they exit with 137.
pub fn preemption() -> Outcome {
    let mut pids = [0; SPINNERS];
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        ensure!(*p > 0, "fork failed");
    }
    let t0 = uptime();
    sleep(10);
    let t1 = uptime();
    kill_all(&pids)?;
    ensure!(t1 - t0 >= 10, "sleep(10) returned after {} ticks", t1 - t0);
    Ok(())
}

/// kill: a sleeping child and a child killing itself exit with 137; killing a process that
/// does not exist fails; killing a zombie leaves its exit status alone.
pub fn killtest() -> Outcome {
    let pid = fork();
    if pid == 0 {
        sleep(1_000_000);
        exit(1);
    }
    ensure!(pid > 0, "fork failed");
    sleep(2);
    ensure!(kill(pid) == 0, "kill of a sleeping child failed");
    let st = reap(pid)?;
    ensure!(
        st == 137,
        "killed sleeping child: status {st}, expected 137"
    );

    expect_status("kill(getpid())", 137, || {
        kill(getpid());
        1
    })?;

    let pid = fork();
    if pid == 0 {
        exit(5);
    }
    sleep(5);
    kill(pid);
    let st = reap(pid)?;
    ensure!(st == 5, "a zombie killed after exit(5): status {st}");
    ensure!(kill(pid) == -1, "kill of a reaped pid {pid} succeeded");
    Ok(())
}
