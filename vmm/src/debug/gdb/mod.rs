//! `vmm run --gdb`: the guest's vCPU as a gdbstub target (i386, gdbstub_arch `X86_SSE`).
//!
//! - registers: KVM_GET/SET_REGS and the selectors from KVM_GET_SREGS (selectors are shown,
//!   not written: loading one would need its descriptor);
//! - memory by guest virtual address, through the vCPU's current CR3 with the VMM's walker
//!   ([`crate::debug::pgdump::translate`]); with paging still off, addresses at or above KERNBASE are read
//!   at `va − KERNBASE` (what entrypgdir maps), the others as physical; unmapped → an error;
//! - software breakpoints: an int3 written into guest memory (KVM_GUESTDBG_USE_SW_BP) at
//!   kernel addresses where an int3 reaches KVM, else a debug register (see [`SwBreak`]);
//!   hardware breakpoints and watchpoints in DR0–DR3 (KVM_GUESTDBG_USE_HW_BP), single step
//!   (KVM_GUESTDBG_SINGLESTEP with interrupts blocked), Ctrl-C (a watcher thread, started
//!   once per session and confined by its own seccomp filter, kicks the vCPU out of KVM_RUN
//!   when gdb sends a byte while the guest runs);
//! - `monitor pgdump`, `monitor regs`; the guest's exit ends the session with its status.

pub mod conn;
pub mod debugregs;
pub mod regs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::stub::run_blocking::{self, BlockingEventLoop};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadSingleStep,
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
use crate::vstate::vcpu::{Stop, Vcpu};

const KERNBASE: u32 = xv6_abi::layout::KERNBASE;
const CR0_PG: u64 = xv6_abi::mmu::CR0_PG as u64;
const CR4_PSE: u64 = xv6_abi::mmu::CR4_PSE as u64;
/// The breakpoint instruction: int3, whose #BP KVM reports as a debug exit under
/// KVM_GUESTDBG_USE_SW_BP.
const BREAK_INSN: u8 = 0xcc;
/// EFAULT, gdb's "cannot access memory".
const EFAULT: u8 = 14;

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

/// The vCPU under gdb's control.
pub struct GdbTarget<'v, 'm> {
    vcpu: &'v mut Vcpu<'m>,
    /// Whether `break` writes an int3 at kernel addresses (else it takes a debug register).
    int3: bool,
    /// Software breakpoints by virtual address.
    sw: BTreeMap<u32, SwBreak>,
    hw: [Option<HwSlot>; 4],
    stepping: bool,
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
/// seccomp filter; `ready` is called before the guest runs.
pub fn serve(
    vcpu: &mut Vcpu<'_>,
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
    let (watcher, allowed) = Watcher::start(conn.fd(), vcpu.interrupt.clone(), confine)?;
    ready(allowed)?;
    let mut target = GdbTarget {
        vcpu,
        int3,
        sw: BTreeMap::new(),
        hw: [None; 4],
        stepping: false,
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
    Ok(target.vcpu.run())
}

impl GdbTarget<'_, '_> {
    /// Removes every breakpoint and turns guest debugging off.
    fn detach(&mut self) {
        for (_, b) in std::mem::take(&mut self.sw) {
            if let SwBreak::Int3 { pa, orig } = b {
                let _ = self.vcpu.mem.write_obj(orig, GuestAddress(pa.into()));
            }
        }
        self.hw = [None; 4];
        self.stepping = false;
        let _ = self.vcpu.fd.set_guest_debug(&kvm_guest_debug::default());
    }

    /// Programs KVM_SET_GUEST_DEBUG from the breakpoints and the step flag.
    fn apply_debug(&mut self) -> Result<(), String> {
        let mut dbg = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP,
            ..Default::default()
        };
        if self.stepping {
            dbg.control |= KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ;
        }
        for (i, slot) in self.hw.iter().enumerate() {
            dbg.arch.debugreg[i] = slot.map_or(0, |s| u64::from(s.addr));
        }
        dbg.arch.debugreg[7] = dr7(&self.hw);
        self.vcpu
            .fd
            .set_guest_debug(&dbg)
            .map_err(|e| format!("KVM_SET_GUEST_DEBUG failed: {e}"))
    }

    /// The guest-physical address of `va` now (see the module doc), or None.
    fn translate(&self, va: u32) -> Option<u32> {
        let sregs = self.vcpu.fd.get_sregs().ok()?;
        if sregs.cr0 & CR0_PG == 0 {
            return Some(if va >= KERNBASE { va - KERNBASE } else { va });
        }
        let mem = self.vcpu.mem;
        crate::debug::pgdump::translate(sregs.cr3 as u32, sregs.cr4 & CR4_PSE != 0, va, |pa| {
            mem.read_obj::<u32>(GuestAddress(pa.into())).ok()
        })
    }

    /// Runs until a stop gdb should hear about.
    fn run(&mut self) -> SingleThreadStopReason<u32> {
        match self.vcpu.run_until_stop() {
            Stop::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
            Stop::Debug(d) => self.debug_stop(&d),
            Stop::End(outcome) => {
                let reason = match &outcome {
                    Outcome::Exited(v) => SingleThreadStopReason::Exited(*v as u8),
                    Outcome::Panicked(_) => SingleThreadStopReason::Terminated(Signal::SIGABRT),
                    Outcome::TimedOut => SingleThreadStopReason::Terminated(Signal::SIGALRM),
                    _ => SingleThreadStopReason::Terminated(Signal::SIGSEGV),
                };
                self.outcome = Some(outcome);
                reason
            }
        }
    }

    /// What a KVM_EXIT_DEBUG means: #BP at one of ours, DR0–3 hits by DR6, or a step.
    fn debug_stop(&mut self, d: &kvm_debug_exit_arch) -> SingleThreadStopReason<u32> {
        if d.exception == 3 {
            self.rewind_past_break();
            return SingleThreadStopReason::SwBreak(());
        }
        let hit = (0..4).find(|i| d.dr6 & (1 << i) != 0);
        match hit.and_then(|i| self.hw[i]) {
            Some(HwSlot {
                use_: HwUse::Exec,
                addr,
                ..
            }) if matches!(self.sw.get(&addr), Some(SwBreak::DebugReg)) => {
                SingleThreadStopReason::SwBreak(())
            }
            Some(HwSlot {
                use_: HwUse::Exec, ..
            }) => SingleThreadStopReason::HwBreak(()),
            Some(s) => SingleThreadStopReason::Watch {
                tid: (),
                kind: match s.use_ {
                    HwUse::Write => WatchKind::Write,
                    _ => WatchKind::ReadWrite,
                },
                addr: s.addr,
            },
            None if self.stepping => SingleThreadStopReason::DoneStep,
            None => SingleThreadStopReason::Signal(Signal::SIGTRAP),
        }
    }

    /// gdb wants EIP at the breakpoint: if the trap left EIP after our int3, step it back.
    fn rewind_past_break(&mut self) {
        let Ok(mut r) = self.vcpu.fd.get_regs() else {
            return;
        };
        let eip = r.rip as u32;
        if !self.sw.contains_key(&eip) && self.sw.contains_key(&eip.wrapping_sub(1)) {
            r.rip -= 1;
            let _ = self.vcpu.fd.set_regs(&r);
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
}

impl Target for GdbTarget<'_, '_> {
    type Arch = X86_SSE;
    type Error = String;

    fn base_ops(&mut self) -> gdbstub::target::ext::base::BaseOps<'_, Self::Arch, Self::Error> {
        gdbstub::target::ext::base::BaseOps::SingleThread(self)
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

impl SingleThreadBase for GdbTarget<'_, '_> {
    fn read_registers(&mut self, regs: &mut X86CoreRegs) -> TargetResult<(), Self> {
        let r = self
            .vcpu
            .fd
            .get_regs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        let s = self
            .vcpu
            .fd
            .get_sregs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        crate::debug::gdb::regs::to_gdb(&r, &s, regs);
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86CoreRegs) -> TargetResult<(), Self> {
        let mut r = self
            .vcpu
            .fd
            .get_regs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        crate::debug::gdb::regs::from_gdb(regs, &mut r);
        self.vcpu
            .fd
            .set_regs(&r)
            .map_err(|e| TargetError::Fatal(e.to_string()))
    }

    fn read_addrs(&mut self, start: u32, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mut done = 0;
        while done < data.len() {
            let va = start.wrapping_add(done as u32);
            let Some(pa) = self.translate(va) else { break };
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

    fn write_addrs(&mut self, start: u32, data: &[u8]) -> TargetResult<(), Self> {
        for (i, b) in data.iter().enumerate() {
            let va = start.wrapping_add(i as u32);
            let pa = self.translate(va).ok_or(TargetError::Errno(EFAULT))?;
            self.vcpu
                .mem
                .write_obj(*b, GuestAddress(pa.into()))
                .map_err(|_| TargetError::Errno(EFAULT))?;
        }
        Ok(())
    }

    fn support_resume(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget<'_, '_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.stepping = false;
        self.apply_debug()
    }

    fn support_single_step(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget<'_, '_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.stepping = true;
        self.apply_debug()
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
        let Some(pa) = self.translate(addr) else {
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
        let text = match cmd {
            b"pgdump" => self
                .vcpu
                .page_table_dump()
                .map_or("cannot read the registers\n".to_string(), |(t, _)| t),
            b"regs" => {
                crate::debug::crash::report(&self.vcpu.fd, self.vcpu.mem, &self.vcpu.symbols) + "\n"
            }
            _ => "monitor commands: pgdump (the current page directory, as --pgdump), regs \
                  (the crash-report registers)\n"
                .to_string(),
        };
        gdbstub::outputln!(out, "{}", text.trim_end());
        Ok(())
    }
}

/// The blocking event loop: run the vCPU while a watcher thread turns incoming bytes
/// (gdb's Ctrl-C) into a kick.
struct EventLoop<'v, 'm>(std::marker::PhantomData<GdbTarget<'v, 'm>>);

impl<'v, 'm> BlockingEventLoop for EventLoop<'v, 'm> {
    type Target = GdbTarget<'v, 'm>;
    type Connection = GdbConn;
    type StopReason = SingleThreadStopReason<u32>;

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
        target.watcher.arm();
        let reason = target.run();
        target.watcher.disarm();
        target.vcpu.interrupt.store(false, Ordering::SeqCst);
        if let SingleThreadStopReason::Signal(Signal::SIGINT) = reason {
            let b = conn
                .read()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?;
            return Ok(run_blocking::Event::IncomingData(b));
        }
        Ok(run_blocking::Event::TargetStopped(reason))
    }

    fn on_interrupt(target: &mut Self::Target) -> Result<Option<Self::StopReason>, String> {
        let _ = target;
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// The Ctrl-C watcher: a thread that, while armed (the guest runs), polls the debugger's
/// connection and, when bytes arrive, sets the vCPU's `interrupt` and kicks the vCPU thread
/// out of KVM_RUN (every 10 ms until disarmed). One per session, started before the filters
/// are installed (a confined vCPU thread cannot start threads).
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
                watch(fd, vcpu, &interrupt, &a, &i, &d);
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
        if !readable(fd, 20) {
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
