//! The vCPU run loop: KVM_RUN, and what each VM exit means.
//!
//! Port I/O goes to COM1 or to the boot protocol's ports (exit, panic, pgdump); MMIO can only
//! be an access into the hole (RAM is backed, the LAPIC/IOAPIC are in KVM): reads give
//! all-ones, writes are dropped, both counted.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::Uart;
use crate::layout::ports;
use crate::pgdump;

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

/// Counts of VM exits by reason.
#[derive(Debug, Default)]
pub struct ExitStats {
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl ExitStats {
    fn count(&mut self, reason: &'static str) {
        *self.by_reason.entry(reason).or_default() += 1;
    }
}

/// The vCPU and what its exits touch.
pub struct Vcpu<'a> {
    pub fd: VcpuFd,
    pub mem: &'a GuestMemoryMmap,
    pub com1: Uart,
    pub com2: Uart,
    pub pgdump: PgdumpMode,
    pub stats: ExitStats,
    /// Set by the watchdog when `--timeout` expires; it then kicks KVM_RUN with a signal.
    pub expired: Arc<AtomicBool>,
    /// Bytes the guest exported (ports EXPORT/EXPORT_LEN).
    pub exported: Vec<u8>,
    /// VM exits inside the guest's measured windows (port MARK), summed over the windows.
    pub measured: BTreeMap<&'static str, u64>,
    /// The counts when the current measured window opened.
    window_start: Option<BTreeMap<&'static str, u64>>,
    last_mismatches: u32,
    export_len: u32,
}

/// The most a run may export (a bound on what a guest can make the VMM hold).
const EXPORT_MAX: usize = 64 << 20;

/// What an exit asks for once its borrow of the run structure has ended.
enum Step {
    Continue,
    Done(Outcome),
    Pgdump,
}

impl<'a> Vcpu<'a> {
    pub fn new(
        fd: VcpuFd,
        mem: &'a GuestMemoryMmap,
        (com1, com2): (Uart, Uart),
        pgdump: PgdumpMode,
    ) -> Self {
        Vcpu {
            fd,
            mem,
            com1,
            com2,
            pgdump,
            stats: ExitStats::default(),
            expired: Arc::new(AtomicBool::new(false)),
            exported: Vec::new(),
            measured: BTreeMap::new(),
            window_start: None,
            last_mismatches: u32::MAX,
            export_len: 0,
        }
    }

    /// Runs the guest until it ends.
    pub fn run(&mut self) -> Outcome {
        loop {
            let step = self.step();
            match step {
                Step::Continue => {}
                Step::Done(outcome) => return outcome,
                Step::Pgdump => self.last_mismatches = self.dump_page_tables(),
            }
        }
    }

    fn step(&mut self) -> Step {
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                if self.expired.load(Ordering::SeqCst) {
                    return Step::Done(Outcome::TimedOut);
                }
                return Step::Continue;
            }
            Err(e) => return Step::Done(Outcome::Failed(format!("KVM_RUN failed: {e}"))),
        };
        match exit {
            VcpuExit::IoOut(port, data) => {
                let value = le_value(data);
                if port == ports::MARK {
                    // Not counted: a window holds only the exits strictly inside it.
                    self.mark(value);
                    return Step::Continue;
                }
                self.stats.count("io-out");
                match port {
                    ports::EXIT => return Step::Done(Outcome::Exited(value)),
                    ports::PANIC => return Step::Done(Outcome::Panicked),
                    ports::PGDUMP => return Step::Pgdump,
                    ports::EXPORT_LEN => self.export_len = value,
                    ports::EXPORT => self.export(value),
                    p if self.com1.owns(p) => self.com1.write(p, data[0]),
                    p if self.com2.owns(p) => self.com2.write(p, data[0]),
                    p => log::debug!("write {value:#x} to unclaimed port {p:#x} ignored"),
                }
            }
            VcpuExit::IoIn(port, data) => {
                self.stats.count("io-in");
                match port {
                    ports::PGDUMP => fill_le(data, self.last_mismatches),
                    ports::STDIN_STATE => fill_le(data, self.com1.input_drained().into()),
                    p if self.com1.owns(p) => data[0] = self.com1.read(p),
                    p if self.com2.owns(p) => data[0] = self.com2.read(p),
                    p => {
                        log::debug!("read from unclaimed port {p:#x} gives all-ones");
                        data.fill(0xff);
                    }
                }
            }
            VcpuExit::MmioRead(addr, data) => {
                self.stats.count("mmio");
                log::debug!(
                    "MMIO read of {} bytes at {addr:#x} (unbacked): all-ones",
                    data.len()
                );
                data.fill(0xff);
            }
            VcpuExit::MmioWrite(addr, data) => {
                self.stats.count("mmio");
                log::debug!(
                    "MMIO write of {} bytes at {addr:#x} (unbacked): dropped",
                    data.len()
                );
            }
            VcpuExit::Shutdown => {
                self.stats.count("shutdown");
                return Step::Done(Outcome::TripleFault);
            }
            VcpuExit::Hlt => {
                self.stats.count("hlt");
                return Step::Done(Outcome::Failed(
                    "the guest halted outside the in-kernel irqchip".into(),
                ));
            }
            VcpuExit::FailEntry(reason, cpu) => {
                let why = format!("hardware entry failure {reason:#x} on cpu {cpu}");
                return Step::Done(Outcome::Failed(format!(
                    "KVM could not enter the guest ({why})"
                )));
            }
            VcpuExit::InternalError => {
                return Step::Done(Outcome::Failed(
                    "KVM internal error (emulation failure?) in the guest".into(),
                ))
            }
            other => {
                return Step::Done(Outcome::Failed(format!("unexpected VM exit: {other:?}")));
            }
        }
        Step::Continue
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

    /// Appends `export_len` bytes at guest-physical `pa` to the export stream.
    fn export(&mut self, pa: u32) {
        let len = self.export_len as usize;
        if self.exported.len() + len > EXPORT_MAX {
            log::warn!("export of {len} bytes refused: over the {EXPORT_MAX}-byte bound");
            return;
        }
        let mut buf = vec![0u8; len];
        match self.mem.read_slice(&mut buf, GuestAddress(u64::from(pa))) {
            Ok(()) => self.exported.extend_from_slice(&buf),
            Err(e) => log::warn!("export of {len} bytes at {pa:#x} failed: {e}"),
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

fn le_value(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

fn fill_le(data: &mut [u8], value: u32) {
    let bytes = value.to_le_bytes();
    for (i, d) in data.iter_mut().enumerate() {
        *d = *bytes.get(i).unwrap_or(&0);
    }
}
