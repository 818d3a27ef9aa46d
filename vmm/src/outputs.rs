//! The files `vmm run` writes on the host at the end of a run: `--stats-json` and
//! `--pgdump-svg`.
//!
//! On this host's KVM they are written directly. A lab run sends back one text file (the
//! lab's `result_file`), so the inner vmm, given `--lab-results FILE`, leaves what both
//! would hold there as tagged lines — `stats-json LINE`, `pgdump LINE` (the `--pgdump`
//! text of each dump), `pgdump-skipped N` — and the outer vmm sorts them into the files
//! (the SVG is drawn on the host, from the dumps' text). With `--dir …:rw` (the inner vmm's
//! `--dir-out`), the kernel's write-back export follows in base64, `dir-out TEXT` lines
//! closed by `dir-out-end LENGTH` (writeback.rs applies it on the host) — or, in the AMD
//! lab, with `--dir-collect FILE`, the export goes into the lab's collect file (its own
//! virtio-serial port, much faster than the result lines) and only `dir-out-file LENGTH`
//! travels here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::RunArgs;
use crate::debug::pgdump_svg::{self, Machine};
use crate::machine::Report;

const STATS_TAG: &str = "stats-json ";
const PGDUMP_TAG: &str = "pgdump ";
const SKIPPED_TAG: &str = "pgdump-skipped ";
const DIROUT_TAG: &str = "dir-out ";
const DIROUT_END_TAG: &str = "dir-out-end ";
const DIROUT_FILE_TAG: &str = "dir-out-file ";
/// Base64 characters per `dir-out` line (the lab passes lines of up to 4 KiB).
const DIROUT_LINE: usize = 3000;

/// What a run leaves for the output files.
#[derive(Debug, Default)]
pub struct Results {
    /// `--stats-json`'s document, if the run got that far.
    pub stats_json: Option<String>,
    /// The `--pgdump` text of the dumps kept, and how many more there were.
    pub pgdumps: Vec<String>,
    pub pgdumps_skipped: usize,
    /// The write-back export (`--dir …:rw`), when the guest exited with its own status.
    pub dirout: Option<Vec<u8>>,
    /// The length of the export the inner vmm left in the collect file, if it did.
    pub dirout_file: Option<usize>,
}

impl Results {
    pub fn of_report(report: &Report) -> Results {
        Results {
            stats_json: Some(report.stats_json()),
            pgdumps: report.pgdumps.0.clone(),
            pgdumps_skipped: report.pgdumps.1,
            dirout: None,
            dirout_file: None,
        }
    }

    /// The tagged lines for the lab's result file.
    pub fn to_lines(&self, args: &RunArgs) -> String {
        let mut out = String::new();
        if args.stats_json.is_some() {
            for l in self.stats_json.iter().flat_map(|s| s.lines()) {
                out.extend([STATS_TAG, l, "\n"]);
            }
        }
        if args.pgdump_svg.is_some() {
            for l in self.pgdumps.iter().flat_map(|s| s.lines()) {
                out.extend([PGDUMP_TAG, l, "\n"]);
            }
            out.push_str(&format!("{SKIPPED_TAG}{}\n", self.pgdumps_skipped));
        }
        if let (false, Some(d), Some(_)) =
            (args.dir_out.is_empty(), &self.dirout, &args.dir_collect)
        {
            out.push_str(&format!("{DIROUT_FILE_TAG}{}\n", d.len()));
        } else if let (false, Some(d)) = (args.dir_out.is_empty(), &self.dirout) {
            use base64::Engine;
            let text = base64::engine::general_purpose::STANDARD.encode(d);
            for chunk in text.as_bytes().chunks(DIROUT_LINE) {
                out.push_str(DIROUT_TAG);
                out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                out.push('\n');
            }
            out.push_str(&format!("{DIROUT_END_TAG}{}\n", d.len()));
        }
        out
    }

    /// Reads back [`Results::to_lines`]; other lines are ignored.
    pub fn from_lines(text: &str) -> Results {
        let mut r = Results::default();
        let mut stats = String::new();
        let mut dumps = String::new();
        let mut dirout = String::new();
        for l in text.lines() {
            if let Some(d) = l.strip_prefix(DIROUT_TAG) {
                dirout.push_str(d.trim_end());
            } else if let Some(n) = l.strip_prefix(DIROUT_FILE_TAG) {
                r.dirout_file = n.trim().parse().ok();
            } else if let Some(n) = l.strip_prefix(DIROUT_END_TAG) {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&dirout)
                    .ok();
                // Complete or nothing: a line lost on the way is a missing export.
                r.dirout = bytes.filter(|b| n.trim().parse() == Ok(b.len()));
            } else if let Some(s) = l.strip_prefix(STATS_TAG) {
                stats.extend([s, "\n"]);
            } else if let Some(d) = l.strip_prefix(PGDUMP_TAG) {
                dumps.extend([d, "\n"]);
            } else if let Some(n) = l.strip_prefix(SKIPPED_TAG) {
                r.pgdumps_skipped = n.trim().parse().unwrap_or(0);
            }
        }
        r.stats_json = (!stats.is_empty()).then(|| stats.trim_end().to_string());
        // One text per dump, as the vCPU kept them.
        for line in dumps.lines() {
            if line.starts_with("pgdump cr3=") {
                r.pgdumps.push(String::new());
            }
            if let Some(d) = r.pgdumps.last_mut() {
                d.extend([line, "\n"]);
            }
        }
        r
    }
}

/// Checks, before boot, that the output files can be written (a usage error, 2, if not).
pub fn check(args: &RunArgs) -> Result<()> {
    for path in args.pgdump_svg.iter() {
        check_writable(path)?;
    }
    Ok(())
}

/// Writes the output files `args` asks for (or, with `--lab-results`, the tagged lines).
pub fn write(args: &RunArgs, results: &Results, machine: &Machine) -> Result<()> {
    // Every file is created and truncated, written once: the one way of writing a file the
    // main thread's seccomp filter allows (seccomp.rs).
    if let Some(path) = &args.lab_results {
        // The export first: the line that says it is there comes after it.
        if let (Some(f), Some(d), false) =
            (&args.dir_collect, &results.dirout, args.dir_out.is_empty())
        {
            std::fs::write(f, d).with_context(|| format!("cannot write {}", f.display()))?;
        }
        return std::fs::write(path, results.to_lines(args))
            .with_context(|| format!("cannot write {}", path.display()));
    }
    if let (Some(path), Some(json)) = (&args.stats_json, &results.stats_json) {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write --stats-json {}", path.display()))?;
    }
    if let Some(path) = &args.pgdump_svg {
        write_svg(path, results, machine)?;
    }
    Ok(())
}

fn write_svg(path: &Path, results: &Results, machine: &Machine) -> Result<()> {
    let dumps: Vec<_> = results
        .pgdumps
        .iter()
        .flat_map(|t| crate::debug::pgdump::parse_dumps(t))
        .collect();
    if dumps.is_empty() {
        eprintln!(
            "vmm: --pgdump-svg: the guest asked for no page-table dump; {} not written",
            path.display()
        );
        return Ok(());
    }
    let svg = pgdump_svg::render(&dumps, results.pgdumps_skipped, machine);
    std::fs::write(path, svg)
        .with_context(|| format!("cannot write --pgdump-svg {}", path.display()))
}

/// The outer side of a lab run: a private file for the lab to send the results into, removed
/// when dropped.
pub struct LabResults {
    file: Option<tempfile::NamedTempFile>,
}

impl LabResults {
    /// A private temporary file if `args` asks for any output file, else nothing.
    pub fn new(args: &RunArgs) -> Result<LabResults> {
        let wanted = args.stats_json.is_some()
            || args.pgdump_svg.is_some()
            || crate::writeback::any_rw_option(&args.dir);
        // Private (0600), unguessable, and named as the lab's own temporary files, so a
        // run killed before it removes it leaves it to the next lab run's sweep.
        let file = if wanted {
            let dir = std::env::temp_dir();
            let file = tempfile::Builder::new()
                .prefix(&format!("xv6-lab-{}-results-", std::process::id()))
                .tempfile_in(&dir)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
            Some(file)
        } else {
            None
        };
        Ok(LabResults { file })
    }

    /// Where the lab writes what the inner vmm left (`LabRequest::result_file`).
    pub fn path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.path().to_path_buf())
    }

    /// The inner vmm's options for them: `--lab-results` and each wanted output, pointing at
    /// the lab's result path.
    pub fn inner_args(args: &RunArgs) -> Vec<std::ffi::OsString> {
        let at = crate::nested::RESULT_PATH;
        let mut out: Vec<std::ffi::OsString> = Vec::new();
        let rw = crate::writeback::any_rw_option(&args.dir);
        if args.stats_json.is_none() && args.pgdump_svg.is_none() && !rw {
            return out;
        }
        out.extend(["--lab-results".into(), at.into()]);
        if args.stats_json.is_some() {
            out.extend(["--stats-json".into(), at.into()]);
        }
        if args.pgdump_svg.is_some() {
            out.extend(["--pgdump-svg".into(), at.into()]);
        }
        out
    }

    /// Writes the output files from what came back (nothing for what did not); returns what
    /// came back (the write-back export is the caller's).
    pub fn deliver(&self, args: &RunArgs, machine: &Machine) -> Result<Results> {
        let Some(f) = &self.file else {
            return Ok(Results::default());
        };
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        let results = Results::from_lines(&text);
        // Only what came back: a run that ended early leaves the files unwritten.
        let mut wanted = RunArgs {
            lab_results: None,
            ..args.clone()
        };
        if results.stats_json.is_none() {
            wanted.stats_json = None;
        }
        if !text.lines().any(|l| l.starts_with(SKIPPED_TAG)) {
            wanted.pgdump_svg = None;
        }
        write(&wanted, &results, machine)?;
        Ok(results)
    }
}

/// Whether `path` can be written: created (if new) and removed again, so a bad output
/// file (`--json`, `--svg`, `--stats-json`) is reported before any boot (as a usage error).
pub fn check_writable(path: &std::path::Path) -> Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| crate::exit::UsageError(format!("cannot write {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        crate::cli::parse_run(argv)
    }

    #[test]
    fn results_travel_as_tagged_lines() {
        let args = run_args(&["--stats-json", "s", "--pgdump-svg", "p"]);
        let r = Results {
            stats_json: Some("{\"a\": 1}".into()),
            pgdumps: vec![
                "pgdump cr3=0x00001000\n0x00000000-0x00000fff -> 0x00175000 r-u\npgdump end: 1 pages, 0 translate mismatches\n".into(),
                "pgdump cr3=0x00002000\npgdump end: 0 pages, 0 translate mismatches\n".into(),
            ],
            pgdumps_skipped: 3,
            dirout: None,
            dirout_file: None,
        };
        let back = Results::from_lines(&format!("noise\n{}", r.to_lines(&args)));
        assert_eq!(back.stats_json, r.stats_json);
        assert_eq!(back.pgdumps, r.pgdumps);
        assert_eq!(back.pgdumps_skipped, 3);
        // Only what was asked for travels.
        let only_stats = r.to_lines(&run_args(&["--stats-json", "s"]));
        assert!(!only_stats.contains("pgdump"), "{only_stats}");
        // The write-back export: whole, or not at all.
        let args = run_args(&["--dir-out", "/d"]);
        let r = Results {
            dirout: Some((0..10_000u32).map(|i| (i * 7) as u8).collect()),
            ..Results::default()
        };
        let lines = r.to_lines(&args);
        assert!(lines.lines().all(|l| l.len() < 4000));
        assert_eq!(Results::from_lines(&lines).dirout, r.dirout);
        let mut lost = lines.lines().skip(1).collect::<Vec<_>>().join("\n");
        lost.push('\n');
        assert_eq!(Results::from_lines(&lost).dirout, None);
        // Through the collect file, only its length travels here.
        let args = run_args(&["--dir-out", "/d", "--dir-collect", "/lab/collect"]);
        let lines = r.to_lines(&args);
        assert_eq!(lines, "dir-out-file 10000\n");
        assert_eq!(Results::from_lines(&lines).dirout_file, Some(10_000));
    }

    #[test]
    fn inner_vmm_gets_the_result_path() {
        assert!(LabResults::inner_args(&run_args(&[])).is_empty());
        let a: Vec<String> = LabResults::inner_args(&run_args(&["--pgdump-svg", "/x/y.svg"]))
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            a,
            [
                "--lab-results",
                "/lab/result",
                "--pgdump-svg",
                "/lab/result"
            ]
        );
    }
}
