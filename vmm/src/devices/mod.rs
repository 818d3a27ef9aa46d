//! The guest's port devices behind one small trait, and the bus that routes an I/O exit to
//! the device that claims its port (Firecracker's shape: the vCPU loop asks the bus, the bus
//! asks the device).
//!
//! - [`Uart`]: the two 16550s (COM1, COM2): the kernel's early log and panics;
//! - [`Console`]: the paravirtual console, one exit per piece of a user `read()`/`write()`;
//! - [`DebugPorts`]: exit, panic, pgdump, export, mark (docs/abi.md).
//!
//! A write may end the run or ask something of the vCPU itself (a page-table walk, a
//! measured-window mark): it returns a [`crate::outcome::Request`] that the run loop carries out.

pub mod bus;
pub mod console;
pub mod debug;
pub mod serial;

use std::io::Write;

use anyhow::Result;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

pub use console::{Console, FdInput, Input, InputSource, NoInput};
pub use debug::DebugPorts;
pub use serial::Uart;

use crate::debug::symbols::UserSymbols;
use crate::outcome::Request;
use bus::{le_value, PortDevice};

/// Every port device of the machine.
pub struct Devices {
    pub com1: Uart,
    pub com2: Uart,
    pub console: Console,
    pub debug: DebugPorts,
}

impl Devices {
    /// The machine's devices: the UARTs' interrupts wired to `vm`'s irqchip when given, COM1
    /// to the host's stdout, COM2 (the kernel log) to its stderr, the console to `stdout`,
    /// stderr and `stdin`; the debug ports name user-program symbols from `user_symbols`.
    pub fn new(
        vm: Option<&VmFd>,
        stdout: Box<dyn Write + Send>,
        stdin: Box<dyn InputSource>,
        user_symbols: UserSymbols,
    ) -> Result<Devices> {
        Ok(Devices {
            com1: Uart::com1(vm, Box::new(std::io::stdout()))?,
            com2: Uart::com2(vm, Box::new(std::io::stderr()))?,
            console: Console::new(stdout, Box::new(std::io::stderr()), stdin),
            debug: DebugPorts::new(user_symbols),
        })
    }

    fn bus(&mut self) -> [&mut dyn PortDevice; 4] {
        [
            &mut self.debug,
            &mut self.console,
            &mut self.com1,
            &mut self.com2,
        ]
    }

    /// Routes an `in` to the device owning `port`; an unclaimed port reads all-ones.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8], mem: &GuestMemoryMmap) {
        match self.bus().into_iter().find(|d| d.owns(port)) {
            Some(d) => d.read(port, data, mem),
            None => {
                log::debug!("read from unclaimed port {port:#x} gives all-ones");
                data.fill(0xff);
            }
        }
    }

    /// Routes an `out` to the device owning `port`; writes to an unclaimed port are dropped.
    pub fn pio_write(&mut self, port: u16, data: &[u8], mem: &GuestMemoryMmap) -> Request {
        match self.bus().into_iter().find(|d| d.owns(port)) {
            Some(d) => d.write(port, data, mem),
            None => {
                log::debug!(
                    "write {:#x} to unclaimed port {port:#x} ignored",
                    le_value(data)
                );
                Request::Continue
            }
        }
    }
}
