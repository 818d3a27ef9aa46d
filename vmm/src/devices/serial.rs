//! The two 16550 UARTs (vm-superio's model): COM2 carries the kernel's early log and panics
//! to the host's stderr; COM1 writes to the host's stdout (a plain serial console for minimal
//! kernels; ours uses it for its log only when it finds no COM2). User programs' I/O goes
//! through the paravirtual console instead (`console.rs`). Each UART raises its PC IRQ (4, 3)
//! on the in-kernel irqchip through an irqfd.

use std::io::Write;

use anyhow::{Context, Result};
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::layout::ports;
use crate::devices::bus::PortDevice;
use crate::outcome::Request;

/// An eventfd wired to a GSI: writing it raises the guest interrupt.
pub struct IrqTrigger(EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// A UART at `base`, writing to a host stream.
pub struct Uart {
    base: u16,
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl Uart {
    /// A UART at `base` writing to `out`; with `vm` given, its interrupt goes to `irq`.
    pub fn new(base: u16, irq: u32, vm: Option<&VmFd>, out: Box<dyn Write + Send>) -> Result<Uart> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).context("eventfd failed")?;
        if let Some(vm) = vm {
            vm.register_irqfd(&evt, irq)
                .with_context(|| format!("KVM_IRQFD for the UART at {base:#x} failed"))?;
        }
        Ok(Uart {
            base,
            uart: Serial::new(IrqTrigger(evt), out),
        })
    }

    /// COM1.
    pub fn com1(vm: Option<&VmFd>, out: Box<dyn Write + Send>) -> Result<Uart> {
        Uart::new(ports::COM1, 4, vm, out)
    }

    /// COM2: the kernel log.
    pub fn com2(vm: Option<&VmFd>, out: Box<dyn Write + Send>) -> Result<Uart> {
        Uart::new(ports::COM2, 3, vm, out)
    }
}

impl PortDevice for Uart {
    fn owns(&self, port: u16) -> bool {
        (self.base..self.base + 8).contains(&port)
    }

    fn read(&mut self, port: u16, data: &mut [u8], _mem: &GuestMemoryMmap) {
        data.fill(0);
        data[0] = self.uart.read((port - self.base) as u8);
    }

    fn write(&mut self, port: u16, data: &[u8], _mem: &GuestMemoryMmap) -> Request {
        if let Err(e) = self.uart.write((port - self.base) as u8, data[0]) {
            log::warn!("UART {:#x} write failed: {e:?}", self.base);
        }
        Request::Continue
    }
}
