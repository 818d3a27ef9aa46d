//! The program archive (docs/abi.md, boot module 0): a cpio archive in the "newc" format, one
//! regular file per program at the root, ending with the entry `TRAILER!!!`. exec finds
//! programs here by name.
//!
//! newc, as cpio(5) describes it: each entry is a 110-byte ASCII header — the magic "070701"
//! then thirteen 8-digit hex fields (ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
//! devminor, rdevmajor, rdevminor, namesize, check) — followed by the name (namesize bytes,
//! NUL included), padded so the data starts on a multiple of 4 from the archive's start, then
//! the file's data, padded to a multiple of 4 again. ("070702", the same with a checksum in
//! `check`, is read too; the checksum is not verified.)
//!
//! Written here rather than taken from a crate: the format is the 110-byte header above and
//! two paddings, and a lookup needs about fifty lines; doing them ourselves lets every field be
//! bounds-checked exactly as the kernel needs (each header, name and data range inside the
//! archive, no usize overflow on a 32-bit kernel, the NUL after the name) without pulling a
//! dependency into the kernel.

use core::fmt;

/// The newc magic.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The newc-with-checksum magic (same layout).
pub const CRC_MAGIC: &[u8; 6] = b"070702";
/// Bytes of a newc header.
pub const HEADER_SIZE: usize = 110;
/// The name of the entry that ends the archive.
pub const TRAILER: &[u8] = b"TRAILER!!!";
/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170_000;
/// File type: regular file.
pub const S_IFREG: u32 = 0o100_000;
/// File type: directory (`--dir` trees).
pub const S_IFDIR: u32 = 0o040_000;

/// Why a lookup failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArchiveError {
    /// No regular file of that name before the trailer.
    NotFound,
    /// The header at this offset is not a newc header (magic, hex digits, name without NUL).
    BadHeader(usize),
    /// The archive ends inside the entry at this offset (or before its trailer).
    Truncated(usize),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArchiveError::NotFound => f.write_str("no such program"),
            ArchiveError::BadHeader(at) => write!(f, "cpio: bad header at {at:#x}"),
            ArchiveError::Truncated(at) => write!(f, "cpio: truncated at {at:#x}"),
        }
    }
}

/// One archive member.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry<'a> {
    /// The name, without its NUL.
    pub name: &'a [u8],
    pub mode: u32,
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// A regular file (not a directory, link, device, ...)?
    #[must_use]
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// A directory (made by fsinit, for `--dir`)?
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Rounds up to a multiple of 4 (newc's padding); `None` on overflow.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// Field `k` of the header `h` (8 hex digits).
fn field(h: &[u8], k: usize) -> Option<u32> {
    let digits = core::str::from_utf8(&h[6 + 8 * k..14 + 8 * k]).ok()?;
    // from_str_radix accepts a leading '+': the format has exactly 8 hex digits.
    if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Parses the entry at offset `at`; returns it and the offset of the next one.
fn entry_at(archive: &[u8], at: usize) -> Result<(Entry<'_>, usize), ArchiveError> {
    let truncated = ArchiveError::Truncated(at);
    let bad = ArchiveError::BadHeader(at);
    let h = archive
        .get(at..at.checked_add(HEADER_SIZE).ok_or(truncated)?)
        .ok_or(truncated)?;
    if &h[..6] != NEWC_MAGIC && &h[..6] != CRC_MAGIC {
        return Err(bad);
    }
    let (mode, filesize, namesize) = (
        field(h, 1).ok_or(bad)?,
        field(h, 6).ok_or(bad)?,
        field(h, 11).ok_or(bad)?,
    );
    let name_start = at + HEADER_SIZE;
    let name_end = name_start.checked_add(namesize as usize).ok_or(truncated)?;
    let name = archive.get(name_start..name_end).ok_or(truncated)?;
    let Some((&0, name)) = name.split_last() else {
        return Err(bad); // namesize 0, or no NUL at the end
    };
    let data_start = align4(name_end).ok_or(truncated)?;
    let data = if filesize == 0 {
        &[][..] // the trailer of a tightly packed archive may end before its padding
    } else {
        let data_end = data_start.checked_add(filesize as usize).ok_or(truncated)?;
        archive.get(data_start..data_end).ok_or(truncated)?
    };
    let next = align4(data_start + data.len()).ok_or(truncated)?;
    Ok((Entry { name, mode, data }, next))
}

/// The members of an archive, in order, up to (not including) the trailer; an error ends
/// the iteration.
pub struct Entries<'a> {
    archive: &'a [u8],
    at: usize,
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match entry_at(self.archive, self.at) {
            Ok((e, _)) if e.name == TRAILER => {
                self.done = true;
                None
            }
            Ok((e, next)) => {
                self.at = next;
                Some(Ok(e))
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

/// Iterates over the members of `archive`.
#[must_use]
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        at: 0,
        done: false,
    }
}

/// The contents of the regular file `path` at the root of `archive`. A leading `/` (or
/// several) is ignored: "echo" and "/echo" are the same program.
pub fn find<'a>(archive: &'a [u8], path: &[u8]) -> Result<&'a [u8], ArchiveError> {
    let name = root_name(path);
    if name.is_empty() {
        return Err(ArchiveError::NotFound);
    }
    for e in entries(archive) {
        let e = e?;
        if e.name == name && e.is_file() {
            return Ok(e.data);
        }
    }
    Err(ArchiveError::NotFound)
}

/// `path` without its leading slashes.
#[must_use]
pub fn root_name(path: &[u8]) -> &[u8] {
    let skip = path.iter().take_while(|&&c| c == b'/').count();
    &path[skip..]
}

/// Building test archives (also for exec's tests).
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// Appends one newc entry.
    pub fn push(out: &mut Vec<u8>, name: &[u8], mode: u32, data: &[u8]) {
        let fields = [
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name);
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    /// An archive of regular files (mode 0100755), with its trailer, unpadded.
    pub fn archive(files: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            push(&mut out, name, S_IFREG | 0o755, data);
        }
        push(&mut out, TRAILER, 0, b"");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn finds_files_by_root_name() {
        // Names of every length mod 4 exercise the name padding (header 110 + namesize).
        let a = archive(&[
            (b"echo", b"ECHO"),
            (b"ab", b"x"),
            (b"hello", b"hello world"),
            (b"usertests", b""),
            (b"abc", b"12345"),
        ]);
        assert_eq!(find(&a, b"echo"), Ok(&b"ECHO"[..]));
        assert_eq!(find(&a, b"/echo"), Ok(&b"ECHO"[..]));
        assert_eq!(find(&a, b"//hello"), Ok(&b"hello world"[..]));
        assert_eq!(find(&a, b"ab"), Ok(&b"x"[..]));
        assert_eq!(find(&a, b"abc"), Ok(&b"12345"[..]));
        assert_eq!(find(&a, b"usertests"), Ok(&b""[..]));
        let names: Vec<&[u8]> = entries(&a).map(|e| e.unwrap().name).collect();
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn not_found() {
        let a = archive(&[(b"echo", b"ECHO")]);
        for p in [
            &b"ech"[..],
            b"echo2",
            b"",
            b"/",
            b"TRAILER!!!",
            b"x/echo",
            b"echo\0",
        ] {
            assert_eq!(find(&a, p), Err(ArchiveError::NotFound), "{p:?}");
        }
        assert_eq!(find(&archive(&[]), b"echo"), Err(ArchiveError::NotFound));
        // Only regular files are programs: a directory of the same name is not one.
        let mut d = Vec::new();
        push(&mut d, b"bin", 0o040_755, b"");
        push(&mut d, TRAILER, 0, b"");
        assert_eq!(find(&d, b"bin"), Err(ArchiveError::NotFound));
        // Entries after the trailer are not part of the archive.
        let mut t = archive(&[]);
        push(&mut t, b"late", S_IFREG, b"x");
        assert_eq!(find(&t, b"late"), Err(ArchiveError::NotFound));
    }

    #[test]
    fn truncated_archives() {
        let a = archive(&[(b"echo", b"ECHO"), (b"hello", b"hello world")]);
        let second = 120; // 110 + "echo\0" = 115 → 116, + 4 bytes of data
        assert_eq!(find(&a[..second + 50], b"echo"), Ok(&b"ECHO"[..]));
        // Cut in the second header, in its name, in its data; and no trailer at all.
        assert_eq!(
            find(&a[..second + 50], b"hello"),
            Err(ArchiveError::Truncated(second))
        );
        assert_eq!(
            find(&a[..second + 112], b"hello"),
            Err(ArchiveError::Truncated(second))
        );
        assert_eq!(
            find(&a[..second + 120], b"hello"),
            Err(ArchiveError::Truncated(second))
        );
        let end = a.len() - 124;
        assert_eq!(find(&a[..end], b"nope"), Err(ArchiveError::Truncated(end)));
        assert_eq!(find(&[], b"echo"), Err(ArchiveError::Truncated(0)));
        // A tightly packed trailer (no padding after its name) still ends the archive.
        let tight = &a[..a.len() - 1];
        assert_eq!(find(tight, b"nope"), Err(ArchiveError::NotFound));
    }

    #[test]
    fn bad_headers() {
        let a = archive(&[(b"echo", b"ECHO")]);
        let mut m = a.clone();
        m[5] = b'7'; // "070707": the old portable format
        assert_eq!(find(&m, b"echo"), Err(ArchiveError::BadHeader(0)));
        let mut h = a.clone();
        h[6 + 8 * 6] = b'g'; // filesize not hex
        assert_eq!(find(&h, b"echo"), Err(ArchiveError::BadHeader(0)));
        let mut p = a.clone();
        p[6 + 8 * 6] = b'+';
        assert_eq!(find(&p, b"echo"), Err(ArchiveError::BadHeader(0)));
        let mut n = a.clone();
        n[114] = b'x'; // the name's NUL
        assert_eq!(find(&n, b"echo"), Err(ArchiveError::BadHeader(0)));
        let mut z = a.clone();
        z[6 + 8 * 11..6 + 8 * 12].copy_from_slice(b"00000000"); // namesize 0
        assert_eq!(find(&z, b"echo"), Err(ArchiveError::BadHeader(0)));
        // Sizes near 4 GiB must not overflow the offset arithmetic.
        let mut big = a.clone();
        big[6 + 8 * 6..6 + 8 * 7].copy_from_slice(b"ffffffff");
        assert_eq!(find(&big, b"echo"), Err(ArchiveError::Truncated(0)));
        let mut crc = a.clone();
        crc[5] = b'2';
        assert_eq!(find(&crc, b"echo"), Ok(&b"ECHO"[..]));
        assert_eq!(
            ArchiveError::Truncated(0x7c).to_string(),
            "cpio: truncated at 0x7c"
        );
    }

    #[test]
    fn root_names() {
        assert_eq!(root_name(b"/echo"), b"echo");
        assert_eq!(root_name(b"echo"), b"echo");
        assert_eq!(root_name(b"///"), b"");
    }
}
