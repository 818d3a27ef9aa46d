//! The guest's devices: a 16550 UART on COM1 and the port-I/O bus that routes to it.
//!
//! The exit, panic and pgdump ports are handled by the vCPU loop (`vcpu.rs`) because they end
//! the run or need the vCPU itself.

pub mod serial;

pub use serial::Com1;
