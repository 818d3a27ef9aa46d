//! `vmm run --cpus N`: several vCPUs, each on its own thread, that the kernel learns from the
//! MP table and starts through INIT/SIPI; usertests (the SMP tests among them) pass on them,
//! `--stats-json` has a line per vCPU, a bad count is refused before any boot, and a CPU
//! that never starts ends the boot, named, with 125.

use crate::common;

use common::{boot, stderr, stdout, vmm};

#[test]
fn bad_cpu_counts_exit_2_before_boot() {
    for v in ["0", "9", "two"] {
        let out = vmm(&["run", "--cpus", v, "hello"]);
        assert_eq!(out.status.code(), Some(2), "--cpus {v}: a usage error");
        let err = stderr(&out);
        assert!(err.contains("--cpus takes 1 to 8"), "--cpus {v}: {err}");
        assert!(!err.contains("xv6:"), "--cpus {v}: no boot: {err}");
    }
}

#[test]
fn usertests_pass_on_two_cpus_each_busy() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let json_arg = json.to_str().unwrap();
    let Some(out) = boot(&[
        "--cpus",
        "2",
        "--timeout",
        "600",
        "--stats",
        "--stats-json",
        json_arg,
        "usertests",
    ]) else {
        return;
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(text.contains("ALL TESTS PASSED"), "{text}\n{err}");
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    assert!(err.contains("xv6: cpu1: starting"), "{err}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let vcpus = stats["vcpus"].as_array().expect("a vcpus array");
    assert_eq!(vcpus.len(), 2, "{stats}");
    for (i, v) in vcpus.iter().enumerate() {
        assert_eq!(v["id"], i as u64, "{stats}");
        assert!(v["vm_exits_total"].as_u64().unwrap() > 0, "{stats}");
        assert!(v["cpu_seconds"].as_f64().unwrap() > 0.0, "{stats}");
        // --stats prints the same per vCPU.
        let line = format!("vmm: vcpu{i}: {} VM exits, ", v["vm_exits_total"]);
        assert!(err.contains(&line), "{line:?}: {err}");
    }
    // The run's exits are every vCPU's: the total (and its reasons) add up.
    let sum: u64 = vcpus
        .iter()
        .map(|v| v["vm_exits_total"].as_u64().unwrap())
        .sum();
    let by_reason: u64 = stats["vm_exits"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|n| n.as_u64())
        .sum();
    assert_eq!(stats["vm_exits_total"].as_u64(), Some(sum), "{stats}");
    assert_eq!(by_reason, sum, "{stats}");
    // Each vCPU thread is confined, and the line names each one's filter.
    let seccomp = err
        .lines()
        .find(|l| l.starts_with("vmm: seccomp: "))
        .unwrap_or_else(|| panic!("no seccomp line: {err}"));
    assert!(
        seccomp.starts_with("vmm: seccomp: filter on 3 threads")
            && seccomp.contains("vcpu0 ")
            && seccomp.contains("vcpu1 "),
        "{seccomp}"
    );
    // Both CPUs ran the two busy children at once through their window.
    let line = text
        .lines()
        .find(|l| l.contains("cpubound: ticks"))
        .expect("cpubound's line");
    assert!(line.contains("of 30"), "{line}");
}

#[test]
fn four_cpus_with_cow_and_lazy() {
    crate::programs::assert_usertests_pass(&["--cpus", "4", "--cow", "--lazy"]);
}

/// `--pgdump` and `--pgdump-svg` when the guest asks on another vCPU than 0: a C program that
/// calls pgdump() once it runs on vCPU 1 (CPUID's APIC id) is answered, its dump walked from
/// that vCPU's CR3 (the program's own page tables: user rows; vCPU 0 then runs the scheduler
/// on the kernel's), and the picture has its panels after the kernel's.
#[test]
fn a_page_table_dump_asked_on_another_vcpu_walks_that_vcpus_tables() {
    if common::engine().is_none() {
        return;
    }
    let program = common::build_c_program("pgdumpap", false);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("dumps.svg");
    let Some(out) = boot(&[
        "--cpus",
        "2",
        "--pgdump",
        "--pgdump-svg",
        svg.to_str().unwrap(),
        "--timeout",
        "120",
        program.to_str().unwrap(),
    ]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "0: walked on vCPU 1\n{err}");
    // The kernel's dump (vCPU 0, after kvmalloc), then the program's: one, or more when it
    // was moved to another CPU during its call (a walk is long in the lab) and tried again.
    let dumps: Vec<&str> = err.split("pgdump cr3=").skip(1).collect();
    assert!(dumps.len() >= 2, "{err}");
    for d in &dumps[1..] {
        assert!(
            d.lines()
                .any(|l| l.starts_with("0x00000000-") && l.ends_with('u')),
            "the program's own tables: {d}"
        );
        assert!(d.contains(", 0 translate mismatches"), "{d}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    let panels = picture.matches("class=\"panel\"").count();
    assert_eq!(panels, dumps.len().min(32), "{picture}");
}

/// `selftest=apstart` sends CPU 1's INIT/SIPI to an APIC id no CPU has: the kernel's start
/// bound (2 s) ends the boot with a panic naming the CPU, the run exits 125, and nothing of
/// the program runs.
#[test]
fn an_ap_that_never_starts_is_named_and_the_run_ends_125() {
    let Some(out) = boot(&[
        "--cpus",
        "2",
        "--timeout",
        "60",
        "--append",
        "selftest=apstart",
        "hello",
    ]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("startothers: cpu1 (APIC id 1) did not start within 2000 ms"),
        "{err}"
    );
    assert!(!stdout(&out).contains("hello, world"), "{}", stdout(&out));
}
