//! The MP table (Intel MultiProcessor Specification 1.4) that tells the kernel how many
//! vCPUs the machine has (docs/abi.md "CPUs"): a floating pointer structure at
//! `xv6_abi::smp::MP_FLOATING` and, right after it, a configuration table with one processor
//! entry per vCPU (APIC id = vCPU id, vCPU 0 the bootstrap processor), an ISA bus and the
//! in-kernel I/O APIC. The kernel's `mpinit` (guest/src/mp.rs) finds and reads it; with one
//! vCPU none is written and the kernel runs on one CPU.

use anyhow::{ensure, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xv6_abi::smp::{MP_FLOATING, NCPU};

/// The local APIC's base (KVM's in-kernel xAPIC default).
const LAPIC_BASE: u32 = 0xFEE0_0000;
/// The I/O APIC's base (KVM's in-kernel IOAPIC default).
const IOAPIC_BASE: u32 = 0xFEC0_0000;
/// The MP spec revision written (1.4).
const SPEC_REV: u8 = 4;
/// Bytes of the floating pointer structure and of the configuration table's header.
const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;

/// Makes the bytes of `b` sum to zero (mod 256) by setting the byte at `at`.
fn seal(b: &mut [u8], at: usize) {
    b[at] = 0;
    let sum = b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
    b[at] = sum.wrapping_neg();
}

/// The configuration table for `ncpu` vCPUs, to sit at physical `at`.
fn config_table(ncpu: u8) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(b"PCMP");
    t[6] = SPEC_REV;
    t[8..16].copy_from_slice(b"XV6-VMM ");
    t[16..28].copy_from_slice(b"KVM SMP     ");
    t[36..40].copy_from_slice(&LAPIC_BASE.to_le_bytes());
    for id in 0..ncpu {
        // Processor: type 0, APIC id, APIC version, flags (enabled; the BSP), CPU signature,
        // feature flags, reserved.
        let flags = if id == 0 { 0b11 } else { 0b01 };
        let mut e = [0u8; 20];
        (e[0], e[1], e[2], e[3]) = (0, id, 0x14, flags);
        t.extend_from_slice(&e);
    }
    // Bus 0: ISA. I/O APIC: its id after the CPUs', version 0x11, enabled, its base.
    t.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut io = [2u8, ncpu, 0x11, 1, 0, 0, 0, 0];
    io[4..].copy_from_slice(&IOAPIC_BASE.to_le_bytes());
    t.extend_from_slice(&io);
    let entries = u16::from(ncpu) + 2;
    t[34..36].copy_from_slice(&entries.to_le_bytes());
    let len = t.len() as u16;
    t[4..6].copy_from_slice(&len.to_le_bytes());
    seal(&mut t, 7);
    t
}

/// The floating pointer structure and the configuration table for `ncpu` vCPUs, as one
/// block to write at MP_FLOATING.
pub fn mptable(ncpu: u8) -> Vec<u8> {
    let mut fp = [0u8; FLOATING_LEN];
    fp[..4].copy_from_slice(b"_MP_");
    let table_at = MP_FLOATING + FLOATING_LEN as u32;
    fp[4..8].copy_from_slice(&table_at.to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = SPEC_REV;
    seal(&mut fp, 10);
    let mut out = fp.to_vec();
    out.extend_from_slice(&config_table(ncpu));
    out
}

/// Writes the MP table for `ncpu` vCPUs (2..=NCPU; one vCPU needs none) into guest memory.
pub fn write_mptable(mem: &GuestMemoryMmap, ncpu: u8) -> Result<()> {
    ensure!(
        (2..=NCPU).contains(&usize::from(ncpu)),
        "an MP table is for 2 to {NCPU} vCPUs, not {ncpu}"
    );
    mem.write_slice(&mptable(ncpu), GuestAddress(u64::from(MP_FLOATING)))?;
    Ok(())
}

/// The kernel's own reader of the table (a pure file, host-buildable), for the tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../guest/src/mp.rs"]
mod kernel_mp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_reads_every_vcpu_with_vcpu_0_as_the_boot_cpu() {
        for n in 2..=NCPU as u8 {
            let block = mptable(n);
            let mut low = vec![0u8; 0x10_0000];
            let at = MP_FLOATING as usize;
            low[at..at + block.len()].copy_from_slice(&block);
            let cfg = kernel_mp::find(|pa, len| &low[pa as usize..pa as usize + len])
                .unwrap()
                .unwrap();
            assert_eq!(cfg.ncpu, usize::from(n));
            let want: Vec<u8> = (0..n).collect();
            assert_eq!(cfg.apicids[..cfg.ncpu], want[..]);
            assert_eq!(cfg.lapic, LAPIC_BASE);
        }
    }

    #[test]
    fn checksums_and_lengths() {
        let block = mptable(3);
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        assert_eq!(sum(&block[..16]), 0);
        let len = usize::from(u16::from_le_bytes([block[20], block[21]]));
        assert_eq!(len, HEADER_LEN + 3 * 20 + 2 * 8);
        assert_eq!(block.len(), 16 + len);
        assert_eq!(sum(&block[16..]), 0);
        // It fits below 1 MiB with room to spare.
        assert!(MP_FLOATING as usize + mptable(NCPU as u8).len() < 0x10_0000);
    }
}
