//! `vmm bench smp`: CPU-bound children at once on one vCPU and on several — the guest's
//! wall time for the whole batch and each vCPU's CPU time (its thread's, as `--stats-json`
//! reports it in "vcpus"), runs of each CPU count interleaved, medians reported.
//!
//! Each run is one boot of the built-in `spinbench CHILDREN MILLIONS` (guest-user): the
//! children only compute, so with N vCPUs the batch should take about 1/N of the time on
//! one, and every vCPU should be busy: the report gives the busiest vCPU's CPU time over
//! the idlest's, which must stay within [`BALANCE_LIMIT`] (else the bench fails, naming
//! the run). In the lab, the whole procedure runs inside the lab (`--raw`) on a lab machine
//! of as many CPUs ([`lab::LabRequest::cpus`]), and its figures are emulated time.

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::bench;
use crate::cli::SmpArgs;
use crate::engine;
use crate::machine;
use crate::outcome::Outcome;
use xv6_abi::spinbench::{MAGIC, WORDS};

/// The most the busiest vCPU's CPU time may be over the idlest's in a run of several.
pub const BALANCE_LIMIT: f64 = 4.0;

/// One boot: its CPU count, the guest's wall time for the batch, each vCPU's CPU time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmpRun {
    pub cpus: u8,
    /// TSC cycles from the first fork to the last wait (spinbench's record).
    pub cycles: u64,
    /// The same in seconds at the guest's TSC rate.
    pub seconds: f64,
    /// Each vCPU's thread CPU time for the whole boot, vCPU 0 first.
    pub vcpu_seconds: Vec<f64>,
}

/// Everything measured, for the report (or, with `--raw`, for the outer `vmm`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SmpMeasurement {
    pub cpu_model: String,
    pub kernel: String,
    pub tsc_khz: u64,
    pub runs: Vec<SmpRun>,
}

/// spinbench's record: (tsc_khz, children, cycles).
pub fn parse_record(bytes: &[u8]) -> Result<(u32, u64, u64)> {
    ensure!(
        bytes.len() == 8 * WORDS,
        "spinbench exported {} bytes, not a record",
        bytes.len()
    );
    let w: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    ensure!(
        w[0] as u32 == MAGIC,
        "spinbench's record has a bad magic {:#x}",
        w[0] as u32
    );
    Ok(((w[0] >> 32) as u32, w[1], w[2]))
}

/// Runs the bench and prints/writes the report; returns the exit status.
pub fn run(args: &SmpArgs) -> i32 {
    bench::exit_status(try_run(args))
}

fn try_run(args: &SmpArgs) -> Result<()> {
    let here = || measure_here(args);
    let Some((m, engine_name)) = bench::measure(&args.common, here, || measure_in_lab(args))?
    else {
        return Ok(());
    };
    let summary = Summary::of(args, &m)?;
    print!("{}", summary.render(args, &m, engine_name));
    let doc = serde_json::json!({
        "bench": "smp",
        "engine": engine_name,
        "emulated_time": engine_name == "lab",
        "cpu_model": m.cpu_model,
        "kernel": m.kernel,
        "tsc_khz": m.tsc_khz,
        "children": args.children,
        "millions": args.millions,
        "runs": m.runs,
        "median_seconds": summary.rows.iter().map(|r| (r.cpus.to_string(), r.wall)).collect::<std::collections::BTreeMap<_, _>>(),
        "speedup": summary.speedup,
        "worst_balance": summary.worst_balance,
        "date": pfbench::now_utc(),
        "vmm_version": env!("CARGO_PKG_VERSION"),
    });
    bench::write_doc(args.common.json.as_deref(), &doc)?;
    if summary.worst_balance > BALANCE_LIMIT {
        bail!(
            "at --cpus {} one vCPU was busy {:.1}x as long as another (more than {BALANCE_LIMIT}x): \
             the work did not spread over the CPUs",
            args.cpus,
            summary.worst_balance
        );
    }
    Ok(())
}

/// One CPU count's medians.
struct Row {
    cpus: u8,
    /// Median wall time (s).
    wall: f64,
    min: f64,
    max: f64,
    /// Median CPU time of each vCPU (s).
    vcpu: Vec<f64>,
}

/// The medians of each CPU count, the speedup and the worst imbalance of any run.
struct Summary {
    rows: Vec<Row>,
    /// Median wall time at one vCPU over that at `--cpus`.
    speedup: f64,
    /// The largest busiest/idlest vCPU CPU-time ratio of any run of several vCPUs.
    worst_balance: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A run's busiest vCPU's CPU time over its idlest's (1 for one vCPU).
pub fn balance(vcpu_seconds: &[f64]) -> f64 {
    let max = vcpu_seconds.iter().copied().fold(0.0, f64::max);
    let min = vcpu_seconds.iter().copied().fold(f64::INFINITY, f64::min);
    if vcpu_seconds.len() < 2 {
        1.0
    } else if min <= 0.0 {
        f64::INFINITY
    } else {
        max / min
    }
}

impl Summary {
    fn of(args: &SmpArgs, m: &SmpMeasurement) -> Result<Summary> {
        let mut rows = Vec::new();
        for cpus in counts(args) {
            let runs: Vec<&SmpRun> = m.runs.iter().filter(|r| r.cpus == cpus).collect();
            ensure!(!runs.is_empty(), "no run at --cpus {cpus} came back");
            let walls: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
            let vcpu = (0..usize::from(cpus))
                .map(|i| {
                    median(
                        runs.iter()
                            .map(|r| r.vcpu_seconds.get(i).copied().unwrap_or(0.0))
                            .collect(),
                    )
                })
                .collect();
            rows.push(Row {
                cpus,
                wall: median(walls.clone()),
                min: walls.iter().copied().fold(f64::INFINITY, f64::min),
                max: walls.iter().copied().fold(0.0, f64::max),
                vcpu,
            });
        }
        let speedup = match (rows.first(), rows.last()) {
            (Some(one), Some(many)) if many.wall > 0.0 => one.wall / many.wall,
            _ => 0.0,
        };
        let worst_balance = m
            .runs
            .iter()
            .filter(|r| r.cpus > 1)
            .map(|r| balance(&r.vcpu_seconds))
            .fold(1.0, f64::max);
        Ok(Summary {
            rows,
            speedup,
            worst_balance,
        })
    }

    fn render(&self, args: &SmpArgs, m: &SmpMeasurement, engine_name: &str) -> String {
        let mut out = format!(
            "{} CPU-bound children x {}M steps, {} runs per CPU count (interleaved), medians\n",
            args.children, args.millions, args.runs
        );
        out += "vCPUs   wall s (guest TSC)     min      max   CPU s of each vCPU (its thread)\n";
        for r in &self.rows {
            let vcpu: Vec<String> = r.vcpu.iter().map(|s| format!("{s:.2}")).collect();
            out += &format!(
                "{:>5}   {:>17.3}   {:>6.3}   {:>6.3}   {}\n",
                r.cpus,
                r.wall,
                r.min,
                r.max,
                vcpu.join(" ")
            );
        }
        out += &format!(
            "wall at 1 vCPU / at {}: {:.2}   busiest/idlest vCPU (worst run): {:.2} (limit {BALANCE_LIMIT})\n",
            args.cpus, self.speedup, self.worst_balance
        );
        out += &format!(
            "engine: {engine_name}   CPU: {}   TSC: {} kHz   kernel: {}{}\n",
            m.cpu_model,
            m.tsc_khz,
            m.kernel,
            if engine_name == "lab" {
                "   note: emulated time: compare ratios only"
            } else {
                ""
            }
        );
        out
    }
}

/// The CPU counts compared: one, then `--cpus` (just one if that is 1).
fn counts(args: &SmpArgs) -> Vec<u8> {
    if args.cpus == 1 {
        vec![1]
    } else {
        vec![1, args.cpus]
    }
}

/// The runs on this host's KVM, CPU counts interleaved.
fn measure_here(args: &SmpArgs) -> Result<SmpMeasurement> {
    let mut runs = Vec::new();
    let mut tsc_khz = 0;
    for i in 0..args.runs {
        for cpus in counts(args) {
            let what = format!("run {}/{}: --cpus {cpus}", i + 1, args.runs);
            let stage = term::progress::Stage::start_as("bench", what.clone());
            let (run, khz) = guest_run(args, cpus).context(what)?;
            stage.done();
            tsc_khz = khz;
            runs.push(run);
        }
    }
    let (tsc_khz, _) = pfbench::tsc_khz((tsc_khz > 0).then_some(u64::from(tsc_khz)));
    Ok(SmpMeasurement {
        cpu_model: pfbench::cpu_model(),
        kernel: pfbench::kernel_release(),
        tsc_khz,
        runs,
    })
}

/// One boot of spinbench at `cpus` vCPUs, on a thread of its own (vCPU 0 runs on the
/// booting thread, whose CPU time must be this boot's alone).
fn guest_run(args: &SmpArgs, cpus: u8) -> Result<(SmpRun, u32)> {
    let argv = vec![
        "spinbench".into(),
        args.children.to_string().into(),
        args.millions.to_string().into(),
    ];
    let mut cfg = bench::builtin_boot(argv, args.mem, &[], args.timeout, false)?;
    cfg.cpus = cpus;
    let report = std::thread::scope(|s| {
        s.spawn(|| machine::run(cfg))
            .join()
            .unwrap_or_else(|_| bail!("the boot's thread panicked"))
    })?;
    match report.outcome {
        Outcome::Exited(0) => {}
        other => {
            engine::status_of(other, args.timeout);
            bail!("spinbench did not finish (raise --timeout or lower --millions)");
        }
    }
    let (khz, children, cycles) = parse_record(&report.exported)?;
    ensure!(
        children == args.children as u64,
        "spinbench ran {children} children, not {}",
        args.children
    );
    let khz = if khz > 0 { khz } else { report.tsc_khz };
    ensure!(khz > 0, "the guest's TSC rate is unknown");
    Ok((
        SmpRun {
            cpus,
            cycles,
            seconds: cycles as f64 / (f64::from(khz) * 1e3),
            vcpu_seconds: report.vcpus.iter().map(|v| v.cpu_seconds).collect(),
        },
        khz,
    ))
}

/// The whole measurement inside the lab, on a lab machine for `--cpus` vCPUs at once.
fn measure_in_lab(args: &SmpArgs) -> Result<SmpMeasurement> {
    let flags = [
        ("--cpus", args.cpus.to_string()),
        ("--children", args.children.to_string()),
        ("--millions", args.millions.to_string()),
        ("--runs", args.runs.to_string()),
        ("--mem", format!("{}M", args.mem >> 20)),
        ("--timeout", args.timeout.to_string()),
    ];
    let boots = (counts(args).len() * args.runs) as u64;
    let timeout = Duration::from_secs(args.timeout * boots + 120);
    bench::in_lab("smp", &flags, args.mem, args.cpus, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_parses_and_a_bad_one_is_refused() {
        let mut b = Vec::new();
        for w in [u64::from(MAGIC) | 2_000_000 << 32, 4, 123_456] {
            b.extend(w.to_le_bytes());
        }
        assert_eq!(parse_record(&b).unwrap(), (2_000_000, 4, 123_456));
        assert!(parse_record(&b[..16]).is_err());
        b[0] ^= 1;
        assert!(parse_record(&b).is_err());
    }

    #[test]
    fn balance_is_busiest_over_idlest() {
        assert_eq!(balance(&[1.0]), 1.0);
        assert_eq!(balance(&[1.0, 2.0]), 2.0);
        assert_eq!(balance(&[3.0, 1.5, 2.0]), 2.0);
        assert!(balance(&[1.0, 0.0]).is_infinite());
    }
}
