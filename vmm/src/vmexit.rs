//! What each VM exit means: port I/O goes to the device bus (`devices`), MMIO can only be an
//! access into the hole (RAM is backed, the LAPIC/IOAPIC are in KVM): reads give all-ones,
//! writes are dropped, both counted; a shutdown is a triple fault; anything else ends the run
//! with the reason. The run loop around it is `vcpu.rs`.

use std::collections::BTreeMap;

use kvm_ioctls::VcpuExit;
use vm_memory::GuestMemoryMmap;

use crate::devices::{Devices, Request};
use crate::layout::ports;
use crate::vcpu::Outcome;

/// Counts of VM exits by reason.
#[derive(Debug, Default)]
pub struct ExitStats {
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl ExitStats {
    pub fn count(&mut self, reason: &'static str) {
        *self.by_reason.entry(reason).or_default() += 1;
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
                stats.count("io-out");
            }
            devices.pio_write(port, data, mem)
        }
        VcpuExit::IoIn(port, data) => {
            stats.count("io-in");
            devices.pio_read(port, data, mem);
            Request::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            stats.count("mmio");
            log::debug!(
                "MMIO read of {} bytes at {addr:#x} (unbacked): all-ones",
                data.len()
            );
            data.fill(0xff);
            Request::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            stats.count("mmio");
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
        VcpuExit::FailEntry(reason, cpu) => Request::End(Outcome::Failed(format!(
            "KVM could not enter the guest (hardware entry failure {reason:#x} on cpu {cpu})"
        ))),
        VcpuExit::InternalError => Request::End(Outcome::Failed(
            "KVM internal error (emulation failure?) in the guest".into(),
        )),
        other => Request::End(Outcome::Failed(format!("unexpected VM exit: {other:?}"))),
    }
}
