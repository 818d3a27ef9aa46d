//! The other vCPUs of `vmm run --cpus N` (the application processors): each runs KVM_RUN on
//! a thread of its own, sharing the devices with vCPU 0, confined by its own seccomp filter.
//! KVM keeps each in "wait for SIPI" until the kernel starts it (docs/abi.md "CPUs").
//!
//! The first vCPU whose run ends decides the run's outcome (the guest's exit, a panic, a
//! triple fault, on whichever CPU): an AP that ends records its outcome in [`Ending`] and
//! stops vCPU 0 (its `expired` flag, then a kick out of KVM_RUN); when vCPU 0's run ends, the
//! APs are stopped the same way, each with its own flag, and joined.
//!
//! Under `--gdb` each AP instead waits for the debugger's word ([`Go`]) before each run, runs
//! until a stop ([`Stop`]), reports it on the session's channel and waits again; its vCPU is
//! shared ([`Debugged`]) so that the debugger's thread reads and sets it up while it waits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use vm_memory::GuestMemoryMmap;

use crate::devices::Devices;
use crate::outcome::Outcome;
use crate::seccomp::{self, Role};
use crate::vstate::vcpu::{ExitStats, PgdumpMode, Pgdumps, Stop, Vcpu, VcpuSetup};

/// How an AP's run went: its id, its exit counts, its thread's CPU time in seconds.
pub struct ApResult {
    pub id: u8,
    pub stats: ExitStats,
    pub cpu_seconds: f64,
    /// How many system calls its seccomp filter allows (None: not confined).
    pub filter: Option<usize>,
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

/// A running AP: its stop flag, its thread, and that thread's id (0 until it has started);
/// under `--gdb`, the debugger's handle on it.
pub struct Ap<'scope, 'm> {
    stop: Arc<AtomicBool>,
    handle: ScopedJoinHandle<'scope, ApResult>,
    thread: Arc<AtomicU64>,
    pub debugged: Option<Debugged<'m>>,
}

/// What a debugged AP is told to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    /// Run until a stop and report it.
    Debug,
    /// The debugger has gone: run to the end as without one.
    Free,
}

/// The debugger's handle on an AP: its vCPU (locked by the AP's thread while it runs), the
/// channel that starts it, the flag and thread that stop it.
#[derive(Clone)]
pub struct Debugged<'m> {
    pub id: u8,
    pub vcpu: Arc<Mutex<Vcpu<'m>>>,
    pub go: mpsc::Sender<Go>,
    pub interrupt: Arc<AtomicBool>,
    thread: Arc<AtomicU64>,
}

impl Debugged<'_> {
    /// Kicks the AP's thread out of KVM_RUN (nothing if it has not started yet).
    pub fn kick(&self) {
        let t = self.thread.load(Ordering::SeqCst);
        if t != 0 {
            kick(t as libc::pthread_t);
        }
    }
}

/// Where debugged APs report their stops: the AP's id and why it stopped; `notify` is set
/// after each report (the gdb watcher then kicks vCPU 0, [`crate::debug::gdb`]).
#[derive(Clone)]
pub struct StopReports {
    pub tx: mpsc::Sender<(u8, Stop)>,
    pub notify: Arc<AtomicBool>,
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
    /// `--pgdump`/`--pgdump-svg`: a page-table dump asked on an AP walks from its own CR3.
    pub pgdump: PgdumpMode,
    pub pgdumps: Arc<Mutex<Pgdumps>>,
    /// With `--gdb`: where the APs report their stops.
    pub gdb: Option<StopReports>,
}

/// Starts AP `id` (fd `fd`) on a thread of `scope`.
pub fn spawn<'scope, 'env: 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    id: u8,
    fd: kvm_ioctls::VcpuFd,
    cx: &'env ApContext<'env>,
) -> std::io::Result<Ap<'scope, 'env>> {
    let stop = Arc::new(AtomicBool::new(false));
    let setup = VcpuSetup {
        pgdump: cx.pgdump,
        pgdumps: cx.pgdumps.clone(),
        expired: stop.clone(),
        symbols: cx.symbols.clone(),
        seccomp_selftest: false,
    };
    let vcpu = Vcpu::new(fd, cx.mem, cx.devices.clone(), setup);
    let interrupt = vcpu.interrupt.clone();
    let vcpu = Arc::new(Mutex::new(vcpu));
    let stopped = stop.clone();
    let thread = Arc::new(AtomicU64::new(0));
    let me = thread.clone();
    let (go, orders) = mpsc::channel();
    let debugged = cx.gdb.as_ref().map(|_| Debugged {
        id,
        vcpu: vcpu.clone(),
        go,
        interrupt,
        thread: thread.clone(),
    });
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn_scoped(scope, move || {
            // SAFETY: pthread_self has no preconditions.
            me.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
            ap_thread(id, &vcpu, &orders, &stopped, cx)
        })?;
    Ok(Ap {
        stop,
        handle,
        thread,
        debugged,
    })
}

/// An AP thread's life: confine it, run its vCPU (freely, or as the debugger says) until
/// the run ends, and hand back its figures.
fn ap_thread(
    id: u8,
    vcpu: &Mutex<Vcpu<'_>>,
    orders: &mpsc::Receiver<Go>,
    stopped: &AtomicBool,
    cx: &ApContext<'_>,
) -> ApResult {
    let lock = || vcpu.lock().unwrap_or_else(|e| e.into_inner());
    // (The guard must not outlive this statement: the debugger locks the vCPU too.)
    let confined = confine_ap(&lock(), cx.confine);
    let filter = match confined {
        Err(e) => {
            let failed = Outcome::Failed(format!("vCPU {id}: seccomp: {e:#}"));
            end_run(id, failed, None, stopped, cx);
            None
        }
        Ok(filter) => {
            match &cx.gdb {
                None => {
                    let mut v = lock();
                    let outcome = v.run();
                    let crash = v.crash.take();
                    drop(v);
                    end_run(id, outcome, crash, stopped, cx);
                }
                Some(reports) => debugged_loop(id, vcpu, orders, reports, stopped, cx),
            }
            filter
        }
    };
    let mut v = lock();
    ApResult {
        id,
        stats: std::mem::take(&mut v.stats),
        cpu_seconds: thread_cpu_seconds(),
        filter,
    }
}

/// A debugged AP's life: wait for the debugger's word, run until a stop, report it; until
/// the debugger lets it run free or the run is over (the channel closes).
fn debugged_loop(
    id: u8,
    vcpu: &Mutex<Vcpu<'_>>,
    orders: &mpsc::Receiver<Go>,
    reports: &StopReports,
    stopped: &AtomicBool,
    cx: &ApContext<'_>,
) {
    let lock = || vcpu.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match orders.recv() {
            Ok(Go::Debug) => {
                let stop = lock().run_until_stop();
                if reports.tx.send((id, stop)).is_err() {
                    return;
                }
                reports.notify.store(true, Ordering::SeqCst);
            }
            Ok(Go::Free) => {
                let mut v = lock();
                let outcome = v.run();
                let crash = v.crash.take();
                drop(v);
                end_run(id, outcome, crash, stopped, cx);
                return;
            }
            Err(_) => return,
        }
    }
}

/// An AP's run is over: unless it was stopped, it decides the run's outcome (if it is the
/// first) and stops vCPU 0.
fn end_run(
    id: u8,
    outcome: Outcome,
    crash: Option<String>,
    stopped: &AtomicBool,
    cx: &ApContext<'_>,
) {
    if stopped.load(Ordering::SeqCst) {
        return;
    }
    let mut first = cx.ending.0.lock().unwrap_or_else(|e| e.into_inner());
    if first.is_none() {
        *first = Some((id, outcome, crash));
    }
    drop(first);
    cx.bsp_stop.store(true, Ordering::SeqCst);
    // vCPU 0 may be inside KVM_RUN or just about to enter it: kick until it stops us in
    // turn (bounded: 10 s).
    for _ in 0..1000 {
        kick(cx.bsp_thread);
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The AP thread's seccomp filter (the vCPU role, for its own fd), before the guest runs.
fn confine_ap(vcpu: &Vcpu<'_>, confine: bool) -> anyhow::Result<Option<usize>> {
    if !confine {
        return Ok(None);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu.fd);
    let peers = seccomp::Peers::NONE;
    let allowed = seccomp::install(Role::Vcpu {
        fd,
        gdb: false,
        peers,
    })?;
    Ok(Some(allowed.len()))
}

/// Stops every AP (its flag, then kicks until its thread ends: at most 5 s each) and
/// collects how their runs went.
pub fn stop_all(aps: Vec<Ap<'_, '_>>) -> Vec<ApResult> {
    let mut out = Vec::new();
    for mut ap in aps {
        ap.stop.store(true, Ordering::SeqCst);
        // A debugged AP waiting for the debugger's word ends when its channel closes.
        drop(ap.debugged.take());
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
