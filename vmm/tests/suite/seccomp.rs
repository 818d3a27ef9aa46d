//! The VMM's seccomp confinement on real boots (through the lab too, where the inner `vmm`,
//! the one that runs the VM, is confined): `--stats-json` reads the filters back from the
//! kernel, the test hook's blocked call ends the run with the one-line SIGSYS report, and
//! `--no-seccomp` runs without filters. The guest's CPUID offers no hardware
//! virtualization (VMX/SVM), as a user program sees it.

use crate::common;
use common::*;

use std::process::{Command, Output, Stdio};

/// `vmm run ARGS` with the seccomp test hook set (when an engine exists).
fn boot_with_hook(args: &[&str]) -> Option<Output> {
    engine()?;
    Some(
        Command::new(VMM)
            .arg("run")
            .args(args)
            .env("XV6_VMM_SECCOMP_SELFTEST", "1")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run vmm"),
    )
}

fn stats(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the stats file was written");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_thread_runs_confined_and_the_kernel_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.json");
    let Some(out) = boot(&[
        "--quiet",
        "--stats",
        "--stats-json",
        path.to_str().unwrap(),
        "hello",
    ]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello, world\n");
    let v = stats(&path);
    let line = format!(
        "vmm: seccomp: filter on 2 threads, {} system calls allowed (main {}, vcpu0 {})",
        v["seccomp"]["syscalls"],
        v["seccomp"]["per_thread"]["main"],
        v["seccomp"]["per_thread"]["vcpu0"]
    );
    assert!(
        stderr(&out).lines().any(|l| l == line),
        "no {line:?}: {}",
        stderr(&out)
    );
    let s = &v["seccomp"];
    assert_eq!(s["mode"], "filter", "{v}");
    // The main thread and vcpu0, both in filter mode by /proc/self/task/*/status.
    assert_eq!(s["threads"], 2, "{v}");
    let main = s["per_thread"]["main"].as_u64().unwrap();
    let vcpu = s["per_thread"]["vcpu0"].as_u64().unwrap();
    let all = s["syscalls"].as_u64().unwrap();
    assert!(main > 10 && vcpu > 10, "{v}");
    assert!(all >= main.max(vcpu) && all < main + vcpu, "{v}");
    // A short list: a tenth of the 360-odd x86-64 system calls at most.
    assert!(all <= 40, "{v}");
}

#[test]
fn a_call_outside_the_filter_ends_the_run_with_one_line_naming_it() {
    let Some(out) = boot_with_hook(&["--quiet", "hello"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("vmm: error: seccomp: "))
        .unwrap_or_else(|| panic!("no one-line seccomp error: {log}"));
    assert_eq!(
        line,
        "vmm: error: seccomp: the vcpu0 thread made a system call its filter does not allow: \
         socket (#41); the VMM stopped (vmm run --no-seccomp runs without the filters)"
    );
    assert!(!stdout(&out).contains("hello, world"), "{log}");
}

#[test]
fn no_seccomp_runs_without_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.json");
    let args = [
        "--quiet",
        "--no-seccomp",
        "--stats-json",
        path.to_str().unwrap(),
        "hello",
    ];
    // The hook's socket() is allowed now: the run goes on to the program's end.
    let Some(out) = boot_with_hook(&args) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello, world\n");
    let s = &stats(&path)["seccomp"];
    assert_eq!(s["mode"], "disabled", "{s}");
    assert_eq!(s["threads"], 0, "{s}");
    assert_eq!(s["syscalls"], 0, "{s}");
}

#[test]
fn the_guest_sees_no_vmx_or_svm() {
    let Some(_) = engine() else {
        return;
    };
    let exe = build_c_program("cpuid", false);
    let out = boot(&["--quiet", exe.to_str().unwrap()]).unwrap();
    // Exit status: 1 = VMX offered, 2 = SVM offered (the lab's KVM supports nested SVM).
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
