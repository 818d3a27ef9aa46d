//! Watching one run to its end: QEMU (or Bochs) started under a guard, the threads that
//! read its console, control channel and output ports, the bounds of the run, and how what
//! they saw becomes the run's outcome (or an error quoting the console).

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::qemu::{pump, LineSplitter, QemuGuard};
use crate::request::{LabOutcome, LabRequest, COLLECT_MAX};
use crate::script::{self, parse_marker, Marker};
use crate::streams::{Counter, HostEnds, StdinSource, Wiring};
use crate::{error, streams};

/// How long a restored machine may take to report [`script::RESTORED_STAGE`].
pub(crate) const RESTORE_LIMIT: Duration = Duration::from_secs(30);

/// Console lines kept for error messages.
const CONSOLE_TAIL: usize = 60;
/// How long readers wait for a pipe's EOF after QEMU has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// After the program's exit, how long output may not advance (while we are not busy writing
/// it out) before the run fails as having lost output.
const OUTPUT_STALL: Duration = Duration::from_secs(15);

/// Starts QEMU (`cmd`, with `wiring`'s descriptors) and watches the run to its end; a warm
/// start's `request` is sent once the machine runs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_and_supervise(
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
    let mut collect: Box<dyn Write + Send> = match &req.collect {
        Some(path) => Box::new(Capped {
            file: crate::payload::private_file(path)
                .map_err(|e| LabError::io_path("creating", path, e))?,
            room: COLLECT_MAX,
        }),
        None => Box::new(std::io::sink()),
    };
    let limits = Limits {
        deadline: start + req.timeout,
        run_timeout: req.run_timeout,
        restore_by: request.map(|_| spawned_at + RESTORE_LIMIT),
    };
    let sinks = Sinks {
        stdout,
        stderr,
        collect: &mut *collect,
    };
    let watched = supervise(&mut guard, host, request, stdin, sinks, &limits);
    log_timings(&watched, spawned_at, prepared);
    Ok(watched)
}

/// The bounds of one run.
pub(crate) struct Limits {
    /// The whole run's end ([`LabRequest::timeout`]).
    pub(crate) deadline: Instant,
    /// How long the program may run once started ([`LabRequest::run_timeout`]).
    pub(crate) run_timeout: Option<Duration>,
    /// A warm start: when the machine must have reported its restore.
    pub(crate) restore_by: Option<Instant>,
}

/// How the watch over QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
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
    pub(crate) restored: AtomicBool,
    pub(crate) output_failed: Mutex<Option<LabError>>,
    pub console_tail: Mutex<VecDeque<String>>,
    pub(crate) qemu_err: Mutex<String>,
    pub(crate) out: Counter,
    pub(crate) err: Counter,
    pub(crate) collect: Counter,
}

/// What watching one QEMU run gathered.
pub(crate) struct Watched {
    pub(crate) ending: Ending,
    pub(crate) markers: Vec<(Instant, Marker)>,
    pub(crate) console_tail: Vec<String>,
    pub(crate) qemu_err: String,
    pub(crate) output_failed: Option<LabError>,
    pub(crate) received: (u64, u64),
    pub(crate) collected: u64,
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
            collected: shared.collect.bytes(),
        }
    }

    /// Whether the machine reported that it runs the request (a warm start's restore).
    pub(crate) fn restored(&self) -> bool {
        self.markers
            .iter()
            .any(|(_, m)| matches!(m, Marker::Stage(s) if s == script::RESTORED_STAGE))
    }
}

/// Where the program's output ports go.
pub(crate) struct Sinks<'a> {
    pub(crate) stdout: &'a mut (dyn Write + Send),
    pub(crate) stderr: &'a mut (dyn Write + Send),
    pub(crate) collect: &'a mut (dyn Write + Send),
}

/// [`LabRequest::collect`]'s file, refusing more than `room` bytes.
struct Capped {
    file: fs::File,
    room: u64,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.room {
            return Err(std::io::Error::other(format!(
                "more than {COLLECT_MAX} bytes to collect"
            )));
        }
        let n = self.file.write(buf)?;
        self.room -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Runs the readers, the stdin feeder (and for a warm start, the request's sender) and the
/// watch until QEMU is gone (every thread joined).
pub(crate) fn supervise(
    guard: &mut QemuGuard,
    host: HostEnds,
    request: Option<&[u8]>,
    stdin: Option<&StdinSource>,
    sinks: Sinks<'_>,
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
        collect: collect_r,
        stdin: stdin_sock,
        request: request_sock,
    } = host;
    let go = request.and_then(|_| go_ahead_end(&control));
    let ending = std::thread::scope(|s| {
        let sh = &shared;
        s.spawn(move || read_console(console, sh));
        s.spawn(move || read_control(control, sh, tx));
        s.spawn(move || forward(out_r, sinks.stdout, "stdout", &sh.out, sh));
        s.spawn(move || forward(err_r, sinks.stderr, "stderr", &sh.err, sh));
        s.spawn(move || forward(collect_r, sinks.collect, "collect", &sh.collect, sh));
        if let Some(e) = qemu_stderr {
            s.spawn(move || read_qemu_stderr(e, sh));
        }
        if let (Some(data), Some(sock), Some(go)) = (request, request_sock.as_ref(), go) {
            s.spawn(move || streams::send_request(go, sock, data, &sh.done));
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

/// A warm start's go-ahead goes in on the control socket while markers come out of it: a
/// copy of it for the go-ahead (None, said in the log, if it cannot be copied).
fn go_ahead_end(control: &std::os::fd::OwnedFd) -> Option<std::os::fd::OwnedFd> {
    control
        .try_clone()
        .inspect_err(|e| log::warn!("lab: cannot copy the control socket: {e}"))
        .ok()
}

/// Waits until `flag` is set (true) or `done` is (false), in short steps.
pub(crate) fn wait_flag(flag: &AtomicBool, done: &AtomicBool) -> bool {
    while !flag.load(Ordering::Acquire) {
        if done.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// When the program started (the `exec` stage), if it has.
pub(crate) fn program_started(markers: &[(Instant, Marker)]) -> Option<Instant> {
    markers.iter().find_map(|(t, m)| match m {
        Marker::Stage(s) if s == "exec" => Some(*t),
        _ => None,
    })
}

/// Waits (in 10 ms steps) until QEMU exits, the program's output has all arrived, a limit
/// passes (the deadline, the program's own time, a warm restore's), a signal comes or our
/// output fails; collects the markers meanwhile.
pub(crate) fn watch(
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
                if matches!(&m.1, Marker::Stage(s) if s == script::RESTORED_STAGE) {
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

/// What the program's output ports sent (stdout, stderr, the collect port), once its exit
/// has been reported too.
pub(crate) fn sent_at_exit(markers: &[(Instant, Marker)]) -> Option<(u64, u64, u64)> {
    let exited = markers.iter().any(|(_, m)| matches!(m, Marker::Exit(_)));
    let (out, err) = markers.iter().find_map(|(_, m)| match m {
        Marker::Sent { stdout, stderr } if exited => Some((*stdout, *stderr)),
        _ => None,
    })?;
    Some((out, err, collected(markers)))
}

/// What the collect port sent (0 if it sent nothing).
fn collected(markers: &[(Instant, Marker)]) -> u64 {
    markers
        .iter()
        .find_map(|(_, m)| match m {
            Marker::Collected(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0)
}

/// After the program's exit: `Delivered` once all it `sent` has arrived, `Stalled` when
/// nothing more has come for [`OUTPUT_STALL`] while we were not busy writing it out.
/// `since` remembers when the received total last changed.
pub(crate) fn drained(
    sent: (u64, u64, u64),
    sh: &Shared,
    since: &mut Option<(Instant, u64)>,
) -> Option<Ending> {
    let got = (sh.out.bytes(), sh.err.bytes(), sh.collect.bytes());
    if got.0 >= sent.0 && got.1 >= sent.1 && got.2 >= sent.2 {
        return Some(Ending::Delivered);
    }
    let total = got.0 + got.1 + got.2;
    let busy = sh.out.writing() || sh.err.writing() || sh.collect.writing();
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
pub(crate) fn log_timings(w: &Watched, spawned_at: Instant, prepared: Duration) {
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
        stage(script::RESTORED_STAGE),
        stage("exec"),
        spawned_at.elapsed().as_secs_f64(),
        w.ending
    );
}

/// Every byte the program's ports sent must have arrived (after a normal end).
pub(crate) fn check_delivered(w: &Watched) -> Result<(), LabError> {
    let sent = w.markers.iter().find_map(|(_, m)| match m {
        Marker::Sent { stdout, stderr } => Some((*stdout, *stderr)),
        _ => None,
    });
    let Some(sent) = sent else { return Ok(()) };
    for (stream, got, want) in [
        ("stdout", w.received.0, sent.0),
        ("stderr", w.received.1, sent.1),
        ("collect", w.collected, collected(&w.markers)),
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
pub(crate) fn conclude(req: &LabRequest, w: Watched) -> Result<LabOutcome, LabError> {
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
            Marker::Stage(_) | Marker::Result(_) | Marker::Sent { .. } | Marker::Collected(_) => {}
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
pub(crate) fn forward(
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
