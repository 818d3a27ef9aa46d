//! A `vmm run` re-run inside the lab: the inner command line (`--engine kvm`, the same
//! request, host files shipped in with their paths rewritten), the lab's gdb bridge, and how
//! the lab's outcome maps to `vmm`'s exit status.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boot::dirs::Tree;
use crate::boot::programs::Program;
use crate::cli::RunArgs;
use crate::debug::gdb::conn::GdbEndpoint;
use crate::debug::pgdump_svg::Machine;
use crate::exit;
use crate::outputs::LabResults;

/// Seconds the lab may take on top of the guest's own `--timeout` (its boot, module loading).
const LAB_MARGIN_SECS: u64 = 120;
/// Seconds past `--timeout`, counted on our clock from the program's start inside the lab,
/// after which the lab is stopped even if the inner `vmm` never noticed its own timeout.
const RUN_GRACE_SECS: u64 = 5;

/// The lab's virtio-serial port that carries `--gdb`.
const GDB_PORT_NAME: &str = "gdb";

/// Options of `vmm run` (clap ids) a lab run rewrites rather than passes on as given: the
/// engine, sizes normalized, and whatever names a host file.
const LAB_REWRITES: &[&str] = &[
    "engine",
    "gdb",
    "mem",
    "timeout",
    "kernel",
    "add",
    "dir",
    "dir_tree",
    "dir_out",
    "dir_collect",
    "stats_json",
    "pgdump_svg",
    "lab_results",
    "program",
];

/// Every option of `vmm run` given on the command line (`run` = its matches), re-emitted as
/// `--long [value]` — built from clap's one description of the options, so a new option
/// reaches the lab without a second list — except [`LAB_REWRITES`].
fn forwarded_options(run: &clap::ArgMatches) -> Vec<OsString> {
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let spec = cli
        .find_subcommand("run")
        .expect("vmm has a run subcommand");
    let mut out = Vec::new();
    for arg in spec.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if LAB_REWRITES.contains(&id) || run.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if arg.get_action().takes_values() {
            for v in run.get_raw(id).into_iter().flatten() {
                out.extend([format!("--{long}").into(), v.to_owned()]);
            }
        } else {
            out.push(format!("--{long}").into());
        }
    }
    out
}

/// The inner `vmm run` of a lab run: `--engine kvm` and the same request, with host files
/// (a `--kernel`, a host program, the `--add` files) shipped in and their paths rewritten.
/// `run` holds the matches of this `vmm run`'s command line. Returns the arguments and the
/// files (host path, lab path).
pub fn invocation(
    args: &RunArgs,
    run: &clap::ArgMatches,
    mem: u64,
    program: &Program,
    added: &[Program],
    tree: Option<&Path>,
    collect: bool,
) -> (Vec<OsString>, Vec<(PathBuf, String)>) {
    let mut inner: Vec<OsString> = vec!["run".into(), "--engine".into(), "kvm".into()];
    inner.extend(["--mem".into(), format!("{}M", mem >> 20).into()]);
    inner.extend(["--timeout".into(), args.timeout.to_string().into()]);
    inner.extend(forwarded_options(run));
    // gdb reaches the inner vmm through a virtio-serial port the lab bridges to its TCP port.
    if args.gdb.is_some() {
        inner.extend(["--gdb".into(), lab::script::port_path(GDB_PORT_NAME).into()]);
    }
    // The inner vmm leaves its output files' contents where the lab sends them back
    // (LabRequest::result_file), as tagged lines (outputs.rs).
    inner.extend(crate::outputs::LabResults::inner_args(args));
    let mut files = Vec::new();
    if let Some(k) = &args.kernel {
        let lab_path = lab::script::files_path("kernel.elf");
        files.push((k.clone(), lab_path.clone()));
        inner.extend(["--kernel".into(), lab_path.into()]);
    }
    for (i, a) in added.iter().enumerate() {
        if let Some(host) = &a.host_path {
            let lab_path = lab::script::files_path(&format!("add/{i}/{}", a.name));
            files.push((host.clone(), lab_path.clone()));
            inner.extend(["--add".into(), format!("{lab_path}:{}", a.name).into()]);
        }
    }
    if let Some(host) = tree {
        let lab_path = lab::script::files_path("dir-tree.cpio");
        files.push((host.to_path_buf(), lab_path.clone()));
        inner.extend(["--dir-tree".into(), lab_path.into()]);
    }
    inner.extend(write_back_args(args, collect));
    inner.push("--".into());
    match &program.host_path {
        Some(host) => {
            let lab_path = lab::script::files_path(&format!("prog/{}", program.name));
            files.push((host.clone(), lab_path.clone()));
            inner.push(lab_path.into());
        }
        None => inner.push(program.name.clone().into()),
    }
    inner.extend(args.program.iter().skip(1).cloned());
    (inner, files)
}

/// `--dir …:rw` for the inner `vmm`: the kernel exports these GUESTDIRs (`--dir-out`) and
/// we write back; with `collect` (the AMD lab) the export comes back on the lab's collect
/// port (`LabRequest::collect`), else in the result lines.
fn write_back_args(args: &RunArgs, collect: bool) -> Vec<OsString> {
    let rw = crate::writeback::rw_specs(&args.dir);
    let mut out = Vec::new();
    for s in &rw {
        out.extend(["--dir-out".into(), format!("/{}", s.guest.join("/")).into()]);
    }
    if collect && !rw.is_empty() {
        out.extend(["--dir-collect".into(), lab::script::COLLECT_PATH.into()]);
    }
    out
}

/// What a run inside the lab needs besides its arguments.
pub struct LabRun<'a> {
    pub mem: u64,
    pub program: &'a Program,
    pub added: &'a [Program],
    pub tree: &'a Tree,
    pub landmarks: &'a Machine,
    pub vendor: super::Vendor,
}

/// Re-runs this binary inside the lab with `--engine kvm` and the same request.
pub fn run_in_lab(args: &RunArgs, r: &LabRun<'_>) -> Result<i32> {
    // This process's own command line, parsed again for its matches (what was given how).
    let matches = <crate::cli::Cli as clap::CommandFactory>::command()
        .try_get_matches_from(std::env::args_os())
        .context("cannot re-read this command line for the lab")?;
    let run = matches
        .subcommand_matches("run")
        .context("the lab runs `vmm run` only")?;
    let tree_file = tree_file(r.tree)?;
    let tree_path = tree_file.as_ref().map(|f| f.path());
    let collect_dir = collect_dir(args, r.vendor)?;
    let collect = collect_dir.as_ref().map(|d| d.path().join("export.cpio"));
    let (inner, files) = invocation(
        args,
        run,
        r.mem,
        r.program,
        r.added,
        tree_path,
        collect.is_some(),
    );
    // From here on a signal stops the run cleanly (temporary files removed, 128 + N).
    term::interrupt::install();
    let results = LabResults::new(args)?;
    let (tcp_ports, unix_ports) = gdb_bridges(args.gdb.as_ref(), r.vendor)?;
    let timeout = match args.timeout {
        _ if args.gdb.is_some() => Duration::from_secs(24 * 3600),
        0 => Duration::from_secs(24 * 3600),
        t => Duration::from_secs(t + LAB_MARGIN_SECS),
    };
    let req = lab::LabRequest {
        files,
        // Streamed as it arrives: the guest boots at once, a terminal works.
        stdin: lab::LabStdin::Inherit,
        result_file: results.path(),
        collect: collect.clone(),
        tcp_ports,
        unix_ports,
        // The outer clock bounds the program too: a guest whose ticks stall (so the inner
        // --timeout never fires) still ends a few seconds after its --timeout.
        run_timeout: args
            .timeout_duration()
            .filter(|_| args.gdb.is_none())
            .map(|t| t + Duration::from_secs(RUN_GRACE_SECS)),
        // Several vCPUs may get a lab machine of several CPUs (lab::qemu::lab_cpus).
        cpus: u32::from(args.cpus),
        ..super::request(inner, r.mem, timeout, r.vendor)?
    };
    let outcome = match lab::run(&req) {
        Err(e @ lab::LabError::Output { .. }) => {
            eprintln!("vmm: error: {e}");
            return Ok(exit::FAILURE);
        }
        other => other.context("the nested-KVM lab failed")?,
    };
    ended(args, r, outcome, &results, collect.as_deref(), timeout)
}

/// The exit status of a lab run that ended with `outcome`: the program's own (its output
/// files delivered, its `--dir …:rw` written back), or the timeout's or the signal's.
fn ended(
    args: &RunArgs,
    r: &LabRun<'_>,
    outcome: lab::LabOutcome,
    results: &LabResults,
    collect: Option<&Path>,
    timeout: Duration,
) -> Result<i32> {
    match outcome {
        lab::LabOutcome::Exited(status) => {
            let back = results.deliver(args, r.landmarks)?;
            Ok(write_back(args, r.tree, status, back, collect))
        }
        lab::LabOutcome::TimedOut => {
            let rw = crate::writeback::rw_specs(&args.dir);
            if !rw.is_empty() {
                eprintln!("{}", crate::writeback::not_written_back(&rw));
            }
            // The program's own bound (inside, or our clock's), or the lab's whole one.
            match args.timeout {
                0 => eprintln!("vmm: the lab run timed out after {} s", timeout.as_secs()),
                t => eprintln!("vmm: timed out after {t} s (raise --timeout, or 0 for none)"),
            }
            Ok(exit::TIMEOUT)
        }
        lab::LabOutcome::Interrupted(sig) => Ok(exit::interrupted(sig)),
    }
}

/// `--dir …:rw` in the AMD lab: the export comes back in a file of a private temporary
/// directory (the lab creates the file; named as the lab's temporaries). None otherwise.
fn collect_dir(args: &RunArgs, vendor: super::Vendor) -> Result<Option<tempfile::TempDir>> {
    if crate::writeback::rw_specs(&args.dir).is_empty() || vendor != super::Vendor::Amd {
        return Ok(None);
    }
    let dir = std::env::temp_dir();
    let made = tempfile::Builder::new()
        .prefix(&format!("xv6-lab-{}-collect-", std::process::id()))
        .tempdir_in(&dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    Ok(Some(made))
}

/// After a lab run whose program exited with `status`: writes back what `--dir …:rw` asks
/// for from the export the inner `vmm` sent (in the result lines, `back`, or in the collect
/// file with its length in them); the status, or 125 if the write-back was refused.
fn write_back(
    args: &RunArgs,
    tree: &Tree,
    status: i32,
    back: crate::outputs::Results,
    collect: Option<&Path>,
) -> i32 {
    let rw = crate::writeback::rw_specs(&args.dir);
    if rw.is_empty() {
        return status;
    }
    let from_file = back.dirout_file.and_then(|n| {
        let bytes = std::fs::read(collect?).ok()?;
        (bytes.len() == n).then_some(bytes)
    });
    let Some(export) = back.dirout.or(from_file) else {
        eprintln!("{}", crate::writeback::not_written_back(&rw));
        return status;
    };
    match crate::writeback::write_back(&rw, tree, Some(&export)) {
        Ok(_) => status,
        Err(e) => {
            eprintln!("vmm: error: --dir …:rw: write-back refused: {e}");
            exit::FAILURE
        }
    }
}

/// The `--dir` trees as one private temporary cpio file (removed when dropped; named as the
/// lab's temporaries, so a killed run's is swept by the next lab run); None without trees.
fn tree_file(tree: &Tree) -> Result<Option<tempfile::NamedTempFile>> {
    if tree.entries.is_empty() {
        return Ok(None);
    }
    let dir = std::env::temp_dir();
    let mut f = tempfile::Builder::new()
        .prefix(&format!("xv6-lab-{}-dirs-", std::process::id()))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut f, &tree.to_cpio())
        .with_context(|| format!("cannot write {}", f.path().display()))?;
    Ok(Some(f))
}

/// The lab's bridges for `--gdb` (TCP ports, Unix sockets), saying where gdb connects.
type Bridges = (Vec<(String, std::net::SocketAddr)>, Vec<(String, PathBuf)>);

/// The lab bridges that carry `gdb` to the inner vmm, announced on stderr; a usage error
/// for what the lab cannot carry.
fn gdb_bridges(gdb: Option<&GdbEndpoint>, vendor: super::Vendor) -> Result<Bridges> {
    Ok(match gdb {
        Some(GdbEndpoint::Tcp(_) | GdbEndpoint::Unix(_)) if vendor == super::Vendor::Intel => {
            anyhow::bail!(exit::UsageError(
                "--gdb works in the AMD lab only (the Intel lab has no port to carry it): \
                 use --engine lab-amd"
                    .into()
            ))
        }
        Some(GdbEndpoint::Tcp(addr)) => {
            eprintln!("vmm: gdb: the lab listens on {addr} for gdb (target remote {addr})");
            if let Some(v) = lab::qemu_too_old_for_debugging() {
                let (major, minor) = lab::QEMU_NESTED_DEBUG_MIN;
                eprintln!(
                    "vmm: gdb: the lab's QEMU ({v}) is older than {major}.{minor}: breakpoints and \
                     watchpoints will not fire in it (tools/dev setup installs a newer one)"
                );
            }
            (vec![(GDB_PORT_NAME.to_string(), *addr)], Vec::new())
        }
        Some(GdbEndpoint::Unix(p)) => {
            if p.symlink_metadata().is_ok() {
                anyhow::bail!(exit::UsageError(format!(
                    "--gdb {}: the path exists; give a new path for the socket",
                    p.display()
                )));
            }
            eprintln!(
                "vmm: gdb: the lab listens on the Unix socket {} for gdb (target remote {})",
                p.display(),
                p.display()
            );
            (Vec::new(), vec![(GDB_PORT_NAME.to_string(), p.clone())])
        }
        Some(GdbEndpoint::Device(p)) => anyhow::bail!(exit::UsageError(format!(
            "--gdb {}: a device works only with --engine kvm; through the lab, give \
             [ADDR:]PORT or a path for a Unix socket",
            p.display()
        ))),
        None => (Vec::new(), Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_matches(argv: &[&str]) -> clap::ArgMatches {
        use clap::CommandFactory;
        let mut all = vec!["vmm", "run"];
        all.extend_from_slice(argv);
        let m = Cli::command().get_matches_from(all);
        m.subcommand_matches("run").unwrap().clone()
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        crate::cli::parse_run(argv)
    }

    /// Every option `vmm run` has reaches the inner vmm: passed on as given (found by clap's
    /// description, not a list), or one of the deliberate rewrites.
    #[test]
    fn every_run_option_reaches_the_lab() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let spec = cli.find_subcommand("run").unwrap();
        let program = Program {
            name: "hello".into(),
            image: Vec::new(),
            host_path: None,
        };
        for arg in spec.get_arguments() {
            let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else {
                continue;
            };
            if LAB_REWRITES.contains(&id) || id == "help" {
                continue;
            }
            let flag = format!("--{long}");
            let mut argv = vec![flag.as_str()];
            // A value every option takes as it is (a count must be a count).
            let value = if id == "cpus" { "2" } else { "w" };
            if arg.get_action().takes_values() {
                argv.push(value);
            }
            argv.push("hello");
            let a = run_args(&argv);
            let (inner, _) = invocation(
                &a,
                &run_matches(&argv),
                256 << 20,
                &program,
                &[],
                None,
                false,
            );
            let i = inner.iter().position(|w| w == flag.as_str());
            assert!(i.is_some(), "{flag} is not passed to the lab: {inner:?}");
            if arg.get_action().takes_values() {
                assert_eq!(inner[i.unwrap() + 1], value, "{flag}'s value");
            }
        }
    }

    /// A request with every kind of flag and host files: its args, and the inner command
    /// line and files of its lab run.
    fn shipped() -> (RunArgs, Vec<OsString>, Vec<(PathBuf, String)>) {
        let argv = [
            "--pgdump",
            "--quiet",
            "--stats",
            "--prefault",
            "--lazy",
            "--cow",
            "--timeout",
            "9",
            "--append",
            "a b",
            "--kernel",
            "/k/kernel.elf",
            "/bin/prog",
            "x",
            "-y",
        ];
        let a = run_args(&argv);
        let program = Program {
            name: "prog".into(),
            image: Vec::new(),
            host_path: Some("/bin/prog".into()),
        };
        let (inner, files) = invocation(
            &a,
            &run_matches(&argv),
            64 << 20,
            &program,
            &[],
            None,
            false,
        );
        (a, inner, files)
    }

    #[test]
    fn lab_run_passes_every_flag_and_ships_host_files() {
        let (_, inner, files) = shipped();
        let inner: Vec<&str> = inner.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            inner,
            [
                "run",
                "--engine",
                "kvm",
                "--mem",
                "64M",
                "--timeout",
                "9",
                "--pgdump",
                "--lazy",
                "--cow",
                "--stats",
                "--prefault",
                "--quiet",
                "--append",
                "a b",
                "--kernel",
                "/lab/files/kernel.elf",
                "--",
                "/lab/files/prog/prog",
                "x",
                "-y",
            ]
        );
        assert_eq!(
            files,
            [
                (
                    PathBuf::from("/k/kernel.elf"),
                    "/lab/files/kernel.elf".to_string()
                ),
                (
                    PathBuf::from("/bin/prog"),
                    "/lab/files/prog/prog".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_inner_command_line_parses_back_to_the_same_request() {
        let (a, inner, _) = shipped();
        let mut back = vec![OsString::from("vmm")];
        back.extend(inner);
        let Command::Run(b) = Cli::parse_from(back).command else {
            panic!()
        };
        assert_eq!((b.quiet, b.lazy, b.cow), (a.quiet, a.lazy, a.cow));
        assert_eq!(
            (b.pgdump, b.stats, b.prefault),
            (a.pgdump, a.stats, a.prefault)
        );
        assert_eq!((b.append, b.timeout), (a.append, a.timeout));
        assert_eq!(b.program[1..], a.program[1..]);
    }
}
