//! The VM: a KVM VM file descriptor with guest RAM, the in-kernel irqchip and one vCPU.

use anyhow::{Context, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout::KVM_TSS_ADDR;

/// A VM with its memory registered in KVM.
pub struct Vm {
    pub kvm: Kvm,
    pub fd: VmFd,
    pub mem: GuestMemoryMmap,
}

/// Opens /dev/kvm with an error that says what to do.
pub fn open_kvm() -> Result<Kvm> {
    Kvm::new().map_err(|e| {
        anyhow::anyhow!(
            "cannot open /dev/kvm ({e}): load kvm_intel/kvm_amd and make /dev/kvm accessible, \
             or use --engine lab"
        )
    })
}

impl Vm {
    /// Creates a VM over `mem`; with `irqchip`, the LAPIC/IOAPIC/PIC are emulated in the kernel.
    pub fn new(kvm: Kvm, mem: GuestMemoryMmap, irqchip: bool) -> Result<Vm> {
        let fd = kvm.create_vm().context("KVM_CREATE_VM failed")?;
        // Intel VT-x needs three pages of guest-physical space for its real-mode TSS; they
        // sit in the MMIO hole, where no RAM is.
        fd.set_tss_address(KVM_TSS_ADDR)
            .context("KVM_SET_TSS_ADDR failed")?;
        if irqchip {
            fd.create_irq_chip().context("KVM_CREATE_IRQCHIP failed")?;
        }
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .context("guest RAM has no host mapping")?;
            let kvm_region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host` points to a mapping of `region.len()` bytes owned by `mem`, which
            // this Vm keeps alive for as long as the VM fd exists.
            unsafe { fd.set_user_memory_region(kvm_region) }
                .context("KVM_SET_USER_MEMORY_REGION failed")?;
        }
        Ok(Vm { kvm, fd, mem })
    }

    /// Creates vCPU 0 with the host's supported CPUID.
    pub fn create_vcpu(&self) -> Result<VcpuFd> {
        let vcpu = self.fd.create_vcpu(0).context("KVM_CREATE_VCPU failed")?;
        let cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .context("KVM_GET_SUPPORTED_CPUID failed")?;
        vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2 failed")?;
        Ok(vcpu)
    }
}
