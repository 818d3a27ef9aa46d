//! The vCPU run loop: KVM_RUN until the guest ends, `--timeout` kicks it out, or an exit
//! handler (`vmexit.rs`) says the run is over; the two requests that need the vCPU itself
//! (a page-table walk, a measured-window mark) are carried out here.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::debug::pgdump;
use crate::debug::symbols::Symbols;
use crate::devices::Devices;
use crate::outcome::{Outcome, Request};
pub use crate::vstate::vmexit::ExitStats;

/// Why [`Vcpu::run_until_stop`] returned.
#[derive(Debug)]
pub enum Stop {
    /// The run is over (a crash report, if any, is in [`Vcpu::crash`]).
    End(Outcome),
    /// A breakpoint, watchpoint or single step (only with KVM_SET_GUEST_DEBUG).
    Debug(kvm_bindings::kvm_debug_exit_arch),
    /// [`Vcpu::interrupt`] was set (a debugger's Ctrl-C).
    Interrupted,
}

/// What `--pgdump` asks of a page-table dump request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgdumpMode {
    /// Ignore requests (the guest reads back u32::MAX).
    Off,
    /// Walk, cross-check with KVM_TRANSLATE and print to stderr.
    Print,
    /// Walk, cross-check, and keep the text in [`Vcpu::pgdumps`] (`--pgdump-svg`).
    Record,
    /// Both.
    PrintAndRecord,
}

impl PgdumpMode {
    /// The mode for `--pgdump` (print) and `--pgdump-svg` (record).
    pub fn new(print: bool, record: bool) -> PgdumpMode {
        match (print, record) {
            (false, false) => PgdumpMode::Off,
            (true, false) => PgdumpMode::Print,
            (false, true) => PgdumpMode::Record,
            (true, true) => PgdumpMode::PrintAndRecord,
        }
    }
}

/// The page-table dumps kept for `--pgdump-svg` (their `--pgdump` text, at most
/// `pgdump_svg::MAX_PANELS` dumps and `MAX_TEXT` bytes), from every vCPU in the order they
/// were asked, and how many more there were.
#[derive(Debug, Default)]
pub struct Pgdumps {
    pub texts: Vec<String>,
    pub skipped: usize,
}

/// The vCPU and what its exits touch.
pub struct Vcpu<'a> {
    pub fd: VcpuFd,
    pub mem: &'a GuestMemoryMmap,
    /// The devices, shared by every vCPU of the machine.
    pub devices: Arc<Mutex<Devices>>,
    pub pgdump: PgdumpMode,
    /// The dumps kept for `--pgdump-svg`, shared by the machine's vCPUs.
    pub pgdumps: Arc<Mutex<Pgdumps>>,
    pub stats: ExitStats,
    /// Set by the watchdog when `--timeout` expires; it then kicks KVM_RUN with a signal.
    expired: Arc<AtomicBool>,
    /// VM exits inside the guest's measured windows (port MARK), summed over the windows.
    pub measured: BTreeMap<&'static str, u64>,
    /// The counts when the current measured window opened.
    window_start: Option<BTreeMap<&'static str, u64>>,
    /// The registers and code at the crash, when the run ended in one (see `crash`).
    pub crash: Option<String>,
    /// The kernel's symbols, for crash reports.
    pub symbols: Arc<Symbols>,
    /// Set (then the thread kicked) to stop KVM_RUN for a debugger.
    pub interrupt: Arc<AtomicBool>,
    /// `XV6_VMM_SECCOMP_SELFTEST=1`: after the guest's first exit, make a system call no
    /// filter allows (seccomp.rs), once.
    seccomp_selftest: bool,
}

/// What a vCPU is given besides its fd, guest memory and devices.
pub struct VcpuSetup {
    pub pgdump: PgdumpMode,
    /// Where the dumps for `--pgdump-svg` go (one store for every vCPU).
    pub pgdumps: Arc<Mutex<Pgdumps>>,
    /// Set by the watchdog when the run's bound expires ([`crate::vstate::thread`]).
    pub expired: Arc<AtomicBool>,
    /// The kernel's symbols, for crash reports.
    pub symbols: Arc<Symbols>,
    /// Make one system call no filter allows after the guest's first exit (the seccomp
    /// self-test, `XV6_VMM_SECCOMP_SELFTEST=1`).
    pub seccomp_selftest: bool,
}

impl<'a> Vcpu<'a> {
    /// The vCPU `fd` over `mem` and `devices`, set up as `setup` says.
    pub fn new(
        fd: VcpuFd,
        mem: &'a GuestMemoryMmap,
        devices: Arc<Mutex<Devices>>,
        setup: VcpuSetup,
    ) -> Self {
        Vcpu {
            fd,
            mem,
            devices,
            pgdump: setup.pgdump,
            pgdumps: setup.pgdumps,
            stats: ExitStats::default(),
            expired: setup.expired,
            measured: BTreeMap::new(),
            window_start: None,
            crash: None,
            symbols: setup.symbols,
            interrupt: Arc::new(AtomicBool::new(false)),
            seccomp_selftest: setup.seccomp_selftest,
        }
    }

    /// Runs the guest until it ends.
    pub fn run(&mut self) -> Outcome {
        loop {
            match self.run_until_stop() {
                Stop::End(outcome) => return outcome,
                Stop::Debug(d) => {
                    let why = format!(
                        "unexpected debug exit (exception {}, pc {:#x}) without a debugger",
                        d.exception, d.pc
                    );
                    return self.finish(Outcome::Failed(why));
                }
                Stop::Interrupted => {}
            }
        }
    }

    /// Runs the guest until it ends, hits a debug event, or [`Vcpu::interrupt`] is set and
    /// the thread kicked out of KVM_RUN.
    pub fn run_until_stop(&mut self) -> Stop {
        loop {
            let request = match self.fd.run() {
                Ok(exit) => crate::vstate::vmexit::handle(
                    exit,
                    &mut self.devices.lock().unwrap_or_else(|e| e.into_inner()),
                    self.mem,
                    &mut self.stats,
                ),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    if self.expired.load(Ordering::SeqCst) {
                        return Stop::End(Outcome::TimedOut);
                    }
                    if self.interrupt.swap(false, Ordering::SeqCst) {
                        return Stop::Interrupted;
                    }
                    Request::Continue
                }
                Err(e) => Request::End(Outcome::Failed(format!("KVM_RUN failed: {e}"))),
            };
            self.note_eip();
            if std::mem::take(&mut self.seccomp_selftest) {
                crate::seccomp::selftest_blocked_call();
            }
            match request {
                Request::Continue => {}
                Request::End(outcome) => return Stop::End(self.finish(outcome)),
                Request::Debug(d) => return Stop::Debug(d),
                Request::Pgdump => {
                    let n = self.dump_page_tables();
                    self.devices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .debug
                        .last_mismatches = n;
                }
                Request::Mark(n) => self.mark(n),
            }
        }
    }

    /// Records the EIP of the exit just counted (not of a shutdown: KVM may have reset it).
    fn note_eip(&mut self) {
        let Some(last) = self.stats.recent.back_mut() else {
            return;
        };
        if last.eip.is_none() && last.reason != "shutdown" {
            last.eip = self.fd.get_regs().ok().map(|r| r.rip as u32);
        }
    }

    /// Takes the crash report a run's end calls for.
    pub fn finish(&mut self, outcome: Outcome) -> Outcome {
        let recent = crate::debug::crash::recent_exits(&self.stats.recent, &self.symbols);
        match &outcome {
            Outcome::TripleFault | Outcome::Failed(_) => {
                let regs = crate::debug::crash::report(&self.fd, self.mem, &self.symbols);
                self.crash = Some(format!("{regs}\n{recent}"));
            }
            Outcome::Panicked(Some(r)) => self.crash = Some(r.backtrace(&self.symbols)),
            _ => {}
        }
        outcome
    }

    /// Opens (1) or closes (2) a measured window.
    fn mark(&mut self, what: u32) {
        match (what, self.window_start.take()) {
            (1, _) => self.window_start = Some(self.stats.by_reason.clone()),
            (2, Some(start)) => {
                for (reason, n) in &self.stats.by_reason {
                    let before = start.get(reason).copied().unwrap_or(0);
                    *self.measured.entry(reason).or_default() += n - before;
                }
            }
            (n, _) => log::debug!("mark {n} ignored (1 opens a window, 2 closes it)"),
        }
    }

    /// Walks the page tables from this vCPU's CR3 (the vCPU that asked: each vCPU handles its
    /// own exits), cross-checks every page with KVM_TRANSLATE,
    /// prints the dump to stderr and/or keeps it; returns the number of mismatches.
    fn dump_page_tables(&mut self) -> u32 {
        if self.pgdump == PgdumpMode::Off {
            return u32::MAX;
        }
        match self.page_table_dump() {
            Some((text, mismatches)) => {
                if matches!(self.pgdump, PgdumpMode::Print | PgdumpMode::PrintAndRecord) {
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
                if matches!(self.pgdump, PgdumpMode::Record | PgdumpMode::PrintAndRecord) {
                    let mut kept = self.pgdumps.lock().unwrap_or_else(|e| e.into_inner());
                    let bytes: usize = kept.texts.iter().map(String::len).sum();
                    if kept.texts.len() < crate::debug::pgdump_svg::MAX_PANELS
                        && bytes + text.len() <= crate::debug::pgdump_svg::MAX_TEXT
                    {
                        kept.texts.push(text);
                    } else {
                        kept.skipped += 1;
                    }
                }
                mismatches
            }
            None => u32::MAX,
        }
    }

    /// The `--pgdump` text of the current page tables (lines ending in `\n`) and its number
    /// of KVM_TRANSLATE mismatches; None if the registers cannot be read.
    pub fn page_table_dump(&self) -> Option<(String, u32)> {
        let sregs = self
            .fd
            .get_sregs()
            .inspect_err(|e| log::warn!("pgdump: KVM_GET_SREGS failed: {e}"))
            .ok()?;
        let cr3 = sregs.cr3 as u32;
        let pse = sregs.cr4 & u64::from(xv6_abi::mmu::CR4_PSE) != 0;
        let mem = self.mem;
        let (maps, bad_tables) = pgdump::walk(cr3, pse, |pa| {
            mem.read_obj::<u32>(GuestAddress(u64::from(pa))).ok()
        });
        let mismatches = bad_tables as u32 + self.translate_mismatches(&maps);
        let mut text = format!("pgdump cr3=0x{cr3:08x}\n");
        for r in pgdump::runs(&maps) {
            text.push_str(&pgdump::format_run(&r));
            text.push('\n');
        }
        text.push_str(&format!(
            "pgdump end: {} pages, {mismatches} translate mismatches\n",
            maps.len()
        ));
        Some((text, mismatches))
    }

    /// How many of `maps` KVM_TRANSLATE (the MMU) does not agree with.
    fn translate_mismatches(&self, maps: &[pgdump::Mapping]) -> u32 {
        let mut mismatches = 0;
        for m in maps {
            match self.fd.translate_gva(u64::from(m.va)) {
                Ok(t) if t.valid != 0 && t.physical_address == u64::from(m.pa) => {}
                Ok(t) => {
                    log::debug!(
                        "pgdump: va {:#x}: tables say pa {:#x}, MMU says {:#x} (valid {})",
                        m.va,
                        m.pa,
                        t.physical_address,
                        t.valid
                    );
                    mismatches += 1;
                }
                Err(e) => {
                    log::debug!("pgdump: KVM_TRANSLATE {:#x} failed: {e}", m.va);
                    mismatches += 1;
                }
            }
        }
        mismatches
    }
}
