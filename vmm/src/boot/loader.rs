//! Loads the guest kernel: a static ELF32 i386 image with a PVH entry note.
//!
//! Why not linux-loader's `Elf` loader: it only takes ELF64 images, and the kernel here is a
//! genuine 32-bit i386 executable (linked at VMA 0x80100000, LMA 0x100000) — converting it to
//! ELF64 would hand gdb and the user a file other than the one we boot. Parsing is done by
//! goblin (both classes); this module only checks the result against our memory map, copies
//! the PT_LOAD segments to their physical addresses, and finds the PVH entry
//! (XEN_ELFNOTE_PHYS32_ENTRY). linux-loader still writes the PVH boot parameters (`boot.rs`).

use anyhow::{anyhow, bail, Context, Result};
use goblin::elf::{header, program_header::PT_LOAD, Elf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::EXTMEM;

/// ELF note type of the PVH 32-bit entry point (Xen's public elfnote.h).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// A PT_LOAD segment, by physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// What the VMM needs of a kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub segments: Vec<Segment>,
    /// Physical address of the 32-bit PVH entry.
    pub entry: u32,
}

/// Parses and checks a kernel image that must load into `[EXTMEM, limit)`.
pub fn parse_kernel(bytes: &[u8], limit: u64) -> Result<KernelImage> {
    let elf = Elf::parse(bytes).map_err(|e| anyhow!("not an ELF file ({e})"))?;
    if elf.is_64 {
        bail!("ELF64 image: the kernel must be a 32-bit (ELFCLASS32) i386 executable");
    }
    if elf.header.e_machine != header::EM_386 {
        bail!("ELF machine {} is not i386 (3)", elf.header.e_machine);
    }
    if elf.header.e_type != header::ET_EXEC {
        bail!(
            "ELF type {} is not an executable (ET_EXEC)",
            elf.header.e_type
        );
    }
    let mut segments = Vec::new();
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let seg = Segment {
            paddr: ph.p_paddr,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        };
        check_segment(&seg, bytes.len() as u64, limit)?;
        segments.push(seg);
    }
    if segments.is_empty() {
        bail!("no PT_LOAD segment");
    }
    let entry = pvh_entry(&elf, bytes)?;
    if !segments
        .iter()
        .any(|s| (s.paddr..s.paddr + s.memsz).contains(&u64::from(entry)))
    {
        bail!("PVH entry {entry:#x} is outside every loaded segment");
    }
    Ok(KernelImage { segments, entry })
}

fn check_segment(seg: &Segment, file_len: u64, limit: u64) -> Result<()> {
    if seg.filesz > seg.memsz {
        bail!("segment at {:#x}: file size exceeds memory size", seg.paddr);
    }
    let file_end = seg.offset.checked_add(seg.filesz);
    if file_end.is_none_or(|end| end > file_len) {
        bail!(
            "segment at {:#x} runs past the end of the file (truncated image?)",
            seg.paddr
        );
    }
    let mem_end = seg.paddr.checked_add(seg.memsz);
    if seg.paddr < EXTMEM || mem_end.is_none_or(|end| end > limit) {
        bail!(
            "segment at physical {:#x} (+{:#x}) is outside [{EXTMEM:#x}, {limit:#x}): \
             the kernel loads at 1 MiB, below PHYSTOP",
            seg.paddr,
            seg.memsz
        );
    }
    Ok(())
}

fn pvh_entry(elf: &Elf, bytes: &[u8]) -> Result<u32> {
    let notes = elf
        .iter_note_headers(bytes)
        .into_iter()
        .flatten()
        .filter_map(|n| n.ok());
    for note in notes {
        if note.name == "Xen" && note.n_type == XEN_ELFNOTE_PHYS32_ENTRY {
            return match note.desc.len() {
                4 | 8 => Ok(u32::from_le_bytes(note.desc[..4].try_into().unwrap())),
                n => bail!("PVH entry note has a {n}-byte value"),
            };
        }
    }
    bail!("no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): not a PVH kernel")
}

/// Copies the segments into guest memory and zeroes their bss parts.
pub fn load_kernel(mem: &GuestMemoryMmap, bytes: &[u8], image: &KernelImage) -> Result<()> {
    for s in &image.segments {
        let file = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        mem.write_slice(file, GuestAddress(s.paddr))
            .context("cannot copy a kernel segment into guest RAM")?;
        let bss = vec![0u8; (s.memsz - s.filesz) as usize];
        mem.write_slice(&bss, GuestAddress(s.paddr + s.filesz))
            .context("cannot zero the kernel's bss")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 0xE00_0000;

    #[test]
    fn garbage_is_not_an_elf() {
        let err = parse_kernel(b"this is not a kernel", LIMIT).unwrap_err();
        assert!(err.to_string().contains("not an ELF"), "{err}");
        assert!(parse_kernel(&[], LIMIT).is_err());
    }

    #[test]
    fn segment_checks() {
        let ok = Segment {
            paddr: EXTMEM,
            offset: 0x1000,
            filesz: 0x100,
            memsz: 0x200,
        };
        assert!(check_segment(&ok, 0x2000, LIMIT).is_ok());
        let big_file = Segment {
            filesz: 0x300,
            ..ok
        };
        assert!(check_segment(&big_file, 0x2000, LIMIT).is_err());
        let truncated = Segment {
            offset: 0x1f80,
            ..ok
        };
        assert!(check_segment(&truncated, 0x2000, LIMIT).is_err());
        let low = Segment {
            paddr: 0x8000,
            ..ok
        };
        assert!(check_segment(&low, 0x2000, LIMIT).is_err());
        let high = Segment {
            paddr: LIMIT - 0x100,
            ..ok
        };
        assert!(check_segment(&high, 0x2000, LIMIT).is_err());
        let wraps = Segment {
            paddr: u64::MAX - 0x10,
            ..ok
        };
        assert!(check_segment(&wraps, 0x2000, LIMIT).is_err());
    }
}
