//! What every test uses: the failure reason (`Why`, formatted without the heap, so that
//! tests of sbrk can fail without moving the break), `fail!`/`ensure!`, and running code in
//! a child process.

use core::fmt::{self, Write};
use ulib::{exit, fork, kill, wait};

/// Why a test failed: a short message, kept on the stack.
pub struct Why {
    buf: [u8; 120],
    len: usize,
}

impl Write for Why {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"))
    }
}

/// Builds a `Why` (used by the macros).
pub fn why(args: fmt::Arguments<'_>) -> Why {
    let mut w = Why {
        buf: [0; 120],
        len: 0,
    };
    let _ = w.write_fmt(args);
    w
}

/// A test's outcome.
pub type Outcome = Result<(), Why>;

/// Fails the test with a formatted reason.
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::check::why(format_args!($($arg)*))) };
}

/// Fails the test with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => { if !$cond { fail!($($arg)*) } };
}

/// Forks; runs `f` in the child, which exits with its result; waits for the child and
/// returns its exit status.
pub fn in_child(f: impl FnOnce() -> i32) -> Result<i32, Why> {
    let pid = fork();
    if pid < 0 {
        fail!("fork failed");
    }
    if pid == 0 {
        exit(f());
    }
    reap(pid)
}

/// Waits for child `pid`; returns its exit status.
pub fn reap(pid: i32) -> Result<i32, Why> {
    let mut status = -1;
    let got = wait(Some(&mut status));
    ensure!(got == pid, "wait returned {got}, expected child {pid}");
    Ok(status)
}

/// Kills the children `pids` and waits for them all: each must exit with 137 (killed).
pub fn kill_all(pids: &[i32]) -> Outcome {
    for &p in pids {
        ensure!(kill(p) == 0, "kill({p}) failed");
    }
    for _ in pids {
        let mut st = -1;
        let got = wait(Some(&mut st));
        ensure!(pids.contains(&got), "wait returned {got}");
        ensure!(st == 137, "a killed spinner exited with {st}, expected 137");
    }
    Ok(())
}

/// Runs `f` in a child and checks its exit status.
pub fn expect_status(what: &str, want: i32, f: impl FnOnce() -> i32) -> Outcome {
    let got = in_child(f)?;
    ensure!(got == want, "{what}: exit status {got}, expected {want}");
    Ok(())
}

/// Runs `f` in a child that must be killed for a bad memory access (status 139).
pub fn expect_segv(what: &str, f: impl FnOnce()) -> Outcome {
    expect_status(what, 139, || {
        f();
        0
    })
}

/// Exit status of a child whose exec returned −1, as tests use it.
pub const EXEC_FAILED: i32 = 222;
