//! The kernel's main (xv6 main.c): read the PVH boot information, set up the console, the
//! GDT, the page allocator and the kernel page directory (mapping the boot modules too), print
//! the boot summary, then set up traps and the clock and start the first process — the
//! program the VMM named in the argv module, exec'd from the archive module — and schedule.
//! The boot summary goes to the kernel log (COM2); `quiet` on the command line suppresses it.
//! `lazy` turns demand paging on for sbrk, `cow` copy-on-write fork (vm.rs); `tsc_khz=N` is
//! remembered for `tsckhz`.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::debugport;
use crate::entry::KSTACKSIZE;
use crate::exec::{exec_file, MAXARG};
use crate::kalloc::KMEM;
use crate::linker;
use crate::memlayout::{phystop, set_phystop, KVAddr, PhysAddr, EXTMEM, KERNLINK, P2V};
use crate::pvh::{
    self, low_memory, Memmap, Module, PvhError, StartInfo, MEMMAP_ENTRY_SIZE, MODLIST_ENTRY_SIZE,
    START_INFO_SIZE,
};
use crate::selftest::{self, SelfTest};
use crate::{bootmods, cmdline, cprintln, lapic, proc, sysfile, trap, vm, x86};

/// `quiet` on the command line: no boot summary (panics and fault lines still print).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Prints a line of the boot summary, unless `quiet`.
macro_rules! bootlog {
    ($($arg:tt)*) => {
        if !QUIET.load(Ordering::Relaxed) {
            cprintln!($($arg)*);
        }
    };
}

/// What the boot summary reports about the PVH boot information.
struct BootInfo {
    start_info: PhysAddr,
    cmdline: &'static str,
    memmap: Memmap<'static>,
    nr_modules: u32,
    /// The module list (`nr_modules` entries, each checked to parse).
    modlist: &'static [u8],
}

/// `len` bytes of boot data at physical `pa`, which `low_memory` checked to be below EXTMEM.
fn low_bytes(pa: PhysAddr, len: usize) -> &'static [u8] {
    debug_assert!(pa.0 as usize + len <= EXTMEM as usize);
    // SAFETY: [pa, pa + len) is below EXTMEM, which stays mapped at P2V (entrypgdir, then
    // kmap row 1) and which nothing in the kernel writes (it is below `end`, never on the
    // free list); the VMM wrote the boot data before starting us.
    unsafe { core::slice::from_raw_parts(P2V(pa).0 as *const u8, len) }
}

/// Reads `hvm_start_info` at physical `pa` and what it points to.
fn read_boot_info(pa: u32) -> Result<BootInfo, PvhError> {
    let start_info = low_memory("start_info", u64::from(pa), START_INFO_SIZE)?;
    let si = StartInfo::parse(low_bytes(start_info, START_INFO_SIZE))?;

    let n = si.memmap_entries as usize * MEMMAP_ENTRY_SIZE;
    let memmap = Memmap::parse(
        low_bytes(low_memory("memmap", si.memmap_paddr, n)?, n),
        si.memmap_entries,
    )?;

    let cmdline = if si.cmdline_paddr == 0 {
        ""
    } else {
        // The line runs to its NUL, which must come before EXTMEM.
        let at = low_memory("cmdline", si.cmdline_paddr, 1)?;
        pvh::cmdline(low_bytes(at, (EXTMEM - at.0) as usize))?
    };

    let mut modlist: &'static [u8] = &[];
    if si.nr_modules > 0 {
        let n = si.nr_modules as usize * MODLIST_ENTRY_SIZE;
        modlist = low_bytes(low_memory("modlist", si.modlist_paddr, n)?, n);
        for i in 0..si.nr_modules as usize {
            Module::parse(modlist, i)?;
        }
    }
    Ok(BootInfo {
        start_info,
        cmdline,
        memmap,
        nr_modules: si.nr_modules,
        modlist,
    })
}

/// Bytes in a MiB.
const MIB: u32 = 1 << 20;

/// The high-half entry, called by `entry` on the boot stack with paging on (entrypgdir) and
/// `start_info_pa` = EBX from the VMM.
#[no_mangle]
pub extern "C" fn kmain(start_info_pa: u32) -> ! {
    crate::printf::loginit();
    // Our own GDT first: the VMM's boot GDT sits at a low linear address that the kernel
    // page directory no longer maps.
    crate::gdt::seginit();

    let boot = read_boot_info(start_info_pa).unwrap_or_else(|e| panic!("{}", e));
    QUIET.store(
        cmdline::has_word(boot.cmdline, xv6_abi::cmdline::QUIET),
        Ordering::Relaxed,
    );
    cmdline::set_tsc_khz(cmdline::parse_tsc_khz(boot.cmdline));
    vm::set_lazy(cmdline::has_word(boot.cmdline, xv6_abi::cmdline::LAZY));
    vm::set_cow(cmdline::has_word(boot.cmdline, xv6_abi::cmdline::COW));
    bootlog!(
        "xv6: PVH boot, start_info {:#010x}, cmdline \"{}\"",
        boot.start_info.0,
        boot.cmdline
    );
    for e in boot.memmap.entries() {
        bootlog!("xv6: memmap {}", e);
    }
    set_phystop(boot.memmap.phystop().unwrap_or_else(|e| panic!("{}", e)));
    bootlog!(
        "xv6: PHYSTOP {:#010x} ({} MiB), modules {}",
        phystop().0,
        phystop().0 / MIB,
        boot.nr_modules
    );
    bootlog!("xv6: TSC {} kHz", cmdline::tsc_khz());
    if vm::lazy() {
        bootlog!("xv6: lazy sbrk on");
    }
    if vm::cow() {
        bootlog!("xv6: cow fork on");
    }
    let rows = vm::kernel_kmap(); // panics if P2V(PHYSTOP) > DEVSPACE

    let (data, end) = (linker::data(), linker::end());
    bootlog!(
        "xv6: kernel text {:#010x} data {:#010x} end {:#010x}",
        KERNLINK,
        data.0,
        end.0
    );
    let four_mib = P2V(PhysAddr(4 * MIB));
    assert!(end < four_mib, "kernel image ends above 4 MiB");
    let top = P2V(phystop());

    // SAFETY: [end, P2V(4 MiB)) is RAM mapped by entrypgdir that nothing uses (past the
    // kernel image; the boot data and the VMM's structures are all below EXTMEM), and it
    // reads zero (docs/abi.md: RAM the VMM did not load anything into is zero).
    let freed = unsafe {
        KMEM.kinit1(
            end.0 as usize,
            top.0 as usize,
            end.0 as usize,
            four_mib.0 as usize,
        )
    };
    check_free(KMEM.countfree(), freed);
    bootlog!("xv6: kinit1: {} pages free", KMEM.countfree());

    // Where the program archive and argv are: kvmalloc maps them in the kernel half.
    let modules = (0..boot.nr_modules as usize).filter_map(|i| Module::parse(boot.modlist, i).ok());
    bootmods::init(modules, &boot.memmap).unwrap_or_else(|e| panic!("{}", e));
    vm::kvmalloc(bootmods::kmap_row());
    bootmods::mark_mapped();
    for k in &rows {
        bootlog!("xv6: kmap {}", k);
    }
    if let Some(row) = bootmods::kmap_row() {
        bootlog!("xv6: bootmods {}", row);
    }
    bootlog!("xv6: kvmalloc: cr3 {:#010x}", x86::rcr3());
    if let Some(n) = debugport::pgdump() {
        bootlog!("xv6: pgdump: {} translate mismatches", n);
        if n > 0 {
            panic!("pgdump: page tables disagree with the MMU");
        }
    }

    let before = KMEM.countfree();
    // SAFETY: [P2V(4 MiB), P2V(PHYSTOP)) is RAM the VMM reported, now mapped by the kernel
    // page directory, unused (the kernel image and the boot data are below 4 MiB; the boot
    // modules are at or above PHYSTOP), and zero (docs/abi.md). kinit2 does not touch it.
    let freed = unsafe { KMEM.kinit2(four_mib.0 as usize, top.0 as usize) };
    check_free(KMEM.countfree(), before + freed);
    bootlog!("xv6: kinit2: {} pages free", KMEM.countfree());
    // No guard page below the boot stack: catch it getting close to full instead.
    let used = crate::entry::stack_high_water();
    assert!(
        used <= KSTACKSIZE * 3 / 4,
        "boot stack: {} of {} bytes used",
        used,
        KSTACKSIZE
    );
    bootlog!("xv6: boot ok");

    crate::dirout::init(boot.cmdline);
    match selftest::parse(boot.cmdline) {
        SelfTest::None => {}
        SelfTest::Exit(n) => debugport::exit(n),
        SelfTest::Panic => panic!("selftest"),
        SelfTest::Spin => loop {
            core::hint::spin_loop();
        },
        SelfTest::PageFault => {
            let user = KVAddr(0x1000_0000);
            // SAFETY: deliberately reads an address the kernel page directory does not map:
            // with no IDT the fault becomes a triple fault and the VM ends (the point of
            // the test); the read never completes.
            let v = unsafe { core::ptr::read_volatile(user.0 as *const u32) };
            panic!(
                "selftest=pagefault: read {:#x} at {:#010x} did not fault",
                v, user.0
            );
        }
        SelfTest::KStack => selftest::kstack(),
        SelfTest::Emulation => {
            x86::fld_from(crate::memlayout::DEVSPACE);
            panic!("selftest=emulation: an x87 load from MMIO was emulated");
        }
    }
    // The IDT is loaded only now, so that selftest=pagefault above still triple-faults.
    start_first_process(boot.nr_modules)
}

/// Sets up traps and the clock and runs the first process: argv from the argv module,
/// the program from the archive (xv6 `userinit` + `mpmain`). Never returns: the machine
/// ends when the first process exits. Without boot modules there is nothing to run: exit 0.
fn start_first_process(nr_modules: u32) -> ! {
    if nr_modules == 0 {
        debugport::exit(0);
    }
    trap::tvinit();
    trap::idtinit();
    lapic::picinit();
    lapic::lapicinit();

    let mut buf: [&'static [u8]; MAXARG] = [&[]; MAXARG];
    // No argv module (or a malformed one): argv is empty and exec finds no program.
    let argv = bootmods::first_argv(&mut buf).unwrap_or(&[]);
    let path = argv.first().copied().unwrap_or(b"");
    let (ofile, cwd) = sysfile::fsinit(bootmods::archive());
    match sysfile::program(cwd, path).and_then(|file| exec_file(&file, argv)) {
        Ok(image) => proc::userinit(image, path, ofile, cwd),
        Err(e) => {
            cprintln!(
                "xv6: exec {} failed: {}",
                core::str::from_utf8(path).unwrap_or("?"),
                e
            );
            debugport::exit(e.first_exec_status());
        }
    }
    proc::scheduler()
}

/// Panics unless the free list holds exactly the pages the kinit calls freed.
fn check_free(counted: usize, expected: usize) {
    assert_eq!(
        counted, expected,
        "kalloc: free list has {} pages, expected {}",
        counted, expected
    );
}
