//! The VM: a KVM VM file descriptor with guest RAM, the in-kernel irqchip and one vCPU.
//!
//! The vCPU gets the host's supported CPUID minus hardware virtualization: no VMX (leaf 1
//! ECX bit 5), no SVM (leaf 0x8000_0001 ECX bit 2) and no SVM feature leaf (0x8000_000A),
//! as Solo5 was asked to do. The guest has no use for nested virtualization, and offering it
//! would only widen what a guest can ask of the host's KVM. Each vCPU's table carries its own
//! initial APIC id (leaf 1 EBX bits 31–24, leaves 0xB/0x1F EDX), as on real hardware: KVM
//! leaves it 0 in every vCPU's copy otherwise.

use anyhow::{Context, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::layout::KVM_TSS_ADDR;

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

/// CPUID leaf 1 ECX: VMX (Intel VT-x).
pub const CPUID_1_ECX_VMX: u32 = 1 << 5;
/// CPUID leaf 0x8000_0001 ECX: SVM (AMD-V).
pub const CPUID_8000_0001_ECX_SVM: u32 = 1 << 2;
/// CPUID leaf 0x8000_000A: SVM revision and features.
const CPUID_SVM_FEATURES: u32 = 0x8000_000A;

/// Takes hardware virtualization out of a CPUID table: the VMX and SVM bits cleared, the SVM
/// feature leaf zeroed.
pub fn hide_virtualization(entries: &mut [kvm_bindings::kvm_cpuid_entry2]) {
    for e in entries {
        match e.function {
            1 => e.ecx &= !CPUID_1_ECX_VMX,
            0x8000_0001 => e.ecx &= !CPUID_8000_0001_ECX_SVM,
            CPUID_SVM_FEATURES => (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0),
            _ => {}
        }
    }
}

/// Writes vCPU `id`'s initial APIC id where CPUID reports it: leaf 1 EBX bits 31–24 and the
/// x2APIC id in EDX of every subleaf of leaves 0xB and 0x1F.
pub fn set_apic_id(entries: &mut [kvm_bindings::kvm_cpuid_entry2], id: u8) {
    for e in entries {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(id) << 24),
            0xB | 0x1F => e.edx = u32::from(id),
            _ => {}
        }
    }
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
        self.create_vcpu_id(0)
    }

    /// Creates vCPU `id` (its LAPIC id too) with the host's supported CPUID. With the
    /// in-kernel irqchip, every vCPU but 0 waits for a STARTUP IPI.
    pub fn create_vcpu_id(&self, id: u8) -> Result<VcpuFd> {
        let vcpu = self
            .fd
            .create_vcpu(u64::from(id))
            .context("KVM_CREATE_VCPU failed")?;
        let mut cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .context("KVM_GET_SUPPORTED_CPUID failed")?;
        hide_virtualization(cpuid.as_mut_slice());
        set_apic_id(cpuid.as_mut_slice(), id);
        vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2 failed")?;
        Ok(vcpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn leaf(function: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            eax: 0xffff_ffff,
            ecx,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    #[test]
    fn vmx_and_svm_are_hidden_and_the_rest_kept() {
        let mut t = [
            leaf(1, 0xffff_ffff),
            leaf(0x8000_0001, 0xffff_ffff),
            leaf(0x8000_000A, 0xffff_ffff),
            leaf(7, 0xffff_ffff),
        ];
        hide_virtualization(&mut t);
        assert_eq!(t[0].ecx, !CPUID_1_ECX_VMX);
        assert_eq!(t[0].edx, 0xffff_ffff);
        assert_eq!(t[1].ecx, !CPUID_8000_0001_ECX_SVM);
        assert_eq!((t[2].eax, t[2].ecx, t[2].edx), (0, 0, 0));
        assert_eq!(t[3].ecx, 0xffff_ffff);
    }

    #[test]
    fn each_vcpu_reports_its_own_apic_id() {
        let mut t = [leaf(1, 0), leaf(0xB, 0), leaf(0xB, 1), leaf(7, 0)];
        t[0].ebx = 0xAB12_3456;
        set_apic_id(&mut t, 3);
        assert_eq!(t[0].ebx, 0x0312_3456, "bits 31-24 only");
        assert_eq!((t[1].edx, t[2].edx), (3, 3));
        assert_eq!(t[3].edx, 0xffff_ffff);
    }
}
