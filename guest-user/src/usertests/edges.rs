//! Edges of the file system calls that suites written elsewhere found: an unlinked working
//! directory (its `..`, creating in it), the link-count limit, device nodes with no driver,
//! O_TRUNC, and xv6-public's rule for bad buffers — read and write check the whole buffer
//! first, on every kind of descriptor: −1, nothing taken from a pipe, the console or a
//! file, nothing written — also when the buffer is a lazy or copy-on-write page and memory
//! is out.

use crate::check::{in_child, reap, Outcome, Why};
use crate::mem::{brk, hog, lazy_mode};
use core::ffi::CStr;
use ulib::probe::{guard_page, peek, poke};
use ulib::{
    chdir, close, countfree, exit, fork, fstat, link, mkdir, mknod, open, pipe, raw, read, sbrk,
    unlink, write, Stat, O_CREATE, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, PGSIZE, T_DIR,
};

/// Opens `path` or fails the test.
fn must_open(path: &CStr, mode: i32) -> Result<i32, Why> {
    let fd = open(path, mode);
    ensure!(fd >= 0, "open({path:?}, {mode:#x}) failed");
    Ok(fd)
}

/// fstat of `fd`, or fails the test.
fn stat_of(fd: i32) -> Result<Stat, Why> {
    let mut st = Stat::default();
    ensure!(fstat(fd, &mut st) == 0, "fstat({fd}) failed");
    Ok(st)
}

/// read(fd, addr, n) with a raw address.
fn read_at(fd: i32, addr: usize, n: usize) -> i32 {
    // SAFETY: the kernel checks the buffer; the tests pass bad ones on purpose.
    unsafe { raw::sys_read(fd, addr as *mut u8, n as i32) }
}

/// write(fd, addr, n) with a raw address.
fn write_at(fd: i32, addr: usize, n: usize) -> i32 {
    // SAFETY: as read_at.
    unsafe { raw::sys_write(fd, addr as *const u8, n as i32) }
}

/// An address in this program's text (read-only).
fn text() -> usize {
    let f: fn() -> Outcome = unlinkedcwd;
    f as usize + 64
}

/// Reads one byte from `fd` and checks it is `want`.
fn expect_byte(fd: i32, want: u8, what: &str) -> Outcome {
    let mut b = [0u8; 1];
    let n = read(fd, &mut b);
    ensure!(
        n == 1 && b[0] == want,
        "{what}: read gave {n}, {:?}, expected {:?}",
        b[0] as char,
        want as char
    );
    Ok(())
}

/// unlinkedcwd: mkdir /a, mkdir /a/b, chdir /a/b, unlink /a/b, unlink /a: `..` is gone (−1
/// for open("../"), as xv6, and for every other call that turns a path into an inode:
/// chdir, exec, link, unlink), nothing can be created in the removed directory (file,
/// directory, device, link), and nothing leaks; the kernel survives it all.
pub fn unlinkedcwd() -> Outcome {
    let free = countfree();
    for round in 0..3 {
        let st = in_child(|| {
            if mkdir(c"/ucwd") != 0 || mkdir(c"/ucwd/b") != 0 || chdir(c"/ucwd/b") != 0 {
                return 10;
            }
            if unlink(c"/ucwd/b") != 0 || unlink(c"/ucwd") != 0 {
                return 11;
            }
            let fd = open(c"../", O_RDONLY);
            if fd >= 0 {
                // The old kernel's stale descriptor: the next file reuses its inode.
                return 12;
            }
            if open(c"..", O_RDONLY) >= 0
                || chdir(c"..") == 0
                || open(c"../x", O_RDONLY) >= 0
                || ulib::exec(c"../../hello", &[c"hello"]) != -1
                || link(c"..", c"/ucwd-dd") == 0
                || unlink(c"..") == 0
            {
                return 13;
            }
            // "." and "" are still the directory itself, now with no links.
            let dot = open(c".", O_RDONLY);
            let mut st = Stat::default();
            if dot < 0 || fstat(dot, &mut st) != 0 || st.kind != T_DIR || st.nlink != 0 {
                return 14;
            }
            close(dot);
            if open(c"f", O_CREATE | O_RDWR) >= 0
                || mkdir(c"d") == 0
                || mknod(c"c", 1, 1) == 0
                || link(c"/console", c"l") == 0
            {
                return 15;
            }
            // A new file elsewhere works and is its own.
            let fd = open(c"/ucwd-new", O_CREATE | O_RDWR);
            if fd < 0 || write(fd, b"new") != 3 {
                return 16;
            }
            close(fd);
            if unlink(c"/ucwd-new") != 0 || chdir(c"/") != 0 {
                return 17;
            }
            0
        })?;
        ensure!(st == 0, "round {round}: step {st} failed");
    }
    ensure!(open(c"/ucwd", O_RDONLY) < 0, "/ucwd still exists");
    let lost = free - countfree();
    ensure!(lost == 0, "{lost} pages lost over three rounds");
    Ok(())
}

/// The most names a file can have (docs/abi.md).
const MAXLINK: usize = 1000;

/// The name of link `i`.
fn link_name(i: usize, buf: &mut [u8; 16]) -> &CStr {
    let mut n = i;
    let mut digits = [0u8; 6];
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let prefix = b"/links/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let d = &digits[k..];
    buf[prefix.len()..prefix.len() + d.len()].copy_from_slice(d);
    buf[prefix.len() + d.len()] = 0;
    CStr::from_bytes_until_nul(buf).expect("NUL-terminated")
}

/// linklimit: `link` fails once a file has MAXLINK names (the count never wraps), the file
/// keeps its data and count, and every name goes again.
pub fn linklimit() -> Outcome {
    ensure!(mkdir(c"/links") == 0, "mkdir /links failed");
    let fd = must_open(c"/links/f", O_CREATE | O_RDWR)?;
    ensure!(write(fd, b"data") == 4, "write failed");
    let mut buf = [0u8; 16];
    let mut made = 1;
    while made < MAXLINK {
        if link(c"/links/f", link_name(made, &mut buf)) != 0 {
            break;
        }
        made += 1;
    }
    ensure!(made == MAXLINK, "link failed after {made} names");
    ensure!(
        link(c"/links/f", link_name(MAXLINK, &mut buf)) == -1,
        "link past {MAXLINK} names succeeded"
    );
    let st = stat_of(fd)?;
    ensure!(
        st.nlink as usize == MAXLINK && st.size == 4,
        "nlink {} size {}",
        st.nlink,
        st.size
    );
    close(fd);
    for i in 1..MAXLINK {
        ensure!(unlink(link_name(i, &mut buf)) == 0, "unlink of link {i}");
    }
    let fd = must_open(c"/links/f", O_RDONLY)?;
    let mut b = [0u8; 8];
    ensure!(read(fd, &mut b) == 4 && &b[..4] == b"data", "data lost");
    ensure!(stat_of(fd)?.nlink == 1, "nlink not back to 1");
    close(fd);
    ensure!(
        unlink(c"/links/f") == 0 && unlink(c"/links") == 0,
        "cleanup failed"
    );
    Ok(())
}

extern "C" {
    /// mknod with int arguments, as xv6's C prototype passes them (any 32-bit value).
    #[link_name = "sys_mknod"]
    fn sys_mknod_int(path: *const u8, major: i32, minor: i32) -> i32;
}

/// devices: a device node of a major no driver serves is created (as in xv6) but read and
/// write on it fail and store nothing; majors and minors that do not fit a short are refused
/// (0x10001 is not the console); a node of major 1 is a console.
pub fn devices() -> Outcome {
    ensure!(mknod(c"/dev5", 5, 0) == 0, "mknod major 5 failed");
    let fd = must_open(c"/dev5", O_RDWR)?;
    ensure!(
        write(fd, b"xyz") == -1,
        "write to a driverless device worked"
    );
    let mut b = [0u8; 4];
    ensure!(read(fd, &mut b) == -1, "read of a driverless device worked");
    let st = stat_of(fd)?;
    ensure!(st.size == 0, "the device node stored {} bytes", st.size);
    close(fd);
    ensure!(unlink(c"/dev5") == 0, "unlink /dev5");
    for (major, minor) in [(0x10001, 1), (1, 0x10001), (-0x10000 + 1, 1), (i32::MAX, 0)] {
        // SAFETY: a NUL-terminated path.
        let r = unsafe { sys_mknod_int(c"/devbig".as_ptr().cast(), major, minor) };
        ensure!(r == -1, "mknod({major:#x}, {minor:#x}) returned {r}");
        ensure!(open(c"/devbig", O_RDONLY) < 0, "/devbig exists");
    }
    ensure!(mknod(c"/con1", 1, 1) == 0, "mknod major 1 failed");
    let fd = must_open(c"/con1", O_WRONLY)?;
    ensure!(write(fd, b"") == 0, "write to the console node failed");
    close(fd);
    ensure!(unlink(c"/con1") == 0, "unlink /con1");
    Ok(())
}

/// otrunc: O_TRUNC (0x400, xv6-riscv's) empties a regular file on open and gives its pages
/// back; with O_CREATE it creates; on a directory or the console it changes nothing.
pub fn otrunc() -> Outcome {
    let fd = must_open(c"/trunc", O_CREATE | O_RDWR)?;
    let piece = [b't'; 512];
    for _ in 0..3 * PGSIZE / piece.len() {
        ensure!(write(fd, &piece) == piece.len() as i32, "write failed");
    }
    close(fd);
    let free = countfree();
    let fd = must_open(c"/trunc", O_WRONLY | O_TRUNC)?;
    ensure!(stat_of(fd)?.size == 0, "O_TRUNC left data");
    let back = countfree() - free;
    ensure!(back == 3, "O_TRUNC gave back {back} pages, expected 3");
    ensure!(write(fd, b"hi") == 2, "write after O_TRUNC failed");
    close(fd);
    let fd = must_open(c"/trunc", O_RDONLY)?;
    let mut b = [0u8; 8];
    ensure!(
        read(fd, &mut b) == 2 && &b[..2] == b"hi",
        "the file is not 'hi'"
    );
    close(fd);
    // Without O_TRUNC, the data stays.
    let fd = must_open(c"/trunc", O_RDWR)?;
    ensure!(stat_of(fd)?.size == 2, "open without O_TRUNC truncated");
    close(fd);
    ensure!(unlink(c"/trunc") == 0, "unlink /trunc");
    let fd = must_open(c"/trunc2", O_CREATE | O_TRUNC | O_RDWR)?;
    ensure!(stat_of(fd)?.size == 0, "new file not empty");
    close(fd);
    ensure!(unlink(c"/trunc2") == 0, "unlink /trunc2");
    // A directory opens read-only only (xv6-riscv refuses O_TRUNC there too) and keeps
    // its entries.
    ensure!(
        open(c"/", O_RDONLY | O_TRUNC) == -1,
        "open(\"/\", O_TRUNC) worked"
    );
    let fd = must_open(c"/", O_RDONLY)?;
    ensure!(stat_of(fd)?.size > 0, "O_TRUNC emptied a directory");
    close(fd);
    Ok(())
}

/// readbad: read() into a buffer the process cannot write — its text, a buffer running into
/// the guard page or past its end — is −1 and takes nothing: the pipe keeps its bytes, the
/// file its offset; the console refuses before waiting for input.
pub fn readbad() -> Outcome {
    let guard = guard_page();
    let end = brk();
    let bad: [(&str, usize, usize); 4] = [
        ("text", text(), 1),
        ("into the guard page", guard - 1, 2),
        ("the guard page", guard + 16, 1),
        ("past the end", end - 1, 2),
    ];
    let mut p = [0i32; 2];
    ensure!(pipe(&mut p) == 0, "pipe failed");
    ensure!(write(p[1], b"ab") == 2, "write to the pipe failed");
    let fd = must_open(c"/readbad", O_CREATE | O_RDWR)?;
    ensure!(write(fd, b"xy") == 2, "write to the file failed");
    close(fd);
    let fd = must_open(c"/readbad", O_RDONLY)?;
    for (what, addr, n) in bad {
        let r = read_at(p[0], addr, n);
        ensure!(r == -1, "pipe read into {what} returned {r}");
        let r = read_at(fd, addr, n);
        ensure!(r == -1, "file read into {what} returned {r}");
        let r = read_at(0, addr, n);
        ensure!(r == -1, "console read into {what} returned {r}");
    }
    expect_byte(p[0], b'a', "the pipe after bad reads")?;
    expect_byte(p[0], b'b', "the pipe after bad reads")?;
    expect_byte(fd, b'x', "the file after bad reads")?;
    close(fd);
    close(p[0]);
    close(p[1]);
    ensure!(unlink(c"/readbad") == 0, "unlink /readbad");
    Ok(())
}

/// writebad: write() from a buffer that straddles the end of the process or runs into the
/// guard page is −1 and writes nothing, on the console, a pipe and a file alike — also when
/// the readable part is larger than the kernel's 512-byte steps.
pub fn writebad() -> Outcome {
    let guard = guard_page();
    let end = brk();
    let bad: [(&str, usize, usize); 4] = [
        ("brk - 4, 8", end - 4, 8),
        ("brk - 600, 1200", end - 600, 1200),
        ("into the guard page", guard - 1, 2),
        ("from the guard page", guard + 8, 4),
    ];
    let mut p = [0i32; 2];
    ensure!(pipe(&mut p) == 0, "pipe failed");
    let fd = must_open(c"/writebad", O_CREATE | O_RDWR)?;
    for (what, addr, n) in bad {
        let r = write_at(1, addr, n);
        ensure!(r == -1, "console write of {what} returned {r}");
        let r = write_at(2, addr, n);
        ensure!(r == -1, "stderr write of {what} returned {r}");
        let r = write_at(p[1], addr, n);
        ensure!(r == -1, "pipe write of {what} returned {r}");
        let r = write_at(fd, addr, n);
        ensure!(r == -1, "file write of {what} returned {r}");
    }
    let st = stat_of(fd)?;
    ensure!(
        st.size == 0,
        "bad writes stored {} bytes in the file",
        st.size
    );
    close(fd);
    ensure!(unlink(c"/writebad") == 0, "unlink /writebad");
    // The pipe holds nothing: with the write end closed, the reader sees end of file.
    close(p[1]);
    let mut b = [0u8; 16];
    let n = read(p[0], &mut b);
    ensure!(n == 0, "bad writes put {n} bytes into the pipe");
    close(p[0]);
    // Text is readable: writing it out works.
    let mut p = [0i32; 2];
    ensure!(pipe(&mut p) == 0, "pipe failed");
    ensure!(write_at(p[1], text(), 8) == 8, "write from text failed");
    close(p[0]);
    close(p[1]);
    Ok(())
}

/// Takes every free page: `hog`, then file data until a write fails (the pages lazy sbrk's
/// hog leaves). Returns the descriptor of the file, to unlink with `unfill`, which also
/// shrinks the process back to `start`.
fn exhaust() -> Result<i32, Why> {
    hog()?;
    let fd = must_open(c"/oomfill", O_CREATE | O_RDWR)?;
    let page = [0u8; 512];
    while write(fd, &page) == page.len() as i32 {}
    Ok(fd)
}

fn unfill(fd: i32, start: usize) {
    close(fd);
    unlink(c"/oomfill");
    sbrk(-((brk() - start) as i32));
}

/// readoom: with memory exhausted, read() from a pipe into a page that needs a page first — a
/// lazy page never touched (`--lazy`), a page shared copy-on-write with a child (`--cow`) —
/// is −1 and the bytes stay in the pipe (a file's offset stays); once memory is back the
/// same read works. (In the other modes the pages are the process's own already and the
/// reads simply work.)
pub fn readoom() -> Outcome {
    let lazy = lazy_mode();
    let st = in_child(|| match readoom_child(lazy) {
        Ok(()) => 0,
        Err(why) => {
            ulib::println!("  readoom: {why}");
            1
        }
    })?;
    ensure!(st == 0, "the test process failed ({st})");
    Ok(())
}

fn readoom_child(lazy: bool) -> Outcome {
    let mut p = [0i32; 2];
    ensure!(pipe(&mut p) == 0, "pipe failed");
    ensure!(write(p[1], b"ab") == 2, "write failed");
    // A page of our own, then shared with a child that waits (copy-on-write with --cow).
    let start = brk();
    let shared = start.next_multiple_of(PGSIZE);
    ensure!(
        sbrk((shared - start + PGSIZE) as i32) as usize == start,
        "sbrk failed"
    );
    // SAFETY: the page just got from sbrk.
    unsafe { poke(shared, b'.') };
    let mut hold = [0i32; 2];
    ensure!(pipe(&mut hold) == 0, "pipe failed");
    let pid = fork();
    if pid == 0 {
        close(hold[1]);
        let mut b = [0u8; 1];
        read(hold[0], &mut b);
        exit(0);
    }
    ensure!(pid > 0, "fork failed");
    close(hold[0]);
    let cow = countfree_cost_of_write(shared)?;
    // A lazy page never touched (with --lazy; else an ordinary one).
    let untouched = brk();
    ensure!(sbrk(PGSIZE as i32) as usize == untouched, "sbrk failed");
    // A file to read from too: its offset must not move for a read that fails.
    let src = must_open(c"/oomsrc", O_CREATE | O_RDWR)?;
    ensure!(write(src, b"xy") == 2, "write failed");
    close(src);
    let src = must_open(c"/oomsrc", O_RDONLY)?;
    let before_hog = brk();
    let fill = exhaust()?;
    ensure!(countfree() == 0, "{} pages still free", countfree());
    let r_lazy = read_at(p[0], untouched, 1);
    let r_cow = read_at(p[0], shared, 1);
    // (The byte after the pipe's: the same page, still lazy or shared if that read failed.)
    let f_lazy = read_at(src, untouched + 1, 1);
    let f_cow = read_at(src, shared + 1, 1);
    unfill(fill, before_hog);
    // The file: -1 where the page needed memory, else the next byte.
    let mut next = b'x';
    for (what, r, needs) in [("lazy", f_lazy, lazy), ("shared", f_cow, cow)] {
        if needs {
            ensure!(r == -1, "file read into a {what} page with no memory: {r}");
        } else {
            ensure!(r == 1, "file read into a {what} page: {r}");
            next += 1;
        }
    }
    if next <= b'y' {
        expect_byte(src, next, "the file after memory came back")?;
    }
    close(src);
    ensure!(unlink(c"/oomsrc") == 0, "unlink /oomsrc");
    let mut want = b'a';
    if lazy {
        ensure!(
            r_lazy == -1,
            "read into a lazy page with no memory: {r_lazy}"
        );
    } else {
        ensure!(
            r_lazy == 1 && peek(untouched) == want,
            "read into an eager page: {r_lazy}"
        );
        want += 1;
    }
    if cow {
        ensure!(
            r_cow == -1,
            "read into a shared page with no memory: {r_cow}"
        );
        ensure!(peek(shared) == b'.', "the shared page changed");
    } else {
        ensure!(
            r_cow == 1 && peek(shared) == want,
            "read into a private page: {r_cow}"
        );
        want += 1;
    }
    // Memory is back: the bytes are still there, in order.
    while want <= b'b' {
        ensure!(read_at(p[0], shared, 1) == 1, "read after memory came back");
        ensure!(peek(shared) == want, "got {:?}", peek(shared) as char);
        want += 1;
    }
    close(hold[1]);
    ensure!(reap(pid)? == 0, "the sharing child failed");
    Ok(())
}

/// Whether a write to `page` (shared with a child just forked) costs a page: copy-on-write.
/// Decided without writing it: the child's fork cost no page for it if it is shared.
fn countfree_cost_of_write(page: usize) -> Result<bool, Why> {
    // A throwaway child writes its copy: with copy-on-write that costs it one page.
    let free = countfree();
    let st = in_child(|| {
        let before = countfree();
        // SAFETY: the child's own view of the test's sbrk page.
        unsafe { poke(page, b'!') };
        i32::from(before - countfree() >= 1)
    })?;
    ensure!(countfree() == free, "the probe child leaked");
    Ok(st == 1)
}
