//! `vmm run --dir HOSTDIR:GUESTDIR:rw`: when the first process exits, the kernel hands the
//! VMM what is now under each write-back GUESTDIR, so that the VMM can bring the changes
//! back to the host (vmm/src/writeback.rs).
//!
//! The command line names the trees: `dirout=data,out/x` (GUESTDIRs without the leading
//! `/`, comma-separated). The export is one cpio newc archive, the format the program
//! archive's `--dir` entries come in: for each GUESTDIR that is still a directory, its own
//! entry (mode 040755), then every directory (040755) and regular file (0100644) below it,
//! parents before children, each named by its full path without the leading `/`, then
//! `TRAILER!!!`. A GUESTDIR that is gone (or no longer a directory) has no entry. Devices
//! (`mknod`) are left out; a file with two names appears under both. The walk descends at
//! most [`MAX_DEPTH`] levels below `/`: an entry one level deeper is listed (so the VMM
//! sees it and refuses the tree) but not entered.
//!
//! The bytes go out through the debug device's write-back ports (docs/abi.md: DIROUT_LEN,
//! then DIROUT with a guest-physical address), a header or up to a page of file data at a
//! time. The walk itself is pure ([`export`]) and tested on the host.

use crate::fs::{Fs, DIRENT_SIZE, DIRSIZ, NINODE, ROOTINO, T_DIR, T_FILE};

/// Mode of a directory entry.
pub const MODE_DIR: u32 = 0o040_755;
/// Mode of a regular file's entry.
pub const MODE_FILE: u32 = 0o100_644;
/// The deepest path the VMM takes (components, GUESTDIR's included; vmm/src/dirs.rs).
pub const MAX_DEPTH: usize = 8;
/// The longest path the walk builds: MAX_DEPTH + 1 names and their slashes.
const PATH_MAX: usize = (MAX_DEPTH + 1) * (DIRSIZ + 1);
/// Bytes of a newc header.
const HEADER: usize = 110;
/// Room for a header, the longest name, its NUL and the padding.
pub const HEADER_BUF: usize = HEADER + PATH_MAX + 1 + 3;

/// Writes the newc header of `name` (`mode`, `size` bytes of data to follow), its NUL and
/// the padding to 4 bytes into `out`; returns the bytes used.
pub fn header(out: &mut [u8; HEADER_BUF], name: &[u8], mode: u32, size: u32, ino: u32) -> usize {
    fn hex(dst: &mut [u8], v: u32) {
        for (i, d) in dst.iter_mut().enumerate() {
            let nib = (v >> (28 - 4 * i)) & 0xF;
            *d = b"0123456789ABCDEF"[nib as usize];
        }
    }
    let name_len = name.len().min(PATH_MAX);
    out[..6].copy_from_slice(b"070701");
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check.
    let nlink = if mode == MODE_DIR { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        0,
        0,
        name_len as u32 + 1,
        0,
    ];
    for (i, v) in fields.iter().enumerate() {
        hex(&mut out[6 + 8 * i..14 + 8 * i], *v);
    }
    out[HEADER..HEADER + name_len].copy_from_slice(&name[..name_len]);
    let mut n = HEADER + name_len;
    out[n] = 0;
    n += 1;
    while !n.is_multiple_of(4) {
        out[n] = 0;
        n += 1;
    }
    n
}

/// Padding after `size` bytes of data.
const ZEROS: [u8; 4] = [0; 4];

/// Where the export goes, piece by piece.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// One directory being walked: its inode, the next entry to look at, its path's length.
#[derive(Clone, Copy)]
struct Frame {
    dir: u16,
    next: u32,
    path_len: usize,
}

/// The export under way: where it goes, the bounce page, the next inode number.
struct Exporter<'a> {
    fs: &'a Fs,
    page: &'a mut [u8],
    sink: &'a mut dyn Sink,
    hdr: [u8; HEADER_BUF],
    ino: u32,
}

impl Exporter<'_> {
    /// One entry's header.
    fn header(&mut self, name: &[u8], mode: u32, size: u32) {
        let n = header(&mut self.hdr, name, mode, size, self.ino);
        self.ino += 1;
        self.sink.put(&self.hdr[..n]);
    }

    /// Regular file `inum`'s entry: its header, its bytes a page at a time, the padding.
    fn file(&mut self, name: &[u8], inum: u16) {
        let size = self.fs.inode(inum).size;
        self.header(name, MODE_FILE, size);
        let mut off = 0u32;
        while off < size {
            let got = self.fs.readi(inum, off, self.page);
            if got == 0 {
                // readi never comes short of the size it reported, but the archive must
                // stay well-formed whatever happens.
                let m = (size - off).min(self.page.len() as u32) as usize;
                self.page[..m].fill(0);
                self.sink.put(&self.page[..m]);
                off += m as u32;
                continue;
            }
            self.sink.put(&self.page[..got]);
            off += got as u32;
        }
        let pad = (4 - size as usize % 4) % 4;
        self.sink.put(&ZEROS[..pad]);
    }

    /// The tree at `root` (a GUESTDIR without its `/`), if it is a directory.
    fn tree(&mut self, root: &[u8]) {
        let mut path = [0u8; PATH_MAX];
        if root.len() > PATH_MAX {
            return;
        }
        path[..root.len()].copy_from_slice(root);
        let Ok(top) = self.fs.namei(ROOTINO, root) else {
            return;
        };
        if self.fs.inode(top).typ != T_DIR {
            return;
        }
        self.header(root, MODE_DIR, 0);
        let depth0 = root.split(|&c| c == b'/').filter(|c| !c.is_empty()).count();
        let mut stack = [Frame {
            dir: 0,
            next: 0,
            path_len: 0,
        }; MAX_DEPTH + 1];
        stack[0] = Frame {
            dir: top,
            next: 0,
            path_len: root.len(),
        };
        let mut sp = 1;
        while sp > 0 {
            let f = stack[sp - 1];
            stack[sp - 1].next += 1;
            let Some(step) = self.entry(f, &mut path) else {
                if f.next >= self.fs.inode(f.dir).size / DIRENT_SIZE as u32 {
                    sp -= 1;
                }
                continue;
            };
            if let (Some(dir), true) = (step.0, depth0 + sp <= MAX_DEPTH && sp < stack.len()) {
                // Entered only while its children stay within MAX_DEPTH + 1 (the VMM refuses
                // anything deeper than MAX_DEPTH; one level past it is enough to say so).
                stack[sp] = Frame {
                    dir,
                    next: 0,
                    path_len: step.1,
                };
                sp += 1;
            }
        }
    }

    /// Exports entry `f.next` of directory `f.dir` (its path written into `path` after
    /// `f.path_len`); returns the directory to enter, if it is one, and its path's length.
    /// None: past the end, or an entry that is not exported (`.`, `..`, a free slot, a
    /// device).
    fn entry(&mut self, f: Frame, path: &mut [u8; PATH_MAX]) -> Option<(Option<u16>, usize)> {
        if f.next >= self.fs.inode(f.dir).size / DIRENT_SIZE as u32 {
            return None;
        }
        let mut de = [0u8; DIRENT_SIZE];
        self.fs.readi(f.dir, f.next * DIRENT_SIZE as u32, &mut de);
        let inum = u16::from_le_bytes([de[0], de[1]]);
        let name = &de[2..];
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(DIRSIZ)];
        if inum == 0 || usize::from(inum) > NINODE || name.is_empty() || name == b"." {
            return None;
        }
        let typ = self.fs.inode(inum).typ;
        let len = f.path_len + 1 + name.len();
        if name == b".." || (typ != T_DIR && typ != T_FILE) || len > PATH_MAX {
            return None;
        }
        path[f.path_len] = b'/';
        path[f.path_len + 1..len].copy_from_slice(name);
        if typ == T_DIR {
            self.header(&path[..len], MODE_DIR, 0);
            Some((Some(inum), len))
        } else {
            self.file(&path[..len], inum);
            Some((None, len))
        }
    }
}

/// Exports the trees `roots` names (`data,out/x`) from `fs` into `sink` as a newc archive
/// (the module doc); `page` is a bounce buffer for file data.
pub fn export(fs: &Fs, roots: &[u8], page: &mut [u8], sink: &mut dyn Sink) {
    let mut ex = Exporter {
        fs,
        page,
        sink,
        hdr: [0; HEADER_BUF],
        ino: 1,
    };
    for root in roots.split(|&c| c == b',').filter(|r| !r.is_empty()) {
        ex.tree(root);
    }
    let n = header(&mut ex.hdr, b"TRAILER!!!", 0, 0, 0);
    ex.sink.put(&ex.hdr[..n]);
}

#[cfg(all(target_arch = "x86", not(test)))]
pub use hw::*;

/// The machine side: the command line's `dirout=`, and the ports.
#[cfg(all(target_arch = "x86", not(test)))]
mod hw {
    use super::*;
    use crate::file::FS;
    use crate::memlayout::{KVAddr, V2P};
    use crate::spinlock::Spinlock;
    use crate::x86::outl;

    /// The command line's `dirout=` value (empty: no write-back).
    static ROOTS: Spinlock<&'static str> = Spinlock::new("dirout", "");

    /// Remembers which trees to export (boot).
    pub fn init(cmdline: &'static str) {
        *ROOTS.lock() = crate::cmdline::value(cmdline, xv6_abi::cmdline::DIROUT).unwrap_or("");
    }

    /// A page-sized bounce buffer in the kernel's data (physically contiguous).
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static BOUNCE: Spinlock<Page> = Spinlock::new("dirout page", Page([0; 4096]));

    struct Ports;
    impl Sink for Ports {
        fn put(&mut self, bytes: &[u8]) {
            if bytes.is_empty() {
                return;
            }
            let pa = V2P(KVAddr(bytes.as_ptr() as u32)).0;
            outl(xv6_abi::ports::DIROUT_LEN, bytes.len() as u32);
            outl(xv6_abi::ports::DIROUT, pa);
        }
    }

    /// Hands the VMM the trees the command line names (nothing without `dirout=`). The
    /// headers are built on the stack, which is kernel memory the V2P of works for.
    pub fn export_trees() {
        let roots = *ROOTS.lock();
        if roots.is_empty() {
            return;
        }
        let fsys = FS.lock();
        let mut page = BOUNCE.lock();
        export(&fsys.fs, roots.as_bytes(), &mut page.0, &mut Ports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::T_FILE;

    struct Buf(std::vec::Vec<u8>);
    impl Sink for Buf {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }

    /// (name, mode, data) of each entry of a newc archive.
    fn entries(mut a: &[u8]) -> std::vec::Vec<(std::string::String, u32, std::vec::Vec<u8>)> {
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(core::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        let mut out = std::vec::Vec::new();
        loop {
            assert_eq!(&a[..6], b"070701");
            let (mode, size, namesize) = (field(a, 1), field(a, 6), field(a, 11) as usize);
            let name = std::string::String::from_utf8(a[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize + 3) & !3;
            let end = data_at + size as usize;
            if name == "TRAILER!!!" {
                assert_eq!(a.len(), data_at);
                return out;
            }
            out.push((name, mode, a[data_at..end].to_vec()));
            a = &a[(end + 3) & !3..];
        }
    }

    #[test]
    fn exports_the_named_trees_parents_first() {
        let _g = crate::vm::testmem::lock();
        let mut fs = std::boxed::Box::new(Fs::new());
        fs.init().unwrap();
        fs.create(ROOTINO, b"data", T_DIR, 0, 0).unwrap();
        fs.create(ROOTINO, b"data/sub", T_DIR, 0, 0).unwrap();
        let f = fs.create(ROOTINO, b"data/sub/f", T_FILE, 0, 0).unwrap();
        fs.writei(f, 0, b"hello").unwrap();
        let g = fs.create(ROOTINO, b"data/g", T_FILE, 0, 0).unwrap();
        fs.writei(g, 0, &[7u8; 5000]).unwrap();
        fs.create(ROOTINO, b"data/cons", crate::fs::T_DEV, 1, 1)
            .unwrap();
        fs.create(ROOTINO, b"other", T_FILE, 0, 0).unwrap();
        let mut out = Buf(std::vec::Vec::new());
        let mut page = [0u8; 4096];
        export(&fs, b"data,missing,other", &mut page, &mut out);
        let got = entries(&out.0);
        let names: std::vec::Vec<(&str, u32)> =
            got.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
        assert_eq!(
            names,
            [
                ("data", MODE_DIR),
                ("data/sub", MODE_DIR),
                ("data/sub/f", MODE_FILE),
                ("data/g", MODE_FILE),
            ]
        );
        assert_eq!(got[2].2, b"hello");
        assert_eq!(got[3].2, [7u8; 5000]);
    }

    #[test]
    fn a_tree_too_deep_shows_one_level_past_the_bound() {
        let _g = crate::vm::testmem::lock();
        let mut fs = std::boxed::Box::new(Fs::new());
        fs.init().unwrap();
        let mut p = std::vec::Vec::from(&b"d"[..]);
        fs.create(ROOTINO, &p, T_DIR, 0, 0).unwrap();
        for _ in 0..MAX_DEPTH + 2 {
            p.extend_from_slice(b"/x");
            fs.create(ROOTINO, &p, T_DIR, 0, 0).unwrap();
        }
        let mut out = Buf(std::vec::Vec::new());
        export(&fs, b"d", &mut [0u8; 64], &mut out);
        let got = entries(&out.0);
        let deepest = got.iter().map(|(n, _, _)| n.split('/').count()).max();
        assert_eq!(deepest, Some(MAX_DEPTH + 1));
    }
}
