//! The other vCPUs of `vmm run --cpus N` (the application processors): each runs KVM_RUN on
//! a thread of its own, sharing the devices with vCPU 0, confined by its own seccomp filter.
//! KVM keeps each in "wait for SIPI" until the kernel starts it (docs/abi.md "CPUs").
//!
//! The first vCPU whose run ends decides the run's outcome (the guest's exit, a panic, a
//! triple fault, on whichever CPU): an AP that ends records its outcome in [`Ending`] and
//! stops vCPU 0 (its `expired` flag, then a kick out of KVM_RUN); when vCPU 0's run ends, the
//! APs are stopped the same way, each with its own flag, and joined.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use vm_memory::GuestMemoryMmap;

use crate::devices::Devices;
use crate::outcome::Outcome;
use crate::seccomp::{self, Role};
use crate::vstate::vcpu::{ExitStats, Vcpu, VcpuSetup};

/// How an AP's run went: its id, its exit counts, its thread's CPU time in seconds.
pub struct ApResult {
    pub id: u8,
    pub stats: ExitStats,
    pub cpu_seconds: f64,
}

/// The outcome of the first AP whose run ended on its own, with its crash report.
#[derive(Default)]
pub struct Ending(Mutex<Option<(u8, Outcome, Option<String>)>>);

impl Ending {
    /// The recorded outcome, if an AP ended the run.
    pub fn take(&self) -> Option<(u8, Outcome, Option<String>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A running AP: its stop flag, its thread, and that thread's id (0 until it has started).
pub struct Ap<'scope> {
    stop: Arc<AtomicBool>,
    handle: ScopedJoinHandle<'scope, ApResult>,
    thread: Arc<AtomicU64>,
}

/// Kicks `thread` out of KVM_RUN with the kick signal (vstate/thread.rs installs its no-op
/// handler before any vCPU runs).
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: `thread` is a live thread of this process (APs are joined only after their
    // last kick; vCPU 0's thread outlives the scope); the signal's handler does nothing.
    unsafe { libc::pthread_kill(thread, vmm_sys_util::signal::SIGRTMIN()) };
}

/// What each AP thread needs from the boot.
pub struct ApContext<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub devices: Arc<Mutex<Devices>>,
    pub symbols: Arc<crate::debug::symbols::Symbols>,
    pub confine: bool,
    pub ending: &'a Ending,
    /// vCPU 0's `expired` flag and thread: an AP that ends the run stops it.
    pub bsp_stop: Arc<AtomicBool>,
    pub bsp_thread: libc::pthread_t,
}

/// Starts AP `id` (fd `fd`) on a thread of `scope`.
pub fn spawn<'scope, 'env: 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    id: u8,
    fd: kvm_ioctls::VcpuFd,
    cx: &'env ApContext<'env>,
) -> std::io::Result<Ap<'scope>> {
    let stop = Arc::new(AtomicBool::new(false));
    let setup = VcpuSetup {
        pgdump: crate::vstate::vcpu::PgdumpMode::Off,
        expired: stop.clone(),
        symbols: cx.symbols.clone(),
        seccomp_selftest: false,
    };
    let mut vcpu = Vcpu::new(fd, cx.mem, cx.devices.clone(), setup);
    let stopped = stop.clone();
    let thread = Arc::new(AtomicU64::new(0));
    let me = thread.clone();
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn_scoped(scope, move || {
            // SAFETY: pthread_self has no preconditions.
            me.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
            let outcome = match confine_ap(&vcpu, cx.confine) {
                Ok(()) => vcpu.run(),
                Err(e) => Outcome::Failed(format!("vCPU {id}: seccomp: {e:#}")),
            };
            if !stopped.load(Ordering::SeqCst) {
                let mut first = cx.ending.0.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some((id, outcome, vcpu.crash.take()));
                }
                cx.bsp_stop.store(true, Ordering::SeqCst);
                // vCPU 0 may be inside KVM_RUN or just about to enter it: kick until it
                // stops us in turn (bounded: 10 s).
                for _ in 0..1000 {
                    kick(cx.bsp_thread);
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            ApResult {
                id,
                stats: std::mem::take(&mut vcpu.stats),
                cpu_seconds: thread_cpu_seconds(),
            }
        })?;
    Ok(Ap {
        stop,
        handle,
        thread,
    })
}

/// The AP thread's seccomp filter (the vCPU role, for its own fd), before the guest runs.
fn confine_ap(vcpu: &Vcpu<'_>, confine: bool) -> anyhow::Result<()> {
    if confine {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu.fd);
        seccomp::install(Role::Vcpu { fd, gdb: false })?;
    }
    Ok(())
}

/// Stops every AP (its flag, then kicks until its thread ends: at most 5 s each) and
/// collects how their runs went.
pub fn stop_all(aps: Vec<Ap<'_>>) -> Vec<ApResult> {
    let mut out = Vec::new();
    for ap in aps {
        ap.stop.store(true, Ordering::SeqCst);
        for _ in 0..500 {
            if ap.handle.is_finished() {
                break;
            }
            let thread = ap.thread.load(Ordering::SeqCst);
            if thread != 0 {
                kick(thread as libc::pthread_t);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(r) = ap.handle.join() {
            out.push(r);
        }
    }
    out
}

/// The calling thread's CPU time so far, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
