//! Open files (xv6 file.c): the system-wide table of open files — each an inode or one end
//! of a pipe, with a reference count shared by `fork` and `dup`, an offset and its access
//! mode — beside the file system (fs.rs) and the pipes (pipe.rs), all under one lock, `FS`.
//! A process's descriptors (ptable.rs `Ofile`) are indices into this table.
//!
//! At boot `fsinit` fills `/` with the program archive's files and the console device
//! `/console` (major 1), and opens the console three times for the first process: fd 0 for
//! reading, fd 1 for writing (the VMM's stdout) and fd 2 for writing to the error stream (the
//! VMM's stderr). Any other descriptor of the console writes to stdout.

use crate::fs::{Fs, FsError, Stat, CONSOLE, ROOTINO, T_DEV, T_DIR, T_FILE};
use crate::pipe::Pipe;
use crate::ptable::{Ofile, NOFILE};
use crate::spinlock::Spinlock;

/// Open files in the whole system (xv6 NFILE).
pub const NFILE: usize = 100;
/// Pipes in the whole system.
pub const NPIPE: usize = NFILE / 2;

/// open's mode bits (xv6 fcntl.h; O_TRUNC from xv6-riscv).
pub use xv6_abi::fcntl::{O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};

/// What an open file refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileKind {
    /// One end of pipe `pipe`.
    Pipe { pipe: usize, write: bool },
    /// An inode: a file, a directory or a device.
    Inode { inum: u16 },
}

/// What read and write of an open file reach (xv6 file.c's dispatch on the file's type
/// and, for a device, `devsw[major]`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// Pipe number n.
    Pipe(usize),
    /// The console device (major CONSOLE); `stderr` for the first process's fd 2.
    Console { stderr: bool },
    /// A device node of a major no driver serves: read and write fail (−1).
    NoDevice,
    /// A regular file or a directory: its data.
    Inode(u16),
}

/// An open file (xv6 `struct file`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct File {
    pub kind: FileKind,
    /// Descriptors that refer to it, in all processes.
    pub refs: u32,
    pub readable: bool,
    pub writable: bool,
    /// Where the next read or write of an inode goes.
    pub off: u32,
    /// A console file that writes to the error stream (the first process's fd 2).
    pub stderr: bool,
}

impl File {
    fn new(kind: FileKind, readable: bool, writable: bool) -> File {
        File {
            kind,
            refs: 1,
            readable,
            writable,
            off: 0,
            stderr: false,
        }
    }
}

/// The file system, the open files and the pipes.
pub struct FileSys {
    pub fs: Fs,
    files: [Option<File>; NFILE],
    pub pipes: [Pipe; NPIPE],
}

impl Default for FileSys {
    fn default() -> Self {
        Self::new()
    }
}

impl From<FsError> for OpenError {
    fn from(e: FsError) -> OpenError {
        OpenError::Fs(e)
    }
}

/// Why open failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpenError {
    Fs(FsError),
    /// A directory opened for writing.
    IsDir,
    /// The open-file table is full.
    TableFull,
}

impl FileSys {
    /// Nothing open, no inodes.
    #[must_use]
    pub const fn new() -> FileSys {
        FileSys {
            fs: Fs::new(),
            files: [None; NFILE],
            pipes: [const { Pipe::new() }; NPIPE],
        }
    }

    /// Open file `f`.
    #[must_use]
    pub fn file(&self, f: u16) -> &File {
        self.files[usize::from(f)].as_ref().expect("file: not open")
    }

    /// Open file `f`, writable.
    pub fn file_mut(&mut self, f: u16) -> &mut File {
        self.files[usize::from(f)].as_mut().expect("file: not open")
    }

    /// Puts `file` in a free slot (xv6 `filealloc`).
    fn filealloc(&mut self, file: File) -> Option<u16> {
        let i = self.files.iter().position(Option::is_none)?;
        self.files[i] = Some(file);
        Some(i as u16)
    }

    /// One more descriptor refers to `f` (xv6 `filedup`).
    pub fn filedup(&mut self, f: u16) {
        self.file_mut(f).refs += 1;
    }

    /// A descriptor of `f` is gone (xv6 `fileclose`); the last one closes the inode or the
    /// pipe end. Returns the pipe whose waiters must be woken, if it was a pipe's last.
    pub fn fileclose(&mut self, f: u16) -> Option<usize> {
        let file = self.file_mut(f);
        file.refs -= 1;
        if file.refs > 0 {
            return None;
        }
        let kind = file.kind;
        self.files[usize::from(f)] = None;
        match kind {
            FileKind::Inode { inum } => {
                self.fs.iput(inum);
                None
            }
            FileKind::Pipe { pipe, write } => {
                let p = &mut self.pipes[pipe];
                if write {
                    p.writeopen = false;
                } else {
                    p.readopen = false;
                }
                Some(pipe)
            }
        }
    }

    /// Opens inode `inum` (taking a reference to it).
    fn open_inode(&mut self, inum: u16, readable: bool, writable: bool) -> Option<u16> {
        let f = self.filealloc(File::new(FileKind::Inode { inum }, readable, writable))?;
        self.fs.idup(inum);
        Some(f)
    }

    /// open(path, omode) from directory `cwd` (xv6 `sys_open`): O_CREATE makes a regular
    /// file (or opens the existing one); a directory opens only read-only; O_TRUNC empties
    /// a regular file (xv6-riscv), once the file could be opened.
    pub fn open(&mut self, cwd: u16, path: &[u8], omode: i32) -> Result<u16, OpenError> {
        let inum = if omode & O_CREATE != 0 {
            self.fs.create(cwd, path, T_FILE, 0, 0)?
        } else {
            let inum = self.fs.namei(cwd, path)?;
            if self.fs.inode(inum).typ == T_DIR && omode != O_RDONLY {
                return Err(OpenError::IsDir);
            }
            inum
        };
        let readable = omode & O_WRONLY == 0;
        let writable = omode & (O_WRONLY | O_RDWR) != 0;
        let f = self
            .open_inode(inum, readable, writable)
            .ok_or(OpenError::TableFull)?;
        if omode & O_TRUNC != 0 && self.fs.inode(inum).typ == T_FILE {
            self.fs.itrunc(inum);
        }
        Ok(f)
    }

    /// A new pipe and its two ends, read and write (xv6 `pipealloc`).
    pub fn pipealloc(&mut self) -> Option<(u16, u16)> {
        let pipe = self.pipes.iter().position(Pipe::is_free)?;
        let r = self.filealloc(File::new(
            FileKind::Pipe { pipe, write: false },
            true,
            false,
        ))?;
        let Some(w) = self.filealloc(File::new(FileKind::Pipe { pipe, write: true }, false, true))
        else {
            self.files[usize::from(r)] = None;
            return None;
        };
        self.pipes[pipe] = Pipe::new();
        self.pipes[pipe].readopen = true;
        self.pipes[pipe].writeopen = true;
        Some((r, w))
    }

    /// fstat of `f` (xv6 `filestat`): only inodes have one.
    #[must_use]
    pub fn stat(&self, f: u16) -> Option<Stat> {
        match self.file(f).kind {
            FileKind::Inode { inum } => Some(self.fs.stat(inum)),
            FileKind::Pipe { .. } => None,
        }
    }

    /// What read and write of open file `f` reach.
    #[must_use]
    pub fn target(&self, f: u16) -> Target {
        let file = self.file(f);
        match file.kind {
            FileKind::Pipe { pipe, .. } => Target::Pipe(pipe),
            FileKind::Inode { inum } => {
                let ino = self.fs.inode(inum);
                match (ino.typ, ino.major) {
                    (T_DEV, CONSOLE) => Target::Console {
                        stderr: file.stderr,
                    },
                    (T_DEV, _) => Target::NoDevice,
                    _ => Target::Inode(inum),
                }
            }
        }
    }

    /// Is `f` the console device? `Some(stderr)` if so.
    #[must_use]
    pub fn console(&self, f: u16) -> Option<bool> {
        match self.target(f) {
            Target::Console { stderr } => Some(stderr),
            _ => None,
        }
    }

    /// The root directory, `/console`, and the archive's entries (`files`: path, bytes —
    /// `None` for a directory, which `--dir` puts before what it holds; a name already there
    /// — `console` too — a missing parent or one there is no room for is skipped and
    /// reported through `skipped`); then the first process's descriptors 0, 1, 2 on the
    /// console. Returns them and the root for its cwd (a reference taken).
    pub fn init<'a>(
        &mut self,
        files: impl Iterator<Item = (&'a [u8], Option<&'static [u8]>)>,
        mut skipped: impl FnMut(&[u8], FsError),
    ) -> Result<(Ofile, u16), FsError> {
        self.fs.init()?;
        let con = self.fs.create(ROOTINO, b"console", T_DEV, CONSOLE, 1)?;
        for (name, data) in files {
            let added = match data {
                Some(data) => self.fs.add_archive_file(name, data),
                None => self.fs.create(ROOTINO, name, T_DIR, 0, 0),
            };
            if let Err(e) = added {
                skipped(name, e);
            }
        }
        let mut ofile = [None; NOFILE];
        for (fd, (r, w)) in [(true, false), (false, true), (false, true)]
            .into_iter()
            .enumerate()
        {
            ofile[fd] = Some(self.open_inode(con, r, w).ok_or(FsError::NoSpace)?);
        }
        self.file_mut(ofile[2].expect("fd 2")).stderr = true;
        self.fs.idup(ROOTINO);
        Ok((ofile, ROOTINO))
    }
}

/// The file system and the open files (one lock for all of it: this kernel runs on one
/// CPU). Never held across a sleep.
pub static FS: Spinlock<FileSys> = Spinlock::new("fs", FileSys::new());

#[cfg(all(target_arch = "x86", not(test)))]
pub use hw::*;

/// What needs the process table: waking a pipe's waiters.
#[cfg(all(target_arch = "x86", not(test)))]
mod hw {
    use super::*;
    use crate::proc;
    use crate::ptable::Chan;

    /// Wakes both sides of pipe `p` (an end closed).
    pub fn wakeup_pipe(p: usize) {
        proc::wakeup(Chan::PipeRead(p));
        proc::wakeup(Chan::PipeWrite(p));
    }

    /// Closes open file `f` for one descriptor, waking a pipe's waiters if an end closed.
    pub fn fileclose(f: u16) {
        let woke = FS.lock().fileclose(f);
        if let Some(p) = woke {
            wakeup_pipe(p);
        }
    }

    /// fork: every open file of `ofile` and the directory `cwd` get one more reference.
    pub fn dup_all(ofile: &Ofile, cwd: u16) {
        let mut fsys = FS.lock();
        for &f in ofile.iter().flatten() {
            fsys.filedup(f);
        }
        if cwd != 0 {
            fsys.fs.idup(cwd);
        }
    }

    /// exit (or a failed fork): drops the references `dup_all` took.
    pub fn close_all(ofile: &Ofile, cwd: u16) {
        for &f in ofile.iter().flatten() {
            fileclose(f);
        }
        if cwd != 0 {
            FS.lock().fs.iput(cwd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::testmem;

    fn booted(fsys: &mut FileSys) -> (Ofile, u16) {
        static PROG: &[u8] = b"program bytes";
        let files = [(&b"prog"[..], Some(PROG)), (&b"prog"[..], Some(PROG))];
        let mut skipped = 0;
        let r = fsys
            .init(files.into_iter(), |n, e| {
                assert_eq!((n, e), (&b"prog"[..], FsError::Exists));
                skipped += 1;
            })
            .unwrap();
        assert_eq!(skipped, 1);
        r
    }

    #[test]
    fn dir_trees_become_directories_and_files() {
        let _g = testmem::lock();
        let mut fsys = Box::new(FileSys::new());
        static DATA: &[u8] = b"imported";
        let entries: [(&[u8], Option<&'static [u8]>); 6] = [
            (b"data", None),
            (b"data/sub", None),
            (b"data/sub/f", Some(DATA)),
            (b"data/g", Some(DATA)),
            // A parent that is not there, and a file where a directory is wanted: skipped.
            (b"nodir/x", Some(DATA)),
            (b"data/g/y", None),
        ];
        let mut skipped = Vec::new();
        let (ofile, cwd) = fsys
            .init(entries.into_iter(), |n, e| skipped.push((n.to_vec(), e)))
            .unwrap();
        assert_eq!(
            skipped,
            [
                (b"nodir/x".to_vec(), FsError::NotFound),
                (b"data/g/y".to_vec(), FsError::NotDir)
            ]
        );
        let sub = fsys.fs.namei(ROOTINO, b"/data/sub").unwrap();
        assert_eq!(fsys.fs.inode(sub).typ, T_DIR);
        assert_eq!(fsys.fs.namei(sub, b".."), fsys.fs.namei(ROOTINO, b"data"));
        let f = fsys.fs.namei(ROOTINO, b"/data/sub/f").unwrap();
        let mut b = [0u8; 16];
        let n = fsys.fs.readi(f, 0, &mut b);
        assert_eq!(&b[..n], DATA);
        // An imported file can be written (it gets pages of its own) and removed.
        assert_eq!(fsys.fs.writei(f, 0, b"I"), Ok(1));
        fsys.fs.unlink(ROOTINO, b"/data/sub/f").unwrap();
        fsys.fs.unlink(ROOTINO, b"/data/sub").unwrap();
        for f in ofile.into_iter().flatten() {
            fsys.fileclose(f);
        }
        fsys.fs.iput(cwd);
    }

    #[test]
    fn console_descriptors_open_and_close() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut fsys = Box::new(FileSys::new());
        let (ofile, cwd) = booted(&mut fsys);
        assert_eq!(cwd, ROOTINO);
        let [f0, f1, f2] = [0, 1, 2].map(|i| ofile[i].unwrap());
        assert_eq!(fsys.console(f0), Some(false));
        assert_eq!(fsys.console(f2), Some(true));
        assert!(fsys.file(f0).readable && !fsys.file(f0).writable);
        assert!(!fsys.file(f1).readable && fsys.file(f1).writable);
        assert_eq!(fsys.stat(f1).unwrap().typ, T_DEV);
        // Opening the console by name gives a stdout console; a directory opens read-only.
        let c = fsys.open(ROOTINO, b"/console", O_RDWR).unwrap();
        assert_eq!(fsys.console(c), Some(false));
        assert_eq!(fsys.open(ROOTINO, b".", O_RDWR), Err(OpenError::IsDir));
        let d = fsys.open(ROOTINO, b".", O_RDONLY).unwrap();
        assert_eq!(fsys.console(d), None);
        assert_eq!(
            fsys.open(ROOTINO, b"nope", O_RDONLY),
            Err(OpenError::Fs(FsError::NotFound))
        );
        // O_CREATE, then the file survives its unlink while open.
        let w = fsys.open(ROOTINO, b"f", O_CREATE | O_WRONLY).unwrap();
        let FileKind::Inode { inum } = fsys.file(w).kind else {
            panic!("not an inode")
        };
        assert_eq!(fsys.fs.writei(inum, 0, b"abc"), Ok(3));
        fsys.filedup(w);
        fsys.fs.unlink(ROOTINO, b"f").unwrap();
        assert_eq!(fsys.fileclose(w), None);
        assert_eq!(fsys.fs.inode(inum).typ, T_FILE);
        let used = fsys.fs.used();
        assert_eq!(fsys.fileclose(w), None);
        assert_eq!(fsys.fs.used(), used - 1);
        for f in [c, d, f0, f1, f2] {
            fsys.fileclose(f);
        }
        fsys.fs.iput(cwd);
        assert!(fsys.files.iter().all(Option::is_none));
        drop(fsys);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn o_trunc_devices_and_an_archive_file_named_console() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut fsys = Box::new(FileSys::new());
        static DATA: &[u8] = b"not a console";
        let mut skipped = Vec::new();
        let (ofile, cwd) = fsys
            .init([(&b"console"[..], Some(DATA))].into_iter(), |n, e| {
                skipped.push((n.to_vec(), e));
            })
            .unwrap();
        // The console is made first: an archive file of that name is skipped, not a panic.
        assert_eq!(skipped, [(b"console".to_vec(), FsError::Exists)]);
        let c = fsys.open(ROOTINO, b"console", O_RDWR).unwrap();
        assert_eq!(fsys.target(c), Target::Console { stderr: false });
        // A device of another major reaches no driver.
        fsys.fs.create(ROOTINO, b"dev5", T_DEV, 5, 0).unwrap();
        let d = fsys.open(ROOTINO, b"dev5", O_RDWR).unwrap();
        assert_eq!(fsys.target(d), Target::NoDevice);
        // O_TRUNC empties a regular file and frees its pages; without it the data stays.
        let w = fsys.open(ROOTINO, b"f", O_CREATE | O_RDWR).unwrap();
        let FileKind::Inode { inum } = fsys.file(w).kind else {
            panic!("not an inode")
        };
        assert_eq!(fsys.target(w), Target::Inode(inum));
        let used = before - testmem::free();
        assert_eq!(fsys.fs.writei(inum, 0, &[1; 5000]), Ok(5000));
        assert_eq!(before - testmem::free(), used + 2);
        let r = fsys.open(ROOTINO, b"f", O_RDONLY).unwrap();
        assert_eq!(fsys.fs.inode(inum).size, 5000);
        let t = fsys.open(ROOTINO, b"f", O_WRONLY | O_TRUNC).unwrap();
        assert_eq!(fsys.fs.inode(inum).size, 0);
        assert_eq!(before - testmem::free(), used);
        assert_eq!(
            fsys.open(ROOTINO, b"/", O_RDONLY | O_TRUNC),
            Err(OpenError::IsDir)
        );
        for f in [c, d, w, r, t]
            .into_iter()
            .chain(ofile.into_iter().flatten())
        {
            fsys.fileclose(f);
        }
        fsys.fs.iput(cwd);
        drop(fsys);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn pipes_and_a_full_table() {
        let mut fsys = Box::new(FileSys::new());
        let (r, w) = fsys.pipealloc().unwrap();
        let FileKind::Pipe { pipe, write } = fsys.file(w).kind else {
            panic!("not a pipe")
        };
        assert!(write && fsys.pipes[pipe].readopen && fsys.pipes[pipe].writeopen);
        assert_eq!(fsys.stat(r), None);
        assert_eq!(fsys.fileclose(w), Some(pipe));
        assert!(!fsys.pipes[pipe].writeopen && fsys.pipes[pipe].readopen);
        assert_eq!(fsys.fileclose(r), Some(pipe));
        assert!(fsys.pipes[pipe].is_free());
        let mut n = 0;
        while fsys.pipealloc().is_some() {
            n += 1;
        }
        assert_eq!(n, NFILE / 2);
        assert!(fsys.files.iter().all(Option::is_some));
    }
}
