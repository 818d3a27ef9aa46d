//! One boot of the guest on this host's KVM: config → memory → Vm → kernel + boot params →
//! vCPU run loop, on its own thread under a watchdog that enforces `--timeout`.
//!
//! Once the VM is set up, each thread confines itself with its seccomp filter (`seccomp.rs`)
//! before the guest's first instruction: the vCPU thread (and gdb's watcher), then — told by
//! the vCPU thread — the main thread, which reads the filters back from /proc for
//! `--stats-json` and lets the vCPU thread go.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::arch::{layout, mptable, regs};
use crate::boot::{loader, params};
use crate::debug::symbols::{Symbols, UserSymbols};
use crate::devices::console::Traffic;
use crate::devices::{Devices, FdInput};
use crate::outcome::Outcome;
use crate::seccomp::{self, Role};
use crate::vstate::thread::{run_on_vcpu_thread, Ready, Started};
use crate::vstate::vcpu::{ExitStats, PgdumpMode, Pgdumps, Vcpu, VcpuSetup};
use crate::vstate::{aps, memory, vm};
use kvm_ioctls::VcpuFd;

/// Which threads of a run install their seccomp filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// None (`vmm run --no-seccomp`).
    Off,
    /// The vCPU thread and gdb's watcher, not the thread that started the VM (benchmarks
    /// boot several VMs from one thread).
    VcpuThreads,
    /// Every thread (`vmm run`: the process ends with the run).
    AllThreads,
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// The kernel image (ELF32 i386 with a PVH note).
    pub kernel: Vec<u8>,
    /// Where the kernel came from, for messages.
    pub kernel_name: PathBuf,
    /// Guest RAM in bytes.
    pub mem: u64,
    /// The kernel command line.
    pub cmdline: String,
    /// Boot modules (the program archive).
    pub modules: Vec<Vec<u8>>,
    /// The archive's programs (name, image): user-fault lines name the symbol at EIP.
    pub user_programs: Vec<(String, Vec<u8>)>,
    pub pgdump: PgdumpMode,
    /// None: no bound.
    pub timeout: Option<Duration>,
    /// Back guest RAM up front instead of on first touch.
    pub prefault: bool,
    /// Where the program's stdout goes: the host's stdout, or nowhere (a benchmark
    /// reads its results from the export stream instead).
    pub discard_stdout: bool,
    /// Serve gdb here and run the guest under its control (`--gdb`).
    pub gdb: Option<crate::debug::gdb::conn::GdbEndpoint>,
    /// Which threads install their seccomp filter.
    pub confine: Confine,
    /// vCPUs (1 to xv6_abi::smp::NCPU; more than one: an MP table lists them).
    pub cpus: u8,
}

/// The end of a run with what was counted on the way.
pub struct Report {
    pub outcome: Outcome,
    pub stats: ExitStats,
    /// Time from the first KVM_RUN to the end.
    pub elapsed: Duration,
    /// The vCPU's TSC frequency (KVM_GET_TSC_KHZ), 0 if unknown.
    pub tsc_khz: u32,
    /// What the guest exported (ports EXPORT/EXPORT_LEN).
    pub exported: Vec<u8>,
    /// VM exits inside the guest's measured windows (port MARK).
    pub measured_exits: BTreeMap<&'static str, u64>,
    /// The console's output (stdout + stderr) and input traffic, and its empty input asks.
    pub console: (Traffic, Traffic, u64),
    /// Guest RAM pages the host had backed at the end (mincore); None if unknown.
    pub backed_pages: Option<u64>,
    /// The crash report (registers, code at EIP) when the run ended in a crash.
    pub crash: Option<String>,
    /// TSC cycles from the kernel's first instruction to the first user instruction (the
    /// kernel's boot timestamps, docs/abi.md); None if the kernel did not get that far.
    pub first_user_cycles: Option<u64>,
    /// The page-table dumps kept for `--pgdump-svg` (their `--pgdump` text), and how many
    /// more the guest asked for.
    pub pgdumps: (Vec<String>, usize),
    /// The threads' confinement as the kernel reported it when the guest started.
    pub seccomp: seccomp::Stats,
    /// The write-back stream (`--dir …:rw`), None if the guest sent more than its bound or
    /// an unreadable piece.
    pub dirout: Option<Vec<u8>>,
    /// Each vCPU's exits and its thread's CPU time.
    pub vcpus: Vec<VcpuLine>,
}

/// One vCPU in `--stats-json`'s "vcpus".
#[derive(Debug, Clone, serde::Serialize)]
pub struct VcpuLine {
    pub id: u8,
    pub vm_exits_total: u64,
    /// The vCPU thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in seconds.
    pub cpu_seconds: f64,
}

impl Report {
    /// `--stats-json`'s document: what `--stats` prints, as one JSON object (one line).
    pub fn stats_json(&self) -> String {
        let (out, inp, empty) = self.console;
        serde_json::json!({
            "kvm_module": crate::probe::kvm_flavour(),
            "engine": crate::nested::engine_name(),
            "guest_seconds": self.elapsed.as_secs_f64(),
            "first_user_seconds": self.first_user_seconds(),
            "vm_exits": self.stats.by_reason,
            "vm_exits_total": self.stats.by_reason.values().sum::<u64>(),
            "tsc_khz": self.tsc_khz,
            "host_backed_pages": self.backed_pages,
            "console": {
                "out_bytes": out.bytes,
                "out_exits": out.exits,
                "in_bytes": inp.bytes,
                "in_exits": inp.exits,
                "in_empty_asks": empty,
            },
            "seccomp": self.seccomp,
            "vcpus": self.vcpus,
        })
        .to_string()
    }

    /// [`Report::first_user_cycles`] in seconds at the vCPU's TSC rate (None if unknown).
    pub fn first_user_seconds(&self) -> Option<f64> {
        let cycles = self.first_user_cycles?;
        (self.tsc_khz > 0).then(|| cycles as f64 / (f64::from(self.tsc_khz) * 1e3))
    }

    /// `vmm: stats: …` for `--stats`.
    pub fn stats_line(&self) -> String {
        let total: u64 = self.stats.by_reason.values().sum();
        let reasons: Vec<String> = self
            .stats
            .by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let (out, inp, empty) = self.console;
        let backed = self
            .backed_pages
            .map_or("unknown".to_string(), |n| n.to_string());
        let first_user = self
            .first_user_seconds()
            .map_or("unknown".to_string(), |s| format!("{:.1} ms", s * 1e3));
        format!(
            "vmm: stats: on {} (engine {}), {:.3} s in the guest ({first_user} to the first user instruction), \
             {total} VM exits ({}), TSC {} kHz, {backed} guest pages host-backed\n\
             vmm: console: out {} bytes in {} exits, in {} bytes in {} exits \
             ({empty} more found nothing yet)",
            crate::probe::kvm_flavour(),
            crate::nested::engine_name(),
            self.elapsed.as_secs_f64(),
            reasons.join(", "),
            self.tsc_khz,
            out.bytes,
            out.exits,
            inp.bytes,
            inp.exits,
        ) + &format!("\n{}", self.seccomp.line())
            + &self.vcpu_lines()
    }

    /// With several vCPUs, a line each: `vmm: vcpuN: E VM exits, S s of CPU` (their exits
    /// add up to the total above).
    fn vcpu_lines(&self) -> String {
        if self.vcpus.len() < 2 {
            return String::new();
        }
        self.vcpus
            .iter()
            .map(|v| {
                format!(
                    "\nvmm: vcpu{}: {} VM exits, {:.3} s of CPU",
                    v.id, v.vm_exits_total, v.cpu_seconds
                )
            })
            .collect()
    }
}

/// Builds the machine and runs it to the end. Errors are setup failures (bad kernel, KVM).
pub fn run(cfg: MachineConfig) -> Result<Report> {
    let expired = Arc::new(AtomicBool::new(false));
    let timeout = cfg.timeout;
    let flag = expired.clone();
    let confine = cfg.confine;
    if confine != Confine::Off {
        seccomp::install_sigsys_handler()?;
    }
    let mut stats = None;
    let mut report = run_on_vcpu_thread(
        timeout,
        expired,
        |ready| stats = Some(confine_starter(confine, ready)),
        move |started| boot_and_run(&cfg, flag, started),
    )?;
    match stats {
        Some(Ok(mut s)) => {
            // The APs' filters, which boot_and_run noted.
            s.per_thread.append(&mut report.seccomp.per_thread);
            report.seccomp = s;
        }
        Some(Err(e)) => return Err(e),
        None => {}
    }
    Ok(report)
}

/// The starting thread's part once the vCPU thread is ready: its own filter (with
/// [`Confine::AllThreads`]), then what the kernel says of every thread's.
fn confine_starter(confine: Confine, mut allowed: Ready) -> Result<seccomp::Stats> {
    if confine == Confine::AllThreads {
        allowed.insert(Role::Main.name(), seccomp::install(Role::Main)?);
    }
    let (mut mode, threads) = seccomp::kernel_view()?;
    // The main thread unconfined (`--dir …:rw` writes back from it): the mode is that of
    // the threads that have filters.
    if confine == Confine::VcpuThreads && threads > 0 && mode == "disabled" {
        mode = "filter".to_string();
    }
    let all: BTreeSet<i64> = allowed.values().flatten().copied().collect();
    Ok(seccomp::Stats {
        mode,
        threads,
        syscalls: all.len(),
        per_thread: allowed
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect(),
    })
}

fn boot_and_run(cfg: &MachineConfig, expired: Arc<AtomicBool>, started: Started) -> Result<Report> {
    let (vm, vcpu_fd, ap_fds, tsc_khz) = build_vm(cfg)?;
    let devices = shared_devices(cfg, &vm)?;
    let symbols = Arc::new(Symbols::from_elf(&cfg.kernel));
    let pgdumps = Arc::new(Mutex::new(Pgdumps::default()));
    let setup = VcpuSetup {
        pgdump: cfg.pgdump,
        pgdumps: pgdumps.clone(),
        expired: expired.clone(),
        symbols: symbols.clone(),
        seccomp_selftest: seccomp::selftest_requested(),
    };
    let mut vcpu = Vcpu::new(vcpu_fd, &vm.mem, devices.clone(), setup);
    let ending = aps::Ending::default();
    // Under gdb the APs report their stops to the session.
    let (stop_tx, stops) = std::sync::mpsc::channel();
    let reports = aps::StopReports {
        tx: stop_tx,
        notify: Arc::default(),
    };
    let cx = aps::ApContext {
        mem: &vm.mem,
        devices: devices.clone(),
        symbols,
        confine: cfg.confine != Confine::Off,
        ending: &ending,
        bsp_stop: expired,
        // SAFETY: pthread_self has no preconditions.
        bsp_thread: unsafe { libc::pthread_self() },
        pgdump: cfg.pgdump,
        pgdumps,
        gdb: cfg.gdb.as_ref().map(|_| reports.clone()),
    };
    let start = std::time::Instant::now();
    let (outcome, ap_results) =
        std::thread::scope(|scope| -> Result<_> {
            let mut running = Vec::new();
            for (i, fd) in ap_fds.into_iter().enumerate() {
                let ap = aps::spawn(scope, i as u8 + 1, fd, &cx)
                    .context("cannot start a vCPU thread")?;
                running.push(ap);
            }
            let others = cfg.gdb.as_ref().filter(|_| !running.is_empty()).map(|_| {
                crate::debug::gdb::Others {
                    aps: running.iter().filter_map(|a| a.debugged.clone()).collect(),
                    stops,
                    reports,
                }
            });
            let outcome = run_confined(&mut vcpu, others, cfg, &started);
            Ok((outcome, aps::stop_all(running)))
        })?;
    let elapsed = start.elapsed();
    let outcome = run_outcome(&ending, &mut vcpu, outcome)?;
    let vcpus = vcpu_lines(&vcpu.stats, &ap_results);
    let mut report = report(&vm, &mut vcpu, outcome, elapsed, tsc_khz);
    add_ap_figures(&mut report, &ap_results);
    report.vcpus = vcpus;
    Ok(report)
}

/// The run's outcome: the AP's that ended it (vCPU 0 was stopped for it; its crash report
/// becomes the run's), else vCPU 0's own.
fn run_outcome(ending: &aps::Ending, vcpu: &mut Vcpu, own: Result<Outcome>) -> Result<Outcome> {
    match ending.take() {
        Some((id, o, crash)) => {
            vcpu.crash = crash.map(|c| crate::debug::crash::on_vcpu(id.into(), &c));
            Ok(o)
        }
        None => own,
    }
}

/// The devices every vCPU shares: the console on our stdout (or nowhere) and stdin.
fn shared_devices(cfg: &MachineConfig, vm: &vm::Vm) -> Result<Arc<Mutex<Devices>>> {
    let stdout: Box<dyn std::io::Write + Send> = if cfg.discard_stdout {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let user_symbols = UserSymbols::new(cfg.user_programs.clone());
    let stdin = Box::new(FdInput(std::io::stdin()));
    Ok(Arc::new(Mutex::new(Devices::new(
        Some(&vm.fd),
        stdout,
        stdin,
        user_symbols,
    )?)))
}

/// The run's exit counts are every vCPU's: the APs' are added to vCPU 0's. The APs' filters
/// are noted in the (not yet filled) seccomp figures, for `run` to add.
fn add_ap_figures(report: &mut Report, aps: &[aps::ApResult]) {
    for ap in aps {
        for (reason, n) in &ap.stats.by_reason {
            *report.stats.by_reason.entry(reason).or_default() += n;
        }
        if let Some(n) = ap.filter {
            report
                .seccomp
                .per_thread
                .insert(format!("vcpu{}", ap.id), n);
        }
    }
}

/// Each vCPU's line of `--stats-json`'s "vcpus": vCPU 0 (this thread), then the APs.
fn vcpu_lines(bsp: &ExitStats, aps: &[aps::ApResult]) -> Vec<VcpuLine> {
    let mut v = vec![VcpuLine {
        id: 0,
        vm_exits_total: bsp.by_reason.values().sum(),
        cpu_seconds: aps::thread_cpu_seconds(),
    }];
    v.extend(aps.iter().map(|a| VcpuLine {
        id: a.id,
        vm_exits_total: a.stats.by_reason.values().sum(),
        cpu_seconds: a.cpu_seconds,
    }));
    v
}

/// The report of a run that ended with `outcome` on `vcpu` (vCPU 0 of `vm`).
fn report(
    vm: &vm::Vm,
    vcpu: &mut Vcpu<'_>,
    outcome: Outcome,
    elapsed: Duration,
    tsc_khz: u32,
) -> Report {
    let backed_pages = memory::host_backed_pages(&vm.mem)
        .inspect_err(|e| log::debug!("{e:#}"))
        .ok();
    let first_user_cycles = params::first_user_cycles(&vm.mem);
    let mut devices = vcpu.devices.lock().unwrap_or_else(|e| e.into_inner());
    Report {
        outcome,
        stats: std::mem::take(&mut vcpu.stats),
        elapsed,
        tsc_khz,
        exported: std::mem::take(&mut devices.debug.exported),
        measured_exits: std::mem::take(&mut vcpu.measured),
        console: {
            let c = &devices.console;
            (c.output, c.input, c.input_empty)
        },
        backed_pages,
        crash: vcpu.crash.take(),
        first_user_cycles,
        pgdumps: {
            let mut p = vcpu.pgdumps.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut p.texts), p.skipped)
        },
        seccomp: seccomp::Stats::default(),
        dirout: {
            let d = &mut devices.debug;
            (!d.dirout_overflow).then(|| std::mem::take(&mut d.dirout))
        },
        vcpus: Vec::new(),
    }
}

/// The VM of `cfg` ready to enter the kernel: guest RAM, the kernel loaded, the boot GDT and
/// parameters written, vCPU 0 at the PVH entry, the other vCPUs (and the MP table that lists
/// them) when there are several. Returns the VM, vCPU 0, the others, and vCPU 0's TSC rate in
/// kHz (0 if unknown; the kernel is told it on its command line).
fn build_vm(cfg: &MachineConfig) -> Result<(vm::Vm, VcpuFd, Vec<VcpuFd>, u32)> {
    let phystop = layout::phystop(cfg.mem);
    let image = loader::parse_kernel(&cfg.kernel, phystop)
        .with_context(|| format!("invalid kernel {}", cfg.kernel_name.display()))?;
    let kvm = vm::open_kvm()?;
    let guest = memory::create_guest_memory(cfg.mem)?;
    memory::check_not_executable(&guest)?;
    if cfg.prefault {
        memory::prefault(&guest)?;
    } else {
        memory::populate_boot_working_set(&guest);
    }
    let vm = vm::Vm::new(kvm, guest, true)?;
    let vcpu_fd = vm.create_vcpu()?;
    // The guest times with the TSC; tell it the frequency rather than let it guess.
    let tsc_khz = vcpu_fd.get_tsc_khz().unwrap_or(0);
    let cmdline = format!("{} {}={tsc_khz}", cfg.cmdline, xv6_abi::cmdline::TSC_KHZ);
    loader::load_kernel(&vm.mem, &cfg.kernel, &image)?;
    regs::write_boot_gdt(&vm.mem)?;
    let start_info = params::write_boot_params(&vm.mem, cfg.mem, &cmdline, &cfg.modules)?;
    regs::setup_pvh_entry(&vcpu_fd, image.entry, start_info)?;
    let mut aps = Vec::new();
    if cfg.cpus > 1 {
        mptable::write_mptable(&vm.mem, cfg.cpus)?;
        for id in 1..cfg.cpus {
            aps.push(vm.create_vcpu_id(id)?);
        }
    }
    log::debug!(
        "booting {} at entry {:#x}, {} MiB RAM, PHYSTOP {phystop:#x}",
        cfg.kernel_name.display(),
        image.entry,
        cfg.mem >> 20
    );
    Ok((vm, vcpu_fd, aps, tsc_khz))
}

/// Runs the guest to its end (under gdb with `--gdb`), each thread confined by its seccomp
/// filter before the guest's first instruction, the starting thread told when.
fn run_confined<'m>(
    vcpu: &mut Vcpu<'m>,
    others: Option<crate::debug::gdb::Others<'m>>,
    cfg: &MachineConfig,
    started: &Started,
) -> Result<Outcome> {
    // Setup is done: from here on each thread makes only the system calls its filter allows.
    let confine = cfg.confine != Confine::Off;
    let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu.fd);
    let gdb = cfg.gdb.is_some();
    // Under gdb this thread reads and sets up the other vCPUs too (they wait meanwhile).
    let peer_fds: Vec<i32> = others
        .iter()
        .flat_map(|o| &o.aps)
        .map(|ap| {
            let v = ap.vcpu.lock().unwrap_or_else(|e| e.into_inner());
            std::os::fd::AsRawFd::as_raw_fd(&v.fd)
        })
        .collect();
    let peers = seccomp::Peers::new(&peer_fds);
    let mut ready = |watcher: Option<BTreeSet<i64>>| -> Result<()> {
        let mut allowed = Ready::new();
        if let Some(w) = watcher {
            allowed.insert(Role::Gdb.name(), w);
        }
        if confine {
            let role = Role::Vcpu {
                fd: vcpu_fd,
                gdb,
                peers,
            };
            allowed.insert(role.name(), seccomp::install(role)?);
        }
        started.ready(allowed);
        Ok(())
    };
    Ok(match &cfg.gdb {
        Some(ep) => {
            let bound = crate::nested::probe_bound();
            crate::debug::gdb::serve(vcpu, others, ep, confine, &mut ready, bound)?
        }
        None => {
            ready(None)?;
            vcpu.run()
        }
    })
}
