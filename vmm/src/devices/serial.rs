//! The two 16550 UARTs (vm-superio's model): COM1 carries the user's stdout and stdin, COM2
//! the kernel log and the user's stderr. Each raises its PC IRQ (4, 3) on the in-kernel
//! irqchip through an irqfd.

use std::io::Write;

use anyhow::{Context, Result};
use kvm_ioctls::VmFd;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::stdin::StdinQueue;
use crate::layout::ports;

/// Line status register offset, and its data-ready bit.
const LSR: u8 = 5;
const LSR_DATA_READY: u8 = 0x01;

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
    /// Host bytes waiting to enter the receive FIFO (COM1 only).
    input: Option<StdinQueue>,
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
            input: None,
        })
    }

    /// COM1: the guest's stdout, and `input` as its receive side.
    pub fn com1(
        vm: Option<&VmFd>,
        out: Box<dyn Write + Send>,
        input: Option<StdinQueue>,
    ) -> Result<Uart> {
        let mut u = Uart::new(ports::COM1, 4, vm, out)?;
        u.input = input;
        Ok(u)
    }

    /// COM2: the kernel log and the guest's stderr.
    pub fn com2(vm: Option<&VmFd>, out: Box<dyn Write + Send>) -> Result<Uart> {
        Uart::new(ports::COM2, 3, vm, out)
    }

    /// Whether `port` is one of this UART's eight registers.
    pub fn owns(&self, port: u16) -> bool {
        (self.base..self.base + 8).contains(&port)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        self.refill();
        self.uart.read((port - self.base) as u8)
    }

    pub fn write(&mut self, port: u16, value: u8) {
        if let Err(e) = self.uart.write((port - self.base) as u8, value) {
            log::warn!("UART {:#x} write failed: {e:?}", self.base);
        }
    }

    /// Moves waiting host input into the receive FIFO, as far as it has room. Done whenever
    /// the guest touches the UART, so input flows as fast as the guest reads it.
    fn refill(&mut self) {
        let Some(input) = &self.input else { return };
        let room = self.uart.fifo_capacity();
        if room == 0 {
            return;
        }
        let bytes = input.take(room);
        if !bytes.is_empty() {
            if let Err(e) = self.uart.enqueue_raw_bytes(&bytes) {
                log::warn!("COM1 receive failed: {e:?}");
            }
        }
    }

    /// True when the host's input has ended and the guest has read every byte of it.
    pub fn input_drained(&mut self) -> bool {
        self.refill();
        let fifo_empty = self.uart.read(LSR) & LSR_DATA_READY == 0;
        fifo_empty && self.input.as_ref().is_none_or(StdinQueue::ended_and_empty)
    }
}
