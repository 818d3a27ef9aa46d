//! The vCPU run loop: KVM_RUN until the guest ends, `--timeout` kicks it out, or an exit
//! handler (`vmexit.rs`) says the run is over; the two requests that need the vCPU itself
//! (a page-table walk, a measured-window mark) are carried out here.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::{Devices, Request};
use crate::pgdump;
pub use crate::vmexit::ExitStats;

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest wrote its exit status to the exit port.
    Exited(u32),
    /// The guest kernel reported a panic on the panic port.
    Panicked,
    /// The CPU shut down: a triple fault.
    TripleFault,
    /// `--timeout` expired.
    TimedOut,
    /// The program's output could not be written to the host (broken pipe, full disk).
    OutputFailed(String),
    /// An exit the VMM cannot handle, or a KVM error.
    Failed(String),
}

/// What `--pgdump` asks of a page-table dump request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgdumpMode {
    /// Ignore requests (the guest reads back u32::MAX).
    Off,
    /// Walk, cross-check with KVM_TRANSLATE and print to stderr.
    Print,
}

/// The vCPU and what its exits touch.
pub struct Vcpu<'a> {
    pub fd: VcpuFd,
    pub mem: &'a GuestMemoryMmap,
    pub devices: Devices,
    pub pgdump: PgdumpMode,
    pub stats: ExitStats,
    /// Set by the watchdog when `--timeout` expires; it then kicks KVM_RUN with a signal.
    pub expired: Arc<AtomicBool>,
    /// VM exits inside the guest's measured windows (port MARK), summed over the windows.
    pub measured: BTreeMap<&'static str, u64>,
    /// The counts when the current measured window opened.
    window_start: Option<BTreeMap<&'static str, u64>>,
    /// The registers and code at the crash, when the run ended in one (see `crash`).
    pub crash: Option<String>,
}

impl<'a> Vcpu<'a> {
    pub fn new(fd: VcpuFd, mem: &'a GuestMemoryMmap, devices: Devices, pgdump: PgdumpMode) -> Self {
        Vcpu {
            fd,
            mem,
            devices,
            pgdump,
            stats: ExitStats::default(),
            expired: Arc::new(AtomicBool::new(false)),
            measured: BTreeMap::new(),
            window_start: None,
            crash: None,
        }
    }

    /// Runs the guest until it ends.
    pub fn run(&mut self) -> Outcome {
        loop {
            let request = match self.fd.run() {
                Ok(exit) => {
                    crate::vmexit::handle(exit, &mut self.devices, self.mem, &mut self.stats)
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    if self.expired.load(Ordering::SeqCst) {
                        return Outcome::TimedOut;
                    }
                    Request::Continue
                }
                Err(e) => Request::End(Outcome::Failed(format!("KVM_RUN failed: {e}"))),
            };
            match request {
                Request::Continue => {}
                Request::End(outcome) => {
                    if matches!(outcome, Outcome::TripleFault | Outcome::Failed(_)) {
                        self.crash = Some(crate::crash::report(&self.fd, self.mem));
                    }
                    return outcome;
                }
                Request::Pgdump => self.devices.debug.last_mismatches = self.dump_page_tables(),
                Request::Mark(n) => self.mark(n),
            }
        }
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

    /// Walks the page tables from the vCPU's CR3, cross-checks every page with KVM_TRANSLATE,
    /// prints the dump to stderr; returns the number of mismatches.
    fn dump_page_tables(&mut self) -> u32 {
        if self.pgdump == PgdumpMode::Off {
            return u32::MAX;
        }
        let sregs = match self.fd.get_sregs() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("pgdump: KVM_GET_SREGS failed: {e}");
                return u32::MAX;
            }
        };
        let cr3 = sregs.cr3 as u32;
        let pse = sregs.cr4 & (1 << 4) != 0;
        let mem = self.mem;
        let (maps, bad_tables) = pgdump::walk(cr3, pse, |pa| {
            mem.read_obj::<u32>(GuestAddress(u64::from(pa))).ok()
        });
        let mut mismatches = bad_tables as u32;
        for m in &maps {
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
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "pgdump cr3=0x{cr3:08x}");
        for r in pgdump::runs(&maps) {
            let _ = writeln!(err, "{}", pgdump::format_run(&r));
        }
        let _ = writeln!(
            err,
            "pgdump end: {} pages, {mismatches} translate mismatches",
            maps.len()
        );
        mismatches
    }
}
