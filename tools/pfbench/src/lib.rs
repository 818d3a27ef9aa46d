//! Host side of `vmm bench pagefault` (issue 4).
//!
//! The guest program `pfbench` times every demand page fault with the TSC; the VMM hands those
//! samples here, next to the host Linux's own anonymous page fault measured the same way
//! ([`host_anon_faults`]), and gets back:
//!
//! - [`summarize`]: min, p50, p90, p99, max and mean of a [`Row`] in cycles and ns, from an
//!   [`hdrhistogram`] with 3 significant figures (every figure within 0.1 % of the exact
//!   order statistic; min/max are the histogram's bucket edges so the six stay monotone);
//! - [`report`]: a [`Report`] with the guest/host ratios at p50 and p99;
//! - [`render_table`], [`to_json`], [`render_svg`]: the text table, the JSON file and an SVG
//!   histogram of every row on one log-scale latency axis (drawn with `plotters`' SVG backend,
//!   text as SVG `<text>`: no font library or system font needed).
//!
//! Timing method, host and guest alike: `lfence; rdtsc` … one-byte write … `rdtscp; lfence`;
//! a second pass over the same (now mapped) pages gives the method's own overhead, reported as
//! the "warm-touch overhead" row rather than subtracted.
//!
//! The TSC frequency comes from `KVM_GET_TSC_KHZ` when the caller has a vCPU, else from
//! [`calibrate_tsc_khz`] (see [`tsc_khz`]). Under an emulated clock (the nested-KVM lab) the
//! absolute figures mean nothing and only ratios inside one run are quoted
//! ([`Report::emulated_time`]).
//!
//! ```no_run
//! use pfbench::*;
//! let host = host_anon_faults(4096).unwrap();
//! let (khz, _source) = tsc_khz(None);
//! let rows = [Row::new(ROW_HOST, host.cold), Row::new(ROW_WARM, host.warm)];
//! let r = report(
//!     ReportMeta { engine: "kvm".into(), cpu_model: cpu_model(), tsc_khz: khz, pages: 4096, runs: 1, ..Default::default() },
//!     &rows,
//! );
//! println!("{}", render_table(&r));
//! std::fs::write("pf.json", to_json(&r)).unwrap();
//! std::fs::write("pf.svg", render_svg(&rows, khz, "page faults")).unwrap();
//! ```

#[cfg(target_arch = "x86_64")]
mod fork;
mod host;
mod stats;
mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

#[cfg(target_arch = "x86_64")]
pub use fork::{host_exec_round_trips, host_fork_round_trips, ForkSamples};
pub use host::{
    calibrate_tsc_khz, host_anon_faults, host_cow_faults, tsc_khz, HostSamples, TscSource,
};
pub use stats::{cycles_to_ns, summarize, Row, Summary};
pub use svg::render_svg;

/// Row name: the guest's demand fault with guest RAM backed up front (`--prefault`).
pub const ROW_GUEST_PREFAULTED: &str = "guest demand fault (prefaulted RAM)";
/// Row name: the guest's demand fault with lazily backed guest RAM (adds an EPT/NPT fault).
pub const ROW_GUEST_COLD: &str = "guest demand fault (cold RAM)";
/// Row name: the host Linux's anonymous page fault ([`host_anon_faults`]`().cold`).
pub const ROW_HOST: &str = "host Linux anonymous fault";
/// Row name: touching an already mapped page: the measurement's own overhead.
pub const ROW_WARM: &str = "warm-touch overhead";
/// The guest's demand fault on a page used and freed before (it must be zeroed).
pub const ROW_GUEST_RECYCLED: &str = "guest demand fault (recycled page)";
/// The guest's copy-on-write break (`--cow`): a write to a page a child still shares.
pub const ROW_GUEST_COW: &str = "guest COW-break fault";
/// The host Linux's copy-on-write break: a write after fork.
pub const ROW_HOST_COW: &str = "host Linux COW-break fault";

/// Everything in a [`Report`] except the rows. `Default` gives empty strings, zeros, no
/// VM exits and `emulated_time: false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportMeta {
    /// "kvm", "lab", …
    pub engine: String,
    /// [`cpu_model`] of the machine measured (in the lab: the lab guest's).
    pub cpu_model: String,
    pub tsc_khz: u64,
    /// Pages touched per run.
    pub pages: usize,
    pub runs: usize,
    /// VM exits by reason, over the whole bench.
    pub vm_exits: BTreeMap<String, u64>,
    /// True when the clock is emulated (the lab): only ratios mean something.
    pub emulated_time: bool,
    /// The version of the `vmm` that measured.
    pub vmm_version: String,
    /// The kernel release of the Linux that ran the VMs and the baseline (in the lab: the
    /// lab's), and of the host the bench was started on.
    pub measured_kernel: String,
    pub host_kernel: String,
    /// When the report was made (UTC, RFC 3339).
    pub date: String,
    /// How the closing timestamp was taken: `rdtscp; lfence`, or `lfence; rdtsc; lfence`.
    pub closing_timestamp: String,
    /// The ratios to report, as (numerator row, denominator row); empty: the page-fault
    /// bench's one pair, [`ROW_GUEST_PREFAULTED`] / [`ROW_HOST`].
    pub ratios: Vec<(String, String)>,
}

/// One row's p50 and p99 over another's (in cycles); NaN when either row is missing or
/// empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub numerator: String,
    pub denominator: String,
    pub p50: f64,
    pub p99: f64,
}

/// A row's figures in one run, to see how much runs differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    pub row: String,
    /// 1-based.
    pub run: usize,
    pub count: u64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub p50_cycles: u64,
    pub p99_cycles: u64,
}

/// The bench's result. Serialized by [`to_json`] in this field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub engine: String,
    pub tsc_khz: u64,
    pub pages: usize,
    pub runs: usize,
    pub cpu_model: String,
    pub emulated_time: bool,
    pub rows: Vec<Summary>,
    /// [`ROW_GUEST_PREFAULTED`] p50 / [`ROW_HOST`] p50 (in ns); NaN (JSON `null`) if either row
    /// is missing or empty.
    pub ratio_p50: f64,
    /// The same at p99.
    pub ratio_p99: f64,
    pub vm_exits: BTreeMap<String, u64>,
    /// Every ratio asked for ([`ReportMeta::ratios`]; the first is `ratio_p50`/`ratio_p99`).
    pub ratios: Vec<Ratio>,
    /// Each row's p50 and p99 in each run.
    pub per_run: Vec<RunFigures>,
    pub vmm_version: String,
    pub measured_kernel: String,
    pub host_kernel: String,
    pub date: String,
    pub closing_timestamp: String,
}

/// Summarizes every row (in the given order) at `meta.tsc_khz` and computes the ratios of
/// `meta.ratios` (by default guest demand fault (prefaulted RAM) / host Linux anonymous
/// fault) at p50 and p99.
pub fn report(meta: ReportMeta, rows: &[Row]) -> Report {
    let summaries: Vec<Summary> = rows.iter().map(|r| summarize(r, meta.tsc_khz)).collect();
    let pairs = if meta.ratios.is_empty() {
        vec![(ROW_GUEST_PREFAULTED.to_string(), ROW_HOST.to_string())]
    } else {
        meta.ratios.clone()
    };
    let ratios: Vec<Ratio> = pairs
        .into_iter()
        .map(|(n, d)| ratio_of(&summaries, n, d))
        .collect();
    let per_run = rows
        .iter()
        .flat_map(|r| {
            r.runs().into_iter().enumerate().map(|(i, c)| {
                let s = summarize(&Row::new(r.name.clone(), c.to_vec()), meta.tsc_khz);
                RunFigures {
                    row: r.name.clone(),
                    run: i + 1,
                    count: s.count,
                    p50_ns: s.p50_ns,
                    p99_ns: s.p99_ns,
                    p50_cycles: s.p50_cycles,
                    p99_cycles: s.p99_cycles,
                }
            })
        })
        .collect();
    Report {
        per_run,
        vmm_version: meta.vmm_version,
        measured_kernel: meta.measured_kernel,
        host_kernel: meta.host_kernel,
        date: meta.date,
        closing_timestamp: meta.closing_timestamp,
        ratio_p50: ratios[0].p50,
        ratio_p99: ratios[0].p99,
        ratios,
        engine: meta.engine,
        tsc_khz: meta.tsc_khz,
        pages: meta.pages,
        runs: meta.runs,
        cpu_model: meta.cpu_model,
        emulated_time: meta.emulated_time,
        rows: summaries,
        vm_exits: meta.vm_exits,
    }
}

/// `numerator` / `denominator` at p50 and p99, from the summaries of those names.
fn ratio_of(summaries: &[Summary], numerator: String, denominator: String) -> Ratio {
    let find = |name: &str| summaries.iter().find(|s| s.name == name && s.count > 0);
    let (n, d) = (find(&numerator), find(&denominator));
    // Cycles, not ns: the same ratio (one tsc_khz), and defined when tsc_khz is unknown.
    let at = |f: fn(&Summary) -> u64| match (n, d) {
        (Some(n), Some(d)) if f(d) > 0 => f(n) as f64 / f(d) as f64,
        _ => f64::NAN,
    };
    Ratio {
        p50: at(|s| s.p50_cycles),
        p99: at(|s| s.p99_cycles),
        numerator,
        denominator,
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns.is_nan() {
        "-".into()
    } else if ns < 100.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_nan() {
        "n/a".into()
    } else {
        format!("{r:.2}")
    }
}

/// One aligned text table: a line in ns and a line in cycles per row, columns min, p50, p90,
/// p99, max, mean; then the ratio lines, engine, CPU model, TSC kHz, the VM exits if any, and
/// "emulated time: compare ratios only" when [`Report::emulated_time`].
pub fn render_table(r: &Report) -> String {
    let name_w = r
        .rows
        .iter()
        .map(|s| s.name.chars().count())
        .chain([3])
        .max()
        .unwrap_or(3);
    let mut cells: Vec<[String; 9]> = Vec::new();
    for s in &r.rows {
        cells.push(
            [
                s.min_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns, s.p9999_ns, s.max_ns, s.mean_ns,
                s.stdev_ns,
            ]
            .map(fmt_ns),
        );
        let c = [
            s.min_cycles,
            s.p50_cycles,
            s.p90_cycles,
            s.p99_cycles,
            s.p999_cycles,
            s.p9999_cycles,
            s.max_cycles,
            s.mean_cycles.round() as u64,
            s.stdev_cycles.round() as u64,
        ];
        cells.push(c.map(|c| c.to_string()));
    }
    let heads = [
        "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stdev",
    ];
    let col_w = cells
        .iter()
        .flatten()
        .map(String::len)
        .chain(heads.iter().map(|h| h.len()))
        .max()
        .unwrap_or(4);
    let count_w = r
        .rows
        .iter()
        .map(|s| s.count.to_string().len())
        .chain(["count".len()])
        .max()
        .unwrap_or(5);

    let mut out = String::new();
    let _ = write!(
        out,
        "{:<name_w$}  {:>count_w$}  {:<6}",
        "row", "count", "unit"
    );
    for h in heads {
        let _ = write!(out, "  {h:>col_w$}");
    }
    out.push('\n');
    for (i, s) in r.rows.iter().enumerate() {
        for (unit, line) in [("ns", &cells[2 * i]), ("cycles", &cells[2 * i + 1])] {
            let (name, count) = if unit == "ns" {
                (s.name.clone(), s.count.to_string())
            } else {
                (String::new(), String::new())
            };
            // Pad by chars, not bytes, in case a name is not ASCII.
            let pad = name_w - name.chars().count();
            let _ = write!(out, "{name}{:pad$}  {count:>count_w$}  {unit:<6}", "");
            for c in line {
                let _ = write!(out, "  {c:>col_w$}");
            }
            out.push('\n');
        }
    }
    render_ratios(&mut out, r);
    let pages = if r.pages > 0 {
        format!("   pages: {}", r.pages)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "engine: {}   CPU: {}   TSC: {} kHz{pages}   runs: {}",
        r.engine, r.cpu_model, r.tsc_khz, r.runs
    );
    let _ = writeln!(
        out,
        "vmm {}   kernel: {}   host kernel: {}   date: {}   closing timestamp: {}",
        r.vmm_version, r.measured_kernel, r.host_kernel, r.date, r.closing_timestamp
    );
    if !r.vm_exits.is_empty() {
        let exits: Vec<String> = r.vm_exits.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "VM exits: {}", exits.join(", "));
    }
    if r.emulated_time {
        let _ = writeln!(out, "note: emulated time: compare ratios only");
    }
    out
}

/// The ratio lines: the page-fault bench's two (guest/host at p50, at p99) when it is the
/// default pair, else one line per ratio with both percentiles.
fn render_ratios(out: &mut String, r: &Report) {
    let default = r.ratios.len() == 1
        && r.ratios[0].numerator == ROW_GUEST_PREFAULTED
        && r.ratios[0].denominator == ROW_HOST;
    if default {
        let _ = writeln!(
            out,
            "ratio guest/host at p50: {}   ({ROW_GUEST_PREFAULTED} / {ROW_HOST})",
            fmt_ratio(r.ratio_p50)
        );
        let _ = writeln!(out, "ratio guest/host at p99: {}", fmt_ratio(r.ratio_p99));
        return;
    }
    for q in &r.ratios {
        let _ = writeln!(
            out,
            "ratio at p50 {}, at p99 {}   ({} / {})",
            fmt_ratio(q.p50),
            fmt_ratio(q.p99),
            q.numerator,
            q.denominator
        );
    }
}

/// The report as pretty-printed JSON: `engine`, `tsc_khz`, `pages`, `runs`, `cpu_model`,
/// `emulated_time`, `rows` (`name`, `count`, `{min,p50,p90,p99,p999,p9999,max,mean,stdev}_ns`
/// and `_cycles`), `ratio_p50`, `ratio_p99`, `vm_exits`, `per_run` (each row's p50/p99 in
/// each run), and the metadata `vmm_version`, `measured_kernel`, `host_kernel`, `date`,
/// `closing_timestamp`. A NaN (unknown ratio or ns) is written as `null`.
pub fn to_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("a Report always serializes")
}

/// This machine's kernel release (`uname -r`), or "unknown".
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Now, in UTC, as RFC 3339 to the second (`2026-12-02T08:15:00Z`).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The first "model name" of /proc/cpuinfo, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| parse_cpu_model(&s))
        .unwrap_or_else(|| "unknown".into())
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests;
