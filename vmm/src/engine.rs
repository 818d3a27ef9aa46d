//! Where a run happens: on this host's KVM, or inside the nested-KVM lab.
//!
//! `auto` runs the legacy-paging probe (`probe.rs`, a few milliseconds) and picks `kvm` when it
//! passes, else `lab`, saying so on stderr. The lab re-runs this very binary with
//! `--engine kvm` inside a QEMU TCG machine whose Linux has kvm_amd (see tools/lab).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::boot::dirs::{self, DirError, Tree};
use crate::boot::programs::{self, Program, ProgramError};
use crate::boot::{images, loader};
use crate::cli::{Engine, RunArgs};
use crate::exit;
use crate::machine::{self, MachineConfig};
use crate::nested::run::{run_in_lab, LabRun};
use crate::nested::{self, Vendor};
use crate::outcome::Outcome;
use crate::probe;
use crate::vstate::vcpu::PgdumpMode;

/// The largest `--kernel` file taken (the built-in kernel is well under 1 MiB).
pub const MAX_KERNEL: u64 = 64 << 20;

/// Runs `vmm run` and returns the exit status. Errors print as one line and give 125.
pub fn run(args: &RunArgs) -> i32 {
    match try_run(args) {
        Ok(status) => status,
        // Whatever failed after a signal failed because of it.
        Err(_) if term::interrupt::pending().is_some() => {
            exit::interrupted(term::interrupt::pending().unwrap_or(libc::SIGINT))
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
        crate::outputs::check_writable(path)?;
    }
    crate::outputs::check(args)?;
    let (added, program, tree) = match resolve(args) {
        Ok(r) => r,
        Err(status) => return Ok(status),
    };
    let (kernel, kernel_name) = read_kernel(args)?;
    // Refuse a bad kernel here, before any engine (and the lab's boot) is spent on it.
    loader::parse_kernel(&kernel, crate::arch::layout::phystop(mem))
        .with_context(|| format!("invalid kernel {}", kernel_name.display()))?;

    let landmarks = crate::debug::pgdump_svg::Machine::new(mem, &kernel);
    let vendor = match select(args.engine)? {
        Engine::Lab | Engine::LabAmd => Vendor::Amd,
        Engine::LabIntel => Vendor::Intel,
        _ => {
            let kernel = (kernel, kernel_name);
            return run_on_kvm(args, mem, kernel, &program, &added, &tree, &landmarks);
        }
    };
    let lab_run = LabRun {
        mem,
        program: &program,
        added: &added,
        tree: &tree,
        landmarks: &landmarks,
        vendor,
    };
    run_in_lab(args, &lab_run)
}

/// The added files, the program and the `--dir` trees a `vmm run` names, checked; a refusal
/// is printed as one line and becomes its exit status.
fn resolve(args: &RunArgs) -> Result<(Vec<Program>, Program, Tree), i32> {
    let spec = args
        .program
        .first()
        .map_or(OsStr::new(programs::DEFAULT_PROGRAM), OsString::as_os_str);
    let found = programs::resolve_adds(&args.add).and_then(|added| {
        let program = programs::resolve_among(spec, &added)?;
        programs::check_argv(&first_argv(args, &program))?;
        Ok((added, program))
    });
    let (added, program) = found.map_err(|e| {
        eprintln!("vmm: error: {e}");
        match e {
            ProgramError::NotFound(_) => exit::NOT_FOUND,
            ProgramError::NotExecutable(_) => exit::NOT_EXECUTABLE,
        }
    })?;
    let tree = import_dirs(args, &added, &program).map_err(|e| {
        eprintln!("vmm: error: {e}");
        match e {
            DirError::Usage(_) => exit::USAGE,
            DirError::Refused(_) => exit::NOT_EXECUTABLE,
        }
    })?;
    Ok((added, program, tree))
}

/// The kernel to boot (`--kernel`, else the built-in one) and its name for messages.
fn read_kernel(args: &RunArgs) -> Result<(Vec<u8>, PathBuf)> {
    Ok(match &args.kernel {
        Some(path) => {
            let bytes = programs::read_host_file(path, "kernel", MAX_KERNEL)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (bytes, path.clone())
        }
        None => (images::KERNEL.to_vec(), PathBuf::from("(built-in kernel)")),
    })
}

/// The `--dir` trees (dirs.rs): walked on this host, or, inside the lab, the one the outer
/// vmm shipped (`--dir-tree`); checked against the other files of the guest's `/` and the
/// boot-module space. The notes on skipped entries are printed here.
fn import_dirs(args: &RunArgs, added: &[Program], program: &Program) -> Result<Tree, DirError> {
    let specs = args
        .dir
        .iter()
        .map(|s| dirs::parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut taken: Vec<&str> = programs::builtin_names();
    taken.extend(added.iter().map(|a| a.name.as_str()));
    taken.push(program.name.as_str());
    dirs::check_clashes(&specs, &taken)?;
    crate::writeback::check_rw_hosts(&specs).map_err(DirError::Usage)?;
    let own = usize::from(program.host_path.is_some());
    let mut tree = dirs::import(&specs, added.len() + own)?;
    if let Some(path) = &args.dir_tree {
        let shipped = dirs::read_tree(path, added.len() + own + tree.entries.len())?;
        tree.entries.extend(shipped.entries);
    }
    for note in &tree.notes {
        eprintln!("{note}");
    }
    programs::check_space_with_tree(added, Some(program), &tree_entries(&tree))
        .map_err(|e| DirError::Refused(e.to_string()))?;
    Ok(tree)
}

/// The `--dir` trees' entries as the program archive takes them.
fn tree_entries(tree: &Tree) -> Vec<programs::ArchiveEntry<'_>> {
    tree.archive_entries().collect()
}

/// The engine to use for `requested`: `auto` decides by the probe; `kvm` is refused (with
/// the reason) where this host's KVM cannot run legacy paging. Never returns `Auto`.
pub fn select(requested: Engine) -> Result<Engine> {
    Ok(match requested {
        Engine::Auto => choose_engine(),
        Engine::Kvm => {
            // Inside the lab the KVM is known (kvm_amd or kvm_intel, checked by the lab's
            // init): no probe guest, whose VM costs a noticeable part of a lab run.
            if !nested::in_lab() {
                require_legacy_paging()?;
            }
            Engine::Kvm
        }
        lab @ (Engine::Lab | Engine::LabAmd | Engine::LabIntel) => lab,
    })
}

/// `auto`: KVM if its probe passes, else the lab.
fn choose_engine() -> Engine {
    match probe::probe_legacy_paging(nested::probe_bound()) {
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
    let p = probe::probe_legacy_paging(nested::probe_bound())?;
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
    let guestdirs = crate::writeback::guestdirs(&args.dir, &args.dir_out);
    words.extend(crate::writeback::cmdline_word(&guestdirs));
    words.extend(args.append.iter().cloned());
    words.join(" ")
}

/// The first process's argv: the program's name, then the arguments.
fn first_argv(args: &RunArgs, program: &Program) -> Vec<OsString> {
    let mut argv = vec![OsString::from(&program.name)];
    argv.extend(args.program.iter().skip(1).cloned());
    argv
}

fn run_on_kvm(
    args: &RunArgs,
    mem: u64,
    (kernel, kernel_name): (Vec<u8>, PathBuf),
    program: &Program,
    added: &[Program],
    tree: &Tree,
    landmarks: &crate::debug::pgdump_svg::Machine,
) -> Result<i32> {
    // Here, not in try_run: a lab run prints them once, from its inner run.
    for note in programs::shadow_notes(added) {
        eprintln!("{note}");
    }
    let cfg = machine_config(args, mem, (kernel, kernel_name), program, added, tree);
    let report = machine::run(cfg)?;
    let mut results = crate::outputs::Results::of_report(&report);
    let mut wb = crate::writeback::after_run(args, tree, &report.outcome, report.dirout.as_deref());
    if args.stats {
        eprintln!("{}", report.stats_line());
        if let Some(line) = tree.stats_line(&wb.out_text()) {
            eprintln!("{line}");
        }
    }
    if let Some(export) = wb.take_export() {
        results.dirout = Some(export);
    }
    if let (Some(json), false) = (&results.stats_json, tree.entries.is_empty()) {
        results.stats_json = Some(wb.stats_json(json, tree));
    }
    crate::outputs::write(args, &results, landmarks)?;
    let status = wb.status(status_of(report.outcome, args.timeout));
    // The one-line error first (status_of), then the details.
    if let Some(crash) = &report.crash {
        eprintln!("{crash}");
    }
    Ok(status)
}

/// One boot on this host's KVM, as `args` asks: the kernel, the program archive (with the
/// `--add` files, a host program and the `--dir` trees) and argv as boot modules.
fn machine_config(
    args: &RunArgs,
    mem: u64,
    (kernel, kernel_name): (Vec<u8>, PathBuf),
    program: &Program,
    added: &[Program],
    tree: &Tree,
) -> MachineConfig {
    // `--dir …:rw` on this host's KVM: this process writes back at the end.
    let write_back = !crate::writeback::rw_specs(&args.dir).is_empty();
    let mut extra = added.to_vec();
    extra.extend(program.host_path.is_some().then(|| program.clone()));
    MachineConfig {
        kernel,
        kernel_name,
        mem,
        cmdline: kernel_cmdline(args),
        modules: vec![
            programs::archive_with_tree(&extra, &tree_entries(tree)),
            programs::argv_block(&first_argv(args, program)),
        ],
        user_programs: programs::archive_files(&extra)
            .into_iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect(),
        pgdump: PgdumpMode::new(args.pgdump, args.pgdump_svg.is_some()),
        // A debugging session takes as long as it takes.
        timeout: args.timeout_duration().filter(|_| args.gdb.is_none()),
        prefault: args.prefault,
        discard_stdout: false,
        gdb: args.gdb.clone(),
        cpus: args.cpus,
        confine: if args.no_seccomp {
            machine::Confine::Off
        } else if write_back {
            // The main thread writes the files back after the run: only the threads that
            // face the guest keep their filters (the write-back's calls are not in them).
            machine::Confine::VcpuThreads
        } else {
            machine::Confine::AllThreads
        },
    }
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

#[cfg(test)]
mod tests {

    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        crate::cli::parse_run(argv)
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

    #[test]
    fn outcomes_map_to_documented_statuses() {
        assert_eq!(status_of(Outcome::Exited(0x1_2a), 0), 42);
        assert_eq!(status_of(Outcome::TimedOut, 5), exit::TIMEOUT);
        assert_eq!(status_of(Outcome::Panicked(None), 0), exit::FAILURE);
        assert_eq!(status_of(Outcome::TripleFault, 0), exit::FAILURE);
        assert_eq!(status_of(Outcome::Failed("x".into()), 0), exit::FAILURE);
    }
}
