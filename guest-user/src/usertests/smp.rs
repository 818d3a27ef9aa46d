//! What several CPUs bring (`vmm run --cpus N`; they pass on one CPU too, where the timer's
//! preemption interleaves what would otherwise run at once): CPU-bound processes that all
//! make progress, fork/exit/wait storms from several processes at once, pipes between
//! processes on different CPUs, kill of a process running (in user mode, never entering the
//! kernel) on another CPU — and not a page lost by any of it.

use crate::check::{kill_all, reap, Outcome};
use core::hint::black_box;
use ulib::{close, countfree, exit, fork, pipe, println, read, sleep, uptime, wait, write};

/// CPU-bound children in `cpubound`.
const BUSY: usize = 2;
/// How long they run, in ticks.
const WINDOW: i32 = 30;

/// Spins until the clock moves on; returns the new tick.
fn next_tick(now: i32) -> i32 {
    let mut x = 0u32;
    loop {
        for _ in 0..1000 {
            x = black_box(x.wrapping_mul(1_103_515_245).wrapping_add(12345));
        }
        let t = uptime();
        if t != now {
            return t;
        }
    }
}

/// cpubound: two CPU-bound children run for the same window; each reports (one byte down a
/// pipe) every clock tick it saw itself running in. Both must have made progress through the
/// window: on one CPU they share it (each about half the ticks), on two each has nearly all.
pub fn cpubound() -> Outcome {
    let mut fds = [[0i32; 2]; BUSY];
    let mut pids = [0i32; BUSY];
    let t0 = uptime();
    for (p, fd) in pids.iter_mut().zip(fds.iter_mut()) {
        ensure!(pipe(fd) == 0, "pipe failed");
        *p = fork();
        if *p == 0 {
            close(fd[0]);
            let mut t = uptime();
            while t < t0 + WINDOW {
                t = next_tick(t);
                if write(fd[1], b".") != 1 {
                    exit(1);
                }
            }
            exit(0);
        }
        ensure!(*p > 0, "fork failed");
        close(fd[1]);
    }
    let mut seen = [0i32; BUSY];
    for (s, fd) in seen.iter_mut().zip(fds.iter()) {
        let mut buf = [0u8; 64];
        loop {
            let n = read(fd[0], &mut buf);
            ensure!(n >= 0, "read from a busy child's pipe failed");
            if n == 0 {
                break;
            }
            *s += n;
        }
        close(fd[0]);
    }
    for p in pids {
        ensure!(reap(p)? == 0, "busy child {p} failed");
    }
    println!("  cpubound: ticks each of {BUSY} busy children ran in, of {WINDOW}: {seen:?}");
    for s in seen {
        ensure!(s >= 3, "a busy child ran in only {s} of {WINDOW} ticks");
    }
    Ok(())
}

/// Parents forking at once in `forkstorm`, rounds each, children per round.
const STORMERS: i32 = 4;
const ROUNDS: i32 = 40;
const BROOD: i32 = 6;

/// One storming parent: rounds of forking children that exit at once with their number,
/// then waiting for every one of them; 0 if every status came back exactly once.
fn storm() -> i32 {
    for _ in 0..ROUNDS {
        let mut want = 0u32;
        for k in 0..BROOD {
            let pid = fork();
            if pid == 0 {
                exit(k);
            }
            if pid < 0 {
                return 2;
            }
            want |= 1 << k;
        }
        for _ in 0..BROOD {
            let mut st = -1;
            if wait(Some(&mut st)) < 0 || !(0..BROOD).contains(&st) || want & (1 << st) == 0 {
                return 3;
            }
            want &= !(1 << st);
        }
        if wait(None) != -1 {
            return 4;
        }
    }
    0
}

/// forkstorm: several processes fork, exit and wait at once, from whatever CPU each is on:
/// every child's status reaches its own parent exactly once, and no page is lost.
pub fn forkstorm() -> Outcome {
    let free = countfree();
    let mut pids = [0i32; STORMERS as usize];
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            exit(storm());
        }
        ensure!(*p > 0, "fork failed");
    }
    for _ in pids {
        let mut st = -1;
        let got = wait(Some(&mut st));
        ensure!(pids.contains(&got), "wait returned {got}");
        ensure!(st == 0, "storming parent {got} failed with {st}");
    }
    ensure!(wait(None) == -1, "a child too many");
    let after = countfree();
    ensure!(
        after == free,
        "{free} free pages before the storm, {after} after"
    );
    Ok(())
}

/// Round trips in `pipeacross`.
const TRIPS: u32 = 300;

/// Reads exactly one u32 from `fd`.
fn read_u32(fd: i32) -> Option<u32> {
    let mut b = [0u8; 4];
    (read(fd, &mut b) == 4).then(|| u32::from_le_bytes(b))
}

/// pipeacross: a parent and a child play ping-pong through two pipes, each adding one to the
/// number it gets; every number arrives, in order, whichever CPUs they run on.
pub fn pipeacross() -> Outcome {
    let (mut ping, mut pong) = ([0i32; 2], [0i32; 2]);
    ensure!(pipe(&mut ping) == 0 && pipe(&mut pong) == 0, "pipe failed");
    let pid = fork();
    if pid == 0 {
        close(ping[1]);
        close(pong[0]);
        while let Some(n) = read_u32(ping[0]) {
            if write(pong[1], &(n + 1).to_le_bytes()) != 4 {
                exit(1);
            }
        }
        exit(0);
    }
    ensure!(pid > 0, "fork failed");
    close(ping[0]);
    close(pong[1]);
    let mut n = 0u32;
    for _ in 0..TRIPS {
        ensure!(
            write(ping[1], &n.to_le_bytes()) == 4,
            "write to ping failed"
        );
        let Some(m) = read_u32(pong[0]) else {
            fail!("no answer to {n}");
        };
        ensure!(m == n + 1, "sent {n}, got back {m}");
        n = m + 1;
    }
    close(ping[1]);
    ensure!(read_u32(pong[0]).is_none(), "an answer too many");
    close(pong[0]);
    ensure!(reap(pid)? == 0, "the child failed");
    Ok(())
}

/// killrunning: children spinning in user mode (never entering the kernel, so running on
/// some CPU whenever they can) are killed; each exits with 137 within a second.
pub fn killrunning() -> Outcome {
    let mut pids = [0i32; 3];
    for p in pids.iter_mut() {
        *p = fork();
        if *p == 0 {
            let mut x = 1u32;
            loop {
                x = black_box(x.wrapping_mul(3));
            }
        }
        ensure!(*p > 0, "fork failed");
    }
    sleep(3);
    let t0 = uptime();
    kill_all(&pids)?;
    let took = uptime() - t0;
    ensure!(took <= 100, "the killed spinners took {took} ticks to exit");
    Ok(())
}
