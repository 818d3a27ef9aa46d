//! Turning Debian's bzImage into an ELF `vmlinux` QEMU can boot directly (PVH).
//!
//! Booting the bzImage costs the lab about half a second of TCG time in the real-mode setup
//! and the LZ4 decompression of ~50 MB. The kernel is built with `CONFIG_PVH=y`, so its ELF
//! image carries `XEN_ELFNOTE_PHYS32_ENTRY` and QEMU can load it straight into memory. The
//! bzImage's payload (located by the setup header's `payload_offset`/`payload_length`) is an
//! LZ4 "legacy" stream (magic `0x184C2102`, then blocks of `u32 size` + LZ4 block, each at most
//! 8 MiB decompressed) followed by the `u32` decompressed size. Any other format yields `None`
//! and the lab boots the bzImage as is.

use goblin::elf::Elf;

/// LZ4 legacy frame magic.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Decompressed size of every block but the last in an LZ4 legacy stream.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH entry point note.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

/// The compressed payload of a bzImage (boot protocol ≥ 2.08).
pub fn bzimage_payload(bz: &[u8]) -> Option<&[u8]> {
    if bz.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let setup_sects = match *bz.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = u32_at(bz, 0x248)? as usize;
    let length = u32_at(bz, 0x24c)? as usize;
    bz.get(pm_start + offset..pm_start + offset + length)
}

/// Decompresses an LZ4 legacy stream whose last 4 bytes are the decompressed size.
pub fn lz4_legacy_decompress(data: &[u8]) -> Option<Vec<u8>> {
    if u32_at(data, 0)? != LZ4_LEGACY_MAGIC || data.len() < 8 {
        return None;
    }
    let total = u32_at(data, data.len() - 4)? as usize;
    let mut out = vec![0u8; total];
    let mut pos = 4;
    let mut done = 0;
    while done < total {
        let size = u32_at(data, pos)?;
        pos += 4;
        if size == LZ4_LEGACY_MAGIC {
            continue; // a concatenated stream: its header
        }
        let block = data.get(pos..pos + size as usize)?;
        pos += size as usize;
        let want = LZ4_LEGACY_BLOCK.min(total - done);
        let n = lz4_flex::block::decompress_into(block, &mut out[done..done + want]).ok()?;
        if n == 0 {
            return None;
        }
        done += n;
    }
    Some(out)
}

/// Whether `elf` is an x86-64 ELF kernel with a PVH entry note.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    let Ok(parsed) = Elf::parse(elf) else {
        return false;
    };
    if parsed.header.e_machine != goblin::elf::header::EM_X86_64 {
        return false;
    }
    let Some(notes) = parsed.iter_note_headers(elf) else {
        return false;
    };
    notes
        .filter_map(Result::ok)
        .any(|n| n.name == "Xen" && n.n_type == XEN_ELFNOTE_PHYS32_ENTRY)
}

/// The PVH-bootable `vmlinux` inside a bzImage, if it is LZ4-compressed and has the PVH note.
pub fn extract_pvh_vmlinux(bz: &[u8]) -> Option<Vec<u8>> {
    let vmlinux = lz4_legacy_decompress(bzimage_payload(bz)?)?;
    has_pvh_note(&vmlinux).then_some(vmlinux)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_legacy_round_trip() {
        let plain: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let block = lz4_flex::block::compress(&plain);
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
        stream.extend_from_slice(&block);
        stream.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        assert_eq!(lz4_legacy_decompress(&stream).unwrap(), plain);
        stream[0] ^= 1;
        assert!(lz4_legacy_decompress(&stream).is_none());
    }

    #[test]
    fn not_a_bzimage() {
        assert!(bzimage_payload(&[0u8; 4096]).is_none());
        assert!(extract_pvh_vmlinux(b"short").is_none());
        assert!(!has_pvh_note(b"\x7fELF garbage"));
    }
}
