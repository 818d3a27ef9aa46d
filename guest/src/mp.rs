//! The MP table (xv6 mp.c, Intel's MultiProcessor Specification 1.4): how the kernel learns
//! which CPUs the machine has. The VMM writes an MP floating pointer structure and the
//! configuration table it points at (docs/abi.md "CPUs"); `mpsearch` finds the floating
//! pointer where the spec says to look, `parse_config` reads the processor entries (and the
//! local APIC's address). No MP table, or a broken one: one CPU, as before SMP.
//!
//! The parsing is pure (host tests below); `mpinit` reads guest-physical memory through the
//! kernel's P2V mapping of low memory.

use xv6_abi::smp::NCPU;

/// Signature of the floating pointer structure.
const MP_SIG: &[u8; 4] = b"_MP_";
/// Signature of the configuration table.
const PCMP_SIG: &[u8; 4] = b"PCMP";
/// Size of the floating pointer structure.
const MP_LEN: usize = 16;
/// Size of the configuration table's header.
const PCMP_HDR: usize = 44;
/// Entry types and sizes.
const MPPROC: u8 = 0;
const MPPROC_LEN: usize = 20;
const MPOTHER_LEN: usize = 8;
/// Processor entry flags: enabled, bootstrap processor.
const CPU_EN: u8 = 0x01;
const CPU_BP: u8 = 0x02;

/// What the MP table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpConfig {
    /// Local APIC ids of the enabled processors, the bootstrap processor first; at most NCPU
    /// (the rest are ignored, as xv6 does).
    pub apicids: [u8; NCPU],
    pub ncpu: usize,
    /// The local APIC's physical address.
    pub lapic: u32,
}

/// Why an MP table was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpError {
    /// The floating pointer names no configuration table (a default configuration, which
    /// this kernel does not take).
    NoConfigTable,
    /// The configuration table's signature, version, length or checksum is wrong.
    BadConfigTable,
    /// An entry of unknown type, or one that runs past the table.
    BadEntry(u8),
    /// No enabled processor (or no bootstrap processor) is listed.
    NoProcessors,
}

/// Do the bytes add up to 0 (mod 256)?
fn sum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

/// Looks for a floating pointer structure in `mem` (the bytes at physical `base`): on
/// 16-byte boundaries, signature and checksum (xv6 `mpsearch1`). Returns its physical
/// address and that of its configuration table (0: none).
#[must_use]
pub fn mpsearch1(mem: &[u8], base: u32) -> Option<(u32, u32)> {
    mem.chunks_exact(MP_LEN)
        .enumerate()
        .find(|(_, c)| &c[..4] == MP_SIG && sum_ok(c))
        .map(|(i, c)| {
            let conf = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            (base + (i * MP_LEN) as u32, conf)
        })
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The base table's length, from its header (to know how much to read): None unless the
/// header has the right signature.
#[must_use]
pub fn config_len(hdr: &[u8]) -> Option<usize> {
    (hdr.len() >= PCMP_HDR && &hdr[..4] == PCMP_SIG).then(|| u16_at(hdr, 4))
}

/// Reads a configuration table (xv6 `mpconfig` and mpinit's loop over its entries): the
/// enabled processors and the local APIC's address.
pub fn parse_config(table: &[u8]) -> Result<MpConfig, MpError> {
    let len = config_len(table).ok_or(MpError::BadConfigTable)?;
    let version = table[6];
    if len < PCMP_HDR || len > table.len() || !(version == 1 || version == 4) {
        return Err(MpError::BadConfigTable);
    }
    let table = &table[..len];
    if !sum_ok(table) {
        return Err(MpError::BadConfigTable);
    }
    let lapic = u32::from_le_bytes([table[36], table[37], table[38], table[39]]);
    let count = u16_at(table, 34);
    let mut cfg = MpConfig {
        apicids: [0; NCPU],
        ncpu: 0,
        lapic,
    };
    let mut bsp = None;
    let mut at = PCMP_HDR;
    for _ in 0..count {
        let typ = *table.get(at).ok_or(MpError::BadEntry(0xFF))?;
        let size = match typ {
            MPPROC => MPPROC_LEN,
            1..=4 => MPOTHER_LEN,
            t => return Err(MpError::BadEntry(t)),
        };
        let e = table.get(at..at + size).ok_or(MpError::BadEntry(typ))?;
        if typ == MPPROC && e[3] & CPU_EN != 0 {
            if e[3] & CPU_BP != 0 && bsp.is_none() {
                bsp = Some(e[1]);
            } else if cfg.ncpu < NCPU - 1 {
                cfg.ncpu += 1;
                cfg.apicids[cfg.ncpu] = e[1];
            }
        }
        at += size;
    }
    // The bootstrap processor is CPU 0 (it booted as such).
    cfg.apicids[0] = bsp.ok_or(MpError::NoProcessors)?;
    cfg.ncpu += 1;
    Ok(cfg)
}

/// Finds and reads the MP table (xv6 `mpinit`), with `phys(pa, len)` giving the bytes of
/// physical memory below 1 MiB: the floating pointer in the first KiB of the EBDA, or else
/// the last KiB of base memory, or else the BIOS area 0xF0000-0xFFFFF (xv6 `mpsearch`).
/// `Ok(None)`: there is none (one CPU).
pub fn find<'a>(phys: impl Fn(u32, usize) -> &'a [u8]) -> Result<Option<MpConfig>, MpError> {
    let bda = phys(0x400, 0x100);
    let ebda = (u16_at(bda, 0x0E) as u32) << 4;
    let basemem = (u16_at(bda, 0x13) as u32) * 1024;
    let mut places = [
        (ebda, 1024),
        (basemem.wrapping_sub(1024), 1024),
        (0xF0000, 0x10000),
    ];
    if ebda == 0 {
        places[0].1 = 0;
    }
    if basemem < 1024 {
        places[1].1 = 0;
    }
    let found = places
        .iter()
        .filter(|&&(pa, len)| len > 0 && pa + len as u32 <= 0x10_0000)
        .find_map(|&(pa, len)| mpsearch1(phys(pa, len), pa));
    let Some((_, conf)) = found else {
        return Ok(None);
    };
    if conf == 0 {
        return Err(MpError::NoConfigTable);
    }
    if conf as usize + PCMP_HDR > 0x10_0000 {
        return Err(MpError::BadConfigTable);
    }
    let len = config_len(phys(conf, PCMP_HDR)).ok_or(MpError::BadConfigTable)?;
    if conf as usize + len > 0x10_0000 {
        return Err(MpError::BadConfigTable);
    }
    parse_config(phys(conf, len)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixes the checksum byte at `at` so that `b` sums to 0.
    fn seal(b: &mut [u8], at: usize) {
        b[at] = 0;
        let s = b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        b[at] = s.wrapping_neg();
    }

    /// A configuration table: processors (apicid, flags), then an IOAPIC entry.
    fn table(cpus: &[(u8, u8)]) -> Vec<u8> {
        let mut t = vec![0u8; PCMP_HDR];
        t[..4].copy_from_slice(PCMP_SIG);
        t[6] = 4;
        t[36..40].copy_from_slice(&0xFEE0_0000u32.to_le_bytes());
        for &(id, flags) in cpus {
            let mut e = [0u8; MPPROC_LEN];
            (e[0], e[1], e[2], e[3]) = (MPPROC, id, 0x14, flags);
            t.extend_from_slice(&e);
        }
        t.extend_from_slice(&[2, 8, 0x11, 1, 0, 0, 0xC0, 0xFE]);
        let count = (cpus.len() + 1) as u16;
        t[34..36].copy_from_slice(&count.to_le_bytes());
        let len = t.len() as u16;
        t[4..6].copy_from_slice(&len.to_le_bytes());
        seal(&mut t, 7);
        t
    }

    /// Low memory with a floating pointer at `fp` naming a table at `fp + 16`.
    fn memory(fp: usize, t: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 0x10_0000];
        m[fp..fp + 4].copy_from_slice(MP_SIG);
        m[fp + 4..fp + 8].copy_from_slice(&((fp + 16) as u32).to_le_bytes());
        m[fp + 8] = 1;
        m[fp + 9] = 4;
        seal(&mut m[fp..fp + 16], 10);
        m[fp + 16..fp + 16 + t.len()].copy_from_slice(t);
        m
    }

    fn read<'a>(m: &'a [u8]) -> impl Fn(u32, usize) -> &'a [u8] + 'a {
        move |pa, len| &m[pa as usize..pa as usize + len]
    }

    #[test]
    fn finds_the_vmms_table_with_the_boot_cpu_first() {
        let m = memory(
            0xF0000,
            &table(&[(1, CPU_EN), (0, CPU_EN | CPU_BP), (2, CPU_EN)]),
        );
        let c = find(read(&m)).unwrap().unwrap();
        assert_eq!(c.ncpu, 3);
        assert_eq!(c.apicids[..3], [0, 1, 2]);
        assert_eq!(c.lapic, 0xFEE0_0000);
    }

    #[test]
    fn no_table_is_one_cpu_and_broken_ones_are_errors() {
        let zero = vec![0u8; 0x10_0000];
        assert_eq!(find(read(&zero)), Ok(None));
        let mut t = table(&[(0, CPU_EN | CPU_BP)]);
        t[20] ^= 1; // checksum off
        assert_eq!(
            find(read(&memory(0xF0000, &t))),
            Err(MpError::BadConfigTable)
        );
        assert_eq!(
            parse_config(&table(&[(3, CPU_EN)])),
            Err(MpError::NoProcessors)
        );
        let mut t = table(&[(0, CPU_EN | CPU_BP)]);
        t[PCMP_HDR] = 9; // an unknown entry type
        seal(&mut t, 7);
        assert_eq!(parse_config(&t), Err(MpError::BadEntry(9)));
    }

    #[test]
    fn disabled_and_surplus_processors_are_left_out() {
        let mut cpus = vec![(0, CPU_EN | CPU_BP), (7, 0)];
        cpus.extend((8..=20).map(|i| (i, CPU_EN)));
        let c = parse_config(&table(&cpus)).unwrap();
        assert_eq!(c.ncpu, NCPU);
        assert_eq!(c.apicids, [0, 8, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn the_ebda_is_searched_first() {
        let t = table(&[(0, CPU_EN | CPU_BP), (1, CPU_EN)]);
        let mut m = memory(0x9_FC00, &t);
        m[0x40E..0x410].copy_from_slice(&0x9FC0u16.to_le_bytes());
        assert_eq!(find(read(&m)).unwrap().unwrap().ncpu, 2);
    }
}
