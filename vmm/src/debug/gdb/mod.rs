//! `vmm run --gdb`: the guest's vCPUs as a gdbstub multi-thread target (i386, gdbstub_arch
//! `X86_SSE`), one thread per vCPU (thread id = vCPU index + 1). vCPU 0 runs on this thread;
//! the others (`--cpus N`) on their own threads, which wait between runs
//! ([`crate::vstate::aps`]). All-stop: when one vCPU stops (a breakpoint, a watchpoint, a
//! step, the guest's end) or gdb sends Ctrl-C, every other running vCPU is kicked out of
//! KVM_RUN (bounded wait) and gdb is told which vCPU stopped and why; a resume runs the vCPUs
//! gdb names (all, unless it locks the scheduler, as when it steps one over a breakpoint).
//!
//! - registers: KVM_GET/SET_REGS and the selectors from KVM_GET_SREGS of the thread's vCPU
//!   (selectors are shown, not written: loading one would need its descriptor);
//! - memory by guest virtual address, through that vCPU's current CR3 with the VMM's walker
//!   ([`crate::debug::pgdump::translate`]); with paging still off, addresses at or above KERNBASE are read
//!   at `va − KERNBASE` (what entrypgdir maps), the others as physical; unmapped → an error;
//! - software breakpoints: an int3 written into guest memory (KVM_GUESTDBG_USE_SW_BP) at
//!   kernel addresses where an int3 reaches KVM, else a debug register (see [`SwBreak`]);
//!   hardware breakpoints and watchpoints in DR0–DR3 (KVM_GUESTDBG_USE_HW_BP), the same on
//!   every vCPU, so any vCPU hits them; single step of one vCPU (KVM_GUESTDBG_SINGLESTEP with
//!   interrupts blocked); Ctrl-C (a watcher thread, started once per session and confined by
//!   its own seccomp filter, kicks vCPU 0 out of KVM_RUN when gdb sends a byte while the
//!   guest runs, or when another vCPU has reported a stop);
//! - when two vCPUs stop at once, gdb hears of the first; a breakpoint hit by another is met
//!   again when that vCPU resumes (an int3's EIP is stepped back), a watchpoint's is lost;
//! - `monitor pgdump`, `monitor regs` (of the vCPU that stopped last); the guest's exit (on
//!   any vCPU) ends the session with its status.

pub mod conn;
pub mod debugregs;
pub mod regs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, MutexGuard};
use std::time::{Duration, Instant};

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::run_blocking::{self, BlockingEventLoop};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadSchedulerLocking, MultiThreadSingleStep,
};
use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub::target::ext::breakpoints::{Breakpoints, HwBreakpoint, HwWatchpoint, SwBreakpoint};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86CoreRegs;
use gdbstub_arch::x86::X86_SSE;
use kvm_bindings::*;
use vm_memory::{Bytes, GuestAddress};

use crate::debug::gdb::conn::{readable, GdbConn, GdbEndpoint};
use crate::debug::gdb::debugregs::{dr7, HwSlot, HwUse};
use crate::outcome::Outcome;
use crate::vstate::aps::{Debugged, Go, StopReports};
use crate::vstate::vcpu::{Stop, Vcpu};

const KERNBASE: u32 = xv6_abi::layout::KERNBASE;
const CR0_PG: u64 = xv6_abi::mmu::CR0_PG as u64;
const CR4_PSE: u64 = xv6_abi::mmu::CR4_PSE as u64;
/// The breakpoint instruction: int3, whose #BP KVM reports as a debug exit under
/// KVM_GUESTDBG_USE_SW_BP.
const BREAK_INSN: u8 = 0xcc;
/// EFAULT, gdb's "cannot access memory".
const EFAULT: u8 = 14;
/// How long the other vCPUs get to leave KVM_RUN once one has stopped.
const STOP_BOUND: Duration = Duration::from_secs(2);

/// The stop reasons gdb hears (thread ids are vCPU index + 1).
type StopReason = MultiThreadStopReason<u32>;

/// How one of gdb's software breakpoints (`break`) is set.
#[derive(Debug, Clone, Copy)]
enum SwBreak {
    /// An int3 at this guest-physical address, over the byte it replaced.
    Int3 { pa: u32, orig: u8 },
    /// An execute breakpoint in a debug register: for user addresses (an int3 in a user page
    /// would outlive the process in a freed page, or be overwritten by exec; a debug register
    /// needs no mapping, so `break main` works before the process exists), and everywhere
    /// where an int3 does not reach KVM (the lab; [`crate::probe::int3_reaches_kvm`]). Shares
    /// DR0–DR3 with `hbreak` and `watch`.
    DebugReg,
}

/// The other vCPUs under gdb (`--cpus N`): their handles and the channel of their stops.
pub struct Others<'m> {
    pub aps: Vec<Debugged<'m>>,
    pub stops: mpsc::Receiver<(u8, Stop)>,
    pub reports: StopReports,
}

/// One vCPU, locked for the debugger (vCPU 0 is the session's own).
enum Held<'a, 'm> {
    Bsp(&'a mut Vcpu<'m>),
    Ap(MutexGuard<'a, Vcpu<'m>>),
}

impl<'m> std::ops::Deref for Held<'_, 'm> {
    type Target = Vcpu<'m>;
    fn deref(&self) -> &Vcpu<'m> {
        match self {
            Held::Bsp(v) => v,
            Held::Ap(g) => g,
        }
    }
}

impl<'m> std::ops::DerefMut for Held<'_, 'm> {
    fn deref_mut(&mut self) -> &mut Vcpu<'m> {
        match self {
            Held::Bsp(v) => v,
            Held::Ap(g) => g,
        }
    }
}

/// The vCPUs under gdb's control.
pub struct GdbTarget<'v, 'm> {
    /// vCPU 0 (thread 1).
    vcpu: &'v mut Vcpu<'m>,
    /// vCPUs 1.. (threads 2..), if any.
    others: Option<Others<'m>>,
    /// Per vCPU, what the next resume does: None stays stopped, Some(step).
    actions: Vec<Option<bool>>,
    /// Whether the vCPUs gdb did not name stay stopped (scheduler locking).
    locked: bool,
    /// The vCPU of the last stop (for the monitor commands).
    current: usize,
    /// Whether `break` writes an int3 at kernel addresses (else it takes a debug register).
    int3: bool,
    /// Software breakpoints by virtual address.
    sw: BTreeMap<u32, SwBreak>,
    hw: [Option<HwSlot>; 4],
    /// Per vCPU: single-stepping.
    stepping: Vec<bool>,
    /// How the guest ended, once it has.
    pub outcome: Option<Outcome>,
    /// The Ctrl-C watcher.
    watcher: Watcher,
}

/// What the vCPU thread does once the debugger is connected and the watcher runs, before
/// the guest's first instruction: confine itself (`seccomp.rs`), given the watcher's allowed
/// system calls (None: not confined).
pub type OnReady<'a> =
    &'a mut dyn FnMut(Option<std::collections::BTreeSet<i64>>) -> anyhow::Result<()>;

/// Serves gdb at `ep` until the guest ends; returns how it ended. If gdb detaches, the
/// guest runs on to its end without it. With `confine`, the watcher thread installs its
/// seccomp filter; `ready` is called before the guest runs. `others`: the other vCPUs.
pub fn serve<'m>(
    vcpu: &mut Vcpu<'m>,
    others: Option<Others<'m>>,
    ep: &GdbEndpoint,
    confine: bool,
    ready: OnReady<'_>,
    probe_bound: Duration,
) -> anyhow::Result<Outcome> {
    let int3 = crate::probe::int3_reaches_kvm(probe_bound).unwrap_or_else(|e| {
        log::debug!("breakpoint probe: {e:#}");
        false
    });
    if !int3 {
        eprintln!(
            "vmm: gdb: an int3 does not reach this KVM as a debug exit (nested under QEMU TCG?): \
             `break` takes one of the 4 debug registers, shared with `hbreak` and `watch`"
        );
    }
    let conn = GdbConn::wait(ep)?;
    let notify = others.as_ref().map(|o| o.reports.notify.clone());
    let (watcher, allowed) = Watcher::start(conn.fd(), vcpu.interrupt.clone(), notify, confine)?;
    ready(allowed)?;
    let n = 1 + others.as_ref().map_or(0, |o| o.aps.len());
    let mut target = GdbTarget {
        vcpu,
        others,
        actions: vec![None; n],
        locked: false,
        current: 0,
        int3,
        sw: BTreeMap::new(),
        hw: [None; 4],
        stepping: vec![false; n],
        outcome: None,
        watcher,
    };
    let reason = GdbStub::new(conn).run_blocking::<EventLoop<'_, '_>>(&mut target);
    if let Some(outcome) = target.outcome.take() {
        return Ok(outcome);
    }
    match reason {
        Ok(DisconnectReason::Kill) => return Ok(Outcome::Failed("gdb killed the guest".into())),
        Ok(_) => eprintln!("vmm: gdb: the debugger detached; the guest runs on"),
        Err(e) => eprintln!("vmm: gdb: session ended ({e}); the guest runs on"),
    }
    target.detach();
    if let Some(o) = &target.others {
        for ap in &o.aps {
            let _ = ap.go.send(Go::Free);
        }
    }
    Ok(target.vcpu.run())
}

impl<'m> GdbTarget<'_, 'm> {
    /// gdb's resume action for thread `tid`: continue, or step (an unknown thread: nothing).
    fn set_action(&mut self, tid: Tid, step: bool) {
        if let Some(a) = self.actions.get_mut(tid.get() - 1) {
            *a = Some(step);
        }
    }

    /// How many vCPUs there are.
    fn count(&self) -> usize {
        self.stepping.len()
    }

    /// vCPU `i`, held for the debugger (None: no such vCPU, or it did not stop in time and
    /// still runs).
    fn held(&mut self, i: usize) -> Option<Held<'_, 'm>> {
        if i == 0 {
            return Some(Held::Bsp(self.vcpu));
        }
        let ap = self.others.as_ref()?.aps.get(i - 1)?;
        match ap.vcpu.try_lock() {
            Ok(g) => Some(Held::Ap(g)),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(Held::Ap(e.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// vCPU `tid`'s index, if there is such a vCPU.
    fn index(&self, tid: Tid) -> Result<usize, TargetError<String>> {
        let i = tid.get() - 1;
        if i < self.count() {
            Ok(i)
        } else {
            Err(TargetError::Errno(EFAULT))
        }
    }

    /// Removes every breakpoint and turns guest debugging off on every vCPU.
    fn detach(&mut self) {
        for (_, b) in std::mem::take(&mut self.sw) {
            if let SwBreak::Int3 { pa, orig } = b {
                let _ = self.vcpu.mem.write_obj(orig, GuestAddress(pa.into()));
            }
        }
        self.hw = [None; 4];
        self.stepping.fill(false);
        for i in 0..self.count() {
            if let Some(v) = self.held(i) {
                let _ = v.fd.set_guest_debug(&kvm_guest_debug::default());
            }
        }
    }

    /// Programs KVM_SET_GUEST_DEBUG on every vCPU from the breakpoints and its step flag.
    fn apply_debug(&mut self) -> Result<(), String> {
        let mut base = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP,
            ..Default::default()
        };
        for (i, slot) in self.hw.iter().enumerate() {
            base.arch.debugreg[i] = slot.map_or(0, |s| u64::from(s.addr));
        }
        base.arch.debugreg[7] = dr7(&self.hw);
        for i in 0..self.count() {
            let mut dbg = base;
            if self.stepping[i] {
                dbg.control |= KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ;
            }
            let Some(v) = self.held(i) else {
                log::warn!("gdb: vCPU {i} still runs: its debug registers are not updated");
                continue;
            };
            v.fd.set_guest_debug(&dbg)
                .map_err(|e| format!("vCPU {i}: KVM_SET_GUEST_DEBUG failed: {e}"))?;
        }
        Ok(())
    }

    /// The guest-physical address of `va` now on vCPU `i` (see the module doc), or None.
    fn translate(&mut self, i: usize, va: u32) -> Option<u32> {
        let v = self.held(i)?;
        let sregs = v.fd.get_sregs().ok()?;
        if sregs.cr0 & CR0_PG == 0 {
            return Some(if va >= KERNBASE { va - KERNBASE } else { va });
        }
        let mem = v.mem;
        crate::debug::pgdump::translate(sregs.cr3 as u32, sregs.cr4 & CR4_PSE != 0, va, |pa| {
            mem.read_obj::<u32>(GuestAddress(pa.into())).ok()
        })
    }

    /// Runs the vCPUs the last resume named until one of them stops (or gdb sends Ctrl-C),
    /// then stops the others. Returns the stop gdb should hear about, or None for Ctrl-C.
    fn run(&mut self, conn: &mut GdbConn) -> Option<StopReason> {
        let run: Vec<bool> = self.actions.iter().map(Option::is_some).collect();
        let mut running = vec![false; self.count()];
        if let Some(o) = &self.others {
            for ap in &o.aps {
                let i = usize::from(ap.id);
                if run[i] && ap.go.send(Go::Debug).is_ok() {
                    running[i] = true;
                }
            }
        }
        let first = if run[0] {
            self.run_bsp(conn)
        } else {
            self.wait_for_an_ap(conn)
        };
        if let Some((i, _)) = &first {
            running[*i] = false;
        }
        let mut stops: Vec<(usize, Stop)> = first.into_iter().collect();
        stops.extend(self.stop_others(&mut running));
        self.report(stops)
    }

    /// Runs vCPU 0 until it stops, another vCPU reports a stop, or gdb sends a byte (None).
    fn run_bsp(&mut self, conn: &mut GdbConn) -> Option<(usize, Stop)> {
        self.watcher.arm();
        let got = loop {
            match self.vcpu.run_until_stop() {
                Stop::Interrupted => {
                    if let Some(o) = &self.others {
                        if let Ok((id, stop)) = o.stops.try_recv() {
                            // vCPU 0 stopped too: it is the AP's stop gdb hears of.
                            break Some((usize::from(id), stop));
                        }
                    }
                    if readable(conn.fd(), 0) {
                        break None;
                    }
                    // A kick meant for an earlier stop: run on.
                }
                stop => break Some((0, stop)),
            }
        };
        self.watcher.disarm();
        self.vcpu.interrupt.store(false, Ordering::SeqCst);
        if let Some(o) = &self.others {
            o.reports.notify.store(false, Ordering::SeqCst);
        }
        got
    }

    /// With vCPU 0 stopped: waits for another vCPU's stop, or for a byte from gdb (None).
    fn wait_for_an_ap(&mut self, conn: &mut GdbConn) -> Option<(usize, Stop)> {
        let o = self.others.as_ref()?;
        loop {
            match o.stops.recv_timeout(Duration::from_millis(20)) {
                Ok((id, stop)) => return Some((usize::from(id), stop)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if readable(conn.fd(), 0) {
                        return None;
                    }
                }
            }
        }
    }

    /// Stops the vCPUs still `running` (each: its interrupt flag, kicks) and collects their
    /// stops, within [`STOP_BOUND`].
    fn stop_others(&mut self, running: &mut [bool]) -> Vec<(usize, Stop)> {
        let mut got = Vec::new();
        let Some(o) = &self.others else {
            return got;
        };
        let end = Instant::now() + STOP_BOUND;
        while running.iter().any(|&r| r) && Instant::now() < end {
            for ap in &o.aps {
                if running[usize::from(ap.id)] {
                    ap.interrupt.store(true, Ordering::SeqCst);
                    ap.kick();
                }
            }
            while let Ok((id, stop)) = o.stops.recv_timeout(Duration::from_millis(5)) {
                running[usize::from(id)] = false;
                got.push((usize::from(id), stop));
            }
        }
        for ap in &o.aps {
            ap.interrupt.store(false, Ordering::SeqCst);
            if running[usize::from(ap.id)] {
                log::warn!("gdb: vCPU {} did not stop within {STOP_BOUND:?}", ap.id);
            }
        }
        o.reports.notify.store(false, Ordering::SeqCst);
        got
    }

    /// What gdb hears of `stops` (in the order they came; none: Ctrl-C): the guest's end if
    /// a vCPU ended it, else the first debug event. Every int3 stop is stepped back.
    fn report(&mut self, stops: Vec<(usize, Stop)>) -> Option<StopReason> {
        let mut end = None;
        let mut first = None;
        for (i, stop) in stops {
            match stop {
                Stop::End(outcome) if end.is_none() => end = Some((i, outcome)),
                Stop::Debug(d) => {
                    let reason = self.debug_stop(i, &d);
                    if first.is_none() {
                        first = Some((i, reason));
                    }
                }
                _ => {}
            }
        }
        if let Some((i, outcome)) = end {
            self.current = i;
            return Some(self.ended(i, outcome));
        }
        let (i, reason) = first?;
        self.current = i;
        Some(reason)
    }

    /// The guest ended on vCPU `i` with `outcome`: its crash report (named by the vCPU when
    /// not vCPU 0) becomes the run's, and gdb hears of the exit.
    fn ended(&mut self, i: usize, outcome: Outcome) -> StopReason {
        if i != 0 {
            let crash = self.held(i).and_then(|mut v| v.crash.take());
            self.vcpu.crash = crash.map(|c| crate::debug::crash::on_vcpu(i, &c));
        }
        let reason = match &outcome {
            Outcome::Exited(v) => StopReason::Exited(*v as u8),
            Outcome::Panicked(_) => StopReason::Terminated(Signal::SIGABRT),
            Outcome::TimedOut => StopReason::Terminated(Signal::SIGALRM),
            _ => StopReason::Terminated(Signal::SIGSEGV),
        };
        self.outcome = Some(outcome);
        reason
    }

    /// What a KVM_EXIT_DEBUG on vCPU `i` means: #BP at one of ours, DR0–3 hits by DR6, or a
    /// step.
    fn debug_stop(&mut self, i: usize, d: &kvm_debug_exit_arch) -> StopReason {
        let tid = Tid::new(i + 1).expect("a thread id above 0");
        if d.exception == 3 {
            self.rewind_past_break(i);
            return StopReason::SwBreak(tid);
        }
        let hit = (0..4).find(|i| d.dr6 & (1 << i) != 0);
        match hit.and_then(|i| self.hw[i]) {
            Some(HwSlot {
                use_: HwUse::Exec,
                addr,
                ..
            }) if matches!(self.sw.get(&addr), Some(SwBreak::DebugReg)) => StopReason::SwBreak(tid),
            Some(HwSlot {
                use_: HwUse::Exec, ..
            }) => StopReason::HwBreak(tid),
            Some(s) => StopReason::Watch {
                tid,
                kind: match s.use_ {
                    HwUse::Write => WatchKind::Write,
                    _ => WatchKind::ReadWrite,
                },
                addr: s.addr,
            },
            None if self.stepping[i] => StopReason::DoneStep,
            None => StopReason::SignalWithThread {
                tid,
                signal: Signal::SIGTRAP,
            },
        }
    }

    /// gdb wants EIP at the breakpoint: if the trap left vCPU `i`'s EIP after our int3, step
    /// it back.
    fn rewind_past_break(&mut self, i: usize) {
        let sw = self.sw.clone();
        let Some(v) = self.held(i) else { return };
        let Ok(mut r) = v.fd.get_regs() else {
            return;
        };
        let eip = r.rip as u32;
        if !sw.contains_key(&eip) && sw.contains_key(&eip.wrapping_sub(1)) {
            r.rip -= 1;
            let _ = v.fd.set_regs(&r);
        }
    }

    fn add_hw(&mut self, addr: u32, len: u32, use_: HwUse) -> TargetResult<bool, Self> {
        let Some(free) = self.hw.iter().position(Option::is_none) else {
            return Ok(false);
        };
        let Some(slot) = HwSlot::new(addr, len, use_) else {
            return Ok(false);
        };
        self.hw[free] = Some(slot);
        self.apply_debug().map_err(TargetError::Fatal)?;
        Ok(true)
    }

    fn remove_hw(&mut self, addr: u32, use_: HwUse) -> TargetResult<bool, Self> {
        let found = self
            .hw
            .iter()
            .position(|s| s.is_some_and(|s| s.addr == addr && s.use_ == use_));
        let Some(i) = found else { return Ok(false) };
        self.hw[i] = None;
        self.apply_debug().map_err(TargetError::Fatal)?;
        Ok(true)
    }

    /// vCPU `tid`'s registers: general and special.
    fn regs(&mut self, tid: Tid) -> TargetResult<(kvm_regs, kvm_sregs), Self> {
        let i = self.index(tid)?;
        let v = self.held(i).ok_or(TargetError::Errno(EFAULT))?;
        let r =
            v.fd.get_regs()
                .map_err(|e| TargetError::Fatal(e.to_string()))?;
        let s =
            v.fd.get_sregs()
                .map_err(|e| TargetError::Fatal(e.to_string()))?;
        Ok((r, s))
    }
}

impl Target for GdbTarget<'_, '_> {
    type Arch = X86_SSE;
    type Error = String;

    fn base_ops(&mut self) -> gdbstub::target::ext::base::BaseOps<'_, Self::Arch, Self::Error> {
        gdbstub::target::ext::base::BaseOps::MultiThread(self)
    }

    fn support_breakpoints(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(
        &mut self,
    ) -> Option<gdbstub::target::ext::monitor_cmd::MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for GdbTarget<'_, '_> {
    fn read_registers(&mut self, regs: &mut X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let (r, s) = self.regs(tid)?;
        crate::debug::gdb::regs::to_gdb(&r, &s, regs);
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let (mut r, _) = self.regs(tid)?;
        crate::debug::gdb::regs::from_gdb(regs, &mut r);
        let i = self.index(tid)?;
        let v = self.held(i).ok_or(TargetError::Errno(EFAULT))?;
        v.fd.set_regs(&r)
            .map_err(|e| TargetError::Fatal(e.to_string()))
    }

    fn read_addrs(&mut self, start: u32, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let i = self.index(tid)?;
        let mut done = 0;
        while done < data.len() {
            let va = start.wrapping_add(done as u32);
            let Some(pa) = self.translate(i, va) else {
                break;
            };
            let page = xv6_abi::mmu::PGSIZE as usize;
            let n = (data.len() - done).min(page - (va as usize & (page - 1)));
            let chunk = &mut data[done..done + n];
            if self
                .vcpu
                .mem
                .read_slice(chunk, GuestAddress(pa.into()))
                .is_err()
            {
                break;
            }
            done += n;
        }
        if done == 0 {
            return Err(TargetError::Errno(EFAULT));
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u32, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let i = self.index(tid)?;
        for (k, b) in data.iter().enumerate() {
            let va = start.wrapping_add(k as u32);
            let pa = self.translate(i, va).ok_or(TargetError::Errno(EFAULT))?;
            self.vcpu
                .mem
                .write_obj(*b, GuestAddress(pa.into()))
                .map_err(|_| TargetError::Errno(EFAULT))?;
        }
        Ok(())
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        for i in 0..self.count() {
            thread_is_active(Tid::new(i + 1).expect("a thread id above 0"));
        }
        Ok(())
    }

    fn support_resume(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::multithread::MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(
        &mut self,
    ) -> Option<gdbstub::target::ext::thread_extra_info::ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl gdbstub::target::ext::thread_extra_info::ThreadExtraInfo for GdbTarget<'_, '_> {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let text = format!("vCPU {}", tid.get() - 1);
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

impl MultiThreadResume for GdbTarget<'_, '_> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        let locked = std::mem::take(&mut self.locked);
        for (i, a) in self.actions.iter_mut().enumerate() {
            if a.is_none() && !locked {
                *a = Some(false);
            }
            self.stepping[i] = *a == Some(true);
        }
        self.apply_debug()
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.fill(None);
        self.locked = false;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, false);
        Ok(())
    }

    fn support_single_step(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::multithread::MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::multithread::MultiThreadSchedulerLockingOps<'_, Self>>
    {
        Some(self)
    }
}

impl MultiThreadSingleStep for GdbTarget<'_, '_> {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, true);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for GdbTarget<'_, '_> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl Breakpoints for GdbTarget<'_, '_> {
    fn support_sw_breakpoint(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget<'_, '_> {
    fn add_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        if !self.int3 || addr < KERNBASE {
            let added = self.add_hw(addr, 1, HwUse::Exec)?;
            if added {
                self.sw.insert(addr, SwBreak::DebugReg);
            }
            return Ok(added);
        }
        // The kernel half is the same on every vCPU: translate on the one that stopped.
        let Some(pa) = self.translate(self.current, addr) else {
            return Ok(false);
        };
        let mem = self.vcpu.mem;
        let Ok(orig) = mem.read_obj::<u8>(GuestAddress(pa.into())) else {
            return Ok(false);
        };
        if mem.write_obj(BREAK_INSN, GuestAddress(pa.into())).is_err() {
            return Ok(false);
        }
        self.sw.insert(addr, SwBreak::Int3 { pa, orig });
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        match self.sw.remove(&addr) {
            None => Ok(false),
            Some(SwBreak::DebugReg) => self.remove_hw(addr, HwUse::Exec),
            Some(SwBreak::Int3 { pa, orig }) => Ok(self
                .vcpu
                .mem
                .write_obj(orig, GuestAddress(pa.into()))
                .is_ok()),
        }
    }
}

impl HwBreakpoint for GdbTarget<'_, '_> {
    fn add_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.add_hw(addr, 1, HwUse::Exec)
    }

    fn remove_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.remove_hw(addr, HwUse::Exec)
    }
}

impl HwWatchpoint for GdbTarget<'_, '_> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u32,
        len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        self.add_hw(addr, len, HwUse::of(kind))
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u32,
        _len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        self.remove_hw(addr, HwUse::of(kind))
    }
}

impl gdbstub::target::ext::monitor_cmd::MonitorCmd for GdbTarget<'_, '_> {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: gdbstub::target::ext::monitor_cmd::ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let i = self.current;
        let Some(v) = self.held(i) else {
            gdbstub::outputln!(out, "vCPU {i} is not stopped");
            return Ok(());
        };
        let text = match cmd {
            b"pgdump" => v
                .page_table_dump()
                .map_or("cannot read the registers\n".to_string(), |(t, _)| t),
            b"regs" => crate::debug::crash::report(&v.fd, v.mem, &v.symbols) + "\n",
            _ => "monitor commands: pgdump (the current page directory, as --pgdump), regs \
                  (the crash-report registers), both of the vCPU that stopped last\n"
                .to_string(),
        };
        drop(v);
        if self.count() > 1 {
            gdbstub::outputln!(out, "vCPU {i}:");
        }
        gdbstub::outputln!(out, "{}", text.trim_end());
        Ok(())
    }
}

/// The blocking event loop: run the vCPUs while a watcher thread turns incoming bytes
/// (gdb's Ctrl-C) and other vCPUs' stops into a kick of vCPU 0.
struct EventLoop<'v, 'm>(std::marker::PhantomData<GdbTarget<'v, 'm>>);

impl<'v, 'm> BlockingEventLoop for EventLoop<'v, 'm> {
    type Target = GdbTarget<'v, 'm>;
    type Connection = GdbConn;
    type StopReason = StopReason;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut GdbConn,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<String, std::io::Error>,
    > {
        use gdbstub::conn::ConnectionExt;
        let pending = conn
            .peek()
            .map_err(run_blocking::WaitForStopReasonError::Connection)?;
        if pending.is_some() {
            let b = conn
                .read()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?;
            return Ok(run_blocking::Event::IncomingData(b));
        }
        match target.run(conn) {
            Some(reason) => Ok(run_blocking::Event::TargetStopped(reason)),
            None => {
                // Every vCPU is stopped; gdb's byte (its Ctrl-C) says why.
                target.current = 0;
                let b = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                Ok(run_blocking::Event::IncomingData(b))
            }
        }
    }

    fn on_interrupt(target: &mut Self::Target) -> Result<Option<Self::StopReason>, String> {
        let tid = Tid::new(target.current + 1).expect("a thread id above 0");
        Ok(Some(StopReason::SignalWithThread {
            tid,
            signal: Signal::SIGINT,
        }))
    }
}

/// The Ctrl-C watcher: a thread that, while armed (the guest runs), polls the debugger's
/// connection and, when bytes arrive or another vCPU has reported a stop (`notify`), sets
/// vCPU 0's `interrupt` and kicks its thread out of KVM_RUN (every 10 ms until disarmed).
/// One per session, started before the filters are installed (a confined vCPU thread cannot
/// start threads).
struct Watcher {
    /// Set while the guest runs.
    armed: Arc<AtomicBool>,
    /// Set by the watcher each time it finds itself disarmed (so done kicking).
    idle: Arc<AtomicBool>,
    /// Set when the session ends.
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts the watcher for `fd`, kicking the calling (vCPU) thread; with `confine`, the
    /// watcher installs its seccomp filter first. Returns it and its allowed system calls.
    fn start(
        fd: i32,
        interrupt: Arc<AtomicBool>,
        notify: Option<Arc<AtomicBool>>,
        confine: bool,
    ) -> anyhow::Result<(Watcher, Option<std::collections::BTreeSet<i64>>)> {
        // SAFETY: pthread_self has no preconditions.
        let vcpu = unsafe { libc::pthread_self() };
        let armed = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (a, i, d) = (armed.clone(), idle.clone(), done.clone());
        let handle = std::thread::Builder::new()
            .name("gdb".into())
            .spawn(move || {
                let allowed = match confine {
                    true => match crate::seccomp::install(crate::seccomp::Role::Gdb) {
                        Ok(set) => Some(set),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    },
                    false => None,
                };
                let _ = tx.send(Ok(allowed));
                let notify = notify.unwrap_or_default();
                watch(fd, vcpu, &interrupt, &notify, &a, &i, &d);
            })
            .map_err(|e| anyhow::anyhow!("cannot start the gdb watcher thread: {e}"))?;
        let mut w = Watcher {
            armed,
            idle,
            done,
            handle: Some(handle),
        };
        let allowed = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("the gdb watcher thread did not start"))
            .and_then(|r| r);
        match allowed {
            Ok(a) => Ok((w, a)),
            Err(e) => {
                w.stop();
                Err(e)
            }
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Stops watching and waits (at most 1 s) until the watcher has seen it, so that it no
    /// longer kicks (it sets `idle` again at the top of its loop).
    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        for _ in 0..1000 {
            if self.idle.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        log::warn!("gdb: the watcher thread did not stop kicking within 1 s");
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        self.armed.store(false, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The watcher's loop (see [`Watcher`]); returns when `done` is set.
fn watch(
    fd: i32,
    vcpu: libc::pthread_t,
    interrupt: &AtomicBool,
    notify: &AtomicBool,
    armed: &AtomicBool,
    idle: &AtomicBool,
    done: &AtomicBool,
) {
    while !done.load(Ordering::SeqCst) {
        if !armed.load(Ordering::SeqCst) {
            idle.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // A byte from gdb, or another vCPU's stop (before or during the poll).
        let asked =
            notify.load(Ordering::SeqCst) || readable(fd, 20) || notify.load(Ordering::SeqCst);
        if !asked {
            // poll returns at once on a port with no client (POLLHUP): do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        interrupt.store(true, Ordering::SeqCst);
        while armed.load(Ordering::SeqCst) && !done.load(Ordering::SeqCst) {
            // SAFETY: `vcpu` is the thread that owns the session; it outlives the watcher
            // (it stops and joins it before the session ends).
            unsafe { libc::pthread_kill(vcpu, vmm_sys_util::signal::SIGRTMIN()) };
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
