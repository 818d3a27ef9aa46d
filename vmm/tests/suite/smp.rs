//! `vmm run --cpus N`: several vCPUs, each on its own thread, that the kernel learns from the
//! MP table and starts through INIT/SIPI; usertests (the SMP tests among them) pass on them,
//! `--stats-json` has a line per vCPU, and a bad count is refused before any boot.

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
    // Both CPUs ran the two busy children at once through their window.
    let line = text
        .lines()
        .find(|l| l.contains("cpubound: ticks"))
        .expect("cpubound's line");
    assert!(line.contains("of 30"), "{line}");
}

#[test]
fn four_cpus_with_cow_and_lazy() {
    let Some(out) = boot(&[
        "--quiet",
        "--cpus",
        "4",
        "--cow",
        "--lazy",
        "--timeout",
        "600",
        "usertests",
    ]) else {
        return;
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(text.contains("ALL TESTS PASSED"), "{text}\n{err}");
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
}
