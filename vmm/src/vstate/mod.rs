//! The virtual machine's state and its run loop, over KVM: [`memory`] (guest RAM), [`vm`]
//! (the VM file descriptor, irqchip and one vCPU), [`vcpu`] (KVM_RUN until the run is over)
//! and [`vmexit`] (what each VM exit means); [`aps`] runs the other vCPUs of `--cpus N`.

pub mod aps;
pub mod memory;
pub mod thread;
pub mod vcpu;
pub mod vm;
pub mod vmexit;
