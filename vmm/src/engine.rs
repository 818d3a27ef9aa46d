//! Where a run happens: on this host's KVM, or inside the nested-KVM lab.
//!
//! `auto` runs the legacy-paging probe (`probe.rs`, a few milliseconds) and picks `kvm` when it
//! passes, else `lab`, saying so on stderr. The lab re-runs this very binary with
//! `--engine kvm` inside a QEMU TCG machine whose Linux has kvm_amd (see tools/lab).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::boot::programs::{self, Program, ProgramError};
use crate::boot::{images, loader};
use crate::cli::{Engine, RunArgs};
use crate::debug::gdb::conn::GdbEndpoint;
use crate::exit;
use crate::machine::{self, MachineConfig};
use crate::probe;
use crate::vstate::vcpu::{Outcome, PgdumpMode};

/// The largest `--kernel` file taken (the built-in kernel is well under 1 MiB).
pub const MAX_KERNEL: u64 = 64 << 20;

/// Seconds the lab may take on top of the guest's own `--timeout` (its boot, module loading).
const LAB_MARGIN_SECS: u64 = 120;
/// Seconds past `--timeout`, counted on our clock from the program's start inside the lab,
/// after which the lab is stopped even if the inner `vmm` never noticed its own timeout.
const RUN_GRACE_SECS: u64 = 5;

/// Runs `vmm run` and returns the exit status. Errors print as one line and give 125.
pub fn run(args: &RunArgs) -> i32 {
    match try_run(args) {
        Ok(status) => status,
        // Whatever failed after a signal failed because of it.
        Err(_) if term::interrupt::pending().is_some() => {
            interrupted(term::interrupt::pending().unwrap_or(libc::SIGINT))
        }
        Err(e) => {
            eprintln!("vmm: error: {e:#}");
            exit::status_of_error(&e)
        }
    }
}

fn try_run(args: &RunArgs) -> Result<i32> {
    let mem = args.mem;
    if let Some(path) = &args.stats_json {
        check_writable(path)?;
    }
    crate::outputs::check(args)?;
    let spec = args
        .program
        .first()
        .map_or(OsStr::new(programs::DEFAULT_PROGRAM), OsString::as_os_str);
    let found = programs::resolve_adds(&args.add).and_then(|added| {
        let program = programs::resolve_among(spec, &added)?;
        programs::check_argv(&first_argv(args, &program))?;
        Ok((added, program))
    });
    let (added, program) = match found {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return Ok(match e {
                ProgramError::NotFound(_) => exit::NOT_FOUND,
                ProgramError::NotExecutable(_) => exit::NOT_EXECUTABLE,
            });
        }
    };
    let tree = match import_dirs(args, &added, &program) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return Ok(match e {
                crate::boot::dirs::DirError::Usage(_) => exit::USAGE,
                crate::boot::dirs::DirError::Refused(_) => exit::NOT_EXECUTABLE,
            });
        }
    };

    let (kernel, kernel_name) = match &args.kernel {
        Some(path) => {
            let bytes = programs::read_host_file(path, "kernel", MAX_KERNEL)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (bytes, path.clone())
        }
        None => (images::KERNEL.to_vec(), PathBuf::from("(built-in kernel)")),
    };
    // Refuse a bad kernel here, before any engine (and the lab's boot) is spent on it.
    loader::parse_kernel(&kernel, crate::arch::layout::phystop(mem))
        .with_context(|| format!("invalid kernel {}", kernel_name.display()))?;

    let landmarks = crate::debug::pgdump_svg::Machine::new(mem, &kernel);
    let vendor = match select(args.engine)? {
        Engine::Lab | Engine::LabAmd => lab::Vendor::Amd,
        Engine::LabIntel => lab::Vendor::Intel,
        _ => {
            let kernel = (kernel, kernel_name);
            return run_on_kvm(args, mem, kernel, &program, &added, &tree, &landmarks);
        }
    };
    run_in_lab(args, mem, &program, &added, &tree, &landmarks, vendor)
}

/// The `--dir` trees (dirs.rs): walked on this host, or, inside the lab, the one the outer
/// vmm shipped (`--dir-tree`); checked against the other files of the guest's `/` and the
/// boot-module space. The notes on skipped entries are printed here.
fn import_dirs(
    args: &RunArgs,
    added: &[Program],
    program: &Program,
) -> Result<crate::boot::dirs::Tree, crate::boot::dirs::DirError> {
    use crate::boot::dirs::{self, DirError};
    let specs = args
        .dir
        .iter()
        .map(|s| dirs::parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut taken: Vec<&str> = programs::builtin_names();
    taken.extend(added.iter().map(|a| a.name.as_str()));
    taken.push(program.name.as_str());
    dirs::check_clashes(&specs, &taken)?;
    let own = usize::from(program.host_path.is_some());
    let mut tree = dirs::import(&specs, added.len() + own)?;
    if let Some(path) = &args.dir_tree {
        let shipped = dirs::read_tree(path, added.len() + own + tree.entries.len())?;
        tree.entries.extend(shipped.entries);
    }
    for note in &tree.notes {
        eprintln!("{note}");
    }
    programs::check_space_with_tree(added, Some(program), &tree)
        .map_err(|e| DirError::Refused(e.to_string()))?;
    Ok(tree)
}

/// The engine to use for `requested`: `auto` decides by the probe; `kvm` is refused (with
/// the reason) where this host's KVM cannot run legacy paging. Never returns `Auto`.
pub fn select(requested: Engine) -> Result<Engine> {
    Ok(match requested {
        Engine::Auto => choose_engine(),
        Engine::Kvm => {
            // Inside the lab the KVM is known (kvm_amd or kvm_intel, checked by the lab's
            // init): no probe guest, whose VM costs a noticeable part of a lab run.
            if std::env::var_os(lab::IN_LAB_ENV).is_none() {
                require_legacy_paging()?;
            }
            Engine::Kvm
        }
        lab @ (Engine::Lab | Engine::LabAmd | Engine::LabIntel) => lab,
    })
}

/// `auto`: KVM if its probe passes, else the lab.
fn choose_engine() -> Engine {
    match probe::probe_legacy_paging() {
        Ok(p) if p.legacy_paging => Engine::Kvm,
        Ok(p) => {
            eprintln!(
                "vmm: this host's KVM ({}) cannot run 32-bit paging ({}); using the nested-KVM lab",
                probe::kvm_flavour(),
                p.detail
            );
            Engine::Lab
        }
        Err(e) => {
            eprintln!("vmm: no usable KVM here ({e:#}); using the nested-KVM lab");
            Engine::Lab
        }
    }
}

fn require_legacy_paging() -> Result<()> {
    let p = probe::probe_legacy_paging()?;
    if !p.legacy_paging {
        bail!(
            "this host's KVM ({}) cannot run the 32-bit kernel: no legacy (non-long-mode) paging \
             support ({}); use --engine lab (or auto)",
            probe::kvm_flavour(),
            p.detail
        );
    }
    Ok(())
}

/// The kernel command line: `console=com1`, `quiet` with `--quiet`, then `--append`.
/// (The program and its arguments travel as boot modules, see `programs.rs`.)
pub fn kernel_cmdline(args: &RunArgs) -> String {
    use xv6_abi::cmdline::{CONSOLE, COW, LAZY, QUIET};
    let mut words = vec![CONSOLE.to_string()];
    if args.quiet {
        words.push(QUIET.into());
    }
    if args.lazy {
        words.push(LAZY.into());
    }
    if args.cow {
        words.push(COW.into());
    }
    words.extend(args.append.iter().cloned());
    words.join(" ")
}

/// The first process's argv: the program's name, then the arguments.
fn first_argv(args: &RunArgs, program: &Program) -> Vec<OsString> {
    let mut argv = vec![OsString::from(&program.name)];
    argv.extend(args.program.iter().skip(1).cloned());
    argv
}

fn timeout_of(args: &RunArgs) -> Option<Duration> {
    (args.timeout > 0).then(|| Duration::from_secs(args.timeout))
}

fn run_on_kvm(
    args: &RunArgs,
    mem: u64,
    (kernel, kernel_name): (Vec<u8>, PathBuf),
    program: &Program,
    added: &[Program],
    tree: &crate::boot::dirs::Tree,
    landmarks: &crate::debug::pgdump_svg::Machine,
) -> Result<i32> {
    // Here, not in try_run: a lab run prints them once, from its inner run.
    for note in programs::shadow_notes(added) {
        eprintln!("{note}");
    }
    let mut extra = added.to_vec();
    extra.extend(program.host_path.is_some().then(|| program.clone()));
    let cfg = MachineConfig {
        kernel,
        kernel_name,
        mem,
        cmdline: kernel_cmdline(args),
        modules: vec![
            programs::archive_with_tree(&extra, tree),
            programs::argv_block(&first_argv(args, program)),
        ],
        user_programs: programs::archive_files(&extra)
            .into_iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect(),
        pgdump: PgdumpMode::new(args.pgdump, args.pgdump_svg.is_some()),
        // A debugging session takes as long as it takes.
        timeout: timeout_of(args).filter(|_| args.gdb.is_none()),
        prefault: args.prefault,
        discard_stdout: false,
        gdb: args.gdb.clone(),
        confine: if args.no_seccomp {
            machine::Confine::Off
        } else {
            machine::Confine::AllThreads
        },
    };
    let report = machine::run(cfg)?;
    if args.stats {
        eprintln!("{}", report.stats_line());
        if let Some(line) = tree.stats_line() {
            eprintln!("{line}");
        }
    }
    crate::outputs::write(
        args,
        &crate::outputs::Results::of_report(&report),
        landmarks,
    )?;
    let status = status_of(report.outcome, args.timeout);
    // The one-line error first (status_of), then the details.
    if let Some(crash) = &report.crash {
        eprintln!("{crash}");
    }
    Ok(status)
}

/// Maps how the guest ended to `vmm`'s exit status, printing the one-line reason on failures.
pub fn status_of(outcome: Outcome, timeout_secs: u64) -> i32 {
    match outcome {
        Outcome::Exited(v) => (v & 0xff) as i32,
        Outcome::TimedOut => {
            eprintln!("vmm: timed out after {timeout_secs} s (raise --timeout, or 0 for none)");
            exit::TIMEOUT
        }
        Outcome::Panicked(Some(report)) => {
            eprintln!(
                "vmm: error: the guest kernel panicked: {} (backtrace below)",
                report.message
            );
            exit::FAILURE
        }
        Outcome::Panicked(None) => {
            eprintln!(
                "vmm: error: the guest kernel panicked (its message is on the console above)"
            );
            exit::FAILURE
        }
        Outcome::TripleFault => {
            eprintln!(
                "vmm: error: the guest triple-faulted (CPU shutdown): the kernel crashed before \
                 it could report; what is known of its registers follows"
            );
            exit::FAILURE
        }
        Outcome::Failed(why) | Outcome::OutputFailed(why) => {
            eprintln!("vmm: error: {why}");
            exit::FAILURE
        }
    }
}

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
pub fn lab_invocation(
    args: &RunArgs,
    run: &clap::ArgMatches,
    mem: u64,
    program: &Program,
    added: &[Program],
    tree: Option<&Path>,
) -> (Vec<OsString>, Vec<(PathBuf, String)>) {
    let mut inner: Vec<OsString> = vec!["run".into(), "--engine".into(), "kvm".into()];
    inner.extend(["--mem".into(), format!("{}M", mem >> 20).into()]);
    inner.extend(["--timeout".into(), args.timeout.to_string().into()]);
    inner.extend(forwarded_options(run));
    // gdb reaches the inner vmm through a virtio-serial port the lab bridges to its TCP port.
    if args.gdb.is_some() {
        inner.extend([
            "--gdb".into(),
            format!("/dev/virtio-ports/{GDB_PORT_NAME}").into(),
        ]);
    }
    // The inner vmm leaves its output files' contents where the lab sends them back
    // (LabRequest::result_file), as tagged lines (outputs.rs).
    inner.extend(crate::outputs::LabResults::inner_args(args));
    let mut files = Vec::new();
    if let Some(k) = &args.kernel {
        let lab_path = "/lab/files/kernel.elf".to_string();
        files.push((k.clone(), lab_path.clone()));
        inner.extend(["--kernel".into(), lab_path.into()]);
    }
    for (i, a) in added.iter().enumerate() {
        if let Some(host) = &a.host_path {
            let lab_path = format!("/lab/files/add/{i}/{}", a.name);
            files.push((host.clone(), lab_path.clone()));
            inner.extend(["--add".into(), format!("{lab_path}:{}", a.name).into()]);
        }
    }
    if let Some(host) = tree {
        let lab_path = "/lab/files/dir-tree.cpio".to_string();
        files.push((host.to_path_buf(), lab_path.clone()));
        inner.extend(["--dir-tree".into(), lab_path.into()]);
    }
    inner.push("--".into());
    match &program.host_path {
        Some(host) => {
            let lab_path = format!("/lab/files/prog/{}", program.name);
            files.push((host.clone(), lab_path.clone()));
            inner.push(lab_path.into());
        }
        None => inner.push(program.name.clone().into()),
    }
    inner.extend(args.program.iter().skip(1).cloned());
    (inner, files)
}

/// Set by the outer `vmm` for the inner one: the engine the run is on (`lab-amd`,
/// `lab-intel`), for `--stats` (see [`engine_name`]).
pub const ENGINE_ENV: &str = "XV6_VMM_ENGINE";

/// The engine this process's guest runs on, for `--stats`: `kvm`, or the lab the outer `vmm`
/// named in [`ENGINE_ENV`] (anything else there counts as `kvm`).
pub fn engine_name() -> &'static str {
    engine_name_from(std::env::var(ENGINE_ENV).ok().as_deref())
}

/// The pure part of [`engine_name`].
pub fn engine_name_from(var: Option<&str>) -> &'static str {
    match var {
        Some("lab-amd") => "lab-amd",
        Some("lab-intel") => "lab-intel",
        _ => "kvm",
    }
}

/// The environment of the inner `vmm`: our log filter, and no colour or spinners (its stderr
/// is a serial line, a terminal to it, but what it writes ends up wherever ours goes), and
/// which lab it runs in.
pub fn lab_env(vendor: lab::Vendor) -> Vec<(String, String)> {
    let mut env = vec![
        ("RUST_LOG_STYLE".to_string(), "never".to_string()),
        (lab::IN_LAB_ENV.to_string(), "1".to_string()),
        (ENGINE_ENV.to_string(), vendor.engine_name().to_string()),
    ];
    if let Ok(v) = std::env::var("RUST_LOG") {
        env.push(("RUST_LOG".to_string(), v));
    }
    // The seccomp test hook must reach the vmm that runs the VM.
    if let Ok(v) = std::env::var(crate::seccomp::SELFTEST_ENV) {
        env.push((crate::seccomp::SELFTEST_ENV.to_string(), v));
    }
    env
}

/// Whether `path` can be written: created (if new) and removed again, so a bad output
/// file (`--json`, `--svg`, `--stats-json`) is reported before any boot (as a usage error).
pub fn check_writable(path: &std::path::Path) -> Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| exit::UsageError(format!("cannot write {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Reports a run stopped by signal `sig` and returns the shells' status for it (130, 143, ...).
pub fn interrupted(sig: i32) -> i32 {
    eprintln!(
        "vmm: interrupted ({}); the run was stopped",
        term::interrupt::name(sig)
    );
    term::interrupt::exit_status(sig)
}

/// The lab's virtio-serial port that carries `--gdb`.
const GDB_PORT_NAME: &str = "gdb";

/// Re-runs this binary inside the lab with `--engine kvm` and the same request.
fn run_in_lab(
    args: &RunArgs,
    mem: u64,
    program: &Program,
    added: &[Program],
    tree: &crate::boot::dirs::Tree,
    landmarks: &crate::debug::pgdump_svg::Machine,
    vendor: lab::Vendor,
) -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find the vmm binary to run in the lab")?;
    // This process's own command line, parsed again for its matches (what was given how).
    let matches = <crate::cli::Cli as clap::CommandFactory>::command()
        .try_get_matches_from(std::env::args_os())
        .context("cannot re-read this command line for the lab")?;
    let run = matches
        .subcommand_matches("run")
        .context("the lab runs `vmm run` only")?;
    // The --dir trees travel as one private temporary cpio file (removed when this returns;
    // named as the lab's temporaries, so a killed run's is swept by the next lab run).
    let tree_file = if tree.entries.is_empty() {
        None
    } else {
        let dir = std::env::temp_dir();
        let mut f = tempfile::Builder::new()
            .prefix(&format!("xv6-lab-{}-dirs-", std::process::id()))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        std::io::Write::write_all(&mut f, &tree.to_cpio())
            .with_context(|| format!("cannot write {}", f.path().display()))?;
        Some(f)
    };
    let (inner, files) = lab_invocation(
        args,
        run,
        mem,
        program,
        added,
        tree_file.as_ref().map(|f| f.path()),
    );
    // From here on a signal stops the run cleanly (temporary files removed, 128 + N).
    term::interrupt::install();
    let env = lab_env(vendor);
    let results = crate::outputs::LabResults::new(args)?;
    let (tcp_ports, unix_ports) = match &args.gdb {
        Some(GdbEndpoint::Tcp(_) | GdbEndpoint::Unix(_)) if vendor == lab::Vendor::Intel => {
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
    };
    let timeout = match args.timeout {
        _ if args.gdb.is_some() => Duration::from_secs(24 * 3600),
        0 => Duration::from_secs(24 * 3600),
        t => Duration::from_secs(t + LAB_MARGIN_SECS),
    };
    let req = lab::LabRequest {
        program: exe,
        args: inner,
        files,
        env,
        // Streamed as it arrives: the guest boots at once, a terminal works.
        stdin: lab::LabStdin::Inherit,
        result_file: results.path(),
        tcp_ports,
        unix_ports,
        guest_mem_mib: mem >> 20,
        timeout,
        vendor,
        // The outer clock bounds the program too: a guest whose ticks stall (so the inner
        // --timeout never fires) still ends a few seconds after its --timeout.
        run_timeout: timeout_of(args)
            .filter(|_| args.gdb.is_none())
            .map(|t| t + Duration::from_secs(RUN_GRACE_SECS)),
    };
    let outcome = match lab::run(&req) {
        Err(e @ lab::LabError::Output { .. }) => {
            eprintln!("vmm: error: {e}");
            return Ok(exit::FAILURE);
        }
        other => other.context("the nested-KVM lab failed")?,
    };
    match outcome {
        lab::LabOutcome::Exited(status) => {
            results.deliver(args, landmarks)?;
            Ok(status)
        }
        lab::LabOutcome::TimedOut => {
            // The program's own bound (inside, or our clock's), or the lab's whole one.
            match args.timeout {
                0 => eprintln!("vmm: the lab run timed out after {} s", timeout.as_secs()),
                t => eprintln!("vmm: timed out after {t} s (raise --timeout, or 0 for none)"),
            }
            Ok(exit::TIMEOUT)
        }
        lab::LabOutcome::Interrupted(sig) => Ok(interrupted(sig)),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_engine_name_comes_from_the_outer_vmm() {
        assert_eq!(engine_name_from(None), "kvm");
        assert_eq!(engine_name_from(Some("lab-amd")), "lab-amd");
        assert_eq!(engine_name_from(Some("lab-intel")), "lab-intel");
        assert_eq!(engine_name_from(Some("something else")), "kvm");
        let env = lab_env(lab::Vendor::Intel);
        assert!(env.contains(&(ENGINE_ENV.to_string(), "lab-intel".to_string())));
        let env = lab_env(lab::Vendor::Amd);
        assert!(env.contains(&(ENGINE_ENV.to_string(), "lab-amd".to_string())));
    }
    use crate::cli::{Cli, Command};

    fn run_matches(argv: &[&str]) -> clap::ArgMatches {
        use clap::CommandFactory;
        let mut all = vec!["vmm", "run"];
        all.extend_from_slice(argv);
        let m = Cli::command().get_matches_from(all);
        m.subcommand_matches("run").unwrap().clone()
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        let mut all = vec!["vmm", "run"];
        all.extend_from_slice(argv);
        match Cli::parse_from(all).command {
            Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_line_carries_the_flags_the_kernel_reads() {
        assert_eq!(kernel_cmdline(&run_args(&[])), "console=com1");
        let a = run_args(&[
            "--quiet",
            "--lazy",
            "--cow",
            "--append",
            "selftest=exit:3",
            "echo",
            "x",
        ]);
        assert_eq!(
            kernel_cmdline(&a),
            "console=com1 quiet lazy cow selftest=exit:3"
        );
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
            if arg.get_action().takes_values() {
                argv.push("w");
            }
            argv.push("hello");
            let a = run_args(&argv);
            let (inner, _) =
                lab_invocation(&a, &run_matches(&argv), 256 << 20, &program, &[], None);
            let i = inner.iter().position(|w| w == flag.as_str());
            assert!(i.is_some(), "{flag} is not passed to the lab: {inner:?}");
            if arg.get_action().takes_values() {
                assert_eq!(inner[i.unwrap() + 1], "w", "{flag}'s value");
            }
        }
    }

    #[test]
    fn lab_run_passes_every_flag_and_ships_host_files() {
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
        let (inner, files) = lab_invocation(&a, &run_matches(&argv), 64 << 20, &program, &[], None);
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
        // The inner command line parses back to the same request.
        let mut back = vec!["vmm"];
        back.extend(&inner);
        let Command::Run(b) = Cli::parse_from(back).command else {
            panic!()
        };
        assert_eq!(kernel_cmdline(&b), kernel_cmdline(&a));
        assert_eq!(b.program[1..], a.program[1..]);
    }

    #[test]
    fn outcomes_map_to_documented_statuses() {
        assert_eq!(status_of(Outcome::Exited(0x1_2a), 0), 42);
        assert_eq!(status_of(Outcome::TimedOut, 5), exit::TIMEOUT);
        assert_eq!(status_of(Outcome::Panicked(None), 0), exit::FAILURE);
        assert_eq!(status_of(Outcome::TripleFault, 0), exit::FAILURE);
        assert_eq!(status_of(Outcome::Failed("x".into()), 0), exit::FAILURE);
    }
}
