//! `vmm bench boot`: what booting costs at several RAM sizes — the guest's time from its
//! first instruction to the first user instruction (the kernel's TSC stamps, docs/abi.md),
//! the whole run of `hello` (VM creation to exit, as this process sees it), the VM exits,
//! and the guest pages the host had to back (`mincore`) — next to the Linux that runs the
//! VMs starting a program (fork + execve of a static `exit0` + waitpid). In the lab, the
//! whole procedure runs inside the lab (`--raw`) and its figures are emulated time.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pfbench::Row;
use serde::{Deserialize, Serialize};

use crate::bench::fork as bench_fork;
use crate::bench::{self, Measurement};
use crate::cli::BootArgs;
use crate::engine;
use crate::machine;
use crate::outcome::Outcome;

/// The Linux row: starting a static program and waiting for it.
const ROW_LINUX: &str = "Linux fork+execve+waitpid (static)";

/// One RAM size's counts (the same in every run but for the lab's noise; the medians).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootCounts {
    pub mem_mib: u64,
    pub vm_exits: u64,
    /// None when `mincore` could not tell.
    pub host_backed_pages: Option<u64>,
}

/// What the bench measured: the latency rows and each size's counts.
#[derive(Debug, Serialize, Deserialize)]
pub struct BootMeasurement {
    pub m: Measurement,
    pub counts: Vec<BootCounts>,
}

/// Row names for one RAM size.
fn row_first_user(mem_mib: u64) -> String {
    format!("guest boot to first user instruction ({mem_mib}M)")
}

fn row_whole(mem_mib: u64) -> String {
    format!("whole run of hello ({mem_mib}M)")
}

/// Runs the bench and prints/writes the report; returns the exit status.
pub fn run(args: &BootArgs) -> i32 {
    bench::exit_status(try_run(args))
}

fn try_run(args: &BootArgs) -> Result<()> {
    let here = || measure_here(args);
    let Some((bm, engine_name)) = bench::measure(&args.common, here, || measure_in_lab(args))?
    else {
        return Ok(());
    };
    let mut meta = bench::report_meta(engine_name, &bm.m);
    meta.runs = args.runs;
    meta.closing_timestamp = "rdtsc (kernel stamps); CLOCK_MONOTONIC (whole run)".into();
    meta.ratios = mems_mib(args)
        .flat_map(|mib| [row_first_user(mib), row_whole(mib)])
        .map(|r| (r, ROW_LINUX.to_string()))
        .collect();
    let report = pfbench::report(meta, &bm.m.rows);
    print!("{}", pfbench::render_table(&report));
    print!("{}", render_counts(&bm.counts));
    let doc = serde_json::json!({ "report": report, "counts": bm.counts });
    bench::write_doc(args.common.json.as_deref(), &doc)
}

/// The RAM sizes, in MiB.
fn mems_mib(args: &BootArgs) -> impl Iterator<Item = u64> + '_ {
    args.mem.iter().map(|m| m >> 20)
}

/// The counts table: one line per RAM size.
pub fn render_counts(counts: &[BootCounts]) -> String {
    let mut out = String::from("guest RAM   VM exits   host-backed guest pages\n");
    for c in counts {
        let backed = c
            .host_backed_pages
            .map_or("unknown".to_string(), |n| n.to_string());
        out += &format!("{:>8}M  {:>9}  {:>24}\n", c.mem_mib, c.vm_exits, backed);
    }
    out
}

/// Every size `runs` times on this host's KVM (sizes interleaved), then the Linux baseline.
fn measure_here(args: &BootArgs) -> Result<BootMeasurement> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut exits: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut backed: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut tsc_khz = 0;
    for run in 0..args.runs {
        for &mem in &args.mem {
            let mib = mem >> 20;
            let stage = term::progress::Stage::start_as(
                "bench",
                format!("run {}/{}: hello, {mib}M", run + 1, args.runs),
            );
            let b = boot_once(mem, args.timeout).with_context(|| format!("boot at {mib}M"))?;
            stage.done();
            tsc_khz = b.tsc_khz;
            let whole = ns_to_cycles(b.whole, tsc_khz);
            for (name, sample) in [(row_first_user(mib), b.first_user), (row_whole(mib), whole)] {
                rows.entry(name.clone())
                    .or_insert_with(|| Row::new(name, Vec::new()))
                    .push_run(&[sample]);
            }
            exits.entry(mib).or_default().push(b.exits);
            // The most any run needed (they differ only by the host's huge-page luck).
            let slot = backed.entry(mib).or_insert(b.backed);
            *slot = (*slot).max(b.backed);
        }
    }
    let stage = term::progress::Stage::start_as("bench", "Linux fork+execve round trips");
    let linux = bench_fork::linux_exec_round_trips(args.linux_iterations)?;
    stage.done();
    let mut order: Vec<String> = mems_mib(args)
        .flat_map(|mib| [row_first_user(mib), row_whole(mib)])
        .collect();
    order.push(ROW_LINUX.into());
    rows.insert(ROW_LINUX.into(), Row::new(ROW_LINUX, linux));
    let (tsc_khz, _) = pfbench::tsc_khz((tsc_khz > 0).then_some(u64::from(tsc_khz)));
    let counts = exits
        .into_iter()
        .map(|(mem_mib, mut e)| {
            e.sort_unstable();
            BootCounts {
                mem_mib,
                vm_exits: e[e.len() / 2],
                host_backed_pages: backed.get(&mem_mib).copied().flatten(),
            }
        })
        .collect();
    Ok(BootMeasurement {
        m: Measurement {
            cpu_model: pfbench::cpu_model(),
            kernel: pfbench::kernel_release(),
            no_rdtscp: false,
            tsc_khz,
            rows: order.iter().filter_map(|n| rows.remove(n)).collect(),
            vm_exits: BTreeMap::new(),
        },
        counts,
    })
}

/// `ns` at `khz` kHz, in cycles.
fn ns_to_cycles(d: Duration, khz: u32) -> u64 {
    (d.as_nanos() * u128::from(khz) / 1_000_000) as u64
}

/// One boot's figures.
struct Boot {
    first_user: u64,
    whole: Duration,
    exits: u64,
    backed: Option<u64>,
    tsc_khz: u32,
}

/// One `hello` at `mem` bytes of RAM, as `vmm run --quiet hello` boots it.
fn boot_once(mem: u64, timeout: u64) -> Result<Boot> {
    let cfg = bench::builtin_boot(vec!["hello".into()], mem, &[], timeout, false)?;
    let start = Instant::now();
    let report = machine::run(cfg)?;
    let whole = start.elapsed();
    if !matches!(report.outcome, Outcome::Exited(0)) {
        engine::status_of(report.outcome, timeout);
        bail!("hello did not exit 0");
    }
    Ok(Boot {
        first_user: report
            .first_user_cycles
            .context("the kernel left no boot timestamps")?,
        whole,
        exits: report.stats.by_reason.values().sum(),
        backed: report.backed_pages,
        tsc_khz: report.tsc_khz,
    })
}

/// The whole measurement inside the lab.
fn measure_in_lab(args: &BootArgs) -> Result<BootMeasurement> {
    let mut flags: Vec<(&str, String)> = args
        .mem
        .iter()
        .map(|m| ("--mem", format!("{}M", m >> 20)))
        .collect();
    flags.extend([
        ("--runs", args.runs.to_string()),
        ("--linux-iterations", args.linux_iterations.to_string()),
        ("--timeout", args.timeout.to_string()),
    ]);
    let biggest = args.mem.iter().copied().max().unwrap_or(256 << 20);
    let boots = (args.runs * args.mem.len()) as u64;
    let timeout = Duration::from_secs(boots * args.timeout + 120);
    bench::in_lab("boot", &flags, biggest, 1, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_table_has_a_line_per_size() {
        let t = render_counts(&[
            BootCounts {
                mem_mib: 64,
                vm_exits: 24,
                host_backed_pages: Some(1024),
            },
            BootCounts {
                mem_mib: 2016,
                vm_exits: 25,
                host_backed_pages: None,
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].contains("64M") && lines[1].ends_with("1024"),
            "{t}"
        );
        assert!(
            lines[2].contains("2016M") && lines[2].ends_with("unknown"),
            "{t}"
        );
    }

    #[test]
    fn nanoseconds_become_cycles_at_the_tsc_rate() {
        assert_eq!(ns_to_cycles(Duration::from_millis(1), 2_000_000), 2_000_000);
        assert_eq!(ns_to_cycles(Duration::from_nanos(500), 2_000_000), 1000);
    }
}
