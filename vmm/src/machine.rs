//! One boot of the guest on this host's KVM: config → memory → Vm → kernel + boot params →
//! vCPU run loop, on its own thread under a watchdog that enforces `--timeout`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::devices::console::Traffic;
use crate::devices::{Devices, FdInput};
use crate::vcpu::{ExitStats, Outcome, PgdumpMode, Vcpu};
use crate::{boot, layout, loader, memory, regs, vm};

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
    pub gdb: Option<crate::gdb_conn::GdbEndpoint>,
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
}

impl Report {
    /// `--stats-json`'s document: what `--stats` prints, as one JSON object (one line).
    pub fn stats_json(&self) -> String {
        let (out, inp, empty) = self.console;
        serde_json::json!({
            "kvm_module": crate::probe::kvm_flavour(),
            "engine": crate::engine::engine_name(),
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
            crate::engine::engine_name(),
            self.elapsed.as_secs_f64(),
            reasons.join(", "),
            self.tsc_khz,
            out.bytes,
            out.exits,
            inp.bytes,
            inp.exits,
        )
    }
}

/// Builds the machine and runs it to the end. Errors are setup failures (bad kernel, KVM).
pub fn run(cfg: MachineConfig) -> Result<Report> {
    let expired = Arc::new(AtomicBool::new(false));
    let timeout = cfg.timeout;
    let flag = expired.clone();
    run_on_vcpu_thread(timeout, expired, move || boot_and_run(&cfg, flag))
}

/// Runs `body` (which owns a vCPU) on a thread; when `timeout` expires, sets `expired` and
/// kicks the thread out of KVM_RUN with a signal until it returns.
pub fn run_on_vcpu_thread<T: Send + 'static>(
    timeout: Option<Duration>,
    expired: Arc<AtomicBool>,
    body: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    install_kick_handler()?;
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name("vcpu0".into())
        .spawn(move || {
            let _ = tx.send(body());
        })
        .context("cannot start the vCPU thread")?;
    let first = match timeout {
        Some(t) => rx.recv_timeout(t).ok(),
        None => rx.recv().ok(),
    };
    if let Some(result) = first {
        let _ = handle.join();
        return result;
    }
    expired.store(true, Ordering::SeqCst);
    // Bounded: 500 kicks, 10 ms apart.
    for _ in 0..500 {
        let _ = handle.kill(SIGRTMIN());
        if let Ok(result) = rx.recv_timeout(Duration::from_millis(10)) {
            let _ = handle.join();
            return result;
        }
    }
    anyhow::bail!("the vCPU thread did not stop after the timeout")
}

fn install_kick_handler() -> Result<()> {
    extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(SIGRTMIN(), kick)
            .map_err(|e| anyhow::anyhow!("cannot install the vCPU kick signal handler: {e}"));
    });
    result
}

fn boot_and_run(cfg: &MachineConfig, expired: Arc<AtomicBool>) -> Result<Report> {
    let phystop = layout::phystop(cfg.mem);
    let image = loader::parse_kernel(&cfg.kernel, phystop)
        .with_context(|| format!("invalid kernel {}", cfg.kernel_name.display()))?;
    let kvm = vm::open_kvm()?;
    let guest = memory::create_guest_memory(cfg.mem)?;
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
    let start_info = boot::write_boot_params(&vm.mem, cfg.mem, &cmdline, &cfg.modules)?;
    regs::setup_pvh_entry(&vcpu_fd, image.entry, start_info)?;
    let stdout: Box<dyn std::io::Write + Send> = if cfg.discard_stdout {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let devices = Devices::new(Some(&vm.fd), stdout, Box::new(FdInput(std::io::stdin())))?;
    let mut vcpu = Vcpu::new(vcpu_fd, &vm.mem, devices, cfg.pgdump);
    vcpu.expired = expired;
    vcpu.symbols = Arc::new(crate::symbols::Symbols::from_elf(&cfg.kernel));
    vcpu.devices.debug.user_symbols = crate::symbols::UserSymbols::new(cfg.user_programs.clone());
    log::debug!(
        "booting {} at entry {:#x}, {} MiB RAM, PHYSTOP {phystop:#x}",
        cfg.kernel_name.display(),
        image.entry,
        cfg.mem >> 20
    );
    let start = std::time::Instant::now();
    let outcome = match &cfg.gdb {
        Some(ep) => crate::gdb::serve(&mut vcpu, ep)?,
        None => vcpu.run(),
    };
    let elapsed = start.elapsed();
    let backed_pages = memory::host_backed_pages(&vm.mem)
        .inspect_err(|e| log::debug!("{e:#}"))
        .ok();
    let first_user_cycles = boot::first_user_cycles(&vm.mem);
    Ok(Report {
        outcome,
        stats: std::mem::take(&mut vcpu.stats),
        elapsed,
        tsc_khz,
        exported: std::mem::take(&mut vcpu.devices.debug.exported),
        measured_exits: std::mem::take(&mut vcpu.measured),
        console: {
            let c = &vcpu.devices.console;
            (c.output, c.input, c.input_empty)
        },
        backed_pages,
        crash: vcpu.crash.take(),
        first_user_cycles,
    })
}
