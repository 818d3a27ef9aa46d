use super::*;

/// A deterministic heavy-tailed sample set (xorshift; values 100 .. ~10^7).
fn heavy_tail(n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            (100.0 / (1.0 - u).powf(0.7)) as u64
        })
        .collect()
}

/// Nearest-rank percentile, computed without hdrhistogram.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Within hdrhistogram's 3 significant figures (relative 1e-3, plus one unit).
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= want.abs() * 1e-3 + 1.0
}

fn assert_monotone(s: &Summary) {
    let c = [
        s.min_cycles,
        s.p50_cycles,
        s.p90_cycles,
        s.p99_cycles,
        s.max_cycles,
    ];
    assert!(
        c.windows(2).all(|w| w[0] <= w[1]),
        "cycles not monotone: {s:?}"
    );
    let n = [s.min_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.max_ns];
    assert!(n.windows(2).all(|w| w[0] <= w[1]), "ns not monotone: {s:?}");
    assert!(s.min_cycles as f64 <= s.mean_cycles && s.mean_cycles <= s.max_cycles as f64);
}

#[test]
fn summary_of_1_to_1000() {
    let row = Row::new("x", (1..=1000).collect());
    // 1 GHz: ns == cycles.
    let s = summarize(&row, 1_000_000);
    assert_eq!(s.count, 1000);
    assert_eq!((s.min_cycles, s.max_cycles), (1, 1000));
    assert_eq!((s.p50_cycles, s.p90_cycles, s.p99_cycles), (500, 900, 990));
    assert!(close(s.mean_cycles, 500.5), "{}", s.mean_cycles);
    assert_eq!((s.p50_ns, s.p99_ns), (500.0, 990.0));
    assert_monotone(&s);
}

#[test]
fn summary_matches_nearest_rank_on_heavy_tail() {
    for seed in [1, 7, 12345] {
        let v = heavy_tail(20_000, seed);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        // 2.5 GHz: ns = cycles / 2.5.
        let s = summarize(&Row::new("t", v), 2_500_000);
        assert_eq!(s.count, 20_000);
        for (got, q) in [
            (s.p50_cycles, 0.5),
            (s.p90_cycles, 0.9),
            (s.p99_cycles, 0.99),
        ] {
            let want = nearest_rank(&sorted, q);
            assert!(close(got as f64, want as f64), "q{q}: {got} vs {want}");
        }
        assert!(close(s.min_cycles as f64, sorted[0] as f64));
        assert!(close(s.max_cycles as f64, *sorted.last().unwrap() as f64));
        assert!(close(s.mean_cycles, mean), "{} vs {mean}", s.mean_cycles);
        assert!(close(s.p50_ns, s.p50_cycles as f64 / 2.5));
        assert!(close(s.mean_ns, mean / 2.5));
        assert_monotone(&s);
    }
}

#[test]
fn summary_of_constant_and_empty_rows() {
    let s = summarize(&Row::new("c", vec![123_456; 50]), 3_000_000);
    assert_monotone(&s);
    assert!(close(s.p50_cycles as f64, 123_456.0) && close(s.min_cycles as f64, 123_456.0));
    let e = summarize(&Row::new("e", vec![]), 3_000_000);
    assert_eq!(e.count, 0);
    assert_eq!(
        (e.min_cycles, e.p99_cycles, e.max_cycles, e.mean_cycles),
        (0, 0, 0, 0.0)
    );
    assert_eq!((e.p50_ns, e.mean_ns), (0.0, 0.0));
}

fn sample_rows() -> Vec<Row> {
    vec![
        Row::new(ROW_GUEST_PREFAULTED, (1..=1000).map(|x| x * 2).collect()),
        Row::new(ROW_GUEST_COLD, heavy_tail(3000, 3)),
        Row::new(ROW_HOST, (1..=1000).map(|x| x * 4).collect()),
        Row::new(ROW_WARM, vec![40, 41, 42, 40, 39, 40]),
    ]
}

fn sample_report(emulated: bool) -> Report {
    let mut vm_exits = BTreeMap::new();
    vm_exits.insert("io".to_string(), 12);
    vm_exits.insert("hlt".to_string(), 1);
    report(
        ReportMeta {
            engine: "lab".into(),
            cpu_model: "Test CPU".into(),
            tsc_khz: 2_000_000,
            pages: 1000,
            runs: 1,
            vm_exits,
            emulated_time: emulated,
            vmm_version: "9.9.9".into(),
            measured_kernel: "6.1.0-lab".into(),
            host_kernel: "6.12-host".into(),
            date: "2026-12-02T08:00:00Z".into(),
            closing_timestamp: "lfence; rdtsc; lfence".into(),
            ratios: Vec::new(),
        },
        &sample_rows(),
    )
}

#[test]
fn report_ratios_and_order() {
    let r = sample_report(false);
    let names: Vec<&str> = r.rows.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [ROW_GUEST_PREFAULTED, ROW_GUEST_COLD, ROW_HOST, ROW_WARM]
    );
    assert!((r.ratio_p50 - 0.5).abs() < 1e-3, "{}", r.ratio_p50);
    assert!((r.ratio_p99 - 0.5).abs() < 1e-3, "{}", r.ratio_p99);
    r.rows.iter().for_each(assert_monotone);

    let no_host = report(ReportMeta::default(), &sample_rows()[..2]);
    assert!(no_host.ratio_p50.is_nan() && no_host.ratio_p99.is_nan());
}

#[test]
fn chosen_ratios_are_computed_and_printed_one_line_each() {
    let meta = ReportMeta {
        ratios: vec![
            (ROW_HOST.to_string(), ROW_GUEST_PREFAULTED.to_string()),
            (ROW_WARM.to_string(), "no such row".to_string()),
        ],
        ..ReportMeta::default()
    };
    let r = report(meta, &sample_rows());
    assert_eq!(r.ratios.len(), 2);
    // The sample host row is twice the guest row: the inverse of the default pair.
    assert!((r.ratios[0].p50 - 2.0).abs() < 1e-2, "{:?}", r.ratios[0]);
    assert_eq!(r.ratio_p50, r.ratios[0].p50);
    assert!(r.ratios[1].p50.is_nan() && r.ratios[1].p99.is_nan());
    let table = render_table(&r);
    assert!(
        table.contains(&format!(
            "ratio at p50 2.00, at p99 2.00   ({ROW_HOST} / {ROW_GUEST_PREFAULTED})"
        )),
        "{table}"
    );
    assert!(table.contains("ratio at p50 n/a, at p99 n/a"), "{table}");
    assert!(!table.contains("ratio guest/host"), "{table}");
    assert!(!table.contains("pages:"), "{table}");
}

const ROW_KEYS: [&str; 20] = [
    "name",
    "count",
    "min_ns",
    "p50_ns",
    "p90_ns",
    "p99_ns",
    "p999_ns",
    "p9999_ns",
    "max_ns",
    "mean_ns",
    "stdev_ns",
    "min_cycles",
    "p50_cycles",
    "p90_cycles",
    "p99_cycles",
    "p999_cycles",
    "p9999_cycles",
    "max_cycles",
    "mean_cycles",
    "stdev_cycles",
];

#[test]
fn json_round_trips_with_every_field() {
    let r = sample_report(true);
    let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
    let obj = v.as_object().unwrap();
    for k in [
        "engine",
        "tsc_khz",
        "pages",
        "runs",
        "cpu_model",
        "emulated_time",
        "rows",
        "ratio_p50",
        "ratio_p99",
        "vm_exits",
        "ratios",
        "per_run",
        "vmm_version",
        "measured_kernel",
        "host_kernel",
        "date",
        "closing_timestamp",
    ] {
        assert!(obj.contains_key(k), "missing {k}");
    }
    assert_eq!(obj.len(), 17);
    assert_eq!(v["vmm_version"], "9.9.9");
    assert_eq!(v["closing_timestamp"], "lfence; rdtsc; lfence");
    assert_eq!(v["engine"], "lab");
    assert_eq!(v["tsc_khz"], 2_000_000);
    assert_eq!(v["pages"], 1000);
    assert_eq!(v["emulated_time"], true);
    assert_eq!(v["cpu_model"], "Test CPU");
    assert!((v["ratio_p50"].as_f64().unwrap() - r.ratio_p50).abs() < 1e-12);
    assert_eq!(v["vm_exits"]["io"], 12);
    assert_eq!(v["vm_exits"]["hlt"], 1);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (jr, s) in rows.iter().zip(&r.rows) {
        let o = jr.as_object().unwrap();
        assert_eq!(o.len(), ROW_KEYS.len());
        for k in ROW_KEYS {
            assert!(o.contains_key(k), "row missing {k}");
        }
        assert_eq!(jr["name"], s.name.as_str());
        assert_eq!(jr["count"], s.count);
        assert_eq!(jr["p99_cycles"], s.p99_cycles);
        assert!((jr["p50_ns"].as_f64().unwrap() - s.p50_ns).abs() < 1e-9);
        assert!((jr["mean_cycles"].as_f64().unwrap() - s.mean_cycles).abs() < 1e-9);
    }

    // Unknown ratios are null, still present.
    let v: serde_json::Value =
        serde_json::from_str(&to_json(&report(ReportMeta::default(), &[]))).unwrap();
    assert!(v["ratio_p50"].is_null() && v["ratio_p99"].is_null());
    assert_eq!(v["rows"].as_array().unwrap().len(), 0);
}

#[test]
fn table_is_aligned_and_complete() {
    let r = sample_report(true);
    let t = render_table(&r);
    let lines: Vec<&str> = t.lines().collect();
    // Header + two lines per row, all the same width.
    let table = &lines[..1 + 2 * r.rows.len()];
    let w = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == w), "{t}");
    for s in &r.rows {
        assert!(t.contains(&s.name));
        assert!(t.contains(&s.p99_cycles.to_string()));
    }
    for h in [
        "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stdev", "ns", "cycles",
    ] {
        assert!(table[0].contains(h) || t.contains(h));
    }
    assert!(t.contains("ratio guest/host at p50: 0.50"), "{t}");
    assert!(t.contains("ratio guest/host at p99: 0.50"), "{t}");
    assert!(t.contains("engine: lab") && t.contains("Test CPU") && t.contains("2000000 kHz"));
    assert!(t.contains("emulated time: compare ratios only"));
    assert!(t.contains("vmm 9.9.9") && t.contains("kernel: 6.1.0-lab") && t.contains("2026-12-02"));
    assert!(!render_table(&sample_report(false)).contains("emulated time"));
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

#[test]
fn svg_is_well_formed_with_both_panels_and_every_row() {
    let rows = sample_rows();
    let svg = render_svg(&rows, 2_000_000, "page-fault latency <test> & more");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let attr = |n: &roxmltree::Node, a: &str| n.attribute(a).unwrap_or("").to_ascii_lowercase();
    for (i, row) in rows.iter().enumerate() {
        let c = hex(svg::PALETTE[i]);
        let strokes = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && attr(n, "stroke") == c)
            .count();
        // Histogram stretches, p50/p99 markers, the percentile line: several strokes.
        assert!(strokes >= 4, "row {i} ({}) colour {c}: {strokes}", row.name);
        let legend = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && attr(n, "fill") == c)
            .count();
        assert_eq!(legend, 2, "a legend entry of row {i} in each panel");
        let named = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter(|n| {
                n.text()
                    .is_some_and(|t| t.contains(&row.name) && t.contains("p99 "))
            })
            .count();
        assert_eq!(named, 2, "legend text of row {i} names p50 and p99");
    }
    // The log axis has labels in time units.
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.ends_with(" ns") || t.ends_with(" µs")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("<test> & more")));
    // The percentile panel's axis: 90 %, 99 %, 99.9 % equally spaced.
    for p in ["90%", "99%", "99.9%", "99.99%"] {
        assert!(texts.iter().any(|t| t == p), "{p} in {texts:?}");
    }
    assert!(
        !texts.iter().any(|t| t.contains("(ns")),
        "the axis label names no unit: {texts:?}"
    );

    // Empty input still gives a well-formed document.
    let empty = render_svg(&[Row::new("nothing", vec![])], 0, "empty");
    roxmltree::Document::parse(&empty).expect("well-formed XML");
}

/// Empty bins are not drawn along the floor: two clusters far apart give two stretches.
#[test]
fn svg_histogram_breaks_at_empty_bins() {
    let mut samples = vec![1000u64; 50];
    samples.extend([1_000_000u64; 50]);
    let svg = render_svg(&[Row::new("two clusters", samples)], 1_000_000, "t");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let c = hex(svg::PALETTE[0]);
    let strokes = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| {
            n.attribute("stroke")
                .is_some_and(|s| s.eq_ignore_ascii_case(&c))
        })
        .filter(|n| n.attribute("stroke-width") == Some("2"))
        .count();
    // The row's own (width-2, solid) lines: 2 histogram stretches + 1 percentile line; the
    // p50/p99 markers are width 1.
    assert_eq!(strokes, 3);
}

#[test]
fn per_run_figures_and_stdev() {
    let mut row = Row::new(ROW_HOST, vec![]);
    row.push_run(&[100; 10]);
    row.push_run(&[300; 10]);
    let r = report(
        ReportMeta {
            tsc_khz: 1_000_000,
            ..Default::default()
        },
        &[row],
    );
    assert_eq!(r.per_run.len(), 2);
    assert_eq!((r.per_run[0].run, r.per_run[0].p50_cycles), (1, 100));
    assert_eq!((r.per_run[1].run, r.per_run[1].p50_cycles), (2, 300));
    assert!(
        (r.rows[0].stdev_cycles - 100.0).abs() < 1.0,
        "{}",
        r.rows[0].stdev_cycles
    );
    assert_eq!(r.rows[0].count, 20);
}

#[test]
fn dates_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_796_199_930), "2026-12-02T08:25:30Z");
    assert!(now_utc().starts_with("20"));
}

#[test]
fn cpu_model_parses() {
    let info =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: a\n";
    assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
    assert_eq!(parse_cpu_model("processor: 0\n"), None);
    assert!(!cpu_model().is_empty());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn tsc_khz_is_plausible() {
    let khz = calibrate_tsc_khz();
    assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
    assert_eq!(tsc_khz(Some(2_345_678)), (2_345_678, TscSource::Kvm));
    let (k, src) = tsc_khz(Some(0));
    assert_eq!(src, TscSource::Calibrated);
    // Two calibrations agree within 1 %.
    assert!(
        (k as f64 - khz as f64).abs() < khz as f64 * 0.01,
        "{k} vs {khz}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn host_faults_are_real() {
    let s = host_anon_faults(256).unwrap();
    assert_eq!(s.cold.len(), 256);
    assert_eq!(s.warm.len(), 256);
    assert!(s.cold.iter().all(|&c| c > 0) && s.warm.iter().all(|&c| c > 0));
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (c, w) = (median(&s.cold), median(&s.warm));
    assert!(c > w, "cold median {c} <= warm median {w}");
    assert!(host_anon_faults(0).unwrap().cold.is_empty());
}
