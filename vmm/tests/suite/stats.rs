//! `--stats-json FILE`: the run's figures for scripts, from a real boot (through the lab too,
//! which sends the inner vmm's file back), and a bad FILE refused before any boot.

use crate::common;

#[test]
fn stats_json_holds_the_runs_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.json");
    let Some(out) = common::boot(&["--quiet", "--stats-json", path.to_str().unwrap(), "hello"])
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let text = std::fs::read_to_string(&path).expect("the file was written");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let total = v["vm_exits_total"].as_u64().unwrap();
    let by_reason: u64 = v["vm_exits"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|n| n.as_u64())
        .sum();
    assert!(total > 0 && total == by_reason, "{text}");
    assert!(v["guest_seconds"].as_f64().unwrap() > 0.0, "{text}");
    assert!(v["host_backed_pages"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(v["console"]["out_bytes"], "hello, world\n".len(), "{text}");
    // Which KVM ran it: the AMD lab's kvm_amd, or this host's own.
    match common::engine() {
        Some("lab") => {
            assert_eq!(v["kvm_module"], "kvm_amd", "{text}");
            assert_eq!(v["engine"], "lab-amd", "{text}");
        }
        _ => {
            assert_eq!(v["engine"], "kvm", "{text}");
            assert!(
                v["kvm_module"].as_str().unwrap().starts_with("kvm_"),
                "{text}"
            );
        }
    }
}

#[test]
fn an_unwritable_stats_json_is_a_usage_error_before_boot() {
    let out = common::vmm(&["run", "--stats-json", "/nonexistent/dir/s.json", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("cannot write /nonexistent/dir/s.json"));
}
