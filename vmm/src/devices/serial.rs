//! COM1: vm-superio's 16550 model, its output to the host's stdout, its interrupt to IRQ 4 of
//! the in-kernel irqchip through an irqfd.

use std::io::Write;

use anyhow::{Context, Result};
use kvm_ioctls::VmFd;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::layout::ports;

/// IRQ line of COM1 on the PC.
pub const COM1_IRQ: u32 = 4;

/// An eventfd wired to a GSI: writing it raises the guest interrupt.
pub struct IrqTrigger(EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The COM1 UART.
pub struct Com1 {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl Com1 {
    /// A UART writing to `out`; with `vm` given, its interrupt goes to the irqchip.
    pub fn new(vm: Option<&VmFd>, out: Box<dyn Write + Send>) -> Result<Com1> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).context("eventfd failed")?;
        if let Some(vm) = vm {
            vm.register_irqfd(&evt, COM1_IRQ)
                .context("KVM_IRQFD for COM1 failed")?;
        }
        Ok(Com1 {
            uart: Serial::new(IrqTrigger(evt), out),
        })
    }

    /// Whether `port` is one of the UART's eight registers.
    pub fn owns(port: u16) -> bool {
        (ports::COM1..ports::COM1 + 8).contains(&port)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        self.uart.read((port - ports::COM1) as u8)
    }

    pub fn write(&mut self, port: u16, value: u8) {
        if let Err(e) = self.uart.write((port - ports::COM1) as u8, value) {
            log::warn!("COM1 write failed: {e:?}");
        }
    }
}
