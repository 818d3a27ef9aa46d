//! The nested-KVM lab: run a Linux program where `/dev/kvm` is a real, hardware-style KVM.
//!
//! This machine's `/dev/kvm` (kvm_pvm) cannot run legacy 32-bit paging guests. The lab boots a
//! Debian kernel in QEMU TCG on an emulated AMD CPU with SVM and nested paging; its `kvm_amd`
//! gives a real `/dev/kvm`, and the program (normally the `vmm` binary itself) runs there.
//!
//! ```no_run
//! use std::time::Duration;
//! let req = lab::LabRequest {
//!     program: std::env::current_exe().unwrap(),
//!     args: vec!["--engine".into(), "kvm".into()],
//!     files: vec![],
//!     env: vec![("RUST_LOG".into(), "info".into())],
//!     stdin: lab::LabStdin::Inherit,
//!     guest_mem_mib: 256,
//!     timeout: Duration::from_secs(120),
//!     ..Default::default()
//! };
//! match lab::run(&req) {
//!     Ok(lab::LabOutcome::Exited(code)) => std::process::exit(code),
//!     Ok(lab::LabOutcome::TimedOut) => eprintln!("lab timed out"),
//!     Ok(lab::LabOutcome::Interrupted(sig)) => std::process::exit(128 + sig),
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```
//!
//! How a run goes ([`run_with`]):
//! 1. [`ensure_assets`] (cached kernel + base initramfs; fetched with apt the first time);
//! 2. an initramfs = the cached base + a per-run archive: the generated `/init`
//!    ([`script::init_script`]), the program at `/lab/bin/NAME`, its ELF interpreter at its own
//!    path and its shared libraries in `/lab/lib` ([`elf::program_deps`]), the request's files;
//! 3. QEMU (`-accel tcg -cpu qemu64,+svm,+npt`, RAM = `guest_mem_mib` + 512 MiB + the
//!    initramfs) with two serial ports on pipes (console, control markers) and virtio-serial
//!    ports for the program's stdout, stderr and stdin and the request's TCP bridges (see
//!    [`script`] and [`qemu`]);
//! 4. init loads the KVM and virtio modules, checks `/dev/kvm`, runs the program, reports what
//!    its output ports sent and its exit status; we stop QEMU once that output has arrived.
//!    Output is streamed to our stdout/stderr as it arrives, byte for byte, and stdin is fed
//!    in as it arrives (the program starts at once, whether or not any input has come).
//!
//! `RUST_LOG=debug` shows the QEMU command line and the lab's console; `info` shows timings.

pub mod apt;
pub mod assets;
pub mod bochs;
pub mod elf;
mod error;
pub mod initramfs;
pub mod iso;
pub mod kernel;
mod payload;
pub mod qemu;
pub mod qmp;
mod request;
pub mod script;
pub mod status;
mod streams;
mod supervise;
mod tmp;
pub mod warm;

/// Set in the environment of the program a lab runs (so a `vmm` there knows it is inside the
/// lab: it draws no spinners, and its host-safety probe allows for the nested CPU).
pub const IN_LAB_ENV: &str = term::progress::LINES_ONLY_ENV;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub use assets::{ensure_assets, lab_dir, Assets, Vendor};
pub use error::LabError;
pub use qemu::{parse_qemu_version, qemu_too_old_for_debugging, QEMU_NESTED_DEBUG_MIN};
pub use request::{
    LabOptions, LabOutcome, LabRequest, LabStdin, Start, COLLECT_MAX, LAB_OVERHEAD_MIB,
};
pub use status::{status, LabStatus};
pub use tmp::sweep_stale;

use payload::{build_initrd, run_spec, Placed};
use request::check_request;
use streams::{StdinSource, Wiring};
use supervise::{conclude, spawn_and_supervise, Ending};

/// Runs `req.program` in the lab, streaming its stdout to our stdout and its stderr to our
/// stderr as it arrives. See [`run_with`].
pub fn run(req: &LabRequest) -> Result<LabOutcome, LabError> {
    let mut out = io::stdout();
    let mut err = io::stderr();
    run_with(req, &mut out, &mut err)
}

/// Runs `req.program` in the lab, writing its stdout to `stdout` and its stderr to `stderr`
/// (each flushed after every chunk), and returns its exit status.
///
/// Errors: the lab could not be prepared or started, KVM did not come up inside it (the error
/// quotes the lab console's tail), or the lab stopped without reporting a status. A program that
/// fails is not an error: its status is returned.
pub fn run_with(
    req: &LabRequest,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> Result<LabOutcome, LabError> {
    run_with_options(req, &LabOptions::default(), stdout, stderr)
}

/// [`run_with`] with non-default [`LabOptions`].
pub fn run_with_options(
    req: &LabRequest,
    opts: &LabOptions,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> Result<LabOutcome, LabError> {
    if req.vendor == Vendor::Intel {
        return bochs::run(req, stdout, stderr);
    }
    let start = Instant::now();
    check_request(req)?;
    let stdin = StdinSource::open(&req.stdin)?;
    let qemu_bin = qemu::find_qemu()?;
    let assets = ensure_assets()?;
    tmp::sweep_stale(&std::env::temp_dir(), "xv6-lab-");
    if warm::wanted(req, opts) {
        match warm::ensure(&qemu_bin, &assets, req) {
            Ok((snap, placed)) => {
                // The run's bounds start now: a first run's build has bounds of its own.
                let now = Instant::now();
                let stdin = stdin.as_ref();
                match run_warm(&qemu_bin, &snap, &placed, req, stdin, stdout, stderr, now) {
                    Err(LabError::RestoreFailed(why)) => {
                        eprintln!("lab: the warm start failed ({why}); booting cold");
                        warm::discard(&snap, &why);
                    }
                    other => return other,
                }
            }
            Err(e) => eprintln!("lab: no warm start ({e}); booting cold"),
        }
    } else if opts.start == Start::Warm {
        return Err(LabError::InvalidRequest(
            "this request cannot start warm (TCP bridges or a non-default machine)".into(),
        ));
    }
    // After a warm attempt, the cold boot gets the whole bound.
    let start = if warm::wanted(req, opts) {
        Instant::now()
    } else {
        start
    };
    run_cold(
        &qemu_bin,
        &assets,
        req,
        opts,
        stdin.as_ref(),
        stdout,
        stderr,
        start,
    )
}

/// A lab run on a freshly booted machine.
#[allow(clippy::too_many_arguments)]
fn run_cold(
    qemu_bin: &Path,
    assets: &Assets,
    req: &LabRequest,
    opts: &LabOptions,
    stdin: Option<&StdinSource>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
    start: Instant,
) -> Result<LabOutcome, LabError> {
    let tmp = tmp::TempDir::new_in(&std::env::temp_dir(), "xv6-lab-")?;
    let initrd = tmp.path().join("initrd.cpio");
    let initrd_size = build_initrd(assets, req, &initrd)?;
    let wiring = Wiring::new(stdin.is_some(), &req.tcp_ports, &req.unix_ports)?;
    let machine = qemu::Machine {
        kernel: &assets.kernel,
        initrd: &initrd,
        bios: qemu::fast_bios(),
        cpu: &opts.cpu,
        cpus: req.machine_cpus(),
        mem_mib: req.guest_mem_mib + LAB_OVERHEAD_MIB + 2 * initrd_size.div_ceil(1 << 20),
        serials: &wiring.serials(),
        ports: &wiring.ports(),
        qmp: None,
        incoming: None,
    };
    let mut cmd = Command::new(qemu_bin);
    cmd.args(machine.args())
        .args(&opts.extra_qemu_args)
        .stderr(Stdio::piped());
    let watched = spawn_and_supervise(cmd, wiring, None, stdin, stdout, stderr, req, start);
    // QEMU is gone (killed, never cleaning up): its Unix sockets go too.
    for (_, path) in &req.unix_ports {
        use std::os::unix::fs::FileTypeExt;
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_socket())
        {
            let _ = fs::remove_file(path);
        }
    }
    let watched = watched?;
    drop(tmp);
    conclude(req, watched)
}

/// A lab run on a machine restored from `snap` (see [`warm`]): the run's script and files
/// travel as a request archive. A machine that does not come back from the snapshot is
/// [`LabError::RestoreFailed`], with nothing of the run's stdin consumed.
#[allow(clippy::too_many_arguments)]
fn run_warm(
    qemu_bin: &Path,
    snap: &warm::Snapshot,
    placed: &Placed,
    req: &LabRequest,
    stdin: Option<&StdinSource>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
    start: Instant,
) -> Result<LabOutcome, LabError> {
    let args: Vec<&OsStr> = req.args.iter().map(OsString::as_os_str).collect();
    let run = script::run_script(&run_spec(req, placed, &[], &args, &[]));
    let request = warm::request_archive(&run, &req.files)?;
    let wiring = Wiring::warm()?;
    let mut cmd = Command::new(qemu_bin);
    cmd.args(snap.machine(&wiring.serials(), &wiring.ports()).args())
        .stderr(Stdio::piped());
    let watched = spawn_and_supervise(
        cmd,
        wiring,
        Some(&request),
        stdin,
        stdout,
        stderr,
        req,
        start,
    )?;
    if !watched.restored() {
        let why = match watched.ending {
            Ending::NotRestored => "the machine did not come back in time".to_string(),
            _ => error::last_line(&watched.qemu_err)
                .unwrap_or("QEMU stopped")
                .to_string(),
        };
        let timed_out = matches!(watched.ending, Ending::TimedOut | Ending::RanTooLong);
        if term::interrupt::pending().is_none() && !timed_out {
            return Err(LabError::RestoreFailed(why));
        }
    }
    conclude(req, watched)
}
