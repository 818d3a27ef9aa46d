//! The guest's devices: two 16550 UARTs and the host stdin queue behind COM1.
//!
//! The exit, panic, pgdump and stdin-state ports are handled by the vCPU loop (`vcpu.rs`)
//! because they end the run or need the vCPU itself.

pub mod serial;
pub mod stdin;

pub use serial::Uart;
pub use stdin::StdinQueue;
