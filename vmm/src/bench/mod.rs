//! `vmm bench pagefault`: the guest's page faults next to the host Linux's, measured in one
//! run; and what every bench shares (the lab round trip, the report's metadata, JSON).
//!
//! Each run boots the kernel with lazy sbrk and runs `pfbench PAGES MODE` four times
//! ([`GUEST_CASES`]): a demand fault on never-used pages with guest RAM backed up front
//! (`--prefault`: the fault is the guest kernel's alone) and backed lazily by the host (each
//! first touch of a guest-physical page also takes an NPT/EPT fault and a host page fault);
//! a demand fault on recycled pages (freed before, so zeroed by the fault); and a
//! copy-on-write break (`cow`: a write to a page a forked child still shares). pfbench hands
//! its TSC samples out through the export port; the host's own anonymous fault and COW
//! break (a write after fork) are measured the same way in this process (`pfbench` crate).
//! In the lab, this whole procedure runs inside the lab (`--raw`), so the baseline is the lab
//! Linux's own fault, and the outer `vmm` renders the result, labelled as emulated time.

pub mod boot;
pub mod console;
pub mod fork;
pub mod lab_cost;
pub mod smp;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pfbench::{
    Row, ROW_GUEST_COLD, ROW_GUEST_COW, ROW_GUEST_PREFAULTED, ROW_GUEST_RECYCLED, ROW_HOST,
    ROW_HOST_COW, ROW_WARM,
};
use serde::{Deserialize, Serialize};

use crate::boot::{images, programs};
use crate::cli::{BenchArgs, BenchCommon, Engine};
use crate::machine::{self, MachineConfig};
use crate::outcome::Outcome;
use crate::vstate::vcpu::PgdumpMode;
use crate::{engine, exit};

/// "PFB1", little-endian: the first word of pfbench's export record.
use xv6_abi::pfbench::{FLAG_NO_RDTSCP, MAGIC as PFB_MAGIC};

/// What one engine measured: raw samples, so the caller does the statistics.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub cpu_model: String,
    /// The kernel release of the Linux that ran the VMs (in the lab: the lab's).
    #[serde(default)]
    pub kernel: String,
    /// The guest's CPU has no `rdtscp` (pfbench closed its timestamps with `lfence; rdtsc;
    /// lfence`).
    #[serde(default)]
    pub no_rdtscp: bool,
    pub tsc_khz: u64,
    pub rows: Vec<Row>,
    /// VM exits inside pfbench's measured windows, summed over all guest runs.
    pub vm_exits: BTreeMap<String, u64>,
}

/// pfbench's export record: first-touch and warm-touch cycles per page.
#[derive(Debug, PartialEq, Eq)]
pub struct PfRecord {
    pub tsc_khz: u32,
    /// The closing timestamps were `lfence; rdtsc; lfence`: the guest's CPU has no `rdtscp`.
    pub no_rdtscp: bool,
    pub cold: Vec<u64>,
    pub warm: Vec<u64>,
}

/// Parses the record: u32 magic, pages, tsc_khz, flags; u64 cold[pages]; u64 warm[pages].
pub fn parse_record(bytes: &[u8]) -> Result<PfRecord> {
    let word = |i: usize| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    ensure!(
        bytes.len() >= 16,
        "pfbench exported {} bytes, not a record",
        bytes.len()
    );
    ensure!(
        word(0) == PFB_MAGIC,
        "pfbench's record has a bad magic {:#x}",
        word(0)
    );
    let pages = word(1) as usize;
    ensure!(
        bytes.len() == 16 + 16 * pages,
        "pfbench's record for {pages} pages has {} bytes",
        bytes.len()
    );
    let samples: Vec<u64> = bytes[16..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Ok(PfRecord {
        tsc_khz: word(2),
        no_rdtscp: word(3) & FLAG_NO_RDTSCP != 0,
        cold: samples[..pages].to_vec(),
        warm: samples[pages..].to_vec(),
    })
}

/// Runs the bench and prints/writes the report; returns the exit status.
pub fn run(args: &BenchArgs) -> i32 {
    exit_status(try_run(args))
}

/// A bench's exit status: 0, the interrupting signal's status, or the error's (one line).
pub fn exit_status(result: Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(_) if term::interrupt::pending().is_some() => {
            exit::interrupted(term::interrupt::pending().unwrap_or(libc::SIGINT))
        }
        Err(e) => {
            eprintln!("vmm: error: {e:#}");
            exit::status_of_error(&e)
        }
    }
}

fn try_run(args: &BenchArgs) -> Result<()> {
    let mem = args.mem;
    check_options(args)?;
    let here = || measure_here(args, mem);
    let Some((m, engine_name)) = measure(&args.common, here, || measure_in_lab(args, mem))? else {
        return Ok(());
    };
    let emulated = engine_name == "lab";
    let mut meta = report_meta(engine_name, &m);
    meta.pages = args.pages;
    meta.runs = args.runs;
    meta.ratios = pagefault_ratios();
    let report = pfbench::report(meta, &m.rows);
    print!("{}", pfbench::render_table(&report));
    println!("guest vCPUs: {}", args.cpus);
    write_json(args.common.json.as_deref(), &report)?;
    if let Some(path) = &args.svg {
        let clock = if emulated {
            "lab, emulated time"
        } else {
            "hardware KVM"
        };
        let title = format!(
            "page-fault latency, {} pages x {} runs ({clock})",
            args.pages, args.runs
        );
        std::fs::write(path, pfbench::render_svg(&m.rows, m.tsc_khz, &title))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "bench: wrote {} (latency histogram and percentile plot)",
            path.display()
        );
    }
    Ok(())
}

/// The report's metadata for measurement `m` made on `engine_name` (pages and runs 0: the
/// caller sets what applies).
pub fn report_meta(engine_name: &str, m: &Measurement) -> pfbench::ReportMeta {
    pfbench::ReportMeta {
        engine: engine_name.into(),
        cpu_model: m.cpu_model.clone(),
        tsc_khz: m.tsc_khz,
        vm_exits: m.vm_exits.clone(),
        emulated_time: engine_name == "lab",
        vmm_version: env!("CARGO_PKG_VERSION").into(),
        measured_kernel: m.kernel.clone(),
        host_kernel: pfbench::kernel_release(),
        date: pfbench::now_utc(),
        closing_timestamp: if m.no_rdtscp {
            "lfence; rdtsc; lfence (no rdtscp on this CPU)"
        } else {
            "rdtscp; lfence"
        }
        .into(),
        ..Default::default()
    }
}

/// Writes `report` as JSON to `path`, if given, and says so on stderr.
pub fn write_json(path: Option<&std::path::Path>, report: &pfbench::Report) -> Result<()> {
    write_text(path, pfbench::to_json(report))
}

/// Writes `doc` (a report with a bench's own figures beside it) as JSON to `path`, if given.
pub fn write_doc(path: Option<&std::path::Path>, doc: &serde_json::Value) -> Result<()> {
    write_text(path, serde_json::to_string_pretty(doc)? + "\n")
}

fn write_text(path: Option<&std::path::Path>, text: String) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// What every bench does first: checks that `json` (its --json file) can be written, then
/// measures on the engine `engine` picks — `here` on this host's KVM, or `in_lab`, which
/// re-runs the bench inside the lab with `--raw` — and, with
/// `raw`, prints the measurement as JSON (what the outer run reads back) and returns None.
/// Otherwise returns it with the engine's name, for the report.
pub fn measure<M: Serialize>(
    common: &BenchCommon,
    here: impl FnOnce() -> Result<M>,
    in_lab: impl FnOnce() -> Result<M>,
) -> Result<Option<(M, &'static str)>> {
    if let Some(path) = &common.json {
        crate::outputs::check_writable(path)?;
    }
    let (m, name) = match engine::select(common.engine)? {
        Engine::Lab | Engine::LabAmd => (in_lab()?, "lab"),
        Engine::LabIntel => bail!(crate::exit::UsageError(
            "the benches run on kvm or in the AMD lab (--engine lab-amd), not in the Intel lab"
                .into()
        )),
        _ => (here()?, "kvm"),
    };
    if common.raw {
        println!("{}", serde_json::to_string(&m)?);
        return Ok(None);
    }
    Ok(Some((m, name)))
}

/// Guest heap pfbench needs besides its samples: its image, stack and page tables, with room.
const PFBENCH_SLACK: u64 = 16 << 20;

/// Refuses, before any boot, what the bench could only fail at the end: more pages than the
/// guest's RAM holds, an output file that cannot be written.
fn check_options(args: &BenchArgs) -> Result<()> {
    let usable = crate::arch::layout::phystop(args.mem).saturating_sub(PFBENCH_SLACK);
    // Each page touched and its copy (the COW case), plus its 16 bytes of samples.
    let max_pages = usable / (2 * u64::from(xv6_abi::mmu::PGSIZE) + 16);
    if args.pages as u64 > max_pages {
        return Err(exit::UsageError(format!(
            "--pages {} does not fit in --mem {}M (at most {max_pages} pages): lower --pages or \
             raise --mem",
            args.pages,
            args.mem >> 20
        ))
        .into());
    }
    for path in [&args.common.json, &args.svg].into_iter().flatten() {
        crate::outputs::check_writable(path)?;
    }
    Ok(())
}

/// One kind of guest boot of the bench: pfbench's mode, and how RAM and fork behave.
struct GuestCase {
    row: &'static str,
    /// pfbench's second argument.
    mode: &'static str,
    prefault: bool,
    cow: bool,
    /// Whether its warm pass is the overhead row (once is enough).
    warm_row: bool,
}

/// The guest boots of each run, in order.
const GUEST_CASES: [GuestCase; 4] = [
    GuestCase {
        row: ROW_GUEST_PREFAULTED,
        mode: "fresh",
        prefault: true,
        cow: false,
        warm_row: true,
    },
    GuestCase {
        row: ROW_GUEST_COLD,
        mode: "fresh",
        prefault: false,
        cow: false,
        warm_row: false,
    },
    GuestCase {
        row: ROW_GUEST_RECYCLED,
        mode: "recycled",
        prefault: true,
        cow: false,
        warm_row: false,
    },
    GuestCase {
        row: ROW_GUEST_COW,
        mode: "cow",
        prefault: true,
        cow: true,
        warm_row: false,
    },
];

/// The rows in the order they are reported.
const ROW_ORDER: [&str; 7] = [
    ROW_GUEST_PREFAULTED,
    ROW_GUEST_COLD,
    ROW_GUEST_RECYCLED,
    ROW_HOST,
    ROW_GUEST_COW,
    ROW_HOST_COW,
    ROW_WARM,
];

/// The ratios reported: each guest fault over the Linux fault of its kind.
pub fn pagefault_ratios() -> Vec<(String, String)> {
    [
        (ROW_GUEST_PREFAULTED, ROW_HOST),
        (ROW_GUEST_RECYCLED, ROW_HOST),
        (ROW_GUEST_COW, ROW_HOST_COW),
    ]
    .map(|(n, d)| (n.to_string(), d.to_string()))
    .to_vec()
}

/// Guest runs on this host's KVM, and the host baselines.
fn measure_here(args: &BenchArgs, mem: u64) -> Result<Measurement> {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut vm_exits = BTreeMap::new();
    let mut kvm_tsc_khz = 0;
    let mut no_rdtscp = false;
    let mut push = |name: &'static str, samples: &[u64]| {
        rows.entry(name)
            .or_insert_with(|| Row::new(name, Vec::new()))
            .push_run(samples)
    };
    for run in 0..args.runs {
        for case in &GUEST_CASES {
            let what = format!("run {}/{}: {}", run + 1, args.runs, case.row);
            let stage = term::progress::Stage::start_as("bench", what.clone());
            let (rec, exits) = guest_run(args, mem, case).with_context(|| what.clone())?;
            stage.done();
            kvm_tsc_khz = rec.tsc_khz;
            no_rdtscp |= rec.no_rdtscp;
            push(case.row, &rec.cold);
            if case.warm_row {
                push(ROW_WARM, &rec.warm);
            }
            for (reason, n) in exits {
                *vm_exits.entry(reason.to_string()).or_default() += n;
            }
        }
        let stage = term::progress::Stage::start_as(
            "bench",
            format!(
                "run {}/{}: Linux anonymous and COW faults",
                run + 1,
                args.runs
            ),
        );
        let host = pfbench::host_anon_faults(args.pages).context("host baseline failed")?;
        let cow = pfbench::host_cow_faults(args.pages).context("host COW baseline failed")?;
        stage.done();
        push(ROW_HOST, &host.cold);
        push(ROW_HOST_COW, &cow.cold);
    }
    let (tsc_khz, _) = pfbench::tsc_khz((kvm_tsc_khz > 0).then_some(u64::from(kvm_tsc_khz)));
    Ok(Measurement {
        cpu_model: pfbench::cpu_model(),
        kernel: pfbench::kernel_release(),
        no_rdtscp,
        tsc_khz,
        rows: ROW_ORDER
            .iter()
            .map(|n| rows.remove(n).unwrap_or_else(|| Row::new(*n, Vec::new())))
            .collect(),
        vm_exits,
    })
}

/// One boot running `pfbench PAGES MODE` with lazy sbrk (and `cow` if the case says so).
fn guest_run(
    args: &BenchArgs,
    mem: u64,
    case: &GuestCase,
) -> Result<(PfRecord, BTreeMap<&'static str, u64>)> {
    let argv = vec![
        "pfbench".into(),
        args.pages.to_string().into(),
        case.mode.into(),
    ];
    let words: &[&str] = if case.cow {
        &["lazy", "cow"]
    } else {
        &["lazy"]
    };
    let mut cfg = builtin_boot(argv, mem, words, args.timeout, case.prefault)?;
    cfg.cpus = args.cpus;
    let report = machine::run(cfg)?;
    match report.outcome {
        Outcome::Exited(0) => {}
        other => {
            engine::status_of(other, args.timeout);
            bail!("pfbench did not finish (try fewer --pages or more --mem)");
        }
    }
    Ok((parse_record(&report.exported)?, report.measured_exits))
}

/// A boot of the built-in kernel running the built-in `argv[0]` with `argv`, its output
/// discarded (a bench reads its results from the export stream), RAM `mem` bytes, the
/// kernel command line `console=com1 quiet` plus `words`.
pub fn builtin_boot(
    argv: Vec<OsString>,
    mem: u64,
    words: &[&str],
    timeout: u64,
    prefault: bool,
) -> Result<MachineConfig> {
    let name = argv.first().context("a boot needs a program")?;
    let program = programs::resolve(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cmdline = "console=com1 quiet".to_string();
    for w in words {
        cmdline += " ";
        cmdline += w;
    }
    Ok(MachineConfig {
        kernel: images::KERNEL.to_vec(),
        kernel_name: PathBuf::from("(built-in kernel)"),
        mem,
        cmdline,
        modules: vec![
            programs::archive(Some(&program)),
            programs::argv_block(&argv),
        ],
        // Benchmarks do not fault: no user-fault symbols.
        user_programs: Vec::new(),
        pgdump: PgdumpMode::Off,
        timeout: Some(Duration::from_secs(timeout)),
        prefault,
        discard_stdout: true,
        gdb: None,
        // Several boots from this thread: it stays free to start the next one.
        confine: crate::machine::Confine::VcpuThreads,
        cpus: 1,
    })
}

/// The whole measurement inside the lab; its JSON comes back on stdout.
fn measure_in_lab(args: &BenchArgs, mem: u64) -> Result<Measurement> {
    let flags = [
        ("--pages", args.pages.to_string()),
        ("--runs", args.runs.to_string()),
        ("--mem", format!("{}M", mem >> 20)),
        ("--timeout", args.timeout.to_string()),
        ("--cpus", args.cpus.to_string()),
    ];
    let boots = (GUEST_CASES.len() * args.runs) as u64;
    let timeout = Duration::from_secs(args.timeout * (boots + 1) + 120);
    in_lab("pagefault", &flags, mem, args.cpus, timeout)
}

/// Runs `vmm bench KIND --engine kvm --raw FLAG VALUE...` inside the lab, with `mem` bytes
/// for its guests on a lab machine for `cpus` vCPUs at once, and parses the result (a
/// [`Measurement`] or a bench's own) it prints as its last line.
pub fn in_lab<T: serde::de::DeserializeOwned>(
    kind: &str,
    flags: &[(&str, String)],
    mem: u64,
    cpus: u8,
    timeout: Duration,
) -> Result<T> {
    let mut args: Vec<OsString> = ["bench", kind, "--engine", "kvm", "--raw"]
        .map(OsString::from)
        .to_vec();
    for (flag, value) in flags {
        args.extend([flag.into(), value.into()]);
    }
    let text = crate::nested::run_captured(args, mem, cpus, timeout)?;
    let json = text.lines().last().unwrap_or_default();
    serde_json::from_str(json)
        .with_context(|| format!("the lab's bench output is not a result: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pages: u32, cold: &[u64], warm: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [PFB_MAGIC, pages, 2_000_000, 0] {
            b.extend(w.to_le_bytes());
        }
        for s in cold.iter().chain(warm) {
            b.extend(s.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_pfbench_records() {
        let r = parse_record(&record(2, &[100, 200], &[10, 20])).unwrap();
        assert_eq!(
            r,
            PfRecord {
                tsc_khz: 2_000_000,
                no_rdtscp: false,
                cold: vec![100, 200],
                warm: vec![10, 20]
            }
        );
    }

    #[test]
    fn refuses_bad_records() {
        assert!(parse_record(b"short").is_err());
        let mut bad = record(1, &[1], &[2]);
        bad[0] ^= 1;
        assert!(parse_record(&bad).is_err());
        assert!(parse_record(&record(2, &[1, 2], &[3])).is_err());
    }
}
