//! Descriptors, pipes and the file system: shared offsets through dup and fork, NOFILE,
//! pipes' blocking, end of file and broken pipes, files and directories with xv6's semantics,
//! and file data counted in the free pages.

use crate::check::{in_child, reap, Outcome};
use core::ffi::CStr;
use ulib::{
    chdir, close, countfree, dup, exit, fork, fstat, kill, link, mkdir, open, pipe, read, unlink,
    wait, write, Dirent, Stat, DIRSIZ, O_CREATE, O_RDONLY, O_RDWR, O_WRONLY, T_DEV, T_DIR, T_FILE,
};

/// Opens `path` or fails the test.
fn must_open(path: &CStr, mode: i32) -> Result<i32, crate::check::Why> {
    let fd = open(path, mode);
    ensure!(fd >= 0, "open({path:?}, {mode:#x}) failed");
    Ok(fd)
}

/// pipes: data arrives in order across 512-byte refills, end of file once every writer has
/// closed, a write with no reader fails, and kill wakes a reader blocked on an empty pipe.
pub fn pipes() -> Outcome {
    let mut fds = [0i32; 2];
    ensure!(pipe(&mut fds) == 0, "pipe failed");
    let pid = fork();
    if pid == 0 {
        close(fds[0]);
        let mut buf = [0u8; 1033];
        for k in 0..5u32 {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (k * 1033 + i as u32) as u8;
            }
            if write(fds[1], &buf) != buf.len() as i32 {
                exit(1);
            }
        }
        exit(0);
    }
    close(fds[1]);
    let mut total = 0u32;
    let mut buf = [0u8; 700];
    loop {
        let n = read(fds[0], &mut buf);
        ensure!(n >= 0, "read from the pipe failed");
        if n == 0 {
            break;
        }
        ensure!(
            n as usize <= 512,
            "one read returned {n} bytes, more than the pipe holds"
        );
        for &b in &buf[..n as usize] {
            ensure!(b == total as u8, "byte {total} is {b}");
            total += 1;
        }
    }
    ensure!(total == 5 * 1033, "{total} bytes arrived, expected 5165");
    ensure!(reap(pid)? == 0, "the writer failed");
    close(fds[0]);
    // No reader: the write fails (and does not block).
    ensure!(pipe(&mut fds) == 0, "pipe failed");
    close(fds[0]);
    ensure!(
        write(fds[1], b"x") == -1,
        "a write with no reader succeeded"
    );
    close(fds[1]);
    // A reader blocked on an empty pipe is woken by kill.
    ensure!(pipe(&mut fds) == 0, "pipe failed");
    let pid = fork();
    if pid == 0 {
        let mut b = [0u8; 1];
        read(fds[0], &mut b);
        exit(3);
    }
    ulib::sleep(5);
    ensure!(kill(pid) == 0, "kill failed");
    let st = reap(pid)?;
    ensure!(st == 137, "a killed reader exited with {st}");
    close(fds[0]);
    close(fds[1]);
    Ok(())
}

/// fds: dup and fork share one offset; close frees the descriptor for reuse (the lowest);
/// NOFILE (16) descriptors at most; bad descriptors give −1.
pub fn fds() -> Outcome {
    let fd = must_open(c"fdfile", O_CREATE | O_RDWR)?;
    let fd2 = dup(fd);
    ensure!(fd2 > fd, "dup returned {fd2}");
    ensure!(
        write(fd, b"ab") == 2 && write(fd2, b"cd") == 2,
        "writes failed"
    );
    let st = in_child(|| if write(fd, b"ef") == 2 { 0 } else { 1 })?;
    ensure!(st == 0, "the child's write failed");
    close(fd);
    close(fd2);
    let fd = must_open(c"fdfile", O_RDONLY)?;
    let mut b = [0u8; 16];
    let n = read(fd, &mut b);
    ensure!(
        &b[..n.max(0) as usize] == b"abcdef",
        "the file holds {:?}",
        &b[..n.max(0) as usize]
    );
    ensure!(
        write(fd, b"x") == -1,
        "a write to a read-only descriptor worked"
    );
    close(fd);
    let mut opened = [0i32; 16];
    let mut n = 0;
    loop {
        let fd = open(c"fdfile", O_RDONLY);
        if fd < 0 {
            break;
        }
        ensure!(n < opened.len(), "more than NOFILE descriptors opened");
        opened[n] = fd;
        n += 1;
    }
    ensure!(
        n == 16 - 3,
        "{n} more descriptors beside 0, 1, 2 (NOFILE 16)"
    );
    close(opened[4]);
    ensure!(dup(0) == opened[4], "the freed descriptor was not reused");
    for &fd in &opened[..n] {
        close(fd);
    }
    for bad in [-1, 16, 1000] {
        ensure!(
            close(bad) == -1 && dup(bad) == -1,
            "descriptor {bad} accepted"
        );
        ensure!(
            read(bad, &mut b) == -1 && write(bad, b"x") == -1,
            "descriptor {bad} accepted"
        );
    }
    ensure!(close(opened[0]) == -1, "a closed descriptor closed again");
    ensure!(unlink(c"fdfile") == 0, "unlink failed");
    Ok(())
}

/// Reads directory `path` and looks for `name` in it.
#[inline(never)]
fn dir_has(path: &CStr, name: &[u8]) -> Result<bool, crate::check::Why> {
    let fd = must_open(path, O_RDONLY)?;
    let mut found = false;
    let mut raw = [0u8; 16];
    while read(fd, &mut raw) == 16 {
        let de = Dirent {
            inum: u16::from_le_bytes([raw[0], raw[1]]),
            name: raw[2..].try_into().unwrap_or([0; DIRSIZ]),
        };
        let len = de.name.iter().position(|&c| c == 0).unwrap_or(DIRSIZ);
        found |= de.inum != 0 && &de.name[..len] == name;
    }
    close(fd);
    Ok(found)
}

/// A page of data to write (static: the user stack is one page).
static PAGE: [u8; 4096] = [7; 4096];

/// filesystem: files in pages (counted by countfree, given back exactly), links, unlink of
/// an open file (it lives until closed), fstat's layout.
pub fn filesystem() -> Outcome {
    let free0 = countfree();
    ensure!(mkdir(c"fsdir") == 0, "mkdir failed");
    ensure!(mkdir(c"fsdir") == -1, "mkdir of an existing name worked");
    ensure!(chdir(c"fsdir") == 0, "chdir failed");
    let fd = must_open(c"../fsdir/big", O_CREATE | O_WRONLY)?;
    for _ in 0..10 {
        ensure!(write(fd, &PAGE) == 4096, "write failed");
    }
    let mut st = Stat::default();
    ensure!(fstat(fd, &mut st) == 0, "fstat failed");
    ensure!(
        st.kind == T_FILE && st.nlink == 1 && st.size == 40960,
        "fstat: type {} nlink {} size {}",
        st.kind,
        st.nlink,
        st.size
    );
    ensure!(
        free0 - countfree() >= 10,
        "10 pages of data took {} pages",
        free0 - countfree()
    );
    ensure!(link(c"big", c"/fsdir/big2") == 0, "link failed");
    ensure!(
        fstat(fd, &mut st) == 0 && st.nlink == 2,
        "nlink after link: {}",
        st.nlink
    );
    ensure!(link(c".", c"dot") == -1, "a directory got a second name");
    ensure!(dir_has(c".", b"big2")?, "the directory does not list big2");
    ensure!(unlink(c"big") == 0 && unlink(c"big2") == 0, "unlink failed");
    ensure!(
        !dir_has(c"/fsdir", b"big")?,
        "the directory still lists big"
    );
    // Still open: still there, data and all.
    ensure!(
        fstat(fd, &mut st) == 0 && st.nlink == 0 && st.size == 40960,
        "fstat after unlink: nlink {}",
        st.nlink
    );
    close(fd);
    ensure!(open(c"big", O_RDONLY) == -1, "an unlinked file opened");
    ensure!(
        chdir(c"/") == 0 && unlink(c"fsdir") == 0,
        "unlink fsdir failed"
    );
    ensure!(
        countfree() == free0,
        "{} pages not given back",
        free0 - countfree()
    );
    Ok(())
}

/// directories: `.` and `..`, relative paths, non-empty directories and dots that cannot
/// be unlinked, directories that open only for reading, the console device at /console, the
/// archive's programs at /.
pub fn directories() -> Outcome {
    let free0 = countfree();
    let mut st = Stat::default();
    ensure!(
        mkdir(c"sub") == 0 && chdir(c"sub/../sub/.") == 0,
        "mkdir/chdir of sub failed"
    );
    ensure!(chdir(c"..") == 0, "chdir .. failed");
    let fd = must_open(c"sub/f", O_CREATE | O_RDWR)?;
    close(fd);
    ensure!(unlink(c"sub") == -1, "a non-empty directory was unlinked");
    ensure!(
        unlink(c"sub/.") == -1 && unlink(c"sub/..") == -1,
        "a dot was unlinked"
    );
    ensure!(open(c"sub", O_RDWR) == -1, "a directory opened for writing");
    ensure!(open(c"sub/f/x", O_CREATE) == -1, "a file inside a file");
    ensure!(
        unlink(c"sub/f") == 0 && unlink(c"sub") == 0,
        "cleanup failed"
    );
    let fd = must_open(c".", O_RDONLY)?;
    ensure!(
        fstat(fd, &mut st) == 0 && st.kind == T_DIR,
        "fstat of .: type {}",
        st.kind
    );
    close(fd);
    let fd = must_open(c"/console", O_WRONLY)?;
    ensure!(
        fstat(fd, &mut st) == 0 && st.kind == T_DEV,
        "fstat of /console: type {}",
        st.kind
    );
    close(fd);
    ensure!(
        fstat(1, &mut st) == 0 && st.kind == T_DEV,
        "fd 1 is not the console"
    );
    ensure!(
        countfree() == free0,
        "{} pages not given back",
        free0 - countfree()
    );
    // The programs of the archive are files at /.
    ensure!(dir_has(c"/", b"usertests")?, "/ does not list usertests");
    ensure!(wait(None) == -1, "a stray child");
    Ok(())
}
