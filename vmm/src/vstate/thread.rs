//! The vCPU thread: a body that owns a vCPU runs on its own thread under a watchdog that
//! enforces a timeout by kicking it out of KVM_RUN with a signal, and tells the thread that
//! started it when the guest is about to run (so that thread can confine itself first).
//! Used by every boot (`machine.rs`) and by the host probes (`probe.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// What the vCPU thread reports when it is about to run the guest: the system calls each
/// confined thread (by role name) is allowed.
pub type Ready = BTreeMap<&'static str, BTreeSet<i64>>;

/// The vCPU thread's handle on the thread that started it.
pub struct Started {
    tell: Box<dyn Fn(Ready, mpsc::Sender<()>) -> bool + Send>,
}

impl Started {
    /// Tells the starting thread that the guest is about to run (with what is confined), and
    /// waits (at most 10 s) until it has confined itself.
    pub fn ready(&self, allowed: Ready) {
        let (ack, acked) = mpsc::channel();
        if (self.tell)(allowed, ack) && acked.recv_timeout(Duration::from_secs(10)).is_err() {
            log::warn!("the main thread did not answer within 10 s; running on");
        }
    }
}

/// What the vCPU thread sends its starter.
enum Msg<T> {
    Ready(Ready, mpsc::Sender<()>),
    Done(Result<T>),
}

/// Runs `body` (which owns a vCPU) on a thread; when `timeout` expires, sets `expired` and
/// kicks the thread out of KVM_RUN with a signal until it returns. When the body says it is
/// ready ([`Started::ready`]), `on_ready` runs here, on this thread, before the body goes on.
pub fn run_on_vcpu_thread<T: Send + 'static>(
    timeout: Option<Duration>,
    expired: Arc<AtomicBool>,
    on_ready: impl FnOnce(Ready),
    body: impl FnOnce(Started) -> Result<T> + Send + 'static,
) -> Result<T> {
    install_kick_handler()?;
    let (tx, rx) = mpsc::channel::<Msg<T>>();
    let done = tx.clone();
    let tell = std::sync::Mutex::new(tx);
    let started = Started {
        tell: Box::new(move |allowed, ack| {
            tell.lock()
                .is_ok_and(|t| t.send(Msg::Ready(allowed, ack)).is_ok())
        }),
    };
    let handle = thread::Builder::new()
        .name("vcpu0".into())
        .spawn(move || {
            let _ = done.send(Msg::Done(body(started)));
        })
        .context("cannot start the vCPU thread")?;
    let mut on_ready = Some(on_ready);
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let msg = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Ready(allowed, ack)) => {
                if let Some(f) = on_ready.take() {
                    f(allowed);
                }
                let _ = ack.send(());
            }
            Ok(Msg::Done(result)) => {
                let _ = handle.join();
                return result;
            }
            Err(_) => break,
        }
    }
    expired.store(true, Ordering::SeqCst);
    // Bounded: 500 kicks, 10 ms apart.
    for _ in 0..500 {
        let _ = handle.kill(SIGRTMIN());
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Msg::Done(result)) => {
                let _ = handle.join();
                return result;
            }
            Ok(Msg::Ready(_, ack)) => {
                let _ = ack.send(());
            }
            Err(_) => {}
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
