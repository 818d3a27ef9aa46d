//! The kernel's main (xv6 main.c): read the PVH boot information, set up the console, the
//! GDT, the page allocator and the kernel page directory (mapping the boot modules too), read
//! the MP table (the CPUs), print the boot summary, then set up traps and the clock, start the
//! other CPUs (smp.rs) and start the first process — the
//! program the VMM named in the argv module, exec'd from the archive module — and schedule.
//! The boot summary goes to the kernel log (COM2); `quiet` on the command line suppresses it.
//! The command line is parsed once, here, into the kernel's `BootConfig` (cmdline.rs).

use crate::bootinfo::{self, BootInfo};
use crate::bootstack::{stack_high_water, KSTACKSIZE};
use crate::cmdline::{self, config, BootConfig};
use crate::exec::{exec_file, MAXARG};
use crate::kalloc::KMEM;
use crate::kmap::Kmap;
use crate::memlayout::{phystop, set_phystop, KVAddr, PhysAddr, KERNLINK, P2V};
use crate::{
    bootmods, cprintln, cpu, debugport, lapic, linker, proc, selftest, smp, sysfile, trap, vm, x86,
};

/// Prints a line of the boot summary, unless `quiet`.
macro_rules! bootlog {
    ($($arg:tt)*) => {
        if !config().quiet {
            cprintln!($($arg)*);
        }
    };
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
    crate::gdt::seginit(0);
    let boot = bootinfo::read(start_info_pa).unwrap_or_else(|e| panic!("{}", e));
    cmdline::set_config(BootConfig::parse(boot.cmdline));
    // `--dir …:rw`: the trees to export when the first process exits.
    crate::dirout::init(boot.cmdline);
    log_boot_info(&boot);
    set_phystop(boot.memmap.phystop().unwrap_or_else(|e| panic!("{}", e)));
    log_config(boot.nr_modules);
    let rows = vm::kernel_kmap(); // panics if P2V(PHYSTOP) > DEVSPACE
    let four_mib = kinit1();
    // Where the program archive and argv are: kvmalloc maps them in the kernel half.
    bootmods::init(boot.modules(), &boot.memmap).unwrap_or_else(|e| panic!("{}", e));
    vm::kvmalloc(bootmods::kmap_row());
    smp::mpinit(); // the LAPIC is mapped now: its id names the boot CPU
    log_cpus();
    bootmods::mark_mapped();
    log_kernel_map(&rows);
    check_pgdump();
    kinit2(four_mib);
    check_boot_stack();
    bootlog!("xv6: boot ok");
    selftest::run(config().selftest);
    // The IDT is loaded only now, so that selftest=pagefault above still triple-faults.
    start_first_process(boot.nr_modules)
}

/// The boot summary's first lines: where the boot information is, the command line, the
/// memory map.
fn log_boot_info(boot: &BootInfo) {
    bootlog!(
        "xv6: PVH boot, start_info {:#010x}, cmdline \"{}\"",
        boot.start_info.0,
        boot.cmdline
    );
    for e in boot.memmap.entries() {
        bootlog!("xv6: memmap {}", e);
    }
}

/// The boot summary's lines on PHYSTOP, the modules and the boot options.
fn log_config(nr_modules: u32) {
    bootlog!(
        "xv6: PHYSTOP {:#010x} ({} MiB), modules {}",
        phystop().0,
        phystop().0 / MIB,
        nr_modules
    );
    bootlog!("xv6: TSC {} kHz", config().tsc_khz);
    if config().lazy {
        bootlog!("xv6: lazy sbrk on");
    }
    if config().cow {
        bootlog!("xv6: cow fork on");
    }
}

/// The boot summary's line on the CPUs, when there is more than one.
fn log_cpus() {
    if cpu::ncpu() > 1 {
        bootlog!("xv6: mp: {} cpus", cpu::ncpu());
    }
}

/// The kernel page directory as the boot summary shows it: the kmap rows, the boot modules'
/// row, CR3.
fn log_kernel_map(rows: &[Kmap]) {
    for k in rows {
        bootlog!("xv6: kmap {}", k);
    }
    if let Some(row) = bootmods::kmap_row() {
        bootlog!("xv6: bootmods {}", row);
    }
    bootlog!("xv6: kvmalloc: cr3 {:#010x}", x86::rcr3());
}

/// xv6's `kinit1(end, P2V(4*1024*1024))`: the pages between the kernel image and 4 MiB (which
/// entrypgdir maps) go on the free list, with the reference counts for all of RAM. Returns
/// P2V(4 MiB), where kinit2 goes on.
fn kinit1() -> KVAddr {
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
    let freed = unsafe { KMEM.kinit1(end, top, end, four_mib) };
    check_free(KMEM.countfree(), freed);
    bootlog!("xv6: kinit1: {} pages free", KMEM.countfree());
    four_mib
}

/// xv6's `kinit2(P2V(4*1024*1024), P2V(PHYSTOP))`: the rest of RAM, now that the kernel page
/// directory maps it, goes on the free list. Not inlined: a debugger's backtrace from
/// `Kmem::kinit2` shows this frame, then kmain's (vmm/tests/gdb.rs).
#[inline(never)]
fn kinit2(four_mib: KVAddr) {
    let before = KMEM.countfree();
    let top = P2V(phystop());
    // SAFETY: [P2V(4 MiB), P2V(PHYSTOP)) is RAM the VMM reported, now mapped by the kernel
    // page directory, unused (the kernel image and the boot data are below 4 MiB; the boot
    // modules are at or above PHYSTOP), and zero (docs/abi.md). kinit2 does not touch it.
    let freed = unsafe { KMEM.kinit2(four_mib, top) };
    check_free(KMEM.countfree(), before + freed);
    bootlog!("xv6: kinit2: {} pages free", KMEM.countfree());
}

/// With `--pgdump`, the VMM checks the kernel page directory against the MMU: panics if they
/// disagree.
fn check_pgdump() {
    if let Some(n) = debugport::pgdump() {
        bootlog!("xv6: pgdump: {} translate mismatches", n);
        if n > 0 {
            panic!("pgdump: page tables disagree with the MMU");
        }
    }
}

/// No guard page below the boot stack: panics when boot came close to filling it instead.
fn check_boot_stack() {
    let used = stack_high_water();
    assert!(
        used <= KSTACKSIZE * 3 / 4,
        "boot stack: {} of {} bytes used",
        used,
        KSTACKSIZE
    );
}

/// Sets up traps and the clock, starts the other CPUs, and runs the first process: argv
/// from the argv module, the program from the archive (xv6 `userinit` + `mpmain`). Never returns: the machine
/// ends when the first process exits. Without boot modules there is nothing to run: exit 0.
fn start_first_process(nr_modules: u32) -> ! {
    if nr_modules == 0 {
        debugport::exit(0);
    }
    trap::tvinit();
    trap::idtinit();
    lapic::picinit();
    lapic::lapicinit();
    smp::startothers();

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
