//! usertests: the memory, process and file tests of xv6's usertests, re-written for this
//! kernel, and tests of what several CPUs bring (smp.rs).
//!
//! Each test runs in a child process (a test that crashes does not take the others down),
//! prints `NAME: ok` or `NAME: FAILED why`, and the run ends with `ALL TESTS PASSED` (exit 0)
//! or the names of the failed tests (exit 1). Like xv6's `countfree`, the number of free
//! pages before and after the whole run must be exactly equal: a page lost anywhere —
//! fork, exec, sbrk, a killed process — shows.
//!
//! The parent never allocates or calls sbrk itself, so its own size stays put. The tests
//! live in `src/usertests/` (one file per subject); `usertests NAME...` runs only those.

#![no_std]
#![no_main]

#[macro_use]
#[path = "../usertests/check.rs"]
mod check;
#[path = "../usertests/cow.rs"]
mod cow;
#[path = "../usertests/edges.rs"]
mod edges;
#[path = "../usertests/exec.rs"]
mod exec;
#[path = "../usertests/fault.rs"]
mod fault;
#[path = "../usertests/files.rs"]
mod files;
#[path = "../usertests/lazy.rs"]
mod lazy;
#[path = "../usertests/mem.rs"]
mod mem;
#[path = "../usertests/proc.rs"]
mod proc;
#[path = "../usertests/sbrk.rs"]
mod sbrk;
#[path = "../usertests/smp.rs"]
mod smp;
#[path = "../usertests/validate.rs"]
mod validate;

use check::Outcome;
use ulib::{countfree, exit, fork, println, wait};

/// A test: its name and its function.
type Test = (&'static str, fn() -> Outcome);

/// Every test, in the order they run.
const TESTS: &[Test] = &[
    ("bsstest", proc::bsstest),
    ("exitstatus", proc::exitstatus),
    ("xv6abi", proc::xv6abi),
    ("forkcopy", proc::forkcopy),
    ("sbrkbasic", sbrk::sbrkbasic),
    ("sbrkmuch", sbrk::sbrkmuch),
    ("sbrkarg", sbrk::sbrkarg),
    ("maxva", sbrk::maxva),
    ("lazysbrk", lazy::lazysbrk),
    ("lazyargs", lazy::lazyargs),
    ("lazyfork", lazy::lazyfork),
    ("lazybounds", lazy::lazybounds),
    ("cowfork", cow::cowfork),
    ("cowkernel", cow::cowkernel),
    ("cowread", cow::cowread),
    ("forkcost", cow::forkcost),
    ("cowbig", cow::cowbig),
    ("cowkill", cow::cowkill),
    ("cowoom", cow::cowoom),
    ("stackguard", fault::stackguard),
    ("kernmem", fault::kernmem),
    ("textwrite", fault::textwrite),
    ("exceptions", fault::exceptions),
    ("validatetest", validate::validatetest),
    ("copyinout", validate::copyinout),
    ("pipes", files::pipes),
    ("fds", files::fds),
    ("filesystem", files::filesystem),
    ("directories", files::directories),
    ("unlinkedcwd", edges::unlinkedcwd),
    ("linklimit", edges::linklimit),
    ("devices", edges::devices),
    ("otrunc", edges::otrunc),
    ("readbad", edges::readbad),
    ("writebad", edges::writebad),
    ("exectest", exec::exectest),
    ("bigargtest", exec::bigargtest),
    ("forktest", proc::forktest),
    ("preemption", proc::preemption),
    ("kill", proc::killtest),
    ("cpubound", smp::cpubound),
    ("forkstorm", smp::forkstorm),
    ("pipeacross", smp::pipeacross),
    ("killrunning", smp::killrunning),
    ("sbrkfail", sbrk::sbrkfail),
    ("readoom", edges::readoom),
    ("execout", exec::execout),
    ("execwritten", exec::execwritten),
];

/// Runs one test in a child; true if it passed.
fn run(name: &str, test: fn() -> Outcome) -> bool {
    let pid = fork();
    if pid < 0 {
        println!("{name}: FAILED fork failed");
        return false;
    }
    if pid == 0 {
        match test() {
            Ok(()) => exit(0),
            Err(why) => {
                println!("{name}: FAILED {why}");
                exit(1)
            }
        }
    }
    let mut status = -1;
    loop {
        let got = wait(Some(&mut status));
        if got == pid {
            break;
        }
        if got < 0 {
            println!("{name}: FAILED wait lost the test process {pid}");
            return false;
        }
        println!("  ({name}: reaped stray process {got}, status {status})");
    }
    match status {
        0 => println!("{name}: ok"),
        1 => {}
        s => println!("{name}: FAILED the test process died with status {s}"),
    }
    status == 0
}

/// The program.
#[no_mangle]
pub extern "C" fn main(argc: i32, _argv: *const *const u8) -> i32 {
    let only = |name: &str| {
        argc <= 1
            || ulib::args()
                .skip(1)
                .any(|a| a.to_bytes() == name.as_bytes())
    };
    println!("usertests starting");
    let free0 = countfree();
    let mut failed: [&str; TESTS.len()] = [""; TESTS.len()];
    let mut nfailed = 0;
    for &(name, test) in TESTS.iter().filter(|(name, _)| only(name)) {
        if !run(name, test) {
            failed[nfailed] = name;
            nfailed += 1;
        }
    }
    let free1 = countfree();
    println!("countfree: {free0} free pages before, {free1} after");
    if free0 != free1 {
        println!("countfree: FAILED {} pages lost", free0 - free1);
        failed[nfailed] = "countfree";
        nfailed += 1;
    }
    if nfailed == 0 {
        println!("ALL TESTS PASSED");
        0
    } else {
        println!("FAILED: {}", Names(&failed[..nfailed]));
        1
    }
}

/// Names separated by spaces.
struct Names<'a>(&'a [&'a str]);

impl core::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}
