//! The file system (xv6 fs.c, in memory): inodes with link counts, directories that are files
//! of xv6's 16-byte `struct dirent {ushort inum; char name[DIRSIZ];}`, path lookup (`namei`,
//! `nameiparent`) with `.`, `..` and names cut to DIRSIZ bytes as xv6 does, and the operations
//! sysfile.c builds on them (`create`, `link`, `unlink`). There is no disk: an inode's data
//! lives in pages from kalloc (so `countfree` sees files), NDIRECT direct pages and one
//! indirect page of further pages, and everything lasts as long as the VM. A file from the
//! program archive starts out as the archive's own bytes (read-only boot memory) and gets pages
//! of its own on its first write. Running out of inodes or pages fails the call, never the
//! kernel.
//!
//! Pure and tested on the host: the caller (file.rs) holds the lock and keeps references.

use crate::kpage::{KPage, PageVec};
use crate::mmu::PGSIZE;

/// Bytes of a name in a directory entry (xv6 DIRSIZ).
pub const DIRSIZ: usize = xv6_abi::fs::DIRSIZ;
/// Bytes of a directory entry: inum (u16) and the name.
pub const DIRENT_SIZE: usize = 2 + DIRSIZ;
/// Inodes in the file system (xv6 mkfs's NINODES; sized with the VMM for what `--add`
/// allows, xv6-abi `fs`).
pub const NINODE: usize = xv6_abi::fs::NINODE;
/// The root directory's inode number (xv6 ROOTINO).
pub const ROOTINO: u16 = 1;
/// Direct data pages of an inode (xv6 NDIRECT, in pages here).
pub const NDIRECT: usize = 12;
/// The largest file: NDIRECT pages plus one indirect page's worth.
pub const MAXFILE: u32 = ((NDIRECT + PageVec::LEN) * PAGE) as u32;
/// The console's device number (xv6 CONSOLE).
pub const CONSOLE: i16 = 1;
/// The most names an inode can have (LINK_MAX; its `short nlink` must never wrap): `link`
/// fails at this count, and a directory with this many (its subdirectories' `..`) takes no
/// new subdirectory.
pub const MAXLINK: i16 = 1000;

/// Inode types (xv6 stat.h).
pub const T_DIR: i16 = 1;
pub const T_FILE: i16 = 2;
pub const T_DEV: i16 = 3;

const PAGE: usize = PGSIZE as usize;

/// Why a file-system operation failed (every one is −1 for the user).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FsError {
    /// No such file or directory (or an empty path).
    NotFound,
    /// The name exists already.
    Exists,
    /// A path component, or chdir's target, is not a directory.
    NotDir,
    /// Not allowed on a directory (link, or unlinking `.`/`..`), or a non-empty one.
    IsDir,
    /// Out of inodes or memory.
    NoSpace,
    /// Past the end of the file, or beyond MAXFILE.
    BadOffset,
    /// The inode has MAXLINK names already.
    TooManyLinks,
    /// The directory was removed (no names left): nothing can be created in it.
    Removed,
}

/// What fstat reports: xv6's `struct stat` (`short type; int dev; uint ino; short nlink;
/// uint size;`), 20 bytes with gcc's padding.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stat {
    pub typ: i16,
    pub dev: i32,
    pub ino: u32,
    pub nlink: i16,
    pub size: u32,
}

impl Stat {
    /// Bytes of xv6's `struct stat`.
    pub const SIZE: usize = 20;

    /// The layout user programs see.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Stat::SIZE] {
        let mut b = [0u8; Stat::SIZE];
        b[0..2].copy_from_slice(&self.typ.to_le_bytes());
        b[4..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..12].copy_from_slice(&self.ino.to_le_bytes());
        b[12..14].copy_from_slice(&self.nlink.to_le_bytes());
        b[16..20].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// A name as a directory entry holds it: at most DIRSIZ bytes, NUL-padded.
pub type Name = [u8; DIRSIZ];

/// `s` cut to DIRSIZ bytes and padded (xv6 skipelem's copy).
#[must_use]
pub fn name_of(s: &[u8]) -> Name {
    let mut n = [0u8; DIRSIZ];
    let len = s.len().min(DIRSIZ);
    n[..len].copy_from_slice(&s[..len]);
    n
}

/// Splits the first element off `path` (xv6 `skipelem`): `"a/bb/c"` → `("a", "bb/c")`,
/// `"///a//bb"` → `("a", "bb")`; `None` when no element is left.
#[must_use]
pub fn skipelem(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = path.iter().position(|&c| c != b'/')?;
    let path = &path[start..];
    let end = path.iter().position(|&c| c == b'/').unwrap_or(path.len());
    let rest = &path[end..];
    let skip = rest.iter().take_while(|&&c| c == b'/').count();
    Some((&path[..end], &rest[skip..]))
}

/// An inode (xv6 `struct inode` and `struct dinode` in one).
#[derive(Debug)]
pub struct Inode {
    /// 0: free; T_DIR, T_FILE or T_DEV.
    pub typ: i16,
    pub major: i16,
    pub minor: i16,
    /// Directory entries that name it.
    pub nlink: i16,
    pub size: u32,
    /// Open files and current directories that refer to it (xv6 `ref`): it is freed only
    /// when both this and nlink are 0.
    pub refs: u32,
    /// The program archive's bytes for an archive file not written yet (else empty).
    archive: &'static [u8],
    direct: [Option<KPage>; NDIRECT],
    indirect: Option<PageVec>,
}

impl Inode {
    const fn new() -> Inode {
        Inode {
            typ: 0,
            major: 0,
            minor: 0,
            nlink: 0,
            size: 0,
            refs: 0,
            archive: &[],
            direct: [const { None }; NDIRECT],
            indirect: None,
        }
    }

    /// Data page `pn`, if allocated.
    fn page(&self, pn: usize) -> Option<&[u8]> {
        if pn < NDIRECT {
            self.direct[pn].as_ref().map(KPage::bytes)
        } else {
            self.indirect.as_ref()?.get(pn - NDIRECT)
        }
    }

    /// Data page `pn`, allocated (zeroed) if missing (xv6 `bmap`).
    fn page_mut(&mut self, pn: usize) -> Result<&mut [u8], FsError> {
        if pn < NDIRECT {
            if self.direct[pn].is_none() {
                self.direct[pn] = Some(KPage::zeroed().ok_or(FsError::NoSpace)?);
            }
            return Ok(self.direct[pn].as_mut().expect("just set").bytes_mut());
        }
        let k = pn - NDIRECT;
        if k >= PageVec::LEN {
            return Err(FsError::BadOffset);
        }
        if self.indirect.is_none() {
            self.indirect = Some(PageVec::new().ok_or(FsError::NoSpace)?);
        }
        let ind = self.indirect.as_mut().expect("just set");
        if ind.get(k).is_none() {
            ind.set(k, KPage::zeroed().ok_or(FsError::NoSpace)?);
        }
        Ok(ind.get_mut(k).expect("just set"))
    }

    /// Frees the data (xv6 `itrunc`).
    fn trunc(&mut self) {
        self.direct = [const { None }; NDIRECT];
        self.indirect = None;
        self.archive = &[];
        self.size = 0;
    }

    /// Copies bytes from offset `off` into `dst` (as many as the file has); returns how many.
    fn read(&self, off: u32, dst: &mut [u8]) -> usize {
        if off >= self.size {
            return 0;
        }
        let n = dst.len().min((self.size - off) as usize);
        if !self.archive.is_empty() {
            dst[..n].copy_from_slice(&self.archive[off as usize..off as usize + n]);
            return n;
        }
        let mut done = 0;
        while done < n {
            let at = off as usize + done;
            let (pn, po) = (at / PAGE, at % PAGE);
            let m = (PAGE - po).min(n - done);
            match self.page(pn) {
                Some(p) => dst[done..done + m].copy_from_slice(&p[po..po + m]),
                None => dst[done..done + m].fill(0),
            }
            done += m;
        }
        n
    }

    /// Writes `src` at `off` into pages (no archive bytes any more); returns how many bytes
    /// went in before memory ran out (all of them, normally).
    fn write_pages(&mut self, off: u32, src: &[u8]) -> usize {
        let mut done = 0;
        while done < src.len() {
            let at = off as usize + done;
            let (pn, po) = (at / PAGE, at % PAGE);
            let m = (PAGE - po).min(src.len() - done);
            let Ok(p) = self.page_mut(pn) else { break };
            p[po..po + m].copy_from_slice(&src[done..done + m]);
            done += m;
        }
        self.size = self.size.max(off + done as u32);
        done
    }

    /// Gives an archive file pages of its own, before its first write.
    fn materialize(&mut self) -> Result<(), FsError> {
        let data = self.archive;
        if data.is_empty() {
            return Ok(());
        }
        self.archive = &[];
        if self.write_pages(0, data) < data.len() {
            self.trunc();
            self.archive = data;
            self.size = data.len() as u32;
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    /// Writes `src` at `off` (xv6 `writei`): at most up to the end of the file, never past
    /// MAXFILE. Returns the bytes written: fewer than `src.len()` if memory ran out (an
    /// error if nothing could be written).
    fn write(&mut self, off: u32, src: &[u8]) -> Result<usize, FsError> {
        let end = off
            .checked_add(src.len() as u32)
            .ok_or(FsError::BadOffset)?;
        if off > self.size || end > MAXFILE {
            return Err(FsError::BadOffset);
        }
        self.materialize()?;
        let n = self.write_pages(off, src);
        if n == 0 && !src.is_empty() {
            return Err(FsError::NoSpace);
        }
        Ok(n)
    }
}

/// The whole file system: the inode table.
pub struct Fs {
    inodes: [Inode; NINODE],
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

impl Fs {
    /// No inodes in use (call `init` for the root directory).
    #[must_use]
    pub const fn new() -> Fs {
        Fs {
            inodes: [const { Inode::new() }; NINODE],
        }
    }

    /// Inode `inum` (1-based).
    #[must_use]
    pub fn inode(&self, inum: u16) -> &Inode {
        &self.inodes[usize::from(inum) - 1]
    }

    fn inode_mut(&mut self, inum: u16) -> &mut Inode {
        &mut self.inodes[usize::from(inum) - 1]
    }

    /// Makes the root directory, with `.` and `..` both itself.
    pub fn init(&mut self) -> Result<(), FsError> {
        let root = self.ialloc(T_DIR)?;
        assert_eq!(root, ROOTINO, "fs: root is not the first inode");
        self.inode_mut(root).nlink = 1;
        self.dirlink(root, b".", root)?;
        self.dirlink(root, b"..", root)
    }

    /// Adds the archive file `path` (a name at the root, or a path such as `data/sub/f` from
    /// `--dir`, whose directory exists already) to the file system, its bytes used in place.
    pub fn add_archive_file(&mut self, path: &[u8], data: &'static [u8]) -> Result<u16, FsError> {
        let (dp, name) = self.nameiparent(ROOTINO, path)?;
        if self.dirlookup(dp, &name).is_some() {
            return Err(FsError::Exists);
        }
        let ip = self.ialloc(T_FILE)?;
        let ino = self.inode_mut(ip);
        ino.nlink = 1;
        ino.archive = data;
        ino.size = data.len() as u32;
        if let Err(e) = self.dirlink(dp, &name, ip) {
            self.inode_mut(ip).nlink = 0;
            self.release_if_unused(ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// A free inode of type `typ`, nlink 0 (xv6 `ialloc`).
    pub fn ialloc(&mut self, typ: i16) -> Result<u16, FsError> {
        // A free inode has no references (release_if_unused frees only those); checking
        // both keeps an inode someone still holds from ever being handed out again.
        let i = self
            .inodes
            .iter()
            .position(|ino| ino.typ == 0 && ino.refs == 0)
            .ok_or(FsError::NoSpace)?;
        self.inodes[i] = Inode::new();
        self.inodes[i].typ = typ;
        Ok(i as u16 + 1)
    }

    /// Empties regular file `inum` (open's O_TRUNC): its pages go back to kalloc.
    pub fn itrunc(&mut self, inum: u16) {
        self.inode_mut(inum).trunc();
    }

    /// Frees inode `inum` if no name and no reference is left (the end of xv6 `iput`).
    fn release_if_unused(&mut self, inum: u16) {
        let ino = self.inode_mut(inum);
        if ino.nlink == 0 && ino.refs == 0 {
            ino.trunc();
            ino.typ = 0;
        }
    }

    /// One more reference to `inum` (xv6 `idup`): only to an inode in use (namei and
    /// dirlookup never name a free one).
    pub fn idup(&mut self, inum: u16) {
        let ino = self.inode_mut(inum);
        assert!(ino.typ != 0, "idup: free inode {inum}");
        ino.refs += 1;
    }

    /// Drops a reference to `inum` (xv6 `iput`): the last one of an unlinked inode frees it.
    pub fn iput(&mut self, inum: u16) {
        let ino = self.inode_mut(inum);
        ino.refs = ino.refs.checked_sub(1).expect("iput: no reference");
        self.release_if_unused(inum);
    }

    /// fstat's view of `inum`.
    #[must_use]
    pub fn stat(&self, inum: u16) -> Stat {
        let ino = self.inode(inum);
        Stat {
            typ: ino.typ,
            dev: 1,
            ino: u32::from(inum),
            nlink: ino.nlink,
            size: ino.size,
        }
    }

    /// Reads from `inum` at `off` into `dst` (xv6 `readi`); returns the bytes read.
    pub fn readi(&self, inum: u16, off: u32, dst: &mut [u8]) -> usize {
        self.inode(inum).read(off, dst)
    }

    /// Writes `src` to `inum` at `off` (xv6 `writei`).
    pub fn writei(&mut self, inum: u16, off: u32, src: &[u8]) -> Result<usize, FsError> {
        self.inode_mut(inum).write(off, src)
    }

    /// The archive bytes of `inum`, if it is an archive file never written (what exec
    /// runs).
    #[must_use]
    pub fn archive_bytes(&self, inum: u16) -> Option<&'static [u8]> {
        let ino = self.inode(inum);
        (ino.typ == T_FILE && !ino.archive.is_empty()).then_some(ino.archive)
    }

    /// Entry `k` of directory `dp`: (inum, name).
    fn dirent(&self, dp: u16, k: u32) -> (u16, Name) {
        let mut b = [0u8; DIRENT_SIZE];
        self.readi(dp, k * DIRENT_SIZE as u32, &mut b);
        let mut name = [0u8; DIRSIZ];
        name.copy_from_slice(&b[2..]);
        (u16::from_le_bytes([b[0], b[1]]), name)
    }

    fn entries(&self, dp: u16) -> u32 {
        self.inode(dp).size / DIRENT_SIZE as u32
    }

    /// Is `inum` an inode in use? (What a directory entry names must be: an entry never
    /// hands out a free inode, whatever it holds.)
    fn in_use(&self, inum: u16) -> bool {
        inum != 0 && usize::from(inum) <= NINODE && self.inode(inum).typ != 0
    }

    /// Looks `name` up in directory `dp` (xv6 `dirlookup`): its inum and entry index. An
    /// entry that names no inode in use counts as absent.
    #[must_use]
    pub fn dirlookup(&self, dp: u16, name: &Name) -> Option<(u16, u32)> {
        (0..self.entries(dp)).find_map(|k| {
            let (inum, n) = self.dirent(dp, k);
            (&n == name && self.in_use(inum)).then_some((inum, k))
        })
    }

    /// Adds the entry `name` → `inum` to directory `dp`, in the first free slot (xv6
    /// `dirlink`). Does not touch link counts.
    pub fn dirlink(&mut self, dp: u16, name: &[u8], inum: u16) -> Result<(), FsError> {
        let name = name_of(name);
        if self.dirlookup(dp, &name).is_some() {
            return Err(FsError::Exists);
        }
        let n = self.entries(dp);
        let k = (0..n).find(|&k| self.dirent(dp, k).0 == 0).unwrap_or(n);
        let mut b = [0u8; DIRENT_SIZE];
        b[..2].copy_from_slice(&inum.to_le_bytes());
        b[2..].copy_from_slice(&name);
        match self.writei(dp, k * DIRENT_SIZE as u32, &b)? {
            DIRENT_SIZE => Ok(()),
            _ => Err(FsError::NoSpace),
        }
    }

    /// Follows `path` from `cwd` (or the root, for an absolute path) (xv6 `namex`). With
    /// `parent`, stops one element early and returns the directory and the last element;
    /// then a path with no element fails.
    fn namex(&self, cwd: u16, path: &[u8], parent: bool) -> Result<(u16, Name), FsError> {
        let mut ip = if path.first() == Some(&b'/') {
            ROOTINO
        } else {
            cwd
        };
        let mut rest = path;
        while let Some((elem, next)) = skipelem(rest) {
            if self.inode(ip).typ != T_DIR {
                return Err(FsError::NotDir);
            }
            let name = name_of(elem);
            if parent && skipelem(next).is_none() {
                return Ok((ip, name));
            }
            ip = self.dirlookup(ip, &name).ok_or(FsError::NotFound)?.0;
            rest = next;
        }
        if parent {
            return Err(FsError::NotFound);
        }
        Ok((ip, [0; DIRSIZ]))
    }

    /// The inode `path` names (xv6 `namei`); `""` is `cwd` itself.
    pub fn namei(&self, cwd: u16, path: &[u8]) -> Result<u16, FsError> {
        self.namex(cwd, path, false).map(|(ip, _)| ip)
    }

    /// The directory holding `path`'s last element, and that element (xv6 `nameiparent`).
    pub fn nameiparent(&self, cwd: u16, path: &[u8]) -> Result<(u16, Name), FsError> {
        self.namex(cwd, path, true)
    }

    /// Creates `path` as an inode of type `typ` (xv6 sysfile.c's `create`): a directory gets
    /// `.` and `..`; opening an existing regular file with O_CREATE (`typ` T_FILE) returns
    /// it. Returns the inum. Nothing is created in a removed directory (one with no links
    /// left, such as the unlinked working directory of some process: `Removed`), nor a
    /// directory in one with MAXLINK links.
    pub fn create(
        &mut self,
        cwd: u16,
        path: &[u8],
        typ: i16,
        major: i16,
        minor: i16,
    ) -> Result<u16, FsError> {
        let (dp, name) = self.nameiparent(cwd, path)?;
        if let Some((ip, _)) = self.dirlookup(dp, &name) {
            return if typ == T_FILE && self.inode(ip).typ == T_FILE {
                Ok(ip)
            } else {
                Err(FsError::Exists)
            };
        }
        let dnlink = self.inode(dp).nlink;
        if dnlink == 0 {
            return Err(FsError::Removed);
        }
        if typ == T_DIR && dnlink >= MAXLINK {
            return Err(FsError::TooManyLinks);
        }
        let ip = self.ialloc(typ)?;
        let ino = self.inode_mut(ip);
        (ino.major, ino.minor, ino.nlink) = (major, minor, 1);
        let linked = (|| {
            if typ == T_DIR {
                self.dirlink(ip, b".", ip)?;
                self.dirlink(ip, b"..", dp)?;
            }
            self.dirlink(dp, &name, ip)
        })();
        if let Err(e) = linked {
            self.inode_mut(ip).nlink = 0;
            self.release_if_unused(ip);
            return Err(e);
        }
        if typ == T_DIR {
            self.inode_mut(dp).nlink += 1; // for ".."
        }
        Ok(ip)
    }

    /// Is directory `dp` empty but for `.` and `..` (xv6 `isdirempty`)?
    fn isdirempty(&self, dp: u16) -> bool {
        (2..self.entries(dp)).all(|k| self.dirent(dp, k).0 == 0)
    }

    /// Removes the name `path` (xv6 `sys_unlink`): not `.` or `..`, not a non-empty
    /// directory. The inode goes when its last name and its last reference are gone. A
    /// removed directory loses its `..` too (its parent's link count just went down for
    /// it): a process whose working directory it is finds no `..` there (−1), never the
    /// parent, which may be gone itself, its inode free or reused.
    pub fn unlink(&mut self, cwd: u16, path: &[u8]) -> Result<(), FsError> {
        let (dp, name) = self.nameiparent(cwd, path)?;
        if name == name_of(b".") || name == name_of(b"..") {
            return Err(FsError::IsDir);
        }
        let (ip, k) = self.dirlookup(dp, &name).ok_or(FsError::NotFound)?;
        let isdir = self.inode(ip).typ == T_DIR;
        if isdir && !self.isdirempty(ip) {
            return Err(FsError::IsDir);
        }
        let zero = [0u8; DIRENT_SIZE];
        self.writei(dp, k * DIRENT_SIZE as u32, &zero)?;
        if isdir {
            self.inode_mut(dp).nlink -= 1;
            if let Some((_, dotdot)) = self.dirlookup(ip, &name_of(b"..")) {
                // A directory's pages are its own (never archive bytes): overwriting an
                // entry allocates nothing and cannot fail.
                let _ = self.writei(ip, dotdot * DIRENT_SIZE as u32, &zero);
            }
        }
        self.inode_mut(ip).nlink -= 1;
        self.release_if_unused(ip);
        Ok(())
    }

    /// Gives the file `old` the additional name `new` (xv6 `sys_link`); not for directories,
    /// not past MAXLINK names, not in a removed directory.
    pub fn link(&mut self, cwd: u16, old: &[u8], new: &[u8]) -> Result<(), FsError> {
        let ip = self.namei(cwd, old)?;
        if self.inode(ip).typ == T_DIR {
            return Err(FsError::IsDir);
        }
        if self.inode(ip).nlink >= MAXLINK {
            return Err(FsError::TooManyLinks);
        }
        let (dp, name) = self.nameiparent(cwd, new)?;
        if self.inode(dp).nlink == 0 {
            return Err(FsError::Removed);
        }
        self.dirlink(dp, &name, ip)?;
        self.inode_mut(ip).nlink += 1;
        Ok(())
    }

    /// Inodes in use.
    #[must_use]
    pub fn used(&self) -> usize {
        self.inodes.iter().filter(|i| i.typ != 0).count()
    }
}

#[cfg(test)]
#[path = "fs_tests.rs"]
mod tests;
