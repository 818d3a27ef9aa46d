//! The kernel checks every pointer and string it is given against the process's memory
//! (below sz, never the kernel half, no wrap-around) before touching it: bad ones get −1
//! and the kernel survives.

use crate::check::{in_child, Outcome, EXEC_FAILED};
use crate::mem::{brk, put};
use ulib::{exit, fork, raw, sbrk, wait, KERNBASE, PGSIZE};

/// Addresses no system call may accept.
fn bad_addresses() -> [usize; 7] {
    let sz = brk();
    [
        sz,
        sz + 0x10_0000,
        KERNBASE - 1,
        KERNBASE,
        KERNBASE + 0x10_0000,
        0xFFFF_F000,
        0xFFFF_FFFF,
    ]
}

/// validatetest: bad pointers to every call that takes one return −1.
pub fn validatetest() -> Outcome {
    for a in bad_addresses() {
        let p = a as *mut u8;
        // SAFETY: (all below) the kernel must refuse these addresses without touching them.
        let r = unsafe { raw::sys_write(1, p, 1) };
        ensure!(r == -1, "write(1, {a:#x}, 1) returned {r}");
        // SAFETY: as above.
        let r = unsafe { raw::sys_read(0, p, 1) };
        ensure!(r == -1, "read(0, {a:#x}, 1) returned {r}");
        // SAFETY: as above.
        let r = unsafe { raw::sys_wait_status(p.cast()) };
        ensure!(r == -1, "wait({a:#x}) without children returned {r}");
        // SAFETY: as above.
        let fs = unsafe {
            [
                raw::sys_pipe(p.cast()),
                raw::sys_fstat(1, p),
                raw::sys_open(p, 0),
                raw::sys_chdir(p),
                raw::sys_mkdir(p),
                raw::sys_mknod(p, 1, 1),
                raw::sys_unlink(p),
                raw::sys_link(p, p),
            ]
        };
        ensure!(fs == [-1; 8], "file calls with {a:#x} returned {fs:?}");
        let st = in_child(|| {
            // SAFETY: as above; exec must fail, or the child becomes echo and exits 0.
            unsafe { raw::sys_exec(p, [c"echo".as_ptr().cast(), core::ptr::null()].as_ptr()) };
            EXEC_FAILED
        })?;
        ensure!(
            st == EXEC_FAILED,
            "exec(path {a:#x}) did not fail (status {st})"
        );
        let st = in_child(|| {
            // SAFETY: as above.
            unsafe { raw::sys_exec(c"echo".as_ptr().cast(), p.cast()) };
            EXEC_FAILED
        })?;
        ensure!(
            st == EXEC_FAILED,
            "exec(argv {a:#x}) did not fail (status {st})"
        );
        let st = in_child(|| {
            let argv = [c"echo".as_ptr().cast(), p.cast_const(), core::ptr::null()];
            // SAFETY: as above.
            unsafe { raw::sys_exec(c"echo".as_ptr().cast(), argv.as_ptr()) };
            EXEC_FAILED
        })?;
        ensure!(
            st == EXEC_FAILED,
            "exec(argv[1] = {a:#x}) did not fail (status {st})"
        );
    }
    let buf = [0u8; 4];
    // SAFETY: a negative length must be refused.
    let r = unsafe { raw::sys_write(1, buf.as_ptr(), -1) };
    ensure!(r == -1, "write with length -1 returned {r}");
    // SAFETY: as above.
    let r = unsafe { raw::sys_read(0, buf.as_ptr().cast_mut(), -1) };
    ensure!(r == -1, "read with length -1 returned {r}");
    for n in [0, 29, 99, -1, i32::MAX] {
        // SAFETY: unknown system call numbers touch nothing.
        let r = unsafe { raw::sys_number(n) };
        ensure!(r == -1, "system call {n} returned {r}");
    }
    for pid in [-1, 0, 100_000] {
        let r = ulib::kill(pid);
        ensure!(r == -1, "kill({pid}) returned {r}");
    }
    Ok(())
}

/// copyinout: ranges that wrap around or cross into the kernel half or past sz are
/// refused — for copies into the kernel (write, exec's strings) and out of it (read, wait).
pub fn copyinout() -> Outcome {
    // SAFETY: (all below) the kernel must refuse these ranges without touching them.
    let r = unsafe { raw::sys_write(1, 0xFFFF_FFFF as *const u8, 8) };
    ensure!(r == -1, "write(1, 0xffffffff, 8) returned {r}");
    // SAFETY: as above.
    let r = unsafe { raw::sys_write(1, (KERNBASE - 4) as *const u8, 8) };
    ensure!(r == -1, "write(1, KERNBASE - 4, 8) returned {r}");
    // SAFETY: as above.
    let r = unsafe { raw::sys_read(0, KERNBASE as *mut u8, 8) };
    ensure!(r == -1, "read(0, KERNBASE, 8) returned {r}");
    // SAFETY: as above.
    let r = unsafe { raw::sys_read(0, 0xFFFF_FFFC as *mut u8, 8) };
    ensure!(r == -1, "read(0, 0xfffffffc, 8) returned {r}");
    // SAFETY: as above: 0x1000 + 0xffffffff wraps around.
    let r = unsafe { raw::sys_write(1, PGSIZE as *const u8, -1) };
    ensure!(r == -1, "write(1, 0x1000, 0xffffffff) returned {r}");

    // wait's copyout of the status to the kernel half fails; the child is still reaped
    // exactly once (now, or by the next wait).
    let pid = fork();
    if pid == 0 {
        exit(7);
    }
    ensure!(pid > 0, "fork failed");
    // SAFETY: as above.
    let r = unsafe { raw::sys_wait_status(KERNBASE as *mut i32) };
    ensure!(r == -1, "wait(KERNBASE) returned {r}");
    let mut st = -1;
    let r = wait(Some(&mut st));
    ensure!(
        r == -1 || (r == pid && st == 7),
        "the next wait returned {r} (status {st}), expected -1 or {pid} (status 7)"
    );

    // A path whose NUL would lie past sz.
    let a = sbrk(PGSIZE as i32) as usize;
    let top = a + PGSIZE;
    // SAFETY: memory this test got from sbrk.
    unsafe { put(top - 4, b"echo") };
    let st = in_child(|| {
        // SAFETY: the string runs into sz: exec must fail.
        unsafe { raw::sys_exec((top - 4) as *const u8, [core::ptr::null()].as_ptr()) };
        EXEC_FAILED
    })?;
    ensure!(
        st == EXEC_FAILED,
        "exec of a path without NUL before sz: status {st}"
    );
    // An argv array running into sz without its terminating null.
    let argv = top - 4;
    let echo = c"echo".as_ptr() as usize;
    // SAFETY: memory this test got from sbrk.
    unsafe { put(argv, &echo.to_le_bytes()) };
    let st = in_child(|| {
        // SAFETY: the array runs into sz: exec must fail.
        unsafe { raw::sys_exec(c"echo".as_ptr().cast(), argv as *const *const u8) };
        EXEC_FAILED
    })?;
    ensure!(
        st == EXEC_FAILED,
        "exec of an argv without null before sz: status {st}"
    );
    sbrk(-(PGSIZE as i32));
    Ok(())
}
