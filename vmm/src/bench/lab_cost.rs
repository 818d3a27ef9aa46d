//! `vmm bench lab`: what one lab run costs — the machine booted cold (Debian under TCG, then
//! the KVM modules) next to the same machine restored warm from its snapshot — measured as
//! a user sees it: the wall time of a whole `vmm run --engine lab --quiet PROGRAM`, runs of
//! each kind interleaved, medians reported. The first warm run is a warm-up (it builds the
//! snapshot if this `vmm` has none) and is not counted. Every run's output is checked. The
//! Intel lab (Bochs; it always boots cold) is timed beside them with `--intel-runs` runs
//! (default 1; 0 or no Bochs: left out, with a note).

#![forbid(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::LabBenchArgs;

/// One way of starting the lab.
struct Config {
    name: &'static str,
    /// `--engine`.
    engine: &'static str,
    /// `XV6_LAB_WARM`'s value.
    warm: &'static str,
}

const CONFIGS: &[Config] = &[
    Config {
        name: "lab-amd cold boot",
        engine: "lab-amd",
        warm: "0",
    },
    Config {
        name: "lab-amd warm restore",
        engine: "lab-amd",
        warm: "1",
    },
];

const INTEL: Config = Config {
    name: "lab-intel cold boot (Bochs)",
    engine: "lab-intel",
    warm: "0",
};

/// The wall times of one configuration.
#[derive(Debug, Serialize)]
struct Series {
    name: &'static str,
    seconds: Vec<f64>,
    median_seconds: f64,
    min_seconds: f64,
    max_seconds: f64,
}

/// Runs the bench; prints the table (and writes `--json`). Errors print as one line (125).
pub fn run(args: &LabBenchArgs) -> i32 {
    crate::bench::exit_status(try_run(args))
}

fn try_run(args: &LabBenchArgs) -> Result<()> {
    if let Some(path) = &args.json {
        crate::outputs::check_writable(path)?;
    }
    let exe = std::env::current_exe().context("cannot find the vmm binary")?;
    eprintln!(
        "bench: lab: {} runs of `vmm run --engine lab-amd --quiet {}` per start, interleaved; \
         {} in the Intel lab",
        args.runs, args.program, args.intel_runs
    );
    time_one(&exe, &args.program, &CONFIGS[1]).context("the warm-up run")?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    for _ in 0..args.runs {
        for (c, t) in CONFIGS.iter().zip(times.iter_mut()) {
            t.push(time_one(&exe, &args.program, c).with_context(|| c.name)?);
        }
    }
    let mut series: Vec<Series> = CONFIGS
        .iter()
        .zip(times)
        .map(|(c, seconds)| summarize(c.name, seconds))
        .collect();
    match crate::nested::intel_lab_missing() {
        _ if args.intel_runs == 0 => {}
        None => {
            let mut t = Vec::new();
            for _ in 0..args.intel_runs {
                t.push(time_one(&exe, &args.program, &INTEL).with_context(|| INTEL.name)?);
            }
            series.push(summarize(INTEL.name, t));
        }
        Some(packages) => eprintln!(
            "bench: lab: no Intel lab here (needs apt packages {}); left out",
            packages.join(" ")
        ),
    }
    print!("{}", render(&args.program, &series));
    let doc = serde_json::json!({
        "bench": "lab",
        "program": args.program,
        "runs": args.runs,
        "engines": "lab-amd: QEMU TCG, nested SVM, kvm_amd; lab-intel: Bochs, VMX, kvm_intel; emulated time",
        "series": series,
        "warm_over_cold": series[1].median_seconds / series[0].median_seconds,
    });
    crate::bench::write_doc(args.json.as_deref(), &doc)
}

/// The wall time of one `vmm run --engine ENGINE --quiet PROGRAM` started as `c` says.
fn time_one(exe: &std::path::Path, program: &str, c: &Config) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new(exe)
        .args(["run", "--engine", c.engine, "--quiet", program])
        .env("XV6_LAB_WARM", c.warm)
        .stdin(Stdio::null())
        .output()
        .context("cannot run vmm")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "vmm run {program} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if program == "hello" && out.stdout != b"hello, world\n" {
        bail!("hello printed {:?}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(secs)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn summarize(name: &'static str, seconds: Vec<f64>) -> Series {
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    Series {
        name,
        median_seconds: median(&sorted),
        min_seconds: sorted[0],
        max_seconds: sorted[sorted.len() - 1],
        seconds,
    }
}

fn render(program: &str, series: &[Series]) -> String {
    let mut s = format!("lab run of {program} (wall time, s)   median     min     max\n");
    for x in series {
        s.push_str(&format!(
            "  {:<33} {:>7.2} {:>7.2} {:>7.2}\n",
            x.name, x.median_seconds, x.min_seconds, x.max_seconds
        ));
    }
    if let [cold, warm, ..] = series {
        s.push_str(&format!(
            "  warm / cold: {:.2} (lab times are emulated; the ratio holds)\n",
            warm.median_seconds / cold.median_seconds
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_the_table() {
        let s = summarize("x", vec![3.0, 1.0, 2.0]);
        assert_eq!(
            (s.median_seconds, s.min_seconds, s.max_seconds),
            (2.0, 1.0, 3.0)
        );
        assert_eq!(summarize("y", vec![4.0, 1.0, 2.0, 3.0]).median_seconds, 2.5);
        let t = render(
            "hello",
            &[
                summarize("cold boot", vec![4.0]),
                summarize("warm restore", vec![1.0]),
                summarize("intel", vec![12.0]),
            ],
        );
        assert!(t.contains("cold boot"), "{t}");
        assert!(t.contains("warm / cold: 0.25"), "{t}");
        assert!(t.contains("intel"), "{t}");
    }
}
