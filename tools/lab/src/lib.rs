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

pub mod assets;
pub mod bochs;
pub mod elf;
mod error;
pub mod initramfs;
pub mod iso;
pub mod kernel;
pub mod qemu;
pub mod qmp;
pub mod script;
mod streams;
mod tmp;
pub mod warm;

/// Set in the environment of the program a lab runs (so a `vmm` there knows it is inside the
/// lab: it draws no spinners, and its host-safety probe allows for the nested CPU).
pub const IN_LAB_ENV: &str = term::progress::LINES_ONLY_ENV;

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

pub use assets::{
    ensure_assets, lab_dir, parse_qemu_version, qemu_too_old_for_debugging, status, Assets,
    LabStatus, Vendor, QEMU_NESTED_DEBUG_MIN,
};
pub use error::LabError;
pub use tmp::sweep_stale;

use elf::LAB_LIB_DIR;
use initramfs::Cpio;
use qemu::{pump, LineSplitter, QemuGuard};
use script::{parse_marker, InitSpec, Marker};
use streams::{Counter, HostEnds, StdinSource, Wiring};

/// RAM the lab's own Linux gets on top of the program's guest.
pub const LAB_OVERHEAD_MIB: u64 = 512;
/// Console lines kept for error messages.
const CONSOLE_TAIL: usize = 60;
/// How long readers wait for a pipe's EOF after QEMU has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// After the program's exit, how long output may not advance (while we are not busy writing
/// it out) before the run fails as having lost output.
const OUTPUT_STALL: Duration = Duration::from_secs(15);

/// The program's stdin inside the lab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LabStdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// This process's stdin, streamed as it arrives (a pipe, a file, or a terminal: what is
    /// typed, as the terminal hands it over, line by line); its end is the program's end of
    /// input. The program starts without waiting for any.
    Inherit,
    /// A host file, streamed the same way.
    File(PathBuf),
}

/// One program run in the lab.
#[derive(Debug, Clone, Default)]
pub struct LabRequest {
    /// Host path of the static-or-dynamic x86_64 Linux binary to run inside the lab (normally
    /// `std::env::current_exe()` of vmm).
    pub program: PathBuf,
    /// Arguments passed to it (argv[1..]) inside the lab, verbatim (any bytes but NUL).
    pub args: Vec<OsString>,
    /// Extra host files to make available inside the lab: (host path, absolute path inside the
    /// lab). The caller rewrites its args to use the lab paths.
    pub files: Vec<(PathBuf, String)>,
    /// Environment variables to set inside (e.g. RUST_LOG).
    pub env: Vec<(String, String)>,
    /// The program's stdin (a virtio-serial port fed as input arrives, or `/dev/null`).
    pub stdin: LabStdin,
    /// Extra virtio-serial ports, each bridged to a TCP address on the host. For each
    /// `(NAME, ADDR)`, QEMU listens on ADDR from its start (not waiting for a client; one
    /// client at a time, later ones once it has gone; an address in use fails the run before
    /// boot with QEMU's message), and the program finds the port as `/dev/virtio-ports/NAME`,
    /// a character device to open read-write; bytes pass unchanged both ways. NAME: 1–64 of
    /// `[A-Za-z0-9._-]`, not starting with `.`, `-` or `lab.` (the lab's own ports).
    ///
    /// While no client is connected, a read returns 0 (end of file) at once, `poll` reports
    /// `POLLHUP` (without waking when one connects: poll again every few ms), and writes are
    /// dropped; `host_connected: 1` in `/sys/kernel/debug/virtio-ports/<device>` (the device
    /// `/dev/virtio-ports/NAME` links to) says one is there. After the client leaves, reads
    /// return what it sent, then 0 again.
    pub tcp_ports: Vec<(String, SocketAddr)>,
    /// The same bridges on Unix sockets: for each `(NAME, PATH)`, QEMU creates a listening
    /// socket at PATH (which must not exist; mode 0600: QEMU runs with umask 077) and the
    /// lab removes it once QEMU is gone. NAME as for [`LabRequest::tcp_ports`], unique across
    /// both lists.
    pub unix_ports: Vec<(String, PathBuf)>,
    /// Where on the host to write what the program leaves in [`script::RESULT_PATH`] inside
    /// the lab (text lines), once it has exited; nothing is written if it left nothing.
    pub result_file: Option<PathBuf>,
    /// Guest RAM the program will want (MiB); the lab VM gets enough on top of it.
    pub guest_mem_mib: u64,
    /// Overall bound for the lab run (boot + program); on expiry QEMU is killed and
    /// [`LabOutcome::TimedOut`] returned.
    pub timeout: Duration,
    /// A bound on the program's own run, from the moment it starts (on the host's clock, so
    /// nothing inside the lab can stretch it); on expiry as [`LabRequest::timeout`].
    pub run_timeout: Option<Duration>,
    /// Which lab: AMD (QEMU, kvm_amd; the default) or Intel (Bochs, kvm_intel; see [`bochs`]).
    pub vendor: Vendor,
}

/// How a lab run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabOutcome {
    /// The program exited with this status (0..=255; 128+N if killed by signal N).
    Exited(i32),
    /// The timeout expired; QEMU was killed.
    TimedOut,
    /// This process received this signal (see [`term::interrupt`]); QEMU was killed.
    Interrupted(i32),
}

/// Knobs for tests and experiments; [`run`] uses the defaults.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// QEMU `-cpu` model. Without `+svm`, kvm_amd cannot load (used to test that failure).
    pub cpu: String,
    /// Extra QEMU arguments, appended (for experiments, e.g. another `-bios`).
    pub extra_qemu_args: Vec<String>,
    /// How the machine starts.
    pub start: Start,
}

/// How a lab machine starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// Restored from the warm snapshot when the request allows (no TCP bridges, the default
    /// machine) and [`warm::WARM_ENV`] is not `0`; else booted.
    #[default]
    Auto,
    /// Always booted (what the warm start saves: `vmm bench lab`).
    Cold,
    /// Restored from the warm snapshot (built first if need be); a request that cannot
    /// start warm is an error.
    Warm,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            cpu: qemu::DEFAULT_CPU.to_string(),
            extra_qemu_args: Vec::new(),
            start: Start::Auto,
        }
    }
}

/// Paths inside the lab a request's files may not use.
const RESERVED: &[&str] = &[
    "init", "bin", "sbin", "dev", "proc", "sys", "lab/bin", "lab/lib",
];

fn check_ports(req: &LabRequest) -> Result<(), LabError> {
    let names: Vec<&String> = req
        .tcp_ports
        .iter()
        .map(|(n, _)| n)
        .chain(req.unix_ports.iter().map(|(n, _)| n))
        .collect();
    for (_, path) in &req.unix_ports {
        if path.symlink_metadata().is_ok() {
            return Err(LabError::InvalidRequest(format!(
                "{} exists: a Unix socket bridge is created anew (remove it or pick another path)",
                path.display()
            )));
        }
    }
    for (i, name) in names.iter().enumerate() {
        let why = if !qemu::valid_port_name(name) {
            "must be 1-64 of A-Z a-z 0-9 . _ - and not start with . or -"
        } else if name.starts_with(script::RESERVED_PORT_PREFIX) {
            "names starting with lab. are the lab's own"
        } else if names[..i].contains(name) {
            "is given twice"
        } else {
            continue;
        };
        return Err(LabError::InvalidRequest(format!(
            "port name {name:?} {why}"
        )));
    }
    Ok(())
}

fn check_request(req: &LabRequest) -> Result<(), LabError> {
    if let LabStdin::File(path) = &req.stdin {
        if !path.is_file() {
            return Err(LabError::InvalidRequest(format!(
                "stdin {} is not a readable file",
                path.display()
            )));
        }
    }
    check_ports(req)?;
    for (k, v) in &req.env {
        if !script::valid_env_name(k) {
            return Err(LabError::InvalidRequest(format!(
                "environment variable name {k:?} is not a valid shell name"
            )));
        }
        if v.contains('\0') {
            return Err(LabError::InvalidRequest(format!(
                "value of {k} contains NUL"
            )));
        }
    }
    for a in &req.args {
        if a.as_encoded_bytes().contains(&0) {
            return Err(LabError::InvalidRequest(format!(
                "argument {a:?} contains NUL"
            )));
        }
    }
    for (host, lab) in &req.files {
        let name =
            initramfs::archive_name(lab).map_err(|e| LabError::InvalidRequest(e.to_string()))?;
        if RESERVED
            .iter()
            .any(|r| name == *r || name.starts_with(&format!("{r}/")))
        {
            return Err(LabError::InvalidRequest(format!(
                "lab path {lab} is reserved (use e.g. /lab/files/...)"
            )));
        }
        if !host.is_file() {
            return Err(LabError::InvalidRequest(format!(
                "{} is not a readable file",
                host.display()
            )));
        }
    }
    if !req.program.is_file() {
        return Err(LabError::InvalidRequest(format!(
            "program {} not found",
            req.program.display()
        )));
    }
    Ok(())
}

/// The program of a request as the lab holds it: its path inside, what it needs, and the
/// environment it runs with.
pub(crate) struct Placed {
    /// `/lab/bin/NAME`.
    pub lab_program: String,
    /// Its interpreter and shared libraries.
    pub deps: elf::ProgramDeps,
    /// The request's variables, after `LD_LIBRARY_PATH` when the program needs libraries.
    pub env: Vec<(String, String)>,
}

/// Where `req.program` goes in the lab and what comes with it.
pub(crate) fn place(req: &LabRequest) -> Result<Placed, LabError> {
    let deps = elf::program_deps(&req.program)?;
    let name = req
        .program
        .file_name()
        .map(|n| n.to_string_lossy().replace(['/', '\n'], "_"))
        .unwrap_or_else(|| "program".to_string());
    let mut env = Vec::new();
    if !deps.libraries.is_empty() && !req.env.iter().any(|(k, _)| k == "LD_LIBRARY_PATH") {
        env.push(("LD_LIBRARY_PATH".to_string(), LAB_LIB_DIR.to_string()));
    }
    env.extend(req.env.iter().cloned());
    Ok(Placed {
        lab_program: format!("/lab/bin/{name}"),
        deps,
        env,
    })
}

/// The run's own script: its environment, arguments, streams and ports.
pub(crate) fn run_spec<'a>(
    req: &'a LabRequest,
    placed: &'a Placed,
    modules: &'a [String],
    args: &'a [&'a OsStr],
    extra_ports: &'a [String],
) -> InitSpec<'a> {
    InitSpec {
        modules,
        program: &placed.lab_program,
        args,
        env: &placed.env,
        stdin_port: req.stdin != LabStdin::Null,
        extra_ports,
    }
}

/// Writes an initramfs to `path`: the cached base, then an archive with `init`, the program
/// with its interpreter and libraries, and `files` (host path, lab path). Returns its size.
pub(crate) fn write_initrd(
    assets: &Assets,
    program: &Path,
    placed: &Placed,
    init: &[u8],
    files: &[(PathBuf, String)],
    path: &Path,
) -> Result<u64, LabError> {
    let werr = |e| LabError::io_path("writing", path, e);
    let mut out = private_file(path).map_err(werr)?;
    let mut base = fs::File::open(&assets.base_initrd)
        .map_err(|e| LabError::io_path("reading", &assets.base_initrd, e))?;
    io::copy(&mut base, &mut out).map_err(werr)?;
    let mut cpio = Cpio::new(BufWriter::new(out), &["bin", "dev", "lib"]);
    cpio.char_dev("/dev/console", 5, 1).map_err(werr)?;
    cpio.bytes("/init", 0o755, init).map_err(werr)?;
    add_file(&mut cpio, &placed.lab_program, program)?;
    let deps = &placed.deps;
    if let Some((interp, host)) = &deps.interpreter {
        add_file(&mut cpio, interp, host)?;
    }
    for (soname, host) in &deps.libraries {
        add_file(&mut cpio, &format!("{LAB_LIB_DIR}/{soname}"), host)?;
    }
    for (host, lab) in files {
        add_file(&mut cpio, lab, host)?;
    }
    let w = cpio.finish().map_err(werr)?;
    let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
    let size = f.metadata().map_err(werr)?.len();
    log::debug!(
        "lab: initramfs {} ({} KiB): {}, interpreter {:?}, {} libraries, {} files",
        path.display(),
        size / 1024,
        placed.lab_program,
        deps.interpreter.as_ref().map(|i| &i.0),
        deps.libraries.len(),
        files.len()
    );
    Ok(size)
}

/// Adds the host file `host` to `cpio` as `lab`.
pub(crate) fn add_file<W: Write>(
    cpio: &mut Cpio<W>,
    lab: &str,
    host: &Path,
) -> Result<(), LabError> {
    cpio.host_file(lab, host)
        .map_err(|e| LabError::io(format!("adding {} to the lab as {lab}", host.display()), e))
}

/// Writes a cold boot's initramfs for `req` to `path`. Returns its size.
fn build_initrd(assets: &Assets, req: &LabRequest, path: &Path) -> Result<u64, LabError> {
    let placed = place(req)?;
    let args: Vec<&OsStr> = req.args.iter().map(OsString::as_os_str).collect();
    let ports: Vec<String> = req
        .tcp_ports
        .iter()
        .map(|(n, _)| n.clone())
        .chain(req.unix_ports.iter().map(|(n, _)| n.clone()))
        .collect();
    let init = script::init_script(&run_spec(req, &placed, &assets.modules, &args, &ports));
    write_initrd(assets, &req.program, &placed, &init, &req.files, path)
}

/// Creates `path` anew (never following or reusing what is there), readable by us alone: the
/// initramfs holds the program and its input.
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

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
    let qemu_bin = assets::find_qemu()?;
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

/// Starts QEMU (`cmd`, with `wiring`'s descriptors) and watches the run to its end; a warm
/// start's `request` is sent once the machine runs.
#[allow(clippy::too_many_arguments)]
fn spawn_and_supervise(
    cmd: Command,
    wiring: Wiring,
    request: Option<&[u8]>,
    stdin: Option<&StdinSource>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
    req: &LabRequest,
    start: Instant,
) -> Result<Watched, LabError> {
    log::debug!("lab: {cmd:?}");
    let prepared = start.elapsed();
    let spawned_at = Instant::now();
    let program = cmd.get_program().to_owned();
    let mut guard = QemuGuard::spawn(cmd, &wiring.qemu_fds())
        .map_err(|e| LabError::io_path("starting", Path::new(&program), e))?;
    let host = wiring.into_host_ends();
    let limits = Limits {
        deadline: start + req.timeout,
        run_timeout: req.run_timeout,
        restore_by: request.map(|_| spawned_at + warm::RESTORE_LIMIT),
    };
    let watched = supervise(&mut guard, host, request, stdin, stdout, stderr, &limits);
    log_timings(&watched, spawned_at, prepared);
    Ok(watched)
}

/// The bounds of one run.
struct Limits {
    /// The whole run's end ([`LabRequest::timeout`]).
    deadline: Instant,
    /// How long the program may run once started ([`LabRequest::run_timeout`]).
    run_timeout: Option<Duration>,
    /// A warm start: when the machine must have reported its restore.
    restore_by: Option<Instant>,
}

/// How the watch over QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// QEMU exited by itself (with this status, if known).
    QemuExited(Option<ExitStatus>),
    /// The program exited and all the output it sent has arrived; we stopped QEMU.
    Delivered,
    /// The run's deadline passed.
    TimedOut,
    /// A signal came, or writing our output failed.
    Stopped,
    /// After the program's exit, output stopped arriving short of what it sent.
    Stalled,
    /// A warm start's machine did not report its restore in time.
    NotRestored,
    /// The program ran past [`LabRequest::run_timeout`].
    RanTooLong,
}

/// What the threads of one run share.
#[derive(Default)]
pub(crate) struct Shared {
    /// QEMU is gone: readers stop at the next quiet moment, the stdin feeder stops.
    pub done: AtomicBool,
    /// The machine runs the request (always, for a cold boot): stdin may flow.
    restored: AtomicBool,
    output_failed: Mutex<Option<LabError>>,
    pub console_tail: Mutex<VecDeque<String>>,
    qemu_err: Mutex<String>,
    out: Counter,
    err: Counter,
}

/// What watching one QEMU run gathered.
struct Watched {
    ending: Ending,
    markers: Vec<(Instant, Marker)>,
    console_tail: Vec<String>,
    qemu_err: String,
    output_failed: Option<LabError>,
    received: (u64, u64),
}

impl Watched {
    /// What a run's threads left in `shared`, once they are all joined.
    pub(crate) fn gather(ending: Ending, markers: Vec<(Instant, Marker)>, shared: Shared) -> Self {
        Watched {
            ending,
            markers,
            console_tail: shared.console_tail.into_inner().unwrap().into(),
            qemu_err: shared.qemu_err.into_inner().unwrap(),
            output_failed: shared.output_failed.into_inner().unwrap(),
            received: (shared.out.bytes(), shared.err.bytes()),
        }
    }

    /// Whether the machine reported that it runs the request (a warm start's restore).
    fn restored(&self) -> bool {
        self.markers
            .iter()
            .any(|(_, m)| matches!(m, Marker::Stage(s) if s == warm::RESTORED_STAGE))
    }
}

/// Runs the readers, the stdin feeder (and for a warm start, the request's sender) and the
/// watch until QEMU is gone (every thread joined).
fn supervise(
    guard: &mut QemuGuard,
    host: HostEnds,
    request: Option<&[u8]>,
    stdin: Option<&StdinSource>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
    limits: &Limits,
) -> Watched {
    let qemu_stderr = guard.take_stderr();
    let shared = Shared::default();
    shared.restored.store(request.is_none(), Ordering::Release);
    let (tx, rx) = mpsc::channel::<(Instant, Marker)>();
    let mut markers = Vec::new();
    let HostEnds {
        console,
        control,
        stdout: out_r,
        stderr: err_r,
        stdin: stdin_sock,
        request: request_sock,
    } = host;
    // The go-ahead goes in on the control socket; markers come out of a copy of it.
    let go = match (request, control.try_clone()) {
        (Some(_), Ok(c)) => Some(c),
        (Some(_), Err(e)) => {
            log::warn!("lab: cannot copy the control socket: {e}");
            None
        }
        (None, _) => None,
    };
    let ending = std::thread::scope(|s| {
        let sh = &shared;
        s.spawn(move || read_console(console, sh));
        s.spawn(move || read_control(control, sh, tx));
        s.spawn(move || forward(out_r, stdout, "stdout", &sh.out, sh));
        s.spawn(move || forward(err_r, stderr, "stderr", &sh.err, sh));
        if let Some(e) = qemu_stderr {
            s.spawn(move || read_qemu_stderr(e, sh));
        }
        if let (Some(data), Some(sock), Some(go)) = (request, request_sock.as_ref(), go) {
            s.spawn(move || warm::send_request(go, sock, data, &sh.done));
        }
        match (stdin, stdin_sock.as_ref()) {
            (Some(src), Some(sock)) => {
                s.spawn(move || {
                    if wait_flag(&sh.restored, &sh.done) {
                        streams::feed_stdin(src, sock, &sh.done)
                    }
                });
            }
            // A warm machine always has a stdin port: with no input it reads end of input.
            (None, Some(sock)) => streams::shut_write(sock),
            _ => {}
        }
        let ending = watch(guard, &rx, &mut markers, limits, sh);
        guard.kill(); // reaps (it has exited, or is killed now)
        sh.done.store(true, Ordering::Release);
        ending
    });
    // All threads are joined: every marker sent is in the channel.
    markers.extend(rx.try_iter());
    // Only now: closing the stdin socket while QEMU ran could lose what it had not read.
    drop(stdin_sock);
    drop(request_sock);
    Watched::gather(ending, markers, shared)
}

/// Waits until `flag` is set (true) or `done` is (false), in short steps.
fn wait_flag(flag: &AtomicBool, done: &AtomicBool) -> bool {
    while !flag.load(Ordering::Acquire) {
        if done.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// When the program started (the `exec` stage), if it has.
fn program_started(markers: &[(Instant, Marker)]) -> Option<Instant> {
    markers.iter().find_map(|(t, m)| match m {
        Marker::Stage(s) if s == "exec" => Some(*t),
        _ => None,
    })
}

/// Waits (in 10 ms steps) until QEMU exits, the program's output has all arrived, a limit
/// passes (the deadline, the program's own time, a warm restore's), a signal comes or our
/// output fails; collects the markers meanwhile.
fn watch(
    guard: &mut QemuGuard,
    rx: &mpsc::Receiver<(Instant, Marker)>,
    markers: &mut Vec<(Instant, Marker)>,
    limits: &Limits,
    sh: &Shared,
) -> Ending {
    let mut draining = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(m) => {
                if matches!(&m.1, Marker::Stage(s) if s == warm::RESTORED_STAGE) {
                    sh.restored.store(true, Ordering::Release);
                }
                markers.push(m)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(10))
            }
        }
        if let Some(sent) = sent_at_exit(markers) {
            if let Some(ending) = drained(sent, sh, &mut draining) {
                return ending;
            }
        }
        match guard.try_wait() {
            Ok(Some(st)) => return Ending::QemuExited(Some(st)),
            Ok(None) => {}
            Err(e) => {
                log::warn!("lab: waiting for QEMU: {e}");
                return Ending::QemuExited(None);
            }
        }
        let now = Instant::now();
        if now >= limits.deadline {
            return Ending::TimedOut;
        }
        if let (Some(t), Some(limit)) = (program_started(markers), limits.run_timeout) {
            if now >= t + limit {
                log::info!("lab: the program ran past its own time ({limit:?}); stopping the lab");
                return Ending::RanTooLong;
            }
        }
        if let Some(by) = limits.restore_by {
            if now >= by && !sh.restored.load(Ordering::Acquire) {
                return Ending::NotRestored;
            }
        }
        if term::interrupt::pending().is_some() || sh.output_failed.lock().unwrap().is_some() {
            return Ending::Stopped;
        }
    }
}

/// What the program's output ports sent, once its exit has been reported too.
fn sent_at_exit(markers: &[(Instant, Marker)]) -> Option<(u64, u64)> {
    let exited = markers.iter().any(|(_, m)| matches!(m, Marker::Exit(_)));
    markers.iter().find_map(|(_, m)| match m {
        Marker::Sent { stdout, stderr } if exited => Some((*stdout, *stderr)),
        _ => None,
    })
}

/// After the program's exit: `Delivered` once all it `sent` has arrived, `Stalled` when
/// nothing more has come for [`OUTPUT_STALL`] while we were not busy writing it out.
/// `since` remembers when the received total last changed.
fn drained(sent: (u64, u64), sh: &Shared, since: &mut Option<(Instant, u64)>) -> Option<Ending> {
    let got = (sh.out.bytes(), sh.err.bytes());
    if got.0 >= sent.0 && got.1 >= sent.1 {
        return Some(Ending::Delivered);
    }
    let total = got.0 + got.1;
    let busy = sh.out.writing() || sh.err.writing();
    match since {
        Some((t, seen)) if *seen == total && !busy => {
            (t.elapsed() >= OUTPUT_STALL).then_some(Ending::Stalled)
        }
        _ => {
            *since = Some((Instant::now(), total));
            None
        }
    }
}

/// The lab's console: logged at debug level, the tail kept for error messages.
pub(crate) fn read_console(fd: std::os::fd::OwnedFd, sh: &Shared) {
    let mut split = LineSplitter::default();
    let mut on_line = |l: &str| {
        log::debug!("lab console: {l}");
        let mut t = sh.console_tail.lock().unwrap();
        if t.len() == CONSOLE_TAIL {
            t.pop_front();
        }
        t.push_back(l.to_string());
    };
    pump(fd, &sh.done, PIPE_GRACE, |d| split.feed(d, &mut on_line));
    split.finish(on_line);
}

/// The control channel: markers, each sent to `tx` with the time it arrived.
pub(crate) fn read_control(
    fd: std::os::fd::OwnedFd,
    sh: &Shared,
    tx: mpsc::Sender<(Instant, Marker)>,
) {
    let mut split = LineSplitter::default();
    let on_line = |l: &str| {
        log::debug!("lab control: {l}");
        if let Some(m) = parse_marker(l) {
            let _ = tx.send((Instant::now(), m));
        }
    };
    pump(fd, &sh.done, PIPE_GRACE, |d| split.feed(d, on_line));
    split.finish(on_line);
}

/// QEMU's own stderr (it closes when QEMU exits or is killed), kept for error messages.
pub(crate) fn read_qemu_stderr(mut e: std::process::ChildStderr, sh: &Shared) {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while let Ok(n) = e.read(&mut buf) {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        log::debug!("lab qemu stderr: {}", text.trim_end());
        let mut q = sh.qemu_err.lock().unwrap();
        if q.len() < 64 * 1024 {
            q.push_str(&text);
        }
    }
}

/// The stage timings at info level.
fn log_timings(w: &Watched, spawned_at: Instant, prepared: Duration) {
    let at = |t: &Instant| format!("{:.2}s", (*t - spawned_at).as_secs_f64());
    let stage = |name: &str| {
        w.markers
            .iter()
            .find_map(|(t, m)| matches!(m, Marker::Stage(s) if s == name).then(|| at(t)))
            .unwrap_or_else(|| "-".into())
    };
    let exited = w
        .markers
        .iter()
        .find_map(|(t, m)| matches!(m, Marker::Exit(_)).then(|| at(t)))
        .unwrap_or_else(|| "-".into());
    log::info!(
        "lab: prepared in {:.2}s; after QEMU start: init {}, kvm ready {}, restored {}, program started {}, exit reported {exited}, QEMU gone {:.2}s ({:?})",
        prepared.as_secs_f64(),
        stage("init"),
        stage("kvm"),
        stage(warm::RESTORED_STAGE),
        stage("exec"),
        spawned_at.elapsed().as_secs_f64(),
        w.ending
    );
}

/// Every byte the program's ports sent must have arrived (after a normal end).
fn check_delivered(w: &Watched) -> Result<(), LabError> {
    let sent = w.markers.iter().find_map(|(_, m)| match m {
        Marker::Sent { stdout, stderr } => Some((*stdout, *stderr)),
        _ => None,
    });
    let Some(sent) = sent else { return Ok(()) };
    for (stream, got, want) in [
        ("stdout", w.received.0, sent.0),
        ("stderr", w.received.1, sent.1),
    ] {
        if got < want {
            return Err(LabError::OutputLost {
                stream,
                received: got,
                sent: want,
            });
        }
    }
    Ok(())
}

/// The run's result from what was watched.
fn conclude(req: &LabRequest, w: Watched) -> Result<LabOutcome, LabError> {
    if let Some(e) = w.output_failed {
        return Err(e);
    }
    if w.ending == Ending::RanTooLong {
        return Ok(LabOutcome::TimedOut);
    }
    if w.ending == Ending::TimedOut {
        log::warn!(
            "lab: timed out after {:?}; console tail: {}",
            req.timeout,
            error::quote_tail(&w.console_tail)
        );
        return Ok(LabOutcome::TimedOut);
    }
    if let Some(sig) = term::interrupt::pending() {
        return Ok(LabOutcome::Interrupted(sig));
    }
    check_delivered(&w)?;
    let results: Vec<&str> = w
        .markers
        .iter()
        .filter_map(|(_, m)| match m {
            Marker::Result(l) => Some(l.as_str()),
            _ => None,
        })
        .collect();
    if let (Some(path), false) = (&req.result_file, results.is_empty()) {
        fs::write(path, results.join("\n") + "\n")
            .map_err(|e| LabError::io_path("writing", path, e))?;
    }
    for (_, m) in &w.markers {
        match m {
            Marker::Exit(code) => return Ok(LabOutcome::Exited(*code)),
            Marker::Fail(reason) => {
                return Err(LabError::KvmUnavailable {
                    reason: reason.clone(),
                    console_tail: w.console_tail,
                })
            }
            Marker::Stage(_) | Marker::Result(_) | Marker::Sent { .. } => {}
        }
    }
    match w.ending {
        Ending::QemuExited(Some(st)) if !st.success() && w.markers.is_empty() => {
            Err(LabError::QemuFailed {
                status: st.to_string(),
                stderr: w.qemu_err,
            })
        }
        _ => Err(LabError::NoExitStatus {
            console_tail: w.console_tail,
        }),
    }
}

/// Forwards a program output pipe to `sink`, flushing after each chunk and counting what
/// arrived in `count`. A failing sink (a closed pipe, a full disk) is recorded in
/// `sh.output_failed`, which stops the run.
fn forward(
    fd: std::os::fd::OwnedFd,
    sink: &mut (dyn Write + Send),
    stream: &'static str,
    count: &Counter,
    sh: &Shared,
) {
    let mut broken = false;
    pump(fd, &sh.done, PIPE_GRACE, |d| {
        count.received(d.len());
        if !broken {
            if let Err(source) = sink.write_all(d).and_then(|()| sink.flush()) {
                broken = true;
                sh.output_failed
                    .lock()
                    .unwrap()
                    .get_or_insert(LabError::Output { stream, source });
            }
        }
        count.written();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> LabRequest {
        LabRequest {
            program: std::env::current_exe().unwrap(),
            args: vec![],
            files: vec![],
            guest_mem_mib: 16,
            timeout: Duration::from_secs(1),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(check_request(&req()).is_ok());
        let mut r = req();
        r.env.push(("BAD-NAME".into(), "x".into()));
        assert!(matches!(
            check_request(&r),
            Err(LabError::InvalidRequest(_))
        ));
        let mut r = req();
        r.files.push((r.program.clone(), "/init".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files.push((r.program.clone(), "/lab/lib/x".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files.push((r.program.clone(), "relative".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files
            .push((r.program.clone(), "/lab/files/kernel".into()));
        assert!(check_request(&r).is_ok());
        let mut r = req();
        r.program = "/nonexistent".into();
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.stdin = LabStdin::File("/nonexistent".into());
        assert!(check_request(&r).is_err());
        r.stdin = LabStdin::File(r.program.clone());
        assert!(check_request(&r).is_ok());
    }

    #[test]
    fn tcp_port_names_are_checked() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let with = |names: &[&str]| {
            let mut r = req();
            r.tcp_ports = names.iter().map(|n| (n.to_string(), addr)).collect();
            check_request(&r).map_err(|e| e.to_string())
        };
        assert!(with(&["gdb", "x.y-z_1"]).is_ok());
        let err = with(&["lab.stdin"]).unwrap_err();
        assert!(err.contains("lab's own"), "{err}");
        assert!(with(&["gdb", "gdb"]).unwrap_err().contains("twice"));
        assert!(with(&["a,b"]).unwrap_err().contains("must be"));
        assert!(with(&[""]).is_err());
    }
}
