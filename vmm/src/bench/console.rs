//! `vmm bench console`: how fast bytes go through the paravirtual console, and how many VM
//! exits a KiB costs, next to the same pipe through the Linux that runs the VMs.
//!
//! Two transfers of `--bytes` of noise, each `--runs` times, each a real `vmm run --engine
//! kvm --quiet --stats-json F` of the built-in `cat` with its stdin and stdout on pipes of
//! this process:
//! * **stdout**: `cat data` of a file added with `--add` (the guest writes, nothing is read),
//! * **stdin+stdout**: `cat` reading the noise from its stdin (as `vmm run cat < f > g`),
//!
//! and the same two through the Linux `cat` found on `PATH` (the host's on hardware KVM; in
//! the lab, the lab's busybox `cat`, and every figure is emulated time). Every output is
//! checked byte for byte. The rate is taken from the first output chunk to the last (the
//! guest's boot is not in it); exits per KiB are the console's own exits (`--stats-json`)
//! for each direction and all exits of the run, boot included. In the lab the whole
//! procedure runs inside the lab (`--raw`) and the outer `vmm` renders it.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pfbench::Row;
use serde::{Deserialize, Serialize};

use crate::bench::{self, Measurement};
use crate::cli::ConsoleArgs;

/// The four transfers: (row name, through the guest, reads stdin).
const KINDS: [(&str, bool, bool); 4] = [
    ("guest cat FILE > pipe (stdout)", true, false),
    ("guest cat < pipe > pipe (stdin+stdout)", true, true),
    ("Linux cat FILE > pipe", false, false),
    ("Linux cat < pipe > pipe", false, true),
];

/// One transfer's figures, the median over the runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsoleFigures {
    pub name: String,
    pub bytes: u64,
    /// MB/s (10^6 bytes per second) from the first output chunk to the last.
    pub mb_per_s: f64,
    /// The console's exits per KiB: writes (stdout) and reads (stdin); None for Linux.
    pub out_exits_per_kib: Option<f64>,
    pub in_exits_per_kib: Option<f64>,
    /// All VM exits of the run (boot included) per KiB moved; None for Linux.
    pub all_exits_per_kib: Option<f64>,
}

/// What the bench measured: per-KiB time rows (pfbench's table) and the figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConsoleMeasurement {
    pub m: Measurement,
    pub figures: Vec<ConsoleFigures>,
}

/// Runs the bench and prints/writes the report; returns the exit status.
pub fn run(args: &ConsoleArgs) -> i32 {
    bench::exit_status(try_run(args))
}

fn try_run(args: &ConsoleArgs) -> Result<()> {
    let here = || measure_here(args);
    let Some((cm, engine_name)) = bench::measure(&args.common, here, || measure_in_lab(args))?
    else {
        return Ok(());
    };
    let mut meta = bench::report_meta(engine_name, &cm.m);
    meta.runs = args.runs;
    meta.closing_timestamp = "CLOCK_MONOTONIC (first to last output chunk)".into();
    meta.ratios = vec![
        (KINDS[0].0.to_string(), KINDS[2].0.to_string()),
        (KINDS[1].0.to_string(), KINDS[3].0.to_string()),
    ];
    let report = pfbench::report(meta, &cm.m.rows);
    println!("time per KiB moved:");
    print!("{}", pfbench::render_table(&report));
    print!("{}", render_figures(&cm.figures, engine_name == "lab"));
    let doc = serde_json::json!({ "report": report, "console": cm.figures });
    bench::write_doc(args.common.json.as_deref(), &doc)
}

/// The throughput table: one line per transfer.
pub fn render_figures(figures: &[ConsoleFigures], emulated: bool) -> String {
    let w = figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:w$}  {:>9}  {:>7}  {:>21}  {:>20}\n",
        "transfer", "bytes", "MB/s", "console exits/KiB out", "in  all exits/KiB"
    );
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    for f in figures {
        out += &format!(
            "{:w$}  {:>9}  {:>7.2}  {:>21}  {:>6} {:>13}\n",
            f.name,
            f.bytes,
            f.mb_per_s,
            opt(f.out_exits_per_kib),
            opt(f.in_exits_per_kib),
            opt(f.all_exits_per_kib)
        );
    }
    if emulated {
        out +=
            "note: MB/s in the lab's emulated time: compare guest with Linux, not with hardware\n";
    }
    out
}

/// One transfer's outcome.
#[derive(Debug, Clone, Copy, Default)]
struct Transfer {
    /// Bytes after the first output chunk, and the time they took.
    tail_bytes: u64,
    tail: Duration,
    out_exits: u64,
    in_exits: u64,
    all_exits: u64,
}

/// Every transfer `runs` times on this host's KVM (kinds interleaved).
fn measure_here(args: &ConsoleArgs) -> Result<ConsoleMeasurement> {
    let dir = tempfile::Builder::new()
        .prefix("vmm-bench-console-")
        .tempdir()
        .context("cannot create a temporary directory for the bench")?;
    let data = noise(args.bytes as usize);
    let file = dir.path().join("data");
    std::fs::write(&file, &data).with_context(|| format!("cannot write {}", file.display()))?;
    let mut runs: Vec<Vec<Transfer>> = vec![Vec::new(); KINDS.len()];
    for run in 0..args.runs {
        for (k, (name, guest, stdin)) in KINDS.iter().enumerate() {
            let what = format!("run {}/{}: {name}", run + 1, args.runs);
            let stage = term::progress::Stage::start_as("bench", what.clone());
            let t = if *guest {
                guest_transfer(args, dir.path(), &data, *stdin)
            } else {
                linux_transfer(args, &file, &data, *stdin)
            }
            .with_context(|| what.clone())?;
            stage.done();
            runs[k].push(t);
        }
    }
    Ok(summarize(args, &runs))
}

/// The rows (ns per KiB, one sample per run, as cycles at the TSC rate) and the figures.
fn summarize(args: &ConsoleArgs, runs: &[Vec<Transfer>]) -> ConsoleMeasurement {
    let (tsc_khz, _) = pfbench::tsc_khz(None);
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for ((name, guest, stdin), ts) in KINDS.iter().zip(runs) {
        let per_kib = |t: &Transfer| {
            let kib = (t.tail_bytes as f64 / 1024.0).max(1.0);
            (t.tail.as_secs_f64() / kib * tsc_khz as f64 * 1e3) as u64
        };
        let mut row = Row::new(*name, Vec::new());
        for t in ts {
            row.push_run(&[per_kib(t)]);
        }
        rows.push(row);
        let kib = args.bytes as f64 / 1024.0;
        let rate = |t: &Transfer| t.tail_bytes as f64 / t.tail.as_secs_f64().max(1e-9) / 1e6;
        let exits = |f: fn(&Transfer) -> u64| median(ts.iter().map(|t| f(t) as f64 / kib));
        figures.push(ConsoleFigures {
            name: name.to_string(),
            bytes: args.bytes,
            mb_per_s: median(ts.iter().map(rate)),
            out_exits_per_kib: guest.then(|| exits(|t| t.out_exits)),
            in_exits_per_kib: (*guest && *stdin).then(|| exits(|t| t.in_exits)),
            all_exits_per_kib: guest.then(|| exits(|t| t.all_exits)),
        });
    }
    ConsoleMeasurement {
        m: Measurement {
            cpu_model: pfbench::cpu_model(),
            kernel: pfbench::kernel_release(),
            no_rdtscp: false,
            tsc_khz,
            rows,
            vm_exits: Default::default(),
        },
        figures,
    }
}

/// The median of `xs` (0 when empty).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `vmm run --engine kvm --quiet --stats-json F cat …` of `data`, from a file or stdin.
fn guest_transfer(args: &ConsoleArgs, dir: &Path, data: &[u8], stdin: bool) -> Result<Transfer> {
    let exe = std::env::current_exe().context("cannot find the vmm binary")?;
    let stats = dir.join("stats.json");
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--engine", "kvm", "--quiet", "--mem"])
        .arg(format!("{}M", args.mem >> 20))
        .args(["--timeout", &args.timeout.to_string(), "--stats-json"])
        .arg(&stats);
    if stdin {
        cmd.arg("cat");
    } else {
        cmd.arg("--add")
            .arg(dir.join("data"))
            .args(["--", "cat", "data"]);
    }
    let mut t = transfer(cmd, stdin.then_some(data), data, args.timeout)?;
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&stats).context("the guest run left no --stats-json")?,
    )
    .context("the guest run's --stats-json is not JSON")?;
    let num = |v: &serde_json::Value| v.as_u64().context("a --stats-json figure is missing");
    t.out_exits = num(&json["console"]["out_exits"])?;
    t.in_exits = num(&json["console"]["in_exits"])?;
    t.all_exits = num(&json["vm_exits_total"])?;
    Ok(t)
}

/// The same through the Linux `cat` on `PATH`.
fn linux_transfer(args: &ConsoleArgs, file: &Path, data: &[u8], stdin: bool) -> Result<Transfer> {
    let mut cmd = Command::new("cat");
    if !stdin {
        cmd.arg(file);
    }
    transfer(cmd, stdin.then_some(data), data, args.timeout)
}

/// Runs `cmd` with `input` written to its stdin (else `/dev/null`), checks its stdout is
/// `want` and its exit status 0, and times its output; killed after `timeout_secs`.
fn transfer(
    mut cmd: Command,
    input: Option<&[u8]>,
    want: &[u8],
    timeout_secs: u64,
) -> Result<Transfer> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    std::thread::scope(|s| {
        if let (Some(mut w), Some(data)) = (stdin, input) {
            s.spawn(move || w.write_all(data)); // an early exit is reported below
        }
        let out = s.spawn(move || read_timed(stdout.expect("piped stdout")));
        let err = s.spawn(move || {
            let mut text = String::new();
            let _ = stderr.expect("piped stderr").read_to_string(&mut text);
            text
        });
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{:?} did not finish within {timeout_secs} s",
                    cmd.get_program()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (got, t) = out.join().expect("stdout reader")?;
        let err = err.join().expect("stderr reader");
        ensure!(
            status.success(),
            "{:?} failed ({status}): {}",
            cmd.get_program(),
            err.trim()
        );
        ensure!(
            got == want,
            "{:?} returned {} of {} bytes (or other bytes)",
            cmd.get_program(),
            got.len(),
            want.len()
        );
        Ok(t)
    })
}

/// Reads `r` to its end: the bytes, and those after the first chunk with their duration.
fn read_timed(mut r: impl Read) -> Result<(Vec<u8>, Transfer)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first: Option<(Instant, usize)> = None;
    let mut last = Instant::now();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read the output"),
        };
        last = Instant::now();
        first.get_or_insert((last, n));
        got.extend_from_slice(&buf[..n]);
    }
    let (start, first_len) = first.unwrap_or((last, 0));
    let t = Transfer {
        tail_bytes: (got.len() - first_len) as u64,
        tail: last - start,
        ..Default::default()
    };
    Ok((got, t))
}

/// Pseudo-random bytes (xorshift: every byte value, no short cycle).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_F491;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The whole measurement inside the lab; its JSON comes back on stdout.
fn measure_in_lab(args: &ConsoleArgs) -> Result<ConsoleMeasurement> {
    let flags = [
        ("--bytes", args.bytes.to_string()),
        ("--runs", args.runs.to_string()),
        ("--mem", format!("{}M", args.mem >> 20)),
        ("--timeout", args.timeout.to_string()),
    ];
    let runs = (KINDS.len() * args.runs) as u64;
    let timeout = Duration::from_secs(args.timeout * (runs + 1) + 120);
    bench::in_lab("console", &flags, args.mem, 1, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_reads_count_what_follows_the_first_chunk() {
        let data = noise(200_000);
        let (got, t) = read_timed(&data[..]).unwrap();
        assert_eq!(got, data);
        // A slice reads in 64 KiB chunks: all but the first are the tail.
        assert_eq!(t.tail_bytes, 200_000 - 65_536);
    }

    #[test]
    fn linux_cat_moves_the_bytes_and_a_wrong_output_is_refused() {
        let data = noise(100_000);
        let t = transfer(Command::new("cat"), Some(&data), &data, 30).unwrap();
        assert!(t.tail_bytes <= 100_000);
        let err = transfer(Command::new("cat"), Some(&data), &data[1..], 30).unwrap_err();
        assert!(
            err.to_string().contains("returned 100000 of 99999"),
            "{err}"
        );
        let err = transfer(Command::new("false"), None, b"", 30).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[test]
    fn sizes_are_checked_on_the_command_line() {
        use clap::Parser;
        let parse = |b: &str| {
            crate::cli::Cli::try_parse_from(["vmm", "bench", "console", "--bytes", b]).map(|c| {
                match c.command {
                    crate::cli::Command::Bench {
                        what: crate::cli::BenchWhat::Console(a),
                    } => a.bytes,
                    other => panic!("{other:?}"),
                }
            })
        };
        assert_eq!(parse("4096").unwrap(), 4096);
        assert_eq!(parse("512K").unwrap(), 512 << 10);
        assert_eq!(parse("16M").unwrap(), 16 << 20);
        for bad in ["0", "17M", "x", "-1", "1G"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_figures_table_has_a_line_per_transfer() {
        let f = ConsoleFigures {
            name: KINDS[1].0.into(),
            bytes: 1 << 20,
            mb_per_s: 3.25,
            out_exits_per_kib: Some(0.5),
            in_exits_per_kib: Some(0.25),
            all_exits_per_kib: Some(0.78),
        };
        let linux = ConsoleFigures {
            name: KINDS[3].0.into(),
            out_exits_per_kib: None,
            in_exits_per_kib: None,
            all_exits_per_kib: None,
            ..f.clone()
        };
        let text = render_figures(&[f, linux], true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("transfer ") && lines[0].contains("MB/s"),
            "{text}"
        );
        assert!(
            lines[1].contains("3.25") && lines[1].contains("0.50") && lines[1].contains("0.78")
        );
        assert!(lines[2].ends_with("-             -"), "{text}");
        assert!(lines[3].contains("emulated time"), "{text}");
        assert!(!render_figures(&[], false).contains("emulated"));
    }
}
