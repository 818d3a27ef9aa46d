//! What each VM exit means: port I/O goes to the device bus (`devices`), MMIO can only be an
//! access into the hole (RAM is backed, the LAPIC/IOAPIC are in KVM): reads give all-ones,
//! writes are dropped, both counted; a shutdown is a triple fault; anything else ends the run
//! with the reason. The run loop around it is `vcpu.rs`.

use std::collections::{BTreeMap, VecDeque};

use kvm_ioctls::VcpuExit;
use vm_memory::GuestMemoryMmap;

use crate::arch::layout::ports;
use crate::devices::Devices;
use crate::outcome::{Outcome, Request};

/// How many recent exits a crash report shows.
pub const RECENT_EXITS: usize = 8;

/// One recent VM exit: its reason, the port or address it concerned, and the guest's EIP
/// then (filled in by the run loop; None if the registers could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentExit {
    pub reason: &'static str,
    pub addr: Option<u64>,
    pub eip: Option<u32>,
}

/// Counts of VM exits by reason, and the last [`RECENT_EXITS`] of them.
#[derive(Debug, Default)]
pub struct ExitStats {
    pub by_reason: BTreeMap<&'static str, u64>,
    pub recent: VecDeque<RecentExit>,
}

impl ExitStats {
    pub fn count(&mut self, reason: &'static str) {
        *self.by_reason.entry(reason).or_default() += 1;
        self.remember(reason, None);
    }

    /// Counts an exit about a port or an address.
    pub fn count_at(&mut self, reason: &'static str, addr: u64) {
        *self.by_reason.entry(reason).or_default() += 1;
        self.remember(reason, Some(addr));
    }

    fn remember(&mut self, reason: &'static str, addr: Option<u64>) {
        if self.recent.len() == RECENT_EXITS {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentExit {
            reason,
            addr,
            eip: None,
        });
    }
}

/// Handles one exit; what it asks of the run loop.
pub fn handle(
    exit: VcpuExit<'_>,
    devices: &mut Devices,
    mem: &GuestMemoryMmap,
    stats: &mut ExitStats,
) -> Request {
    match exit {
        VcpuExit::IoOut(port, data) => {
            // A mark is not counted: a window holds only the exits strictly inside it.
            if port != ports::MARK {
                stats.count_at("io-out", port.into());
            }
            devices.pio_write(port, data, mem)
        }
        VcpuExit::IoIn(port, data) => {
            stats.count_at("io-in", port.into());
            devices.pio_read(port, data, mem);
            Request::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            stats.count_at("mmio", addr);
            mmio_read(addr, data)
        }
        VcpuExit::MmioWrite(addr, data) => {
            stats.count_at("mmio", addr);
            log::debug!(
                "MMIO write of {} bytes at {addr:#x} (unbacked): dropped",
                data.len()
            );
            Request::Continue
        }
        VcpuExit::Shutdown => {
            stats.count("shutdown");
            Request::End(Outcome::TripleFault)
        }
        VcpuExit::Hlt => {
            stats.count("hlt");
            Request::End(Outcome::Failed(
                "the guest halted outside the in-kernel irqchip".into(),
            ))
        }
        VcpuExit::Debug(d) => {
            stats.count("debug");
            Request::Debug(d)
        }
        VcpuExit::FailEntry(reason, cpu) => Request::End(Outcome::Failed(format!(
            "KVM could not enter the guest (hardware entry failure {reason:#x} on cpu {cpu})"
        ))),
        VcpuExit::InternalError => Request::End(Outcome::Failed(
            "KVM internal error in the guest: most likely an instruction KVM cannot emulate \
             (an MMIO access by an x87 or SSE instruction); the code at EIP is below"
                .into(),
        )),
        other => Request::End(Outcome::Failed(format!("unexpected VM exit: {other:?}"))),
    }
}

/// A read in the MMIO hole (nothing is backed there): all-ones.
fn mmio_read(addr: u64, data: &mut [u8]) -> Request {
    log::debug!(
        "MMIO read of {} bytes at {addr:#x} (unbacked): all-ones",
        data.len()
    );
    data.fill(0xff);
    Request::Continue
}
