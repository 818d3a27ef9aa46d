//! exec: programs from the archive by name, their arguments on the one stack page (MAXARG),
//! and exec when memory is short.

extern crate alloc;

use crate::check::{expect_status, in_child, Outcome, EXEC_FAILED};
use crate::mem::hog;
use alloc::ffi::CString;
use alloc::vec::Vec;
use core::ffi::CStr;
use ulib::args::checksum;
use ulib::{exec, println, sbrk, PGSIZE};

/// Runs `path argv...` in a child; returns its exit status (EXEC_FAILED if exec failed).
fn run(path: &CStr, argv: &[&CStr]) -> Result<i32, crate::check::Why> {
    in_child(|| {
        exec(path, argv);
        EXEC_FAILED
    })
}

/// exectest: exec replaces the child's program, which gets its arguments and whose exit
/// status the parent's wait reports; "/name" is "name"; unknown names fail with −1.
pub fn exectest() -> Outcome {
    let st = run(
        c"echo",
        &[
            c"echo",
            c"  exectest:",
            c"echo",
            c"ran",
            c"in",
            c"a",
            c"child",
        ],
    )?;
    ensure!(st == 0, "echo exited with {st}");
    let st = run(c"exitcode", &[c"exitcode", c"42"])?;
    ensure!(st == 42, "exitcode 42 exited with {st}");
    let st = run(c"/exitcode", &[c"/exitcode", c"43"])?;
    ensure!(st == 43, "/exitcode 43 exited with {st}");
    let args = [c"argsum", c"a", c"bc", c"", c"xv6 exec"];
    let want = i32::from(checksum(args[1..].iter().map(|a| a.to_bytes())));
    let st = run(c"argsum", &args)?;
    ensure!(
        st == want,
        "argsum exited with {st}, expected checksum {want}"
    );
    let st = run(c"no-such-program", &[c"no-such-program"])?;
    ensure!(st == EXEC_FAILED, "exec of a missing program: status {st}");
    // A child with a grown heap execs: the old image is freed (counted at the end).
    expect_status("exec after sbrk", 44, || {
        sbrk((64 * PGSIZE) as i32);
        exec(c"exitcode", &[c"exitcode", c"44"]);
        EXEC_FAILED
    })
}

/// `n` arguments for argsum (argv[0] = "argsum"), each `len` bytes long and all distinct.
fn big_args(n: usize, len: usize) -> Vec<CString> {
    let mut v = alloc::vec![CString::from(c"argsum")];
    for i in 1..n {
        let s: Vec<u8> = (0..len).map(|j| b'a' + ((i * 7 + j) % 26) as u8).collect();
        v.push(CString::new(s).unwrap_or_default());
    }
    v
}

/// Runs argsum with `args` in a child; returns its status and the checksum it should exit
/// with.
fn argsum(args: &[CString]) -> Result<(i32, i32), crate::check::Why> {
    let refs: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
    let want = i32::from(checksum(refs[1..].iter().map(|a| a.to_bytes())));
    Ok((run(c"argsum", &refs)?, want))
}

/// bigargtest: MAXARG (32) arguments of 96 bytes each reach the new program intact;
/// 33 arguments, or more strings than fit the stack page, make exec fail.
pub fn bigargtest() -> Outcome {
    let (st, want) = argsum(&big_args(31, 96))?;
    ensure!(
        st == want,
        "31 arguments of 96 bytes: status {st}, expected checksum {want}"
    );
    let (st, want) = argsum(&big_args(32, 96))?;
    ensure!(
        st == want,
        "32 arguments of 96 bytes: status {st}, expected checksum {want}"
    );
    let (st, want) = argsum(&big_args(33, 8))?;
    ensure!(want != EXEC_FAILED, "pick other test strings");
    ensure!(
        st == EXEC_FAILED,
        "exec with 33 arguments did not fail (status {st})"
    );
    let (st, _) = argsum(&big_args(32, 200))?;
    ensure!(
        st == EXEC_FAILED,
        "exec with 6 KiB of arguments did not fail (status {st})"
    );
    Ok(())
}

/// execout: a child takes all memory, gives back a few pages, and execs: exec either works
/// or fails with −1 — and the kernel survives either way, losing nothing.
pub fn execout() -> Outcome {
    for pages in [0, 16, 256] {
        let st = in_child(|| {
            if hog().is_err() {
                return 1;
            }
            sbrk(-((pages * PGSIZE) as i32));
            exec(c"exitcode", &[c"exitcode", c"42"]);
            EXEC_FAILED
        })?;
        ensure!(st != 1, "a failed sbrk moved the break");
        let what = match st {
            42 => "exec worked",
            EXEC_FAILED => "exec failed with -1",
            _ => fail!("with {pages} pages given back: status {st}"),
        };
        println!("  execout: all memory taken, {pages} pages given back: {what}");
    }
    Ok(())
}

/// Copies the file `from` to a new file `to` (read/write through the file system).
fn copy_file(from: &CStr, to: &CStr) -> Result<(), crate::check::Why> {
    use ulib::{close, open, read, write, O_CREATE, O_RDONLY, O_WRONLY};
    let src = open(from, O_RDONLY);
    let dst = open(to, O_CREATE | O_WRONLY);
    ensure!(
        src >= 0 && dst >= 0,
        "open for the copy failed ({src}, {dst})"
    );
    let mut buf = [0u8; 512];
    loop {
        let n = read(src, &mut buf);
        ensure!(n >= 0, "read failed");
        if n == 0 {
            break;
        }
        ensure!(write(dst, &buf[..n as usize]) == n, "write failed");
    }
    close(src);
    close(dst);
    Ok(())
}

/// execwritten: a file written at run time runs like an archive file (a copy of
/// `exitcode`, read page by page from the file system); once unlinked it is gone (and its
/// pages come back: usertests' closing countfree); a directory, a device and a written
/// non-ELF file fail with −1.
pub fn execwritten() -> Outcome {
    use ulib::{close, open, unlink, write, O_CREATE, O_WRONLY};
    copy_file(c"exitcode", c"exitcode.copy")?;
    let st = run(c"exitcode.copy", &[c"exitcode.copy", c"45"])?;
    ensure!(st == 45, "the written copy exited with {st}");
    // Unlinked by the child just before exec: the open-for-exec reference keeps it alive.
    expect_status("exec of an unlinked file", 46, || {
        let fd = open(c"exitcode.copy", ulib::O_RDONLY);
        unlink(c"exitcode.copy");
        // The descriptor holds the inode; exec finds it by name no more.
        let gone = exec(c"exitcode.copy", &[c"exitcode.copy"]);
        close(fd);
        if gone == -1 {
            46
        } else {
            1
        }
    })?;
    for path in [c".", c"console"] {
        let st = run(path, &[path])?;
        ensure!(st == EXEC_FAILED, "exec of {path:?}: status {st}");
    }
    let fd = open(c"notelf", O_CREATE | O_WRONLY);
    ensure!(fd >= 0, "cannot create notelf");
    write(fd, b"#!/bin/sh\necho this is not an ELF file\n");
    close(fd);
    let st = run(c"notelf", &[c"notelf"])?;
    unlink(c"notelf");
    ensure!(st == EXEC_FAILED, "exec of a text file: status {st}");
    Ok(())
}
