//! `vmm bench fork`: the cost of process creation in the guest — fork+exit+wait,
//! fork+exec+exit+wait, the fork of a process with a big heap — with xv6's eager `copyuvm`
//! and with `--cow`, next to the same round trips on the Linux that runs the VMs (the host's
//! on hardware KVM; in the lab, the lab Linux's, and the figures are emulated time).
//!
//! Each mode is one boot running the built-in `forkbench N HEAP_MIB`, whose TSC samples come
//! back through the export port (docs/abi.md, "forkbench export record"); the Linux rows come
//! from `pfbench::host_fork_round_trips`, whose exec'd program is the static `exit0` built
//! from vmm/linux/exit0.S. In the lab, the whole procedure runs inside the lab (`--raw`).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pfbench::Row;

use crate::bench::{self, Measurement};
use crate::cli::ForkArgs;
use crate::engine;
use crate::machine;
use crate::outcome::Outcome;
use xv6_abi::forkbench::{HEADER_WORDS, MAGIC};

/// The static Linux program the baseline exec's (vmm/linux/exit0.S).
static LINUX_EXIT0: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/linux-exit0"));

/// Row names: (guest eager, guest --cow, Linux) for each of the three round trips.
const KINDS: [(&str, &str, &str); 3] = [
    (
        "guest fork+exit+wait (eager)",
        "guest fork+exit+wait (--cow)",
        "Linux fork+_exit+waitpid",
    ),
    (
        "guest fork+exec+exit+wait (eager)",
        "guest fork+exec+exit+wait (--cow)",
        "Linux fork+execve+waitpid (static)",
    ),
    (
        "guest fork of big heap (eager)",
        "guest fork of big heap (--cow)",
        "Linux fork of big heap",
    ),
];

/// forkbench's record: the three sample arrays.
#[derive(Debug, PartialEq, Eq)]
pub struct ForkRecord {
    pub tsc_khz: u32,
    pub samples: [Vec<u64>; 3],
}

/// Parses the record: u64 `MAGIC | tsc_khz << 32`, three counts, then the samples.
pub fn parse_record(bytes: &[u8]) -> Result<ForkRecord> {
    ensure!(
        bytes.len() >= 8 * HEADER_WORDS && bytes.len().is_multiple_of(8),
        "forkbench exported {} bytes, not a record",
        bytes.len()
    );
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    ensure!(
        words[0] as u32 == MAGIC,
        "forkbench's record has a bad magic {:#x}",
        words[0] as u32
    );
    let counts = [words[1], words[2], words[3]].map(|n| n as usize);
    ensure!(
        words.len() == HEADER_WORDS + counts.iter().sum::<usize>(),
        "forkbench's record of {counts:?} samples has {} words",
        words.len()
    );
    let mut rest = &words[HEADER_WORDS..];
    let samples = counts.map(|n| {
        let (now, later) = rest.split_at(n);
        rest = later;
        now.to_vec()
    });
    Ok(ForkRecord {
        tsc_khz: (words[0] >> 32) as u32,
        samples,
    })
}

/// Runs the bench and prints/writes the report; returns the exit status.
pub fn run(args: &ForkArgs) -> i32 {
    bench::exit_status(try_run(args))
}

fn try_run(args: &ForkArgs) -> Result<()> {
    let here = || measure_here(args);
    let Some((m, engine_name)) = bench::measure(&args.common, here, || measure_in_lab(args))?
    else {
        return Ok(());
    };
    let mut meta = bench::report_meta(engine_name, &m);
    meta.runs = 1;
    meta.closing_timestamp = "lfence; rdtsc".into();
    meta.ratios = KINDS
        .iter()
        .flat_map(|(eager, cow, linux)| [(eager, linux), (cow, linux)])
        .map(|(g, l)| (g.to_string(), l.to_string()))
        .collect();
    let report = pfbench::report(meta, &m.rows);
    print!("{}", pfbench::render_table(&report));
    println!(
        "iterations: {}   big heap: {} MiB, {} forks   guest RAM: {}M   vCPUs: {}",
        args.iterations,
        args.heap_mib,
        heap_forks(args),
        args.mem >> 20,
        args.cpus
    );
    bench::write_json(args.common.json.as_deref(), &report)
}

/// Forks of the big process per mode (forkbench's own bound).
fn heap_forks(args: &ForkArgs) -> usize {
    args.iterations.min(8)
}

/// Both guest modes on this host's KVM, then the Linux baseline.
fn measure_here(args: &ForkArgs) -> Result<Measurement> {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut tsc_khz = 0;
    for cow in [false, true] {
        let mode = if cow { "--cow" } else { "eager" };
        let stage = term::progress::Stage::start_as("bench", format!("guest forkbench, {mode}"));
        let rec = guest_run(args, cow).with_context(|| format!("guest run ({mode})"))?;
        stage.done();
        tsc_khz = rec.tsc_khz;
        for (kind, samples) in KINDS.iter().zip(rec.samples) {
            let name = if cow { kind.1 } else { kind.0 };
            rows.insert(name, Row::new(name, samples));
        }
    }
    let stage = term::progress::Stage::start_as("bench", "Linux fork round trips");
    let host = linux_baseline(args)?;
    stage.done();
    for (kind, samples) in KINDS
        .iter()
        .zip([host.fork_exit, host.fork_exec, host.fork_heap])
    {
        rows.insert(kind.2, Row::new(kind.2, samples));
    }
    let (tsc_khz, _) = pfbench::tsc_khz((tsc_khz > 0).then_some(u64::from(tsc_khz)));
    let order = KINDS.iter().flat_map(|k| [k.0, k.1, k.2]);
    Ok(Measurement {
        cpu_model: pfbench::cpu_model(),
        kernel: pfbench::kernel_release(),
        no_rdtscp: false,
        tsc_khz,
        rows: order.filter_map(|n| rows.remove(n)).collect(),
        vm_exits: BTreeMap::new(),
    })
}

/// The Linux round trips, exec'ing `exit0` from a private temporary file.
fn linux_baseline(args: &ForkArgs) -> Result<pfbench::ForkSamples> {
    let path = linux_exit0()?;
    pfbench::host_fork_round_trips(args.iterations, heap_forks(args), args.heap_mib, &path)
        .context("the Linux fork baseline failed")
}

/// `n` Linux fork+execve(exit0)+waitpid round trips, in cycles (`vmm bench boot`'s baseline).
pub fn linux_exec_round_trips(n: usize) -> Result<Vec<u64>> {
    let path = linux_exit0()?;
    pfbench::host_exec_round_trips(n, &path).context("the Linux exec baseline failed")
}

/// The static `exit0` in a private temporary file (mode 0700), removed when dropped.
fn linux_exit0() -> Result<tempfile::TempPath> {
    let mut exe = tempfile::Builder::new()
        .prefix("vmm-exit0-")
        .tempfile()
        .context("cannot create a temporary file for the Linux baseline program")?;
    exe.write_all(LINUX_EXIT0)?;
    exe.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o700))?;
    // Closed for writing before it is exec'd (ETXTBSY otherwise); removed when dropped.
    Ok(exe.into_temp_path())
}

/// One boot running `forkbench N HEAP_MIB`, eager or with `--cow`.
fn guest_run(args: &ForkArgs, cow: bool) -> Result<ForkRecord> {
    let argv = vec![
        "forkbench".into(),
        args.iterations.to_string().into(),
        args.heap_mib.to_string().into(),
    ];
    let words: &[&str] = if cow { &["cow"] } else { &[] };
    let mut cfg = bench::builtin_boot(argv, args.mem, words, args.timeout, false)?;
    cfg.cpus = args.cpus;
    let report = machine::run(cfg)?;
    match report.outcome {
        Outcome::Exited(0) => parse_record(&report.exported),
        other => {
            engine::status_of(other, args.timeout);
            bail!("forkbench did not finish (try a smaller --heap-mib or more --mem)")
        }
    }
}

/// The whole measurement inside the lab.
fn measure_in_lab(args: &ForkArgs) -> Result<Measurement> {
    let flags = [
        ("--iterations", args.iterations.to_string()),
        ("--heap-mib", args.heap_mib.to_string()),
        ("--mem", format!("{}M", args.mem >> 20)),
        ("--timeout", args.timeout.to_string()),
        ("--cpus", args.cpus.to_string()),
    ];
    let timeout = Duration::from_secs(3 * args.timeout + 120);
    bench::in_lab("fork", &flags, args.mem, args.cpus, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(counts: [u64; 3], khz: u32) -> Vec<u8> {
        let mut w = vec![u64::from(MAGIC) | u64::from(khz) << 32];
        w.extend(counts);
        for (k, n) in counts.iter().enumerate() {
            w.extend((0..*n).map(|i| 100 * (k as u64 + 1) + i));
        }
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_record_parses_into_its_three_arrays() {
        let r = parse_record(&record([2, 3, 1], 2_000_000)).unwrap();
        assert_eq!(r.tsc_khz, 2_000_000);
        assert_eq!(r.samples, [vec![100, 101], vec![200, 201, 202], vec![300]]);
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = record([2, 2, 1], 1);
        assert!(parse_record(&good[..good.len() - 8]).is_err());
        assert!(parse_record(&good[..16]).is_err());
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(parse_record(&bad).is_err());
    }

    #[test]
    fn the_linux_baseline_program_is_a_static_elf() {
        assert_eq!(&LINUX_EXIT0[..4], b"\x7fELF");
        let elf = goblin::elf::Elf::parse(LINUX_EXIT0).unwrap();
        assert!(elf.interpreter.is_none(), "exit0 must be static");
    }
}
