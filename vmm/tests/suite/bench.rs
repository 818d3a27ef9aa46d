//! `vmm bench pagefault`, `fork`, `boot` and `smp`: the reports' structure and sanity (not
//! their speed).

use crate::common;

use std::path::PathBuf;

use common::{engine, stderr, stdout, vmm};

/// Where the benches' files go.
fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `vmm bench ARGS --json FILE`, which must succeed; returns its stdout and the JSON.
fn bench(args: &[&str], json: &std::path::Path) -> (String, serde_json::Value) {
    let mut all = vec!["bench"];
    all.extend(args);
    all.extend(["--json", json.to_str().unwrap()]);
    let out = vmm(&all);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}
{}",
        stderr(&out)
    );
    let doc = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (text, doc)
}

/// The p50 in cycles of the row `name` of `rows`.
fn p50(rows: &[serde_json::Value], name: &str) -> u64 {
    let row = rows.iter().find(|r| r["name"] == name);
    row.unwrap_or_else(|| panic!("no row {name}"))["p50_cycles"]
        .as_u64()
        .unwrap()
}

#[test]
fn pagefault_bench_writes_a_sane_table_json_and_svg() {
    if engine().is_none() {
        return;
    }
    let dir = out_dir();
    let (json, svg) = (dir.join("pf.json"), dir.join("pf.svg"));
    let svg_arg = svg.to_str().unwrap();
    let args = [
        "pagefault",
        "--pages",
        "512",
        "--runs",
        "1",
        "--svg",
        svg_arg,
    ];
    let (text, report) = bench(&args, &json);
    for row in [
        "guest demand fault (prefaulted RAM)",
        "guest demand fault (cold RAM)",
        "guest demand fault (recycled page)",
        "host Linux anonymous fault",
        "guest COW-break fault",
        "host Linux COW-break fault",
        "warm-touch overhead",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }

    assert_eq!(report["pages"], 512);
    assert_eq!(report["runs"], 1);
    assert!(report["tsc_khz"].as_u64().unwrap() > 0);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    for row in rows {
        assert_eq!(row["count"], 512, "{row}");
        let p: Vec<f64> = ["min_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"]
            .iter()
            .map(|k| row[*k].as_f64().unwrap())
            .collect();
        assert!(p[0] > 0.0, "positive: {row}");
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "monotone percentiles: {row}"
        );
    }
    for k in ["ratio_p50", "ratio_p99"] {
        assert!(report[k].as_f64().unwrap() > 0.0, "{k}: {report}");
    }
    // Each guest fault over the Linux fault of its kind: demand (fresh, recycled) and COW.
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 3, "{report}");
    for r in ratios {
        assert!(r["p50"].as_f64().unwrap() > 0.0, "{r}");
    }
    // A recycled page must be zeroed by the fault; a pristine one need not be.
    assert!(
        p50(rows, "guest demand fault (recycled page)")
            > p50(rows, "guest demand fault (prefaulted RAM)"),
        "{text}"
    );
    assert!(report["vm_exits"].is_object());
    assert_eq!(report["engine"], engine().unwrap());

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    for row in rows {
        let name = row["name"].as_str().unwrap();
        assert!(svg.contains(name), "the legend names {name}");
    }
    assert!(svg.matches("<polyline").count() >= 7, "a series per row");
}

#[test]
fn fork_bench_measures_every_kind_in_both_modes_and_on_linux() {
    if engine().is_none() {
        return;
    }
    let args = ["fork", "--iterations", "5", "--heap-mib", "8"];
    let (text, report) = bench(&args, &out_dir().join("fork.json"));
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for kind in ["fork+exit+wait", "fork+exec+exit+wait", "fork of big heap"] {
        for mode in ["(eager)", "(--cow)"] {
            let name = format!("guest {kind} {mode}");
            assert!(names.contains(&name.as_str()), "{name} missing: {names:?}");
        }
    }
    assert_eq!(rows.len(), 9, "{names:?}");
    for row in rows {
        // 5 round trips of each kind (the big-heap fork is bounded by 8, so 5 too).
        assert_eq!(row["count"], 5, "{row}");
        assert!(row["min_cycles"].as_u64().unwrap() > 0, "{row}");
    }
    // Six ratios (each guest row over its Linux row), all measured.
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 6, "{report}");
    for r in ratios {
        assert!(r["p50"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The eager fork copies an 8 MiB heap; the copy-on-write one shares it: cheaper.
    assert!(
        p50(rows, "guest fork of big heap (--cow)") < p50(rows, "guest fork of big heap (eager)"),
        "{text}"
    );
    assert_eq!(report["engine"], engine().unwrap());
}

#[test]
fn smp_bench_keeps_every_vcpu_busy() {
    if engine().is_none() {
        return;
    }
    let args = ["smp", "--cpus", "2", "--millions", "5", "--runs", "1"];
    let (text, doc) = bench(&args, &out_dir().join("smp.json"));
    assert!(text.contains("wall at 1 vCPU / at 2:"), "{text}");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "one run at each CPU count: {doc}");
    for (run, cpus) in runs.iter().zip([1, 2]) {
        assert_eq!(run["cpus"], cpus, "{run}");
        assert!(run["seconds"].as_f64().unwrap() > 0.0, "{run}");
        let vcpus = run["vcpu_seconds"].as_array().unwrap();
        assert_eq!(vcpus.len(), cpus, "{run}");
        // Every vCPU ran a share of the children (the bench fails beyond 4x anyway).
        for v in vcpus {
            assert!(v.as_f64().unwrap() > 0.0, "{run}");
        }
    }
    assert!(doc["worst_balance"].as_f64().unwrap() <= 4.0, "{doc}");
    assert_eq!(doc["engine"], engine().unwrap());
}

#[test]
fn boot_bench_reports_boot_time_exits_and_backed_pages_per_size() {
    if engine().is_none() {
        return;
    }
    let args = [
        "boot",
        "--mem",
        "64M",
        "--mem",
        "128M",
        "--runs",
        "2",
        "--linux-iterations",
        "5",
    ];
    let (text, doc) = bench(&args, &out_dir().join("boot.json"));
    let rows = doc["report"]["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "guest boot to first user instruction (64M)",
            "whole run of hello (64M)",
            "guest boot to first user instruction (128M)",
            "whole run of hello (128M)",
            "Linux fork+execve+waitpid (static)",
        ]
    );
    for row in &rows[..4] {
        assert_eq!(row["count"], 2, "{row}");
        assert!(row["min_cycles"].as_u64().unwrap() > 0, "{row}");
    }
    // Booting is part of the whole run.
    assert!(
        rows[0]["p50_cycles"].as_u64() < rows[1]["p50_cycles"].as_u64(),
        "{text}"
    );
    assert_eq!(rows[4]["count"], 5);
    let counts = doc["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 2, "{doc}");
    for c in counts {
        // hello: the exit port, its one console write, the boot's few port accesses.
        let exits = c["vm_exits"].as_u64().unwrap();
        assert!((2..100).contains(&exits), "{c}");
        // Boot is O(1) in RAM: far fewer backed pages than RAM has (64M = 16384 pages).
        let backed = c["host_backed_pages"].as_u64().unwrap();
        assert!(backed > 0 && backed <= 2048, "{c}");
    }
    assert_eq!(doc["report"]["ratios"].as_array().unwrap().len(), 4);
}
