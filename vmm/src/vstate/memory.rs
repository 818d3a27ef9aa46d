//! Guest RAM: one anonymous mapping at GPA 0, lazily backed by the host.
//!
//! The mapping is read/write, never executable: vm-memory maps it PROT_READ | PROT_WRITE.
//! [`check_not_executable`] verifies that in /proc/self/maps at every boot, and once the VM
//! is set up the seccomp filters (seccomp.rs) refuse any `mmap` or `mprotect` with
//! PROT_EXEC, so nothing the guest writes can become code in the VMM.
//!
//! Nothing is backed between the end of RAM and 4 GiB; in particular the MMIO hole
//! `[DEVSPACE, 4 GiB)` is left to the in-kernel LAPIC/IOAPIC and to MMIO exits.

use anyhow::{bail, Context, Result};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::layout::{MAX_MEM, MEM_ALIGN, MIN_MEM};

/// Parses a RAM size as given to `--mem` (`64M`, `1G`, `268435456`, `512MiB`), in binary units.
pub fn parse_mem_size(text: &str) -> Result<u64> {
    let cfg = parse_size::Config::new().with_binary();
    let size = cfg
        .parse_size(text.trim())
        .map_err(|e| anyhow::anyhow!("bad --mem value '{text}': {e} (try e.g. 256M or 1G)"))?;
    check_mem_size(size)?;
    Ok(size)
}

/// Refuses a RAM size the kernel cannot use, saying which sizes work.
pub fn check_mem_size(size: u64) -> Result<()> {
    let mib = size >> 20;
    if !size.is_multiple_of(MEM_ALIGN) {
        bail!("--mem {size} bytes is not a multiple of 4 MiB: use e.g. 256M");
    }
    if size < MIN_MEM {
        bail!(
            "--mem {mib}M is too small: the kernel needs at least {}M",
            MIN_MEM >> 20
        );
    }
    if size > MAX_MEM {
        bail!(
            "--mem {mib}M is too large: the kernel maps all RAM at KERNBASE below DEVSPACE, \
             so at most {}M",
            MAX_MEM >> 20
        );
    }
    Ok(())
}

/// Backs every page of guest RAM with host memory now (MADV_POPULATE_WRITE), so the guest's
/// first touch of a guest-physical page takes no EPT/NPT fault and no host page fault.
pub fn prefault(mem: &GuestMemoryMmap) -> Result<()> {
    for region in mem.iter() {
        populate(mem, region.start_addr(), region.len() as usize)
            .context("--prefault: madvise(MADV_POPULATE_WRITE) failed; needs Linux 5.14+")?;
    }
    Ok(())
}

/// Guest RAM every boot writes, whatever its size: `[0, 4 MiB)`, kinit1's range — the boot
/// data, the kernel image, and the pages kvmalloc's page tables and the first process are
/// taken from (docs/abi.md).
pub const BOOT_WORKING_SET: usize = 4 << 20;

/// Backs [`BOOT_WORKING_SET`] up front in one call instead of one EPT/NPT fault per page at
/// boot (a constant 1024 pages, touched by every boot anyway). Best effort: a kernel
/// without MADV_POPULATE_WRITE (before 5.14) just faults them in as before.
pub fn populate_boot_working_set(mem: &GuestMemoryMmap) {
    if let Err(e) = populate(mem, GuestAddress(0), BOOT_WORKING_SET) {
        log::debug!("not backing the boot working set up front: {e}");
    }
}

/// MADV_POPULATE_WRITE over guest-physical `[at, at + len)`, which must lie in one region.
fn populate(mem: &GuestMemoryMmap, at: GuestAddress, len: usize) -> std::io::Result<()> {
    let host = mem
        .get_slice(at, len)
        .map_err(|e| std::io::Error::other(format!("guest range {at:?}+{len:#x}: {e}")))?
        .ptr_guard_mut()
        .as_ptr();
    // SAFETY: `host..host+len` lies inside one live anonymous mapping owned by `mem` (checked
    // by get_slice); populating it changes no contents (the pages read as zero either way).
    let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_POPULATE_WRITE) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How many pages of guest RAM the host has backed with memory so far (`mincore` over the
/// RAM mapping: resident pages). Without `--prefault`, what the guest touched.
pub fn host_backed_pages(mem: &GuestMemoryMmap) -> Result<u64> {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut backed = 0;
    for region in mem.iter() {
        let host = mem
            .get_host_address(region.start_addr())
            .context("guest RAM has no host mapping")?;
        let len = region.len() as usize;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `host..host+len` is one live mapping owned by `mem`, page aligned (mmap);
        // mincore writes one byte per page into `vec`, which has that many.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            bail!(
                "mincore on guest RAM failed: {}",
                std::io::Error::last_os_error()
            );
        }
        backed += vec.iter().filter(|&&b| b & 1 != 0).count() as u64;
    }
    Ok(backed)
}

/// Checks in /proc/self/maps that no page of guest RAM is executable in this process.
pub fn check_not_executable(mem: &GuestMemoryMmap) -> Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    for region in mem.iter() {
        let lo = mem
            .get_host_address(region.start_addr())
            .context("guest RAM has no host mapping")? as u64;
        let hi = lo + region.len();
        if let Some(line) = executable_overlap(&maps, lo, hi) {
            bail!("guest RAM is mapped executable in the VMM: {line}");
        }
    }
    Ok(())
}

/// The first line of a /proc/PID/maps text that overlaps `[lo, hi)` with `x` in its modes.
fn executable_overlap(maps: &str, lo: u64, hi: u64) -> Option<&str> {
    maps.lines().find(|line| {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((a, b)) = range.split_once('-') else {
            return false;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            return false;
        };
        a < hi && lo < b && perms.contains('x')
    })
}

/// Allocates `size` bytes of guest RAM at GPA 0.
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)])
        .with_context(|| format!("cannot allocate {} MiB of guest RAM", size >> 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backed_pages_are_the_touched_ones() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert_eq!(
            host_backed_pages(&mem).unwrap(),
            0,
            "fresh RAM is not backed"
        );
        for i in 0..5u64 {
            vm_memory::Bytes::write_obj(&mem, 1u8, GuestAddress(i * 0x10_0000 + 7)).unwrap();
        }
        // 5 pages, or 5 huge pages where the host backs with transparent huge pages.
        let n = host_backed_pages(&mem).unwrap();
        assert!((5..=5 * 512).contains(&n), "{n}");
        prefault(&mem).unwrap();
        assert_eq!(host_backed_pages(&mem).unwrap(), (64 << 20) / 4096);
    }

    #[test]
    fn guest_ram_is_never_executable() {
        let mem = create_guest_memory(64 << 20).unwrap();
        check_not_executable(&mem).unwrap();
        let maps = "00400000-00500000 r-xp 0 0:0 0 /x\n7f0000000000-7f0004000000 rw-p 0 0:0 0\n";
        assert_eq!(
            executable_overlap(maps, 0x7f00_0000_0000, 0x7f00_0400_0000),
            None
        );
        assert!(executable_overlap(maps, 0x4f_f000, 0x60_0000).is_some());
        assert_eq!(executable_overlap(maps, 0x50_0000, 0x60_0000), None);
    }

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse_mem_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_mem_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_mem_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_mem_size("268435456").unwrap(), 256 << 20);
    }

    #[test]
    fn refuses_what_the_kernel_cannot_use() {
        for bad in ["2G", "32M", "102M", "4097M", "lots", ""] {
            let err = parse_mem_size(bad).unwrap_err().to_string();
            assert!(err.contains("--mem"), "{bad}: {err}");
        }
        assert!(parse_mem_size("2016M").is_ok());
        assert!(parse_mem_size("2020M").is_err());
    }
}
