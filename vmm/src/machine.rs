//! One boot of the guest on this host's KVM: config → memory → Vm → kernel + boot params →
//! vCPU run loop, on its own thread under a watchdog that enforces `--timeout`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::devices::Com1;
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
    pub pgdump: PgdumpMode,
    /// None: no bound.
    pub timeout: Option<Duration>,
}

/// The end of a run with what was counted on the way.
pub struct Report {
    pub outcome: Outcome,
    pub stats: ExitStats,
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
    loader::load_kernel(&guest, &cfg.kernel, &image)?;
    regs::write_boot_gdt(&guest)?;
    let start_info = boot::write_boot_params(&guest, cfg.mem, &cfg.cmdline, &cfg.modules)?;
    let vm = vm::Vm::new(kvm, guest, true)?;
    let vcpu_fd = vm.create_vcpu()?;
    regs::setup_pvh_entry(&vcpu_fd, image.entry, start_info)?;
    let com1 = Com1::new(Some(&vm.fd), Box::new(std::io::stdout()))?;
    let mut vcpu = Vcpu::new(vcpu_fd, &vm.mem, com1, cfg.pgdump);
    vcpu.expired = expired;
    log::debug!(
        "booting {} at entry {:#x}, {} MiB RAM, PHYSTOP {phystop:#x}",
        cfg.kernel_name.display(),
        image.entry,
        cfg.mem >> 20
    );
    let outcome = vcpu.run();
    Ok(Report {
        outcome,
        stats: std::mem::take(&mut vcpu.stats),
    })
}
