//! The warm lab: a lab machine booted once to a ready state and saved, then restored for every
//! run instead of booting Debian again under TCG (seconds of emulated boot become a fraction
//! of one).
//!
//! **Build** (the first run for a given key, or `vmm lab setup`): an initramfs of the cached
//! base, the program (normally `vmm` itself) with its libraries, and the agent
//! ([`script::agent_script`]) as `/init`. QEMU boots it with the warm device set ([`Wiring::warm`]:
//! console, control, stdout, stderr, stdin and the request port) and a QMP monitor; the agent
//! loads the KVM and virtio modules, checks `/dev/kvm`, reports `stage ready` and waits for a
//! line on the control channel. We then save the machine (a migration to a file: `state`) and
//! stop it. The snapshot lives in `<lab dir>/warm-v1/<key>/` (0700, files 0600): `state`,
//! `meta` (the key, sizes and the CRC-32 of `state`) and an empty `initrd`: a restore boots
//! QEMU with the lab's kernel and that empty file (the saved RAM already holds the unpacked
//! initramfs; QEMU needs only the same kind of boot), which spares it reading ~40 MB. The
//! snapshot is built in a private temporary directory beside it and renamed into place when
//! complete; a lock file serializes builders (a second first run waits for the first's
//! snapshot); a run killed mid-build leaves only a temporary directory, swept later.
//!
//! **Key**: the SHA-256 of everything that shapes the saved machine: the QEMU binary, the
//! kernel, the base initramfs, the program and its interpreter and libraries (content hashes,
//! remembered per file identity in `hashes`: device, inode, size, mtime and ctime, so a file
//! is hashed again only once it changed), the agent script, the kernel command line, the
//! firmware, the CPU model and the RAM size. A snapshot from another `vmm` build is never
//! restored: it has another key.
//!
//! **Restore** (every run): the CRC of `state` is checked (a damaged snapshot is removed and
//! built again, and this run boots cold), QEMU starts with `-incoming file:state` and fresh
//! descriptors for every channel, we send `go` on the control channel and the request archive
//! (the run's script, [`script::run_script`], and its files) on the request port; the agent
//! reports `stage restored`, unpacks it and runs the program exactly as a cold boot would.
//! Nothing of one run reaches another: each restores the same saved state into its own QEMU,
//! which is discarded at the end. The program's stdin is fed only after `stage restored`, so
//! a machine that does not come back ([`crate::LabError::RestoreFailed`]) has consumed none of
//! it and the run boots cold instead.
//!
//! Not warm: requests with TCP bridges (`vmm run --gdb`), a non-default CPU model or extra
//! QEMU arguments, and `XV6_LAB_WARM=0`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::assets::{lab_dir, sha256_file, Assets};
use crate::error::{self, LabError};
use crate::initramfs::Cpio;
use crate::payload::{add_file, place, write_initrd, Placed};
use crate::qemu::{self, PortBackend, QemuGuard, VirtPort};
use crate::qmp::Qmp;
use crate::request::{LabOptions, LabRequest, Start, LAB_OVERHEAD_MIB};
use crate::script::{self, Marker};
use crate::streams::Wiring;
use crate::supervise::{read_console, read_control, Shared};
use crate::tmp::TempDir;

/// The directory in the lab directory that holds the snapshots; bump when the layout changes.
pub const WARM_SUBDIR: &str = "warm-v1";
/// `XV6_LAB_WARM=0` boots every lab run cold.
pub const WARM_ENV: &str = "XV6_LAB_WARM";
/// The agent's stage once it waits to be saved.
const READY_STAGE: &str = "ready";
/// How long the build's boot may take to [`READY_STAGE`] (a loaded machine's TCG is slow).
const BOOT_LIMIT: Duration = Duration::from_secs(240);
/// How long saving may take.
const SAVE_LIMIT: Duration = Duration::from_secs(120);
/// How long a run waits for another process's build.
const LOCK_LIMIT: Duration = Duration::from_secs(420);
/// After a failed build, how long runs boot cold without trying again.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// Snapshots kept (the most recently used); older ones are removed after a build. One CPU
/// and several (`--cpus`) are two snapshots of the same program.
const KEEP: usize = 4;
/// Room in the lab's RAM for a request's files (they land in the lab's tmpfs).
const REQUEST_ROOM_MIB: u64 = 128;
/// What `meta` starts with.
const META_FORMAT: &str = "format=2";

/// A snapshot ready to restore.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its directory.
    pub dir: PathBuf,
    /// The saved machine.
    pub state: PathBuf,
    /// What a restore passes as the initramfs: an empty file (the saved RAM already holds
    /// the unpacked one; QEMU only needs the same kind of boot). The kernel is the lab's.
    pub initrd: PathBuf,
    kernel: PathBuf,
    /// Lab RAM (MiB).
    pub mem_mib: u64,
    /// The machine's CPUs (part of the key: a state restores only into as many).
    pub cpus: u32,
    /// `meta`, parsed.
    meta: BTreeMap<String, String>,
}

impl Snapshot {
    /// The machine to restore, with this run's channels.
    pub(crate) fn machine<'a>(
        &'a self,
        serials: &'a [PortBackend],
        ports: &'a [VirtPort],
    ) -> qemu::Machine<'a> {
        qemu::Machine {
            kernel: &self.kernel,
            initrd: &self.initrd,
            bios: qemu::fast_bios(),
            cpu: qemu::DEFAULT_CPU,
            cpus: self.cpus,
            mem_mib: self.mem_mib,
            serials,
            ports,
            qmp: None,
            incoming: Some(&self.state),
        }
    }

    /// A value of `meta` (`built`, `build_secs`, `state_size`, ...).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }
}

/// Whether `req` starts warm under `opts`.
pub(crate) fn wanted(req: &LabRequest, opts: &LabOptions) -> bool {
    let possible = req.tcp_ports.is_empty()
        && req.unix_ports.is_empty()
        && opts.cpu == qemu::DEFAULT_CPU
        && opts.extra_qemu_args.is_empty();
    match opts.start {
        Start::Cold => false,
        Start::Warm => possible,
        Start::Auto => possible && std::env::var(WARM_ENV).map_or(true, |v| v != "0"),
    }
}

/// Lab RAM for a guest of `guest_mem_mib` and an initramfs of `initrd_bytes`: the guest's
/// RAM rounded up to 256 MiB (few snapshots serve every `--mem`), the lab's own, the
/// initramfs twice (the image and its unpacked files) and room for a request's files.
pub fn mem_mib(guest_mem_mib: u64, initrd_bytes: u64) -> u64 {
    guest_mem_mib.div_ceil(256).max(1) * 256
        + LAB_OVERHEAD_MIB
        + 2 * initrd_bytes.div_ceil(1 << 20)
        + REQUEST_ROOM_MIB
}

/// The snapshot for `req` (its program and RAM), built first if there is none, and where
/// the program sits in it (what the run's script starts).
pub(crate) fn ensure(
    qemu_bin: &Path,
    assets: &Assets,
    req: &LabRequest,
) -> Result<(Snapshot, Placed), LabError> {
    let placed = place(req)?;
    let root = lab_dir()?.join(WARM_SUBDIR);
    create_private_dir(&root)?;
    let plan = Plan::new(qemu_bin, assets, req, &placed, &root)?;
    if let Some(s) = plan.load_verified()? {
        return Ok((s, placed));
    }
    plan.check_not_failed()?;
    let _lock = Lock::acquire(&plan.lock_path())?;
    if let Some(s) = plan.load_verified()? {
        return Ok((s, placed)); // another process built it meanwhile
    }
    let built = plan.build(assets, req, &placed);
    if let Err(e) = &built {
        let _ = fs::write(plan.failed_path(), format!("{e}\n"));
    }
    let snap = built?;
    prune(&root, &snap.dir);
    Ok((snap, placed))
}

/// The snapshot a run of `program` with a guest of `guest_mem_mib` and `cpus` vCPUs
/// restores, built now if need be (`vmm lab setup`: so that no run has to).
pub fn prepare(program: &Path, guest_mem_mib: u64, cpus: u32) -> Result<Snapshot, LabError> {
    let qemu_bin = crate::qemu::find_qemu()?;
    let assets = crate::assets::ensure_assets()?;
    let req = LabRequest {
        program: program.to_path_buf(),
        guest_mem_mib,
        cpus,
        ..Default::default()
    };
    ensure(&qemu_bin, &assets, &req).map(|(snap, _)| snap)
}

/// Removes a snapshot that failed to restore (`why`), so the next run builds it again.
pub(crate) fn discard(snap: &Snapshot, why: &str) {
    log::info!(
        "lab: removing the warm snapshot {} ({why})",
        snap.dir.display()
    );
    remove_dir(&snap.dir);
}

/// One line for `vmm lab status` about the snapshot a run of `program` with `cpus` vCPUs
/// would restore.
pub fn status_line(program: &Path, guest_mem_mib: u64, cpus: u32) -> String {
    let describe = || -> Result<String, LabError> {
        let assets = crate::status::status()
            .assets
            .ok_or_else(|| LabError::Snapshot("the lab's assets are not fetched".into()))?;
        let qemu_bin = crate::qemu::find_qemu()?;
        let req = LabRequest {
            program: program.to_path_buf(),
            guest_mem_mib,
            cpus,
            ..Default::default()
        };
        let placed = place(&req)?;
        let root = lab_dir()?.join(WARM_SUBDIR);
        let plan = Plan::new(&qemu_bin, &assets, &req, &placed, &root)?;
        Ok(match plan.load()? {
            Some(s) => format!(
                "warm snapshot{}: ready in {} ({} MiB saved, lab RAM {} MiB, built in {} s)",
                cpus_note(s.cpus),
                s.dir.display(),
                s.meta("state_size")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    >> 20,
                s.mem_mib,
                s.meta("build_secs").unwrap_or("?")
            ),
            None => format!(
                "warm snapshot{}: not built for this vmm yet (the next lab run builds it, in {})",
                cpus_note(plan.cpus),
                root.display()
            ),
        })
    };
    describe().unwrap_or_else(|e| format!("warm snapshot: unavailable ({e})"))
}

/// How a status line names a snapshot's CPU count: nothing for one CPU, ` (N lab CPUs)`.
fn cpus_note(cpus: u32) -> String {
    if cpus == 1 {
        String::new()
    } else {
        format!(" ({cpus} lab CPUs)")
    }
}

/// Everything about one snapshot before it is loaded or built.
struct Plan {
    root: PathBuf,
    /// The full key (hex).
    key: String,
    dir: PathBuf,
    qemu_bin: PathBuf,
    /// The lab's kernel (part of the key: restores boot the same one).
    kernel: PathBuf,
    mem_mib: u64,
    /// The machine's CPUs ([`LabRequest::machine_cpus`]).
    cpus: u32,
}

impl Plan {
    fn new(
        qemu_bin: &Path,
        assets: &Assets,
        req: &LabRequest,
        placed: &Placed,
        root: &Path,
    ) -> Result<Plan, LabError> {
        let mut files: Vec<(&str, &Path)> = vec![
            ("qemu", qemu_bin),
            ("kernel", &assets.kernel),
            ("base", &assets.base_initrd),
            ("program", &req.program),
        ];
        if let Some((_, host)) = &placed.deps.interpreter {
            files.push(("interpreter", host));
        }
        for (_, host) in &placed.deps.libraries {
            files.push(("library", host));
        }
        let bios = qemu::fast_bios();
        if let Some(b) = bios {
            files.push(("bios", b));
        }
        let memo = HashMemo::new(root.join("hashes"));
        let mut text = String::new();
        let mut payload = 0u64;
        for (what, path) in &files {
            let (hash, size) = memo.hash(path)?;
            if *what != "qemu" && *what != "bios" && *what != "kernel" {
                payload += size;
            }
            text.push_str(&format!("{what}={hash}\n"));
        }
        let mem = mem_mib(req.guest_mem_mib, payload);
        let agent = script::agent_script(&assets.modules);
        let cpus = req.machine_cpus();
        text.push_str(&format!(
            "{META_FORMAT}\nprogram_path={}\ncpu={}\ncpus={cpus}\nmem={mem}\ncmdline={}\nagent={}\n",
            placed.lab_program,
            qemu::DEFAULT_CPU,
            qemu::kernel_cmdline(),
            hex_sha256(&agent),
        ));
        let key = hex_sha256(text.as_bytes());
        Ok(Plan {
            root: root.to_path_buf(),
            dir: root.join(&key[..16]),
            key,
            qemu_bin: qemu_bin.to_path_buf(),
            kernel: assets.kernel.clone(),
            mem_mib: mem,
            cpus,
        })
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(format!("{}.lock", &self.key[..16]))
    }

    fn failed_path(&self) -> PathBuf {
        self.root.join(format!("{}.failed", &self.key[..16]))
    }

    /// The snapshot, if its directory holds a complete one for this key (sizes checked).
    fn load(&self) -> Result<Option<Snapshot>, LabError> {
        let meta_path = self.dir.join("meta");
        let Ok(text) = fs::read_to_string(&meta_path) else {
            return Ok(None);
        };
        let meta: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let snap = Snapshot {
            state: self.dir.join("state"),
            initrd: self.dir.join("initrd"),
            kernel: self.kernel.clone(),
            dir: self.dir.clone(),
            mem_mib: self.mem_mib,
            cpus: self.cpus,
            meta,
        };
        let size_ok = |file: &Path, key: &str| {
            file.metadata().ok().map(|m| m.len().to_string()).as_deref() == snap.meta(key)
        };
        let complete = snap.meta("key") == Some(&self.key)
            && size_ok(&snap.state, "state_size")
            && size_ok(&snap.initrd, "initrd_size")
            && snap.kernel.is_file();
        if !complete {
            eprintln!(
                "lab: the warm snapshot in {} is incomplete; building it again",
                self.dir.display()
            );
            remove_dir(&self.dir);
            return Ok(None);
        }
        Ok(Some(snap))
    }

    /// [`Plan::load`], then the state's CRC checked; a damaged snapshot is removed (`None`).
    fn load_verified(&self) -> Result<Option<Snapshot>, LabError> {
        let Some(snap) = self.load()? else {
            return Ok(None);
        };
        let crc =
            crc32_file(&snap.state).map_err(|e| LabError::io_path("reading", &snap.state, e))?;
        if Some(format!("{crc:08x}").as_str()) != snap.meta("state_crc32") {
            eprintln!(
                "lab: the warm snapshot in {} is damaged (its checksum does not match); building it again",
                snap.dir.display()
            );
            remove_dir(&snap.dir);
            return Ok(None);
        }
        // Used now: pruning keeps the most recently used.
        if let Ok(f) = fs::File::options().append(true).open(snap.dir.join("meta")) {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(Some(snap))
    }

    /// An error if a build of this key failed within [`RETRY_AFTER`].
    fn check_not_failed(&self) -> Result<(), LabError> {
        let path = self.failed_path();
        let Ok(meta) = path.metadata() else {
            return Ok(());
        };
        let recent = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < RETRY_AFTER);
        if !recent {
            let _ = fs::remove_file(&path);
            return Ok(());
        }
        let why = fs::read_to_string(&path).unwrap_or_default();
        Err(LabError::Snapshot(format!(
            "building it failed a moment ago ({}); remove {} to try again now",
            why.trim(),
            path.display()
        )))
    }

    /// Boots the agent, saves the machine and installs the snapshot.
    fn build(
        &self,
        assets: &Assets,
        req: &LabRequest,
        placed: &Placed,
    ) -> Result<Snapshot, LabError> {
        crate::tmp::sweep_stale(&self.root, ".build-");
        let stage = term::progress::Stage::start(
            "building the lab's warm snapshot (once per vmm build; later runs restore it)",
        );
        let started = Instant::now();
        let work = TempDir::new_in(&self.root, ".build-")?;
        let boot_initrd = work.path().join("boot-initrd");
        let agent = script::agent_script(&assets.modules);
        // Without its debugging information the program is a fraction of the snapshot.
        let stripped = crate::bochs::strip_debug(&req.program, work.path());
        let program = stripped.as_deref().unwrap_or(&req.program);
        let boot_size = write_initrd(assets, program, placed, &agent, &[], &boot_initrd)?;
        if let Some(copy) = &stripped {
            let _ = fs::remove_file(copy);
        }
        let state = work.path().join("state");
        self.boot_and_save(&boot_initrd, &state)?;
        let _ = fs::remove_file(&boot_initrd);
        let initrd = work.path().join("initrd");
        fs::write(&initrd, b"").map_err(|e| LabError::io_path("writing", &initrd, e))?;
        let state_size = state
            .metadata()
            .map_err(|e| LabError::io_path("reading", &state, e))?
            .len();
        let crc = crc32_file(&state).map_err(|e| LabError::io_path("reading", &state, e))?;
        let meta = format!(
            "{META_FORMAT}\nkey={}\nstate_size={state_size}\nstate_crc32={crc:08x}\n\
             initrd_size=0\nboot_initrd_size={boot_size}\nmem={}\nbuild_secs={:.1}\n",
            self.key,
            self.mem_mib,
            started.elapsed().as_secs_f64()
        );
        let meta_path = work.path().join("meta");
        fs::write(&meta_path, meta).map_err(|e| LabError::io_path("writing", &meta_path, e))?;
        for f in [&meta_path, &state, &initrd] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(f, fs::Permissions::from_mode(0o600))
                .map_err(|e| LabError::io_path("protecting", f, e))?;
        }
        if self.dir.exists() {
            remove_dir(&self.dir);
        }
        let kept = work.keep();
        fs::rename(&kept, &self.dir).map_err(|e| {
            remove_dir(&kept);
            LabError::io_path("installing", &self.dir, e)
        })?;
        stage.done();
        let _ = fs::remove_file(self.failed_path());
        self.load()?
            .ok_or_else(|| LabError::Snapshot("the new snapshot does not load".into()))
    }

    /// QEMU's command line for the build: the agent's initramfs, the warm device set and a
    /// QMP monitor on `qmp`.
    fn build_command(&self, initrd: &Path, wiring: &Wiring, qmp: RawFd) -> Command {
        let machine = qemu::Machine {
            kernel: &self.kernel,
            initrd,
            bios: qemu::fast_bios(),
            cpu: qemu::DEFAULT_CPU,
            cpus: self.cpus,
            mem_mib: self.mem_mib,
            serials: &wiring.serials(),
            ports: &wiring.ports(),
            qmp: Some(qmp),
            incoming: None,
        };
        let mut cmd = Command::new(&self.qemu_bin);
        cmd.args(machine.args()).stderr(Stdio::piped());
        cmd
    }

    /// Boots the agent machine until it is ready, then saves it to `state`.
    fn boot_and_save(&self, initrd: &Path, state: &Path) -> Result<(), LabError> {
        let wiring = Wiring::warm()?;
        let (qmp_ours, qmp_qemu) =
            qemu::socketpair().map_err(|e| LabError::io("creating a socket pair", e))?;
        let cmd = self.build_command(initrd, &wiring, qmp_qemu.as_raw_fd());
        log::debug!("lab: warm build: {cmd:?}");
        let mut fds = wiring.qemu_fds();
        fds.push(qmp_qemu.as_raw_fd());
        let mut guard = QemuGuard::spawn(cmd, &fds)
            .map_err(|e| LabError::io_path("starting", &self.qemu_bin, e))?;
        drop(qmp_qemu);
        let host = wiring.into_host_ends();
        let shared = Shared::default();
        let (tx, rx) = mpsc::channel();
        let qemu_stderr = guard.take_stderr();
        let result = std::thread::scope(|s| {
            let sh = &shared;
            s.spawn(move || read_console(host.console, sh));
            s.spawn(move || read_control(host.control, sh, tx));
            s.spawn(move || drain(host.stdout, &sh.done));
            s.spawn(move || drain(host.stderr, &sh.done));
            let mut qemu_err = String::new();
            if let Some(mut e) = qemu_stderr {
                s.spawn(move || {
                    let _ = e.read_to_string(&mut qemu_err);
                });
            }
            let r = wait_ready(&mut guard, &rx)
                .and_then(|()| save(qmp_ours, state))
                .map_err(|why| {
                    let tail = error::quote_tail(
                        &sh.console_tail
                            .lock()
                            .unwrap()
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    LabError::Snapshot(format!("{why}; lab console: {tail}"))
                });
            guard.kill();
            sh.done.store(true, Ordering::Release);
            r
        });
        drop(host.stdin);
        drop(host.request);
        result
    }
}

/// Waits for the agent's `stage ready` (or its failure, QEMU's exit, [`BOOT_LIMIT`]).
fn wait_ready(guard: &mut QemuGuard, rx: &mpsc::Receiver<(Instant, Marker)>) -> Result<(), String> {
    let deadline = Instant::now() + BOOT_LIMIT;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((_, Marker::Stage(s))) if s == READY_STAGE => return Ok(()),
            Ok((_, Marker::Fail(why))) => return Err(why),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
        if let Ok(Some(st)) = guard.try_wait() {
            return Err(format!("QEMU exited ({st}) before the agent was ready"));
        }
        if Instant::now() >= deadline {
            return Err(format!("the agent was not ready within {BOOT_LIMIT:?}"));
        }
    }
}

/// Saves the machine to `state` over QMP, then asks QEMU to quit.
fn save(qmp: OwnedFd, state: &Path) -> Result<(), String> {
    let mut q = Qmp::connect(qmp)?;
    q.save_to(state, SAVE_LIMIT)?;
    let _ = q.execute("quit", serde_json::json!({}));
    Ok(())
}

/// Reads and drops what a port sends (nothing, normally) until QEMU is gone.
fn drain(fd: OwnedFd, done: &AtomicBool) {
    qemu::pump(fd, done, Duration::from_millis(500), |_| {});
}

/// The request archive of a warm run: its script at [`script::RUN_SCRIPT_PATH`] and its files.
pub(crate) fn request_archive(
    run: &[u8],
    files: &[(PathBuf, String)],
) -> Result<Vec<u8>, LabError> {
    let werr = |e| LabError::io("building the lab request", e);
    let mut cpio = Cpio::new(Vec::new(), &["lab", "lab/bin", "lab/lib"]);
    cpio.bytes(script::RUN_SCRIPT_PATH, 0o644, run)
        .map_err(werr)?;
    for (host, lab) in files {
        add_file(&mut cpio, lab, host)?;
    }
    cpio.finish().map_err(werr)
}

/// Creates `dir` (and parents) if missing, readable by us alone.
fn create_private_dir(dir: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(LabError::io_path("creating", dir, e)),
    }
}

/// Removes a snapshot directory: renamed aside first, so no reader sees half of it.
fn remove_dir(dir: &Path) {
    let aside = dir.with_extension(format!("old-{}", std::process::id()));
    let target = if fs::rename(dir, &aside).is_ok() {
        aside
    } else {
        dir.to_path_buf()
    };
    let _ = fs::remove_dir_all(target);
}

/// Keeps the [`KEEP`] most recently used snapshots (with `current`), removing the others.
fn prune(root: &Path, current: &Path) {
    let Ok(rd) = fs::read_dir(root) else { return };
    let mut snaps: Vec<(SystemTime, PathBuf)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != current && p.join("meta").is_file())
        .filter_map(|p| Some((p.join("meta").metadata().ok()?.modified().ok()?, p)))
        .collect();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (_, old) in snaps.into_iter().skip(KEEP - 1) {
        log::info!("lab: removing the old warm snapshot {}", old.display());
        remove_dir(&old);
    }
    // Lock and failure notes of snapshots that are gone, once no build can hold them.
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let note = matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("lock" | "failed")
        );
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > LOCK_LIMIT + RETRY_AFTER);
        if note && old && !p.with_extension("").exists() {
            let _ = fs::remove_file(&p);
        }
    }
}

/// An exclusive lock on a file, held until dropped.
struct Lock {
    _file: fs::File,
}

impl Lock {
    /// Takes the lock on `path`, waiting (at most [`LOCK_LIMIT`]) for another holder.
    fn acquire(path: &Path) -> Result<Lock, LabError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| LabError::io_path("opening", path, e))?;
        let deadline = Instant::now() + LOCK_LIMIT;
        let mut said = false;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: f });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(LabError::io_path("locking", path, e));
            }
            if !said {
                eprintln!("lab: another vmm is building the warm snapshot; waiting for it");
                said = true;
            }
            if Instant::now() >= deadline || term::interrupt::pending().is_some() {
                return Err(LabError::Snapshot(format!(
                    "another process held {} for {LOCK_LIMIT:?}",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Content hashes of files, remembered by file identity (device, inode, size, mtime, ctime:
/// any write changes the ctime) in a small text file, so a 30 MB program is hashed once per
/// build rather than once per run.
struct HashMemo {
    path: PathBuf,
}

impl HashMemo {
    fn new(path: PathBuf) -> HashMemo {
        HashMemo { path }
    }

    /// (SHA-256 hex, size) of `file`.
    fn hash(&self, file: &Path) -> Result<(String, u64), LabError> {
        let m = fs::metadata(file).map_err(|e| LabError::io_path("reading", file, e))?;
        let id = format!(
            "{} {} {} {}.{} {}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        );
        let known = fs::read_to_string(&self.path).unwrap_or_default();
        if let Some(h) = known
            .lines()
            .find_map(|l| l.strip_prefix(&id)?.strip_prefix(' '))
            .filter(|h| h.len() == 64)
        {
            return Ok((h.to_string(), m.size()));
        }
        let h = sha256_file(file).map_err(|e| LabError::io_path("hashing", file, e))?;
        // Appends are small and atomic; a long memo starts over.
        let mut opts = fs::OpenOptions::new();
        opts.create(true).append(true);
        if known.lines().count() > 200 {
            opts.append(false).truncate(true).write(true);
        }
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(mut f) = opts.mode(0o600).open(&self.path) {
            let _ = writeln!(f, "{id} {h}");
        }
        Ok((h, m.size()))
    }
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CRC-32 of a file.
fn crc32_file(path: &Path) -> io::Result<u32> {
    let mut f = fs::File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(h.finalize()),
            n => h.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_is_bucketed_and_covers_the_initramfs() {
        assert_eq!(mem_mib(256, 0), 256 + LAB_OVERHEAD_MIB + REQUEST_ROOM_MIB);
        assert_eq!(
            mem_mib(64, 0),
            mem_mib(256, 0),
            "one snapshot for every small --mem"
        );
        assert_eq!(mem_mib(257, 0), 512 + LAB_OVERHEAD_MIB + REQUEST_ROOM_MIB);
        assert_eq!(
            mem_mib(2016, 40 << 20),
            2048 + LAB_OVERHEAD_MIB + 80 + REQUEST_ROOM_MIB
        );
    }

    #[test]
    fn hashes_are_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let memo = HashMemo::new(dir.path().join("hashes"));
        let f = dir.path().join("f");
        fs::write(&f, b"one").unwrap();
        let (h1, n) = memo.hash(&f).unwrap();
        assert_eq!(n, 3);
        assert_eq!(h1, hex_sha256(b"one"));
        assert!(fs::read_to_string(dir.path().join("hashes"))
            .unwrap()
            .contains(&h1));
        // The same identity: the remembered hash (proved by editing the memo).
        let memo_text = fs::read_to_string(dir.path().join("hashes")).unwrap();
        let fake = "f".repeat(64);
        fs::write(dir.path().join("hashes"), memo_text.replace(&h1, &fake)).unwrap();
        assert_eq!(memo.hash(&f).unwrap().0, fake);
        // Any write changes the identity (ctime): hashed again.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        assert_eq!(memo.hash(&f).unwrap().0, hex_sha256(b"two"));
    }

    #[test]
    fn a_request_archive_holds_the_script_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        fs::write(&f, b"payload").unwrap();
        let a = request_archive(b"echo run\n", &[(f, "/lab/files/add/0/data".into())]).unwrap();
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("lab/run") && text.contains("echo run"));
        assert!(text.contains("lab/files/add/0/data") && text.contains("payload"));
        assert!(text.contains("TRAILER!!!"));
        // busybox's cpio (in the lab) and GNU cpio read the same newc format: list it here
        // if a cpio is installed.
        if let Ok(mut child) = Command::new("cpio")
            .arg("-t")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            child.stdin.take().unwrap().write_all(&a).unwrap();
            let out = child.wait_with_output().unwrap();
            let names = String::from_utf8_lossy(&out.stdout);
            assert!(names.lines().any(|l| l == "lab/run"), "{names}");
            assert!(
                names.lines().any(|l| l == "lab/files/add/0/data"),
                "{names}"
            );
        }
    }

    #[test]
    fn pruning_keeps_the_most_recent() {
        let root = tempfile::tempdir().unwrap();
        let mk = |name: &str, age_s: u64| {
            let d = root.path().join(name);
            fs::create_dir(&d).unwrap();
            let meta = d.join("meta");
            fs::write(&meta, "x").unwrap();
            let f = fs::File::options().append(true).open(&meta).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
                .unwrap();
            d
        };
        let current = mk("cur", 1000);
        let a = mk("a", 10);
        let b = mk("b", 20);
        let c = mk("c", 30);
        let d = mk("d", 40);
        prune(root.path(), &current);
        assert!(current.exists() && a.exists() && b.exists() && c.exists());
        assert!(!d.exists());
    }

    #[test]
    fn a_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.lock");
        let held = Lock::acquire(&p).unwrap();
        let f = fs::File::open(&p).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_ne!(
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        drop(held);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
    }
}
