//! The Linux baseline of `vmm bench fork`: the round trips the guest's `forkbench` times,
//! done by this process on the Linux it runs on (the host's, or the lab's), timed the same
//! way (`lfence; rdtsc` before `fork`, again after `waitpid` returns):
//! fork + `_exit(0)` + waitpid; fork + execve of a static program that exits 0 + waitpid;
//! the first again after mapping and writing a heap of the guest's size.
//!
//! The child does only async-signal-safe things (`_exit`, `execve`), so forking this
//! multi-threaded process is sound.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Cycles per round trip, for each of the three kinds.
#[derive(Debug, Default)]
pub struct ForkSamples {
    pub fork_exit: Vec<u64>,
    pub fork_exec: Vec<u64>,
    pub fork_heap: Vec<u64>,
}

/// What the child of a timed fork does.
#[derive(Clone, Copy)]
enum Child<'a> {
    Exit,
    Exec(&'a CString),
}

/// Measures `n` fork+exit and `n` fork+exec round trips (exec'ing `exit0`, a static program
/// that exits 0), then `heap_n` fork+exit round trips with `heap_mib` MiB mapped and written.
pub fn host_fork_round_trips(
    n: usize,
    heap_n: usize,
    heap_mib: usize,
    exit0: &Path,
) -> io::Result<ForkSamples> {
    let path = c_path(exit0)?;
    let mut s = ForkSamples {
        fork_exit: times(n, Child::Exit)?,
        fork_exec: times(n, Child::Exec(&path))?,
        fork_heap: Vec::new(),
    };
    let len = heap_mib << 20;
    let heap = crate::host::Mapping::anonymous(len)?;
    for off in (0..len).step_by(4096) {
        // SAFETY: off < len: inside the live mapping, written only through this pointer.
        unsafe { heap.addr.add(off).write_volatile(1) };
    }
    s.fork_heap = times(heap_n, Child::Exit)?;
    drop(heap);
    Ok(s)
}

/// `n` timed fork + execve of `exit0` + waitpid round trips.
pub fn host_exec_round_trips(n: usize, exit0: &Path) -> io::Result<Vec<u64>> {
    times(n, Child::Exec(&c_path(exit0)?))
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))
}

/// `n` timed round trips of `child`.
fn times(n: usize, child: Child) -> io::Result<Vec<u64>> {
    (0..n).map(|_| round_trip(child)).collect()
}

/// One fork … waitpid, in TSC cycles; an error if fork fails or the child did not exit 0.
fn round_trip(child: Child) -> io::Result<u64> {
    let argv: [*const libc::c_char; 2] = [c"exit0".as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let t0 = crate::host::tsc::start();
    // SAFETY: the child only calls execve and _exit (async-signal-safe) on memory prepared
    // before the fork; the parent continues normally.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        if let Child::Exec(path) = child {
            // SAFETY: path, argv and envp are NUL-terminated / null-terminated arrays that
            // live until execve returns (it only returns on failure).
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            // SAFETY: _exit ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(127) };
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; status is a valid int to write.
    let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
    let t1 = crate::host::tsc::start();
    if reaped != pid {
        return Err(io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(io::Error::other(format!(
            "the baseline's child ended with wait status {status:#x}"
        )));
    }
    Ok(t1.wrapping_sub(t0))
}
