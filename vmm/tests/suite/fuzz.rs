//! The system-call fuzzer (`fixtures/c/sysfuzz.c`: a fixed seed, 60 rounds of a child making
//! 400 random calls with hostile arguments, sleeping a tick or two now and then) in the
//! default and `--cow` modes: the run ends by itself with status 0, the kernel loses no page
//! (`countfree` before and after agree), and it ends well inside its `--timeout`.
//!
//! In the lab this pattern hung runs (8 of 66, with `--cow`): the lab kernel lost its one-shot
//! timer interrupt under QEMU's TCG, and the guest's ticks froze in `sleep`
//! (tools/lab/src/qemu.rs `KERNEL_CMDLINE`: `nohz=off highres=off`). A hang shows here as
//! status 124 from the outer bound.

use crate::common;

use std::time::{Duration, Instant};

use common::{boot, build_c_program, stderr, stdout};

/// The run's own bound; a healthy run takes a few seconds of guest time.
const TIMEOUT_SECS: u64 = 60;

fn fuzz(mode: &[&str]) {
    let exe = build_c_program("sysfuzz", false);
    let exe = exe.to_str().unwrap();
    let timeout = TIMEOUT_SECS.to_string();
    let mut args = vec!["--quiet", "--timeout", &timeout];
    args.extend_from_slice(mode);
    args.push(exe);
    let start = Instant::now();
    let Some(out) = boot(&args) else { return };
    let took = start.elapsed();
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(0),
        "sysfuzz {mode:?} (124: the run hung until its --timeout):\n{o}\n{e}"
    );
    let counts = common::lines_with(&o, "countfree before=");
    assert_eq!(counts.len(), 1, "{o}");
    let (before, after) = counts[0].split_once(" after=").expect("countfree line");
    assert_eq!(before, after, "pages lost: {o}");
    assert!(before.parse::<u32>().unwrap() > 0, "{o}");
    // Children that fault are killed with one line each; the kernel itself never panics.
    assert!(!e.contains("panic"), "{e}");
    assert!(
        took < Duration::from_secs(TIMEOUT_SECS),
        "sysfuzz {mode:?} took {took:?}"
    );
}

/// Both modes in one test, one after the other: two lab runs at once would only slow both.
#[test]
fn fuzzed_system_calls_with_sleepers_end_and_free_every_page() {
    fuzz(&[]);
    fuzz(&["--cow"]);
}
