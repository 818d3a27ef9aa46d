//! The host side of the measurement: the TSC, its frequency, and the host Linux's own anonymous
//! page fault. Every `unsafe` block of the crate lives in this file.

use std::io;

/// Cycles per touch of the host baseline ([`host_anon_faults`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostSamples {
    /// First touch of each page: the demand fault plus the measurement's own overhead.
    pub cold: Vec<u64>,
    /// Second touch of the same pages (already mapped): the measurement's own overhead.
    pub warm: Vec<u64>,
}

/// Where a TSC frequency came from (see [`tsc_khz`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TscSource {
    /// `KVM_GET_TSC_KHZ` on a vCPU, handed in by the caller: the guest's TSC rate.
    Kvm,
    /// [`calibrate_tsc_khz`]: host TSC against `CLOCK_MONOTONIC_RAW` over ~100 ms.
    Calibrated,
}

/// The TSC frequency in kHz: `kvm_tsc_khz` (the caller's `KVM_GET_TSC_KHZ`) when it is
/// `Some` and non-zero, else [`calibrate_tsc_khz`]; the second value says which was used.
///
/// Without TSC scaling (hardware KVM's default), the guest's TSC rate is the host's, so one
/// figure converts both the guest's and the host's samples.
pub fn tsc_khz(kvm_tsc_khz: Option<u64>) -> (u64, TscSource) {
    match kvm_tsc_khz {
        Some(khz) if khz > 0 => (khz, TscSource::Kvm),
        _ => (calibrate_tsc_khz(), TscSource::Calibrated),
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod tsc {
    use std::arch::asm;

    /// `lfence; rdtsc`: the lfence keeps rdtsc from starting before earlier instructions finish.
    #[inline(always)]
    pub fn start() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: lfence and rdtsc take no memory operand and write only eax/edx (declared);
        // rdtsc is allowed in user mode on Linux (CR4.TSD clear). No `nomem`, on purpose: the
        // compiler must treat this as a memory access so it cannot move the timed touch
        // across it.
        unsafe {
            asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// `rdtscp; lfence`: rdtscp waits for every earlier instruction (the touch, and so its
    /// fault) to execute; the lfence keeps later instructions from starting before it.
    /// Where there is no RDTSCP, [`end_without_rdtscp`] stands in.
    #[inline(always)]
    pub fn end() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: rdtscp and lfence take no memory operand and write only eax/edx/ecx (all
        // declared; ecx gets IA32_TSC_AUX, ignored). Only called where `has_rdtscp` said
        // yes. No `nomem`: see `start`.
        unsafe {
            asm!("rdtscp", "lfence", out("eax") lo, out("edx") hi, out("ecx") _,
                 options(nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// `lfence; rdtsc; lfence`: the end stamp where there is no RDTSCP (e.g. QEMU's qemu64
    /// CPU in the lab): the first lfence waits for the touch (and its fault) to finish.
    #[inline(always)]
    pub fn end_without_rdtscp() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: lfence and rdtsc take no memory operand and write only eax/edx (declared).
        // No `nomem`: see `start`.
        unsafe {
            asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi,
                 options(nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Plain `rdtsc` for calibration.
    #[inline(always)]
    pub fn now() -> u64 {
        // SAFETY: rdtsc has no preconditions on x86_64 user space under Linux.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// CPUID 0x8000_0001 EDX bit 27: RDTSCP.
    pub fn has_rdtscp() -> bool {
        // SAFETY: cpuid is available on every x86_64 CPU; leaf 0x8000_0000 tells whether the
        // extended leaf exists before it is read.
        #[allow(unused_unsafe)]
        unsafe {
            let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
            max_ext >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0
        }
    }
}

/// `CLOCK_MONOTONIC_RAW` in ns (not slewed by NTP, unlike `std::time::Instant`).
fn monotonic_raw_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_RAW exists since Linux 2.6.28.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_RAW) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The TSC frequency of this host in kHz, calibrated against `CLOCK_MONOTONIC_RAW` over
/// ~100 ms (this function never asks KVM; a caller that has `KVM_GET_TSC_KHZ` passes it to
/// [`tsc_khz`] instead). Each end point is the clock reading bracketed by the tightest of a few
/// TSC pairs, so the error is well under 0.1 %. Returns 0 where there is no TSC (not x86_64).
pub fn calibrate_tsc_khz() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        fn point() -> (u64, u64) {
            let mut best = (u64::MAX, 0, 0);
            for _ in 0..8 {
                let t0 = tsc::now();
                let ns = monotonic_raw_ns();
                let t1 = tsc::now();
                if t1.wrapping_sub(t0) < best.0 {
                    best = (t1.wrapping_sub(t0), t0 + (t1 - t0) / 2, ns);
                }
            }
            (best.1, best.2)
        }
        let (tsc0, ns0) = point();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (tsc1, ns1) = point();
        let (dc, dn) = (u128::from(tsc1 - tsc0), u128::from(ns1 - ns0));
        // cycles per ms = cycles * 1e6 / ns, rounded.
        ((dc * 1_000_000 + dn / 2) / dn) as u64
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = monotonic_raw_ns;
        0
    }
}

/// An anonymous private mapping, unmapped on drop.
pub(crate) struct Mapping {
    pub(crate) addr: *mut u8,
    len: usize,
}

impl Mapping {
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing;
        // it aliases nothing. No MAP_POPULATE: the pages must fault on first touch.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let m = Mapping {
            addr: addr.cast(),
            len,
        };
        // 4 KiB faults like the guest's, not one 2 MiB fault per 512 pages under THP. Not
        // fatal if the kernel has no THP (EINVAL).
        // SAFETY: the range is exactly the mapping just created.
        unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        Ok(m)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mmap returned; no reference into it outlives `self`.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// Measures the host's own anonymous-memory page fault: mmaps `pages` fresh anonymous pages
/// (`MAP_PRIVATE|MAP_ANONYMOUS`, no populate, `MADV_NOHUGEPAGE`), writes one byte per page,
/// timing each FIRST touch with the TSC as `lfence; rdtsc` … touch … `rdtscp; lfence`, then
/// the same pages again warm (the measurement's own overhead). Returns cycles per touch.
///
/// The touch is a write, so each cold touch allocates and zeroes a page (a read would map the
/// shared zero page instead), which is what the guest's lazy sbrk does. The calling thread is
/// not pinned; the TSC is invariant and synchronised across CPUs on the machines this runs on.
pub fn host_anon_faults(pages: usize) -> io::Result<HostSamples> {
    #[cfg(target_arch = "x86_64")]
    {
        let end = closing_stamp();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::last_os_error())?;
        let len = pages.checked_mul(page).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "pages * page size overflows")
        })?;
        // Filled with non-zero values so the sample buffers' own pages fault here, not
        // between two timed touches.
        let mut cold = vec![u64::MAX; pages];
        let mut warm = vec![u64::MAX; pages];
        if pages == 0 {
            return Ok(HostSamples { cold, warm });
        }
        let map = Mapping::anonymous(len)?;
        timed_passes(&map, page, end, &mut cold, &mut warm);
        drop(map);
        Ok(HostSamples { cold, warm })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pages, Mapping::anonymous);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "needs an x86_64 TSC",
        ))
    }
}

/// The closing timestamp this CPU allows: `rdtscp; lfence`, or `lfence; rdtsc; lfence`.
#[cfg(target_arch = "x86_64")]
fn closing_stamp() -> fn() -> u64 {
    if tsc::has_rdtscp() {
        tsc::end
    } else {
        log::info!("no RDTSCP on this CPU: ending each timing with lfence; rdtsc; lfence");
        tsc::end_without_rdtscp
    }
}

/// Writes one byte per page of `map`, timing each write, into `cold` and then `warm`.
#[cfg(target_arch = "x86_64")]
fn timed_passes(map: &Mapping, page: usize, end: fn() -> u64, cold: &mut [u64], warm: &mut [u64]) {
    assert!(
        cold.len().max(warm.len()) * page <= map.len,
        "more samples than pages"
    );
    for pass in [cold, warm] {
        for (i, slot) in pass.iter_mut().enumerate() {
            // SAFETY: i < pages, so the byte is inside the live mapping; it is written only
            // through this raw pointer (volatile, so the touch is neither elided nor merged).
            let p = unsafe { map.addr.add(i * page) };
            let t0 = tsc::start();
            // SAFETY: see above.
            unsafe { p.write_volatile(1) };
            let t1 = end();
            *slot = t1.wrapping_sub(t0);
        }
    }
}

/// Measures the host's copy-on-write break: mmaps and writes `pages` anonymous pages, forks
/// a child that keeps them shared (it blocks reading a pipe until the parent closes it, then
/// `_exit`s), and times the parent's first write to each page — each copies the page — then
/// the same pages again warm, as [`host_anon_faults`] does.
pub fn host_cow_faults(pages: usize) -> io::Result<HostSamples> {
    #[cfg(target_arch = "x86_64")]
    {
        let end = closing_stamp();
        let page = 4096;
        let mut cold = vec![u64::MAX; pages];
        let mut warm = vec![u64::MAX; pages];
        let map = Mapping::anonymous(pages * page)?;
        for i in 0..pages {
            // SAFETY: inside the live mapping; written only through this pointer.
            unsafe { map.addr.add(i * page).write_volatile(1) };
        }
        let child = SharingChild::fork()?;
        timed_passes(&map, page, end, &mut cold, &mut warm);
        child.finish()?;
        drop(map);
        Ok(HostSamples { cold, warm })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = pages;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "needs an x86_64 TSC",
        ))
    }
}

/// A forked child that shares our memory until [`SharingChild::finish`] (or drop).
struct SharingChild {
    pid: libc::pid_t,
    /// The pipe's write end; closing it lets the child exit.
    fd: libc::c_int,
}

impl SharingChild {
    fn fork() -> io::Result<SharingChild> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the child only calls close, read and _exit (async-signal-safe) on its own
        // stack buffer; the parent continues normally.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: (all three) plain syscalls on descriptors this child owns and a
            // one-byte buffer on its stack; _exit ends it without running our code.
            unsafe {
                libc::close(fds[1]);
                while libc::read(fds[0], (&mut b as *mut u8).cast(), 1) > 0 {}
                libc::_exit(0);
            }
        }
        // SAFETY: the read end is the child's now; we close our copy.
        unsafe { libc::close(fds[0]) };
        if pid < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: our write end, not used again.
            unsafe { libc::close(fds[1]) };
            return Err(e);
        }
        Ok(SharingChild { pid, fd: fds[1] })
    }

    /// Lets the child exit and reaps it.
    fn finish(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        if self.pid <= 0 {
            return Ok(());
        }
        let mut status = 0;
        // SAFETY: closes our write end (the child then reads EOF) and waits for the child
        // we forked; status is a valid int.
        let reaped = unsafe {
            libc::close(self.fd);
            libc::waitpid(self.pid, &mut status, 0)
        };
        self.pid = 0;
        if reaped < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SharingChild {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
