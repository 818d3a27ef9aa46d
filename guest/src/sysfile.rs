//! The file system calls (xv6 sysfile.c): descriptors (read, write, close, dup, pipe,
//! fstat), names (open, link, unlink, mkdir, mknod, chdir) and exec. Each fetches and checks
//! its arguments (sysarg.rs) and works on the open files and the file system under the `FS`
//! lock (file.rs, fs.rs); all return the value for %eax: −1 on error.
//!
//! Blocking — a pipe reader waiting for data, a writer for room, a console reader for input —
//! sleeps with the ptable lock held and the `FS` lock released, and gives up with −1 when the
//! process is killed meanwhile.

use crate::console::{self, Stream};
use crate::exec::{exec_file, ExecError, NotExec, ProgramFile, MAXARG};
use crate::file::{Target, FS};
use crate::fs::{FsError, Stat, T_DEV, T_DIR, T_FILE};
use crate::kpage::KPage;
use crate::memlayout::UVAddr;
use crate::mmu::PGSIZE;
use crate::pipe::PIPESIZE;
use crate::proc::{self, PTABLE};
use crate::ptable::Chan;
use crate::sysarg::{argaddr, argint, argptr, argstr, fetchint, fetchstr};
use crate::trapframe::TrapFrame;
use crate::uaccess;
use crate::{cprintln, file};

/// Longest path a call accepts, with its NUL (xv6 MAXPATH).
pub const MAXPATH: usize = 128;
/// Bytes moved between user memory and a file per step of read/write (a pipe's buffer).
const CHUNK: usize = PIPESIZE;

/// Copies kernel bytes to user address `va` of the current process.
fn copy_out(va: UVAddr, src: &[u8]) -> bool {
    proc::with_mem(|m| uaccess::copyto(m, va, src)).is_ok()
}

/// Copies user bytes at `va` of the current process into `dst`.
fn copy_in(va: UVAddr, dst: &mut [u8]) -> bool {
    proc::with_mem(|m| uaccess::copyin(m, va, dst)).is_ok()
}

/// The open file behind argument `n`, a descriptor (xv6 `argfd`).
fn argfd(tf: &TrapFrame, n: u32) -> Option<u16> {
    proc::ofile(argint(tf, n).ok()?)
}

/// The value for %eax: 0 or −1.
fn status<T, E>(r: Result<T, E>) -> i32 {
    if r.is_ok() {
        0
    } else {
        -1
    }
}

/// read's and write's arguments (fd, buf, n) and what the descriptor's open file reaches.
struct RwArgs {
    f: u16,
    file: file::File,
    target: Target,
    buf: UVAddr,
    n: usize,
}

/// Fetches (fd, buf, n) for read and write: None for a bad descriptor or a negative n.
fn rw_args(tf: &TrapFrame) -> Option<RwArgs> {
    let (Some(f), Ok(buf), Ok(n)) = (argfd(tf, 0), argaddr(tf, 1), argint(tf, 2)) else {
        return None;
    };
    let n = usize::try_from(n).ok()?;
    let fsys = FS.lock();
    Some(RwArgs {
        f,
        file: *fsys.file(f),
        target: fsys.target(f),
        buf,
        n,
    })
}

/// read(fd, buf, n): from a file at its offset, a pipe or the console; 0 at end of file.
/// The whole buffer is checked first, as xv6-public's `argptr` does, and more: every page of
/// it must be writable (lazy pages are mapped, copy-on-write ones copied, now). A buffer
/// that is not — text, the guard page, past the process, memory out for a page — is −1 with
/// nothing taken from the pipe, the console or the file. A device with no driver: −1.
pub fn sys_read(tf: &mut TrapFrame) -> i32 {
    let Some(RwArgs {
        f,
        file,
        target,
        buf,
        n,
    }) = rw_args(tf)
    else {
        return -1;
    };
    if !file.readable || target == Target::NoDevice {
        return -1;
    }
    if proc::with_mem(|m| uaccess::prepare_write(m, buf, n)).is_err() {
        return -1;
    }
    if n == 0 {
        return 0;
    }
    match target {
        Target::Pipe(pipe) => piperead(pipe, buf, n),
        Target::Console { .. } => console::consoleread(buf, n as u32),
        Target::Inode(inum) => inoderead(f, inum, buf, n),
        Target::NoDevice => -1,
    }
}

/// write(fd, buf, n): to a file at its offset (growing it), a pipe or the console. The whole
/// buffer is checked first (xv6-public's `argptr`): one that runs into memory the process
/// cannot read is −1 with nothing written, on every kind of descriptor. Then n, or −1 if a
/// pipe lost its reader or a file ran out of room part-way (as xv6's `filewrite`).
pub fn sys_write(tf: &mut TrapFrame) -> i32 {
    let Some(a) = rw_args(tf).filter(|a| a.file.writable) else {
        return -1;
    };
    let (f, target, buf, n) = (a.f, a.target, a.buf, a.n);
    if target == Target::NoDevice {
        return -1;
    }
    if proc::with_mem(|m| uaccess::prepare_read(m, buf, n)).is_err() {
        return -1;
    }
    if let Target::Console { stderr } = target {
        let stream = if stderr {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        return console::consolewrite(stream, buf, n as u32);
    }
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < n {
        let len = (n - done).min(CHUNK);
        // Checked above: the process's memory cannot shrink while it is in this call.
        if !copy_in(UVAddr(buf.0 + done as u32), &mut chunk[..len]) {
            return -1;
        }
        let r = match target {
            Target::Pipe(pipe) => pipewrite(pipe, &chunk[..len]),
            Target::Inode(inum) => inodewrite(f, inum, &chunk[..len]),
            Target::Console { .. } | Target::NoDevice => false,
        };
        if !r {
            return -1;
        }
        done += len;
    }
    done as i32
}

/// Reads up to `n` bytes of inode file `f` at its offset into user `buf` (made writable by
/// the caller); the offset moves only over bytes that reached the buffer. The ptable lock
/// (for the copy to user memory) is taken before fs, in the kernel's lock order.
fn inoderead(f: u16, inum: u16, buf: UVAddr, n: usize) -> i32 {
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < n {
        let want = (n - done).min(CHUNK);
        let mut pt = PTABLE.lock();
        let mut fsys = FS.lock();
        let off = fsys.file(f).off;
        let got = fsys.fs.readi(inum, off, &mut chunk[..want]);
        if got == 0 {
            break;
        }
        let to = UVAddr(buf.0 + done as u32);
        if proc::with_mem_locked(&mut pt, |m| uaccess::copyto(m, to, &chunk[..got])).is_err() {
            return if done == 0 { -1 } else { done as i32 };
        }
        fsys.file_mut(f).off += got as u32;
        done += got;
        if got < want {
            break;
        }
    }
    done as i32
}

/// Writes `src` to inode file `f` at its offset; false unless all of it went in.
fn inodewrite(f: u16, inum: u16, src: &[u8]) -> bool {
    let mut fsys = FS.lock();
    let off = fsys.file(f).off;
    let r = fsys.fs.writei(inum, off, src);
    if let Ok(n) = r {
        fsys.file_mut(f).off += n as u32;
    }
    r == Ok(src.len())
}

/// Reads from pipe `p` into user `buf` (xv6 `piperead`): waits while it is empty and a
/// writer is left; 0 once it is empty and every writer has closed. The bytes are copied to
/// the reader's memory first and taken from the pipe only then, both under the locks: a
/// copy that fails leaves them all in the pipe (−1).
fn piperead(p: usize, buf: UVAddr, n: usize) -> i32 {
    let mut chunk = [0u8; CHUNK];
    let mut pt = PTABLE.lock();
    loop {
        let mut fsys = FS.lock();
        let pipe = &mut fsys.pipes[p];
        if !pipe.is_empty() || !pipe.writeopen {
            let got = pipe.peek(&mut chunk[..n.min(CHUNK)]);
            let copied = proc::with_mem_locked(&mut pt, |m| uaccess::copyto(m, buf, &chunk[..got]));
            if copied.is_err() {
                return -1;
            }
            fsys.pipes[p].consume(got);
            drop(fsys);
            pt.wakeup(Chan::PipeWrite(p));
            return got as i32;
        }
        drop(fsys);
        if proc::killed_locked(&pt) {
            return -1;
        }
        proc::sleep(Chan::PipeRead(p), &mut pt);
    }
}

/// Writes `src` into pipe `p` (xv6 `pipewrite`), waiting for room; false if no reader is
/// left (or the writer is killed) before all of it went in.
fn pipewrite(p: usize, src: &[u8]) -> bool {
    let mut off = 0;
    let mut pt = PTABLE.lock();
    while off < src.len() {
        let mut fsys = FS.lock();
        let pipe = &mut fsys.pipes[p];
        if !pipe.readopen || proc::killed_locked(&pt) {
            return false;
        }
        let n = pipe.write(&src[off..]);
        drop(fsys);
        off += n;
        if n > 0 {
            pt.wakeup(Chan::PipeRead(p));
        }
        if off < src.len() {
            proc::sleep(Chan::PipeWrite(p), &mut pt);
        }
    }
    true
}

/// close(fd).
pub fn sys_close(tf: &mut TrapFrame) -> i32 {
    let Ok(fd) = argint(tf, 0) else { return -1 };
    match proc::fdclear(fd) {
        Some(f) => {
            file::fileclose(f);
            0
        }
        None => -1,
    }
}

/// dup(fd): a new descriptor (the lowest free) for the same open file.
pub fn sys_dup(tf: &mut TrapFrame) -> i32 {
    let Some(f) = argfd(tf, 0) else { return -1 };
    let Some(fd) = proc::fdalloc(f) else {
        return -1;
    };
    FS.lock().filedup(f);
    fd
}

/// pipe(fds): a new pipe; fds[0] reads, fds[1] writes.
pub fn sys_pipe(tf: &mut TrapFrame) -> i32 {
    let Ok(fds) = argptr(tf, 0, 8) else {
        return -1;
    };
    let Some((r, w)) = FS.lock().pipealloc() else {
        return -1;
    };
    let Some(fd0) = proc::fdalloc(r) else {
        file::fileclose(r);
        file::fileclose(w);
        return -1;
    };
    let Some(fd1) = proc::fdalloc(w) else {
        proc::fdclear(fd0);
        file::fileclose(r);
        file::fileclose(w);
        return -1;
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&fd0.to_le_bytes());
    b[4..].copy_from_slice(&fd1.to_le_bytes());
    if !copy_out(fds, &b) {
        for fd in [fd0, fd1] {
            if let Some(f) = proc::fdclear(fd) {
                file::fileclose(f);
            }
        }
        return -1;
    }
    0
}

/// fstat(fd, st): xv6's `struct stat` of the file's inode (−1 for a pipe).
pub fn sys_fstat(tf: &mut TrapFrame) -> i32 {
    let (Some(f), Ok(st)) = (argfd(tf, 0), argptr(tf, 1, Stat::SIZE as u32)) else {
        return -1;
    };
    let Some(stat) = FS.lock().stat(f) else {
        return -1;
    };
    status(copy_out(st, &stat.to_bytes()).then_some(()).ok_or(()))
}

/// open(path, omode): O_RDONLY, O_WRONLY, O_RDWR, O_CREATE.
pub fn sys_open(tf: &mut TrapFrame) -> i32 {
    let mut pathbuf = [0u8; MAXPATH];
    let (Ok(path), Ok(omode)) = (argstr(tf, 0, &mut pathbuf), argint(tf, 1)) else {
        return -1;
    };
    let cwd = proc::cwd();
    let Ok(f) = FS.lock().open(cwd, path, omode) else {
        return -1;
    };
    match proc::fdalloc(f) {
        Some(fd) => fd,
        None => {
            file::fileclose(f);
            -1
        }
    }
}

/// Runs `op` on the file system with the path in argument `n` and the current directory.
fn with_path(
    tf: &TrapFrame,
    n: u32,
    op: impl FnOnce(&mut crate::fs::Fs, u16, &[u8]) -> Result<(), FsError>,
) -> i32 {
    let mut pathbuf = [0u8; MAXPATH];
    let Ok(path) = argstr(tf, n, &mut pathbuf) else {
        return -1;
    };
    let cwd = proc::cwd();
    status(op(&mut FS.lock().fs, cwd, path))
}

/// mkdir(path).
pub fn sys_mkdir(tf: &mut TrapFrame) -> i32 {
    with_path(tf, 0, |fs, cwd, path| {
        fs.create(cwd, path, T_DIR, 0, 0).map(|_| ())
    })
}

/// mknod(path, major, minor): a device file (major 1 is the console; another major makes a
/// node whose read and write fail). Both numbers must fit xv6's `short`: −1 otherwise, never
/// cut to 16 bits (0x10001 is not the console).
pub fn sys_mknod(tf: &mut TrapFrame) -> i32 {
    let (Ok(major), Ok(minor)) = (argint(tf, 1), argint(tf, 2)) else {
        return -1;
    };
    let (Ok(major), Ok(minor)) = (i16::try_from(major), i16::try_from(minor)) else {
        return -1;
    };
    with_path(tf, 0, |fs, cwd, path| {
        fs.create(cwd, path, T_DEV, major, minor).map(|_| ())
    })
}

/// unlink(path).
pub fn sys_unlink(tf: &mut TrapFrame) -> i32 {
    with_path(tf, 0, |fs, cwd, path| fs.unlink(cwd, path))
}

/// link(old, new).
pub fn sys_link(tf: &mut TrapFrame) -> i32 {
    let mut newbuf = [0u8; MAXPATH];
    let Ok(new) = argstr(tf, 1, &mut newbuf) else {
        return -1;
    };
    with_path(tf, 0, |fs, cwd, old| fs.link(cwd, old, new))
}

/// chdir(path): a directory becomes the current one.
pub fn sys_chdir(tf: &mut TrapFrame) -> i32 {
    let mut pathbuf = [0u8; MAXPATH];
    let Ok(path) = argstr(tf, 0, &mut pathbuf) else {
        return -1;
    };
    let cwd = proc::cwd();
    {
        let mut fsys = FS.lock();
        let Ok(ip) = fsys.fs.namei(cwd, path) else {
            return -1;
        };
        if fsys.fs.inode(ip).typ != T_DIR {
            return -1;
        }
        fsys.fs.idup(ip);
        drop(fsys);
        // fs is not held here: the ptable lock comes before it (spinlock.rs).
        let old = proc::set_cwd(ip);
        if old != 0 {
            FS.lock().fs.iput(old);
        }
    }
    0
}

/// A program for exec: an archive file never written (its bytes, no copy), or any other
/// regular file, read through the file system as exec goes.
pub enum Program {
    Archive(&'static [u8]),
    File(FileProgram),
}

/// A regular file to exec: held open (a reference on its inode) while exec reads it, with
/// its first page read up front for the ELF headers.
pub struct FileProgram {
    inum: u16,
    size: usize,
    head: KPage,
}

impl Drop for FileProgram {
    fn drop(&mut self) {
        FS.lock().fs.iput(self.inum);
    }
}

impl ProgramFile for Program {
    fn size(&self) -> usize {
        match self {
            Program::Archive(b) => b.len(),
            Program::File(f) => f.size,
        }
    }

    fn head(&self) -> &[u8] {
        match self {
            Program::Archive(b) => b,
            Program::File(f) => &f.head.bytes()[..f.size.min(PGSIZE as usize)],
        }
    }

    fn read_at(&self, off: usize, dst: &mut [u8]) {
        match self {
            Program::Archive(b) => b.read_at(off, dst),
            Program::File(f) => {
                // The inode is held (FileProgram) and regular; exec reads within its size.
                let n = FS.lock().fs.readi(f.inum, off as u32, dst);
                dst[n..].fill(0);
            }
        }
    }
}

/// The program `path` names, from directory `cwd`: NotFound if nothing has that name,
/// NotExecutable if it is not a regular file, OutOfMemory if its first page cannot be read.
pub fn program(cwd: u16, path: &[u8]) -> Result<Program, ExecError> {
    let mut fsys = FS.lock();
    let ip = fsys.fs.namei(cwd, path).map_err(|_| ExecError::NotFound)?;
    if let Some(bytes) = fsys.fs.archive_bytes(ip) {
        return Ok(Program::Archive(bytes));
    }
    let ino = fsys.fs.inode(ip);
    if ino.typ != T_FILE {
        return Err(ExecError::NotExecutable(NotExec::NotRegular));
    }
    let size = ino.size as usize;
    let mut head = KPage::new().ok_or(ExecError::OutOfMemory)?;
    let n = size.min(PGSIZE as usize);
    fsys.fs.readi(ip, 0, &mut head.bytes_mut()[..n]);
    fsys.fs.idup(ip);
    Ok(Program::File(FileProgram {
        inum: ip,
        size,
        head,
    }))
}

/// exec(path, argv): replaces the process's image with the program file `path` names; argv
/// is a user array of string pointers ending with 0 (at most MAXARG). Does not return to
/// the old image on success; −1 (the caller untouched) on failure. Any regular file that
/// holds a static ELF32 i386 executable runs: the archive's, and files written at run time.
pub fn sys_exec(tf: &mut TrapFrame) -> i32 {
    let Ok(uargv) = argaddr(tf, 1) else { return -1 };
    let Some(mut page) = KPage::new() else {
        return -1;
    };
    let (pathbuf, mut rest) = page.bytes_mut().split_at_mut(MAXPATH);
    let Ok(path) = argstr(tf, 0, pathbuf) else {
        return -1;
    };
    let mut argv: [&[u8]; MAXARG] = [&[]; MAXARG];
    let mut argc = 0;
    loop {
        let Some(at) = uargv.checked_add(4 * argc as u32) else {
            return -1;
        };
        let Ok(uarg) = fetchint(at) else { return -1 };
        if uarg == 0 {
            break;
        }
        if argc == MAXARG {
            return -1; // MAXARG strings and still no terminating 0
        }
        let Ok(len) = fetchstr(UVAddr(uarg), rest).map(<[u8]>::len) else {
            return -1;
        };
        let (arg, tail) = core::mem::take(&mut rest).split_at_mut(len);
        argv[argc] = arg;
        rest = tail;
        argc += 1;
    }
    let image = program(proc::cwd(), path).and_then(|file| exec_file(&file, &argv[..argc]));
    match image {
        Ok(image) => {
            proc::exec_install(tf, image, path);
            0
        }
        Err(_) => -1,
    }
}

/// Boot: fills the file system from the program archive and opens the console for the first
/// process; returns its descriptors and directory. Panics only if the root or the console
/// cannot be made (a kernel with no memory at all).
pub fn fsinit(archive: &'static [u8]) -> (crate::ptable::Ofile, u16) {
    let files = crate::archive::entries(archive)
        .map_while(Result::ok)
        .filter(|e| e.is_file() || e.is_dir())
        .map(|e| (e.name, e.is_file().then_some(e.data)));
    FS.lock()
        .init(files, |name, e| {
            cprintln!(
                "xv6: fs: {} not added: {:?}",
                core::str::from_utf8(name).unwrap_or("?"),
                e
            );
        })
        .unwrap_or_else(|e| panic!("fsinit: {:?}", e))
}
