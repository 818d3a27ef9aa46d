//! ELF32 executables (xv6 elf.h), and the checks exec makes before it loads one: the file
//! header (`struct elfhdr`, 52 bytes) and the program headers (`struct proghdr`, 32 bytes
//! each), read little endian from the program's bytes in the archive.
//!
//! `Elf::parse` validates *everything* about the file up front — magic, class, byte order,
//! machine, type, the program-header table, every PT_LOAD segment (inside the file, no u32
//! wrap-around, filesz ≤ memsz, below KERNBASE, in ascending non-overlapping order) and the
//! entry point (inside a segment) — so that exec, once it starts building an address space,
//! can only fail for want of memory.
//!
//! Written here rather than taken from a crate: what exec needs is two fixed-layout structures
//! and a dozen bounds checks that are the point of the exercise (the crates are general
//! readers for every class, byte order and section type, and leave exactly these checks to the
//! caller), and the kernel stays free of dependencies.

use core::fmt;

use crate::memlayout::KERNBASE;

/// `e_ident[0..4]`: "\x7FELF".
pub const ELF_MAGIC: [u8; 4] = [0x7F, b'E', b'L', b'F'];
/// `e_ident[EI_CLASS]`: 32-bit objects.
pub const ELFCLASS32: u8 = 1;
/// `e_ident[EI_DATA]`: little endian.
pub const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_VERSION]` and `e_version`: the current (only) version.
pub const EV_CURRENT: u32 = 1;
/// `e_type`: an executable file (static, linked at fixed addresses).
pub const ET_EXEC: u16 = 2;
/// `e_machine`: Intel 80386.
pub const EM_386: u16 = 3;
/// `p_type`: a loadable segment.
pub const ELF_PROG_LOAD: u32 = 1;
/// `p_flags`: executable.
pub const ELF_PROG_FLAG_EXEC: u32 = 1;
/// `p_flags`: writable.
pub const ELF_PROG_FLAG_WRITE: u32 = 2;
/// `p_flags`: readable.
pub const ELF_PROG_FLAG_READ: u32 = 4;

/// Bytes of the ELF32 file header.
pub const ELFHDR_SIZE: usize = 52;
/// Bytes of an ELF32 program header.
pub const PROGHDR_SIZE: usize = 32;
/// The most program headers exec accepts. Static executables have a handful (PHDR, a few
/// LOADs, NOTE, GNU_STACK, GNU_PROPERTY, ...); a larger count is taken as a malformed file.
pub const MAXPHNUM: u16 = 32;

/// Why a file is not a runnable ELF32 i386 executable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElfError {
    /// Shorter than the file header.
    Truncated,
    /// Not "\x7FELF".
    BadMagic,
    /// Not ELFCLASS32.
    BadClass,
    /// Not little endian.
    BadByteOrder,
    /// `e_ident[EI_VERSION]` or `e_version` is not EV_CURRENT.
    BadVersion,
    /// Not EM_386.
    BadMachine(u16),
    /// Not ET_EXEC (e.g. ET_DYN: a PIE or shared object).
    BadType(u16),
    /// `e_phentsize` is not 32.
    BadPhentsize(u16),
    /// More than MAXPHNUM program headers.
    TooManyPhdrs(u16),
    /// The program-header table does not lie inside the file.
    PhdrsOutOfFile,
    /// The program-header table of a file written at run time ends beyond its first page
    /// (exec reads only that page to parse the headers).
    PhdrsBeyondFirstPage,
    /// Segment `i`'s file bytes `[p_offset, p_offset + p_filesz)` leave the file or wrap.
    SegmentOutOfFile(usize),
    /// Segment `i`'s memory `[p_vaddr, p_vaddr + p_memsz)` wraps around 4 GiB.
    SegmentWraps(usize),
    /// Segment `i` has `p_filesz > p_memsz`.
    FileszAboveMemsz(usize),
    /// Segment `i` reaches KERNBASE.
    SegmentInKernel(usize),
    /// Segment `i` starts below the end of the previous loadable segment.
    SegmentsOverlap(usize),
    /// The entry point lies in no loadable segment (also: no loadable segment at all).
    EntryOutside(u32),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::Truncated => f.write_str("truncated ELF header"),
            ElfError::BadMagic => f.write_str("not an ELF file"),
            ElfError::BadClass => f.write_str("not ELFCLASS32"),
            ElfError::BadByteOrder => f.write_str("not little endian"),
            ElfError::BadVersion => f.write_str("bad ELF version"),
            ElfError::BadMachine(m) => write!(f, "machine {m} is not EM_386"),
            ElfError::BadType(t) => write!(f, "type {t} is not ET_EXEC"),
            ElfError::BadPhentsize(n) => write!(f, "program header size {n}, not 32"),
            ElfError::TooManyPhdrs(n) => write!(f, "{n} program headers (max {MAXPHNUM})"),
            ElfError::PhdrsOutOfFile => f.write_str("program headers outside the file"),
            ElfError::PhdrsBeyondFirstPage => {
                f.write_str("program headers beyond the file's first page")
            }
            ElfError::SegmentOutOfFile(i) => write!(f, "segment {i} outside the file"),
            ElfError::SegmentWraps(i) => write!(f, "segment {i} wraps around"),
            ElfError::FileszAboveMemsz(i) => write!(f, "segment {i}: filesz > memsz"),
            ElfError::SegmentInKernel(i) => write!(f, "segment {i} reaches KERNBASE"),
            ElfError::SegmentsOverlap(i) => write!(f, "segment {i} overlaps or is out of order"),
            ElfError::EntryOutside(e) => write!(f, "entry {e:#x} outside every segment"),
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The fields of the file header exec uses (xv6 `struct elfhdr`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ElfHdr {
    pub entry: u32,
    pub phoff: u32,
    pub phnum: u16,
}

impl ElfHdr {
    /// Parses and checks the file header of `file`: an ELF32 little-endian i386 ET_EXEC
    /// whose program-header table (at most MAXPHNUM entries of 32 bytes) lies in the file.
    pub fn parse(file: &[u8]) -> Result<ElfHdr, ElfError> {
        let h = file.get(..ELFHDR_SIZE).ok_or(ElfError::Truncated)?;
        if h[..4] != ELF_MAGIC {
            return Err(ElfError::BadMagic);
        }
        if h[4] != ELFCLASS32 {
            return Err(ElfError::BadClass);
        }
        if h[5] != ELFDATA2LSB {
            return Err(ElfError::BadByteOrder);
        }
        if u32::from(h[6]) != EV_CURRENT || u32_at(h, 20) != EV_CURRENT {
            return Err(ElfError::BadVersion);
        }
        let (ty, machine) = (u16_at(h, 16), u16_at(h, 18));
        if machine != EM_386 {
            return Err(ElfError::BadMachine(machine));
        }
        if ty != ET_EXEC {
            return Err(ElfError::BadType(ty));
        }
        let (phoff, phentsize, phnum) = (u32_at(h, 28), u16_at(h, 42), u16_at(h, 44));
        // A file with no program headers may leave e_phentsize 0; it fails the entry check.
        if phnum > 0 && usize::from(phentsize) != PROGHDR_SIZE {
            return Err(ElfError::BadPhentsize(phentsize));
        }
        if phnum > MAXPHNUM {
            return Err(ElfError::TooManyPhdrs(phnum));
        }
        let table = u64::from(phnum) * PROGHDR_SIZE as u64;
        if u64::from(phoff) + table > file.len() as u64 {
            return Err(ElfError::PhdrsOutOfFile);
        }
        Ok(ElfHdr {
            entry: u32_at(h, 24),
            phoff,
            phnum,
        })
    }
}

/// A program header (xv6 `struct proghdr`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ProgHdr {
    pub ty: u32,
    pub off: u32,
    pub vaddr: u32,
    pub filesz: u32,
    pub memsz: u32,
    pub flags: u32,
}

impl ProgHdr {
    /// Parses the 32 bytes of a program header.
    fn parse(b: &[u8]) -> ProgHdr {
        ProgHdr {
            ty: u32_at(b, 0),
            off: u32_at(b, 4),
            vaddr: u32_at(b, 8),
            filesz: u32_at(b, 16),
            memsz: u32_at(b, 20),
            flags: u32_at(b, 24),
        }
    }

    /// A PT_LOAD segment that occupies memory (PT_LOADs with p_memsz 0 are ignored).
    #[must_use]
    pub fn loads(&self) -> bool {
        self.ty == ELF_PROG_LOAD && self.memsz > 0
    }

    /// Whether the program may write the segment (PF_W).
    #[must_use]
    pub fn writable(&self) -> bool {
        self.flags & ELF_PROG_FLAG_WRITE != 0
    }

    /// One past the segment's last byte in memory (checked not to wrap by `Elf::parse`).
    #[must_use]
    pub fn end(&self) -> u32 {
        self.vaddr + self.memsz
    }

    /// Checks loadable segment `i` against a file of `file_len` bytes.
    fn check(&self, i: usize, file_len: usize) -> Result<(), ElfError> {
        if self.filesz > self.memsz {
            return Err(ElfError::FileszAboveMemsz(i));
        }
        match self.off.checked_add(self.filesz) {
            Some(e) if e as usize <= file_len => {}
            _ => return Err(ElfError::SegmentOutOfFile(i)),
        }
        match self.vaddr.checked_add(self.memsz) {
            // xv6's allocuvm refuses sizes at or above KERNBASE: so does exec.
            Some(e) if e >= KERNBASE => Err(ElfError::SegmentInKernel(i)),
            Some(_) => Ok(()),
            None => Err(ElfError::SegmentWraps(i)),
        }
    }
}

/// A checked executable: its header and the file's first bytes (all of them, or the head
/// holding the program-header table). Every loadable segment is known to be valid (see the
/// module docs); `segments` yields them in ascending address order.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    file: &'a [u8],
    file_len: usize,
    hdr: ElfHdr,
}

impl<'a> Elf<'a> {
    /// Checks `file` completely (see the module docs).
    pub fn parse(file: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        Elf::parse_head(file, file.len())
    }

    /// Checks a file of `file_len` bytes from its first bytes `head` (which must hold the
    /// header and the program-header table; segments are checked against `file_len`).
    pub fn parse_head(head: &'a [u8], file_len: usize) -> Result<Elf<'a>, ElfError> {
        let hdr = ElfHdr::parse(&head[..head.len().min(file_len)]).map_err(|e| match e {
            ElfError::PhdrsOutOfFile if head.len() < file_len => ElfError::PhdrsBeyondFirstPage,
            e => e,
        })?;
        let elf = Elf {
            file: head,
            file_len,
            hdr,
        };
        let file = elf;
        let mut prev_end = 0u32;
        let mut entry_ok = false;
        for (i, ph) in elf.proghdrs().enumerate() {
            if ph.ty != ELF_PROG_LOAD {
                continue;
            }
            ph.check(i, file.file_len)?;
            if !ph.loads() {
                continue; // nothing in memory (checked all the same)
            }
            // The ELF spec keeps PT_LOAD entries sorted by p_vaddr; exec relies on it (the
            // image grows upwards, segment by segment). Two segments may share a page, never
            // a byte.
            if ph.vaddr < prev_end {
                return Err(ElfError::SegmentsOverlap(i));
            }
            prev_end = ph.end();
            entry_ok |= (ph.vaddr..ph.end()).contains(&hdr.entry);
        }
        if !entry_ok {
            return Err(ElfError::EntryOutside(hdr.entry));
        }
        Ok(elf)
    }

    /// The entry point.
    #[must_use]
    pub fn entry(&self) -> u32 {
        self.hdr.entry
    }

    /// All program headers, in file order.
    pub fn proghdrs(&self) -> impl Iterator<Item = ProgHdr> + 'a {
        let start = self.hdr.phoff as usize;
        let table = &self.file[start..start + usize::from(self.hdr.phnum) * PROGHDR_SIZE];
        table.chunks_exact(PROGHDR_SIZE).map(ProgHdr::parse)
    }

    /// The loadable segments (PT_LOAD, p_memsz > 0), in ascending address order.
    pub fn segments(&self) -> impl Iterator<Item = ProgHdr> + 'a {
        self.proghdrs().filter(ProgHdr::loads)
    }

    /// One past the highest byte of any segment (0 if there are none).
    #[must_use]
    pub fn image_end(&self) -> u32 {
        self.segments().map(|ph| ph.end()).max().unwrap_or(0)
    }
}

/// Builders for test executables, shared with exec's tests.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// One program header for a test file.
    #[derive(Clone, Copy, Debug)]
    pub struct Seg {
        pub ty: u32,
        pub off: u32,
        pub vaddr: u32,
        pub filesz: u32,
        pub memsz: u32,
        pub flags: u32,
    }

    /// A loadable segment.
    pub fn load(off: u32, vaddr: u32, filesz: u32, memsz: u32, flags: u32) -> Seg {
        Seg {
            ty: ELF_PROG_LOAD,
            off,
            vaddr,
            filesz,
            memsz,
            flags,
        }
    }

    /// An ELF32 i386 ET_EXEC of `len` bytes (at least the headers) whose file bytes from
    /// offset h are `h as u8` (so loaded contents are checkable), with the program headers
    /// right after the file header, as linkers place them.
    pub fn elf(entry: u32, segs: &[Seg], len: usize) -> Vec<u8> {
        let phoff = ELFHDR_SIZE;
        let need = phoff + segs.len() * PROGHDR_SIZE;
        let mut b: Vec<u8> = (0..len.max(need)).map(|i| i as u8).collect();
        let mut h = [0u8; ELFHDR_SIZE];
        h[..4].copy_from_slice(&ELF_MAGIC);
        h[4] = ELFCLASS32;
        h[5] = ELFDATA2LSB;
        h[6] = 1;
        h[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        h[18..20].copy_from_slice(&EM_386.to_le_bytes());
        h[20..24].copy_from_slice(&EV_CURRENT.to_le_bytes());
        h[24..28].copy_from_slice(&entry.to_le_bytes());
        h[28..32].copy_from_slice(&(phoff as u32).to_le_bytes());
        h[40..42].copy_from_slice(&(ELFHDR_SIZE as u16).to_le_bytes());
        h[42..44].copy_from_slice(&(PROGHDR_SIZE as u16).to_le_bytes());
        h[44..46].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        b[..ELFHDR_SIZE].copy_from_slice(&h);
        for (i, s) in segs.iter().enumerate() {
            let p = phoff + i * PROGHDR_SIZE;
            for (k, w) in [s.ty, s.off, s.vaddr, s.vaddr, s.filesz, s.memsz, s.flags, 4]
                .into_iter()
                .enumerate()
            {
                b[p + 4 * k..p + 4 * k + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
        b
    }

    /// What `ld -N -Ttext 0` makes: one RWX segment at VA 0 whose file offset (0x74) is not
    /// page aligned, with bss after the file bytes; entry at 0.
    pub fn omagic() -> Vec<u8> {
        elf(0, &[load(0x74, 0, 0x300, 0x1400, 7)], 0x374)
    }

    /// The default layout: text (R X) at 0x1000, data (R W) at a non-page-aligned address
    /// sharing no page with the text, a bss-only segment after a gap, a non-LOAD header.
    pub fn default_layout() -> Vec<u8> {
        let note = Seg {
            ty: 4,
            off: 0x94,
            vaddr: 0x1094,
            filesz: 8,
            memsz: 8,
            flags: 4,
        };
        elf(
            0x1100,
            &[
                load(0x1000, 0x1000, 0x1234, 0x1234, 5),
                load(0x2f0c, 0x3f0c, 0x100, 0x180, 6),
                note,
                load(0, 0x6000, 0, 0x2010, 6),
            ],
            0x300c,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn set(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }

    #[test]
    fn a_head_parses_like_the_whole_file_and_segments_check_against_its_length() {
        let f = default_layout();
        let whole = Elf::parse(&f).unwrap();
        let head = Elf::parse_head(&f[..0x100], f.len()).unwrap();
        assert!(whole.segments().eq(head.segments()));
        assert_eq!(whole.entry(), head.entry());
        // Segments must lie in the file, not merely in the head...
        assert_eq!(
            Elf::parse_head(&f[..0x100], 0x100).unwrap_err(),
            ElfError::SegmentOutOfFile(0)
        );
        // ...and a head that cuts the header table says so.
        assert_eq!(
            Elf::parse_head(&f[..0x60], f.len()).unwrap_err(),
            ElfError::PhdrsBeyondFirstPage
        );
    }

    #[test]
    fn accepts_omagic_and_default_layouts() {
        let f = omagic();
        let e = Elf::parse(&f).unwrap();
        assert_eq!(e.entry(), 0);
        let segs: Vec<ProgHdr> = e.segments().collect();
        assert_eq!(segs.len(), 1);
        assert!(segs[0].writable());
        assert_eq!(f[segs[0].off as usize], 0x74);
        assert_eq!(e.image_end(), 0x1400);

        let f = default_layout();
        let e = Elf::parse(&f).unwrap();
        assert_eq!(e.proghdrs().count(), 4);
        let segs: Vec<ProgHdr> = e.segments().collect();
        assert_eq!(segs.len(), 3);
        assert!(!segs[0].writable() && segs[1].writable());
        assert_eq!((segs[1].filesz, segs[2].filesz), (0x100, 0));
        assert_eq!(e.image_end(), 0x8010);
    }

    #[test]
    fn header_rejections() {
        let good = omagic();
        let bad = |off: usize, v: &[u8]| {
            let mut f = good.clone();
            set(&mut f, off, v);
            Elf::parse(&f).unwrap_err()
        };
        assert_eq!(bad(0, b"\x7fELG"), ElfError::BadMagic);
        assert_eq!(bad(4, &[2]), ElfError::BadClass);
        assert_eq!(bad(5, &[2]), ElfError::BadByteOrder);
        assert_eq!(bad(6, &[0]), ElfError::BadVersion);
        assert_eq!(bad(20, &[2]), ElfError::BadVersion);
        assert_eq!(bad(18, &[62, 0]), ElfError::BadMachine(62));
        assert_eq!(bad(16, &[3, 0]), ElfError::BadType(3));
        assert_eq!(bad(16, &[1, 0]), ElfError::BadType(1));
        assert_eq!(bad(42, &[56, 0]), ElfError::BadPhentsize(56));
        assert_eq!(bad(44, &[33, 0]), ElfError::TooManyPhdrs(33));
        assert_eq!(bad(44, &[0xff, 0xff]), ElfError::TooManyPhdrs(0xffff));
        // The table must fit: phoff past the end, or near 4 GiB (no u32 wrap).
        assert_eq!(bad(28, &0x370u32.to_le_bytes()), ElfError::PhdrsOutOfFile);
        assert_eq!(bad(28, &u32::MAX.to_le_bytes()), ElfError::PhdrsOutOfFile);
        // Truncated: shorter than a header, or cut inside the program headers.
        assert_eq!(Elf::parse(&good[..51]).unwrap_err(), ElfError::Truncated);
        assert_eq!(Elf::parse(&[]).unwrap_err(), ElfError::Truncated);
        assert_eq!(
            Elf::parse(&good[..ELFHDR_SIZE + 31]).unwrap_err(),
            ElfError::PhdrsOutOfFile
        );
        assert!(ElfError::BadType(3).to_string().contains("ET_EXEC"));
    }

    #[test]
    fn segment_rejections() {
        let one = |s: Seg, entry: u32, len: usize| Elf::parse(&elf(entry, &[s], len)).map(|_| ());
        // filesz > memsz.
        assert_eq!(
            one(load(0x74, 0, 0x10, 0x8, 7), 0, 0x100).unwrap_err(),
            ElfError::FileszAboveMemsz(0)
        );
        // File bytes past the end (truncated file), and offset + filesz wrapping.
        assert_eq!(
            one(load(0x74, 0, 0x100, 0x100, 7), 0, 0x173).unwrap_err(),
            ElfError::SegmentOutOfFile(0)
        );
        assert_eq!(
            one(load(0xffff_ff00, 0, 0x100, 0x100, 7), 0, 0x200).unwrap_err(),
            ElfError::SegmentOutOfFile(0)
        );
        // vaddr + memsz wrapping around 4 GiB.
        assert_eq!(
            one(load(0x74, 0xffff_f000, 0x10, 0x2000, 7), 0, 0x100).unwrap_err(),
            ElfError::SegmentWraps(0)
        );
        // Reaching KERNBASE (the end exactly at KERNBASE too), or lying above it.
        assert_eq!(
            one(load(0x74, KERNBASE - 0x1000, 0x10, 0x1000, 7), 0, 0x100).unwrap_err(),
            ElfError::SegmentInKernel(0)
        );
        assert_eq!(
            one(load(0x74, KERNBASE, 0x10, 0x10, 7), KERNBASE, 0x100).unwrap_err(),
            ElfError::SegmentInKernel(0)
        );
        assert!(one(
            load(0x74, KERNBASE - 0x1001, 0x10, 0x1000, 7),
            KERNBASE - 0x1001,
            0x100
        )
        .is_ok());
        // Entry outside every segment, or no loadable segment at all.
        assert_eq!(
            one(load(0x74, 0, 0x10, 0x10, 7), 0x10, 0x100).unwrap_err(),
            ElfError::EntryOutside(0x10)
        );
        assert_eq!(
            Elf::parse(&elf(0, &[], 0x100)).unwrap_err(),
            ElfError::EntryOutside(0)
        );
        // A PT_LOAD of memsz 0 is not a segment (and cannot hold the entry), but it must
        // still make sense.
        assert_eq!(
            one(load(0, 0, 0, 0, 7), 0, 0x100).unwrap_err(),
            ElfError::EntryOutside(0)
        );
        let empty_then_text = [load(0, 0x5000, 0x10, 0, 6), load(0x74, 0, 0x10, 0x10, 5)];
        assert_eq!(
            Elf::parse(&elf(0, &empty_then_text, 0x100)).unwrap_err(),
            ElfError::FileszAboveMemsz(0)
        );
        let empty_then_text = [load(0, 0x5000, 0, 0, 6), load(0x74, 0, 0x10, 0x10, 5)];
        assert!(Elf::parse(&elf(0, &empty_then_text, 0x100)).is_ok());
        // Non-LOAD headers are not checked as segments.
        let note = Seg {
            ty: 4,
            off: u32::MAX,
            vaddr: u32::MAX,
            filesz: 9,
            memsz: 1,
            flags: 0,
        };
        assert!(Elf::parse(&elf(0, &[load(0x74, 0, 1, 1, 5), note], 0x100)).is_ok());
    }

    #[test]
    fn segments_must_ascend_without_overlap() {
        let two = |a: Seg, b: Seg| Elf::parse(&elf(0x10, &[a, b], 0x2000)).map(|_| ());
        // Sharing a page is fine; sharing a byte, or going backwards, is not.
        assert!(two(
            load(0, 0x10, 0x100, 0x100, 5),
            load(0, 0x110, 0x10, 0x10, 6)
        )
        .is_ok());
        assert_eq!(
            two(
                load(0, 0x10, 0x100, 0x100, 5),
                load(0, 0x10f, 0x10, 0x10, 6)
            )
            .unwrap_err(),
            ElfError::SegmentsOverlap(1)
        );
        assert_eq!(
            two(load(0, 0x10, 0x100, 0x100, 5), load(0, 0, 0x8, 0x8, 6)).unwrap_err(),
            ElfError::SegmentsOverlap(1)
        );
    }
}
