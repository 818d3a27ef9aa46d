//! The host half of `vmm bench pagefault` on its own:
//! `cargo run --release -p pfbench --example host_baseline -- [PAGES] [RUNS] [OUT_PREFIX]`
//! prints the table and writes OUT_PREFIX.json and OUT_PREFIX.svg (default: pfbench-host).

use pfbench::*;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let pages: usize = args.next().map_or(16384, |a| a.parse().expect("PAGES"));
    let runs: usize = args.next().map_or(1, |a| a.parse().expect("RUNS"));
    let out = args.next().unwrap_or_else(|| "pfbench-host".into());
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let s = host_anon_faults(pages)?;
        let p50 = summarize(&Row::new("", s.cold.clone()), 1_000_000).p50_cycles;
        eprintln!("run {run}: cold p50 {p50} cycles");
        cold.extend(s.cold);
        warm.extend(s.warm);
    }
    // Calibrated after the runs: its 100 ms sleep must not precede the measurement.
    let (khz, source) = tsc_khz(None);
    let rows = [Row::new(ROW_HOST, cold), Row::new(ROW_WARM, warm)];
    let meta = ReportMeta {
        engine: "host".into(),
        cpu_model: cpu_model(),
        tsc_khz: khz,
        pages,
        runs,
        ..Default::default()
    };
    let r = report(meta, &rows);
    print!("{}", render_table(&r));
    println!("TSC kHz source: {source:?}");
    std::fs::write(format!("{out}.json"), to_json(&r))?;
    std::fs::write(
        format!("{out}.svg"),
        render_svg(&rows, khz, "host anonymous page fault"),
    )?;
    Ok(())
}
