//! The boot GDT the PVH ABI asks for: flat 4 GiB code and data segments and a TSS.
//!
//! The table is written into guest memory (the CPU may reload a segment from it at any time)
//! and the same descriptors are handed to KVM as the hidden segment state.

use kvm_bindings::kvm_segment;

/// Selector of the flat 32-bit code segment.
pub const CODE_SEL: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA_SEL: u16 = 0x10;
/// Selector of the (dummy, busy) 32-bit TSS.
pub const TSS_SEL: u16 = 0x18;

/// Builds a descriptor from base, limit (20 bits) and the flags/access bytes
/// (`flags` = G, D/B, L, AVL in bits 12..15 of the 16-bit field; access in bits 0..7).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, code, data, TSS.
pub const BOOT_GDT: [u64; 4] = [
    0,
    gdt_entry(0xc09b, 0, 0xfffff), // code: G, D, P, DPL 0, execute/read, accessed
    gdt_entry(0xc093, 0, 0xfffff), // data: G, B, P, DPL 0, read/write, accessed
    gdt_entry(0x008b, 0, 0x67),    // TSS: P, 32-bit busy TSS
];

/// The KVM hidden-state form of a descriptor.
pub fn kvm_segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = (entry & 0xffff) | ((entry >> 32) & 0xf_0000);
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        limit: limit as u32,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_segment() {
        assert_eq!(BOOT_GDT[1], 0x00cf_9b00_0000_ffff);
        let s = kvm_segment_from_gdt(BOOT_GDT[1], CODE_SEL);
        assert_eq!(
            (s.base, s.limit, s.type_, s.db, s.g, s.s),
            (0, 0xffff_ffff, 0xb, 1, 1, 1)
        );
    }

    #[test]
    fn flat_data_segment_and_tss() {
        assert_eq!(BOOT_GDT[2], 0x00cf_9300_0000_ffff);
        let t = kvm_segment_from_gdt(BOOT_GDT[3], TSS_SEL);
        assert_eq!(
            (t.limit, t.type_, t.s, t.present, t.g),
            (0x67, 0xb, 0, 1, 0)
        );
    }

    #[test]
    fn base_bits_are_split_and_rejoined() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        let s = kvm_segment_from_gdt(e, 0);
        assert_eq!((s.base, s.limit), (0x1234_5678, 0xabcde));
    }
}
