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
//!     stdin: None,
//!     result_file: None,
//!     guest_mem_mib: 256,
//!     timeout: Duration::from_secs(120),
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
//!    initramfs) with four serial ports on pipes: console, program stdout, program stderr,
//!    control markers (see [`script`]);
//! 4. init loads the KVM modules, checks `/dev/kvm`, runs the program (stdin `/dev/null` or a shipped file), reports
//!    its exit status and powers off. Output is streamed to our stdout/stderr as it arrives,
//!    byte for byte.
//!
//! `RUST_LOG=debug` shows the QEMU command line and the lab's console; `info` shows timings.

pub mod assets;
pub mod elf;
mod error;
pub mod initramfs;
pub mod interrupt;
pub mod kernel;
pub mod progress;
pub mod qemu;
pub mod script;
mod tmp;

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

pub use assets::{ensure_assets, lab_dir, status, Assets, LabStatus};
pub use error::LabError;
pub use tmp::sweep_stale;

use elf::LAB_LIB_DIR;
use initramfs::Cpio;
use qemu::{pump, LineSplitter, QemuGuard};
use script::{parse_marker, InitSpec, Marker};

/// RAM the lab's own Linux gets on top of the program's guest.
pub const LAB_OVERHEAD_MIB: u64 = 512;
/// Console lines kept for error messages.
const CONSOLE_TAIL: usize = 60;
/// How long readers wait for a pipe's EOF after QEMU has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// One program run in the lab.
#[derive(Debug, Clone)]
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
    /// The program's stdin: the lab path of one of `files`; `None` gives `/dev/null`.
    /// (A serial line cannot carry an end of input, so stdin is shipped whole, not streamed.)
    pub stdin: Option<String>,
    /// Where on the host to write what the program leaves in [`script::RESULT_PATH`] inside
    /// the lab (text lines), once it has exited; nothing is written if it left nothing.
    pub result_file: Option<PathBuf>,
    /// Guest RAM the program will want (MiB); the lab VM gets enough on top of it.
    pub guest_mem_mib: u64,
    /// Overall bound for the lab run (boot + program); on expiry QEMU is killed and
    /// [`LabOutcome::TimedOut`] returned.
    pub timeout: Duration,
}

/// How a lab run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabOutcome {
    /// The program exited with this status (0..=255; 128+N if killed by signal N).
    Exited(i32),
    /// The timeout expired; QEMU was killed.
    TimedOut,
    /// This process received this signal (see [`interrupt`]); QEMU was killed.
    Interrupted(i32),
}

/// Knobs for tests and experiments; [`run`] uses the defaults.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// QEMU `-cpu` model. Without `+svm`, kvm_amd cannot load (used to test that failure).
    pub cpu: String,
    /// Extra QEMU arguments, appended (for experiments, e.g. another `-bios`).
    pub extra_qemu_args: Vec<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            cpu: qemu::DEFAULT_CPU.to_string(),
            extra_qemu_args: Vec::new(),
        }
    }
}

/// Paths inside the lab a request's files may not use.
const RESERVED: &[&str] = &[
    "init", "bin", "sbin", "dev", "proc", "sys", "lab/bin", "lab/lib",
];

fn check_request(req: &LabRequest) -> Result<(), LabError> {
    if let Some(stdin) = &req.stdin {
        if !req.files.iter().any(|(_, lab)| lab == stdin) {
            return Err(LabError::InvalidRequest(format!(
                "stdin {stdin} is not one of the request's files"
            )));
        }
    }
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

/// Writes the initramfs for `req` to `path`: the cached base, then the per-run archive.
/// Returns its size.
fn build_initrd(assets: &Assets, req: &LabRequest, path: &Path) -> Result<u64, LabError> {
    let deps = elf::program_deps(&req.program)?;
    let name = req
        .program
        .file_name()
        .map(|n| n.to_string_lossy().replace(['/', '\n'], "_"))
        .unwrap_or_else(|| "program".to_string());
    let lab_program = format!("/lab/bin/{name}");
    let mut env = Vec::new();
    if !deps.libraries.is_empty() && !req.env.iter().any(|(k, _)| k == "LD_LIBRARY_PATH") {
        env.push(("LD_LIBRARY_PATH".to_string(), LAB_LIB_DIR.to_string()));
    }
    env.extend(req.env.iter().cloned());
    let args: Vec<&OsStr> = req.args.iter().map(OsString::as_os_str).collect();
    let init = script::init_script(&InitSpec {
        modules: &assets.modules,
        program: &lab_program,
        args: &args,
        env: &env,
        stdin: req.stdin.as_deref(),
    });

    let werr = |e| LabError::io_path("writing", path, e);
    let mut out = private_file(path).map_err(werr)?;
    let mut base = fs::File::open(&assets.base_initrd)
        .map_err(|e| LabError::io_path("reading", &assets.base_initrd, e))?;
    io::copy(&mut base, &mut out).map_err(werr)?;
    let mut cpio = Cpio::new(BufWriter::new(out), &["bin", "dev", "lib"]);
    cpio.char_dev("/dev/console", 5, 1).map_err(werr)?;
    cpio.bytes("/init", 0o755, &init).map_err(werr)?;
    let add = |cpio: &mut Cpio<_>, lab: &str, host: &Path| {
        cpio.host_file(lab, host)
            .map_err(|e| LabError::io(format!("adding {} to the lab as {lab}", host.display()), e))
    };
    add(&mut cpio, &lab_program, &req.program)?;
    if let Some((interp, host)) = &deps.interpreter {
        add(&mut cpio, interp, host)?;
    }
    for (soname, host) in &deps.libraries {
        add(&mut cpio, &format!("{LAB_LIB_DIR}/{soname}"), host)?;
    }
    for (host, lab) in &req.files {
        add(&mut cpio, lab, host)?;
    }
    let w = cpio.finish().map_err(werr)?;
    let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
    let size = f.metadata().map_err(werr)?.len();
    log::debug!(
        "lab: initramfs {} ({} KiB): {lab_program}, interpreter {:?}, {} libraries, {} files",
        path.display(),
        size / 1024,
        deps.interpreter.as_ref().map(|i| &i.0),
        deps.libraries.len(),
        req.files.len()
    );
    Ok(size)
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
    let start = Instant::now();
    let deadline = start + req.timeout;
    check_request(req)?;
    let qemu_bin = assets::find_qemu()?;
    let assets = ensure_assets()?;

    tmp::sweep_stale(&std::env::temp_dir(), "xv6-lab-");
    let tmp = tmp::TempDir::new_in(&std::env::temp_dir(), "xv6-lab-")?;
    let initrd = tmp.path().join("initrd.cpio");
    let initrd_size = build_initrd(&assets, req, &initrd)?;
    let mem = req.guest_mem_mib + LAB_OVERHEAD_MIB + 2 * initrd_size.div_ceil(1 << 20);

    let mut pipes = Vec::new();
    for _ in 0..4 {
        pipes.push(qemu::pipe().map_err(|e| LabError::io("creating a pipe", e))?);
    }
    let write_fds: Vec<_> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
    let mut cmd = Command::new(&qemu_bin);
    cmd.args(qemu::qemu_args(
        &assets.kernel,
        &initrd,
        qemu::fast_bios(),
        &opts.cpu,
        mem,
        &write_fds,
    ))
    .args(&opts.extra_qemu_args)
    .stderr(Stdio::piped());
    log::debug!("lab: {cmd:?}");
    let prepared = start.elapsed();
    let spawned_at = Instant::now();
    let mut guard = QemuGuard::spawn(cmd, &write_fds)
        .map_err(|e| LabError::io_path("starting", &qemu_bin, e))?;
    let qemu_stderr = guard.take_stderr();
    // Our copies of the write ends must go, or the readers never see EOF.
    let mut readers = Vec::new();
    for (r, w) in pipes {
        drop(w);
        readers.push(r);
    }
    let [console_r, out_r, err_r, ctl_r]: [_; 4] = readers.try_into().expect("four pipes");

    let done = AtomicBool::new(false);
    let output_failed = Mutex::new(None::<LabError>);
    let console_tail = Mutex::new(VecDeque::<String>::new());
    let qemu_err = Mutex::new(String::new());
    let (tx, rx) = mpsc::channel::<(Instant, Marker)>();
    let mut markers: Vec<(Duration, Marker)> = Vec::new();

    let (timed_out, qemu_status) = std::thread::scope(|s| {
        let done = &done;
        s.spawn(|| {
            let mut split = LineSplitter::default();
            let mut on_line = |l: &str| {
                log::debug!("lab console: {l}");
                let mut t = console_tail.lock().unwrap();
                if t.len() == CONSOLE_TAIL {
                    t.pop_front();
                }
                t.push_back(l.to_string());
            };
            pump(console_r, done, PIPE_GRACE, |d| split.feed(d, &mut on_line));
            split.finish(on_line);
        });
        s.spawn(move || {
            let mut split = LineSplitter::default();
            let on_line = |l: &str| {
                log::debug!("lab control: {l}");
                if let Some(m) = parse_marker(l) {
                    let _ = tx.send((Instant::now(), m));
                }
            };
            pump(ctl_r, done, PIPE_GRACE, |d| split.feed(d, on_line));
            split.finish(on_line);
        });
        let output_failed = &output_failed;
        s.spawn(move || forward(out_r, done, stdout, "stdout", output_failed));
        s.spawn(move || forward(err_r, done, stderr, "stderr", output_failed));
        if let Some(mut e) = qemu_stderr {
            let qemu_err = &qemu_err;
            s.spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                // QEMU's stderr closes when QEMU exits (or is killed).
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    log::debug!("lab qemu stderr: {}", text.trim_end());
                    let mut q = qemu_err.lock().unwrap();
                    if q.len() < 64 * 1024 {
                        q.push_str(&text);
                    }
                }
            });
        }

        let mut record = |t: Instant, m: Marker| {
            log::debug!("lab: {m:?} at {:?} after QEMU start", t - spawned_at);
            markers.push((t - spawned_at, m));
        };
        let result = loop {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok((t, m)) => record(t, m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
            }
            match guard.try_wait() {
                Ok(Some(st)) => break (false, Some(st)),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("lab: waiting for QEMU: {e}");
                    guard.kill();
                    break (false, None);
                }
            }
            if Instant::now() >= deadline {
                guard.kill();
                break (true, None);
            }
            if interrupt::pending().is_some() || output_failed.lock().unwrap().is_some() {
                guard.kill();
                break (false, None);
            }
        };
        guard.kill(); // reaps (it has exited, or is killed now)
        done.store(true, Ordering::Release);
        result
    });
    // All threads are joined: every marker sent is in the channel.
    while let Ok((t, m)) = rx.try_recv() {
        markers.push((t - spawned_at, m));
    }
    let total = spawned_at.elapsed();
    let tail: Vec<String> = console_tail.into_inner().unwrap().into();
    let stage = |name: &str| {
        markers.iter().find_map(|(t, m)| match m {
            Marker::Stage(s) if s == name => Some(format!("{:.2}s", t.as_secs_f64())),
            _ => None,
        })
    };
    log::info!(
        "lab: prepared in {:.2}s; after QEMU start: init {}, kvm ready {}, program started {}, QEMU gone {:.2}s",
        prepared.as_secs_f64(),
        stage("init").unwrap_or_else(|| "-".into()),
        stage("kvm").unwrap_or_else(|| "-".into()),
        stage("exec").unwrap_or_else(|| "-".into()),
        total.as_secs_f64()
    );
    drop(tmp);

    if let Some(e) = output_failed.into_inner().unwrap() {
        return Err(e);
    }
    if timed_out {
        log::warn!(
            "lab: timed out after {:?}; console tail: {}",
            req.timeout,
            error::quote_tail(&tail)
        );
        return Ok(LabOutcome::TimedOut);
    }
    if let Some(sig) = interrupt::pending() {
        return Ok(LabOutcome::Interrupted(sig));
    }
    let results: Vec<&str> = markers
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
    for (_, m) in &markers {
        match m {
            Marker::Exit(code) => return Ok(LabOutcome::Exited(*code)),
            Marker::Fail(reason) => {
                return Err(LabError::KvmUnavailable {
                    reason: reason.clone(),
                    console_tail: tail,
                })
            }
            Marker::Stage(_) | Marker::Result(_) => {}
        }
    }
    match qemu_status {
        Some(st) if !st.success() && markers.is_empty() => Err(LabError::QemuFailed {
            status: st.to_string(),
            stderr: qemu_err.into_inner().unwrap(),
        }),
        _ => Err(LabError::NoExitStatus { console_tail: tail }),
    }
}

/// Forwards a program output pipe to `sink`, flushing after each chunk. A failing sink (a
/// closed pipe, a full disk) is recorded in `failed`, which stops the run.
fn forward(
    fd: std::os::fd::OwnedFd,
    done: &AtomicBool,
    sink: &mut (dyn Write + Send),
    stream: &'static str,
    failed: &Mutex<Option<LabError>>,
) {
    let mut broken = false;
    pump(fd, done, PIPE_GRACE, |d| {
        if !broken {
            if let Err(source) = sink.write_all(d).and_then(|()| sink.flush()) {
                broken = true;
                failed
                    .lock()
                    .unwrap()
                    .get_or_insert(LabError::Output { stream, source });
            }
        }
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
            env: vec![],
            stdin: None,
            result_file: None,
            guest_mem_mib: 16,
            timeout: Duration::from_secs(1),
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
    }
}
