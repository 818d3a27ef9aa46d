//! The guest ABI in one place: the numbers the VMM (`vmm/`), the kernel (`guest/`) and the
//! user programs (`guest-user/`) must agree on. docs/abi.md explains each of them.
#![no_std]

/// System call numbers: xv6-public's syscall.h with the prototypes of its user.h (`exit(void)`,
/// `wait(void)`), then this project's own from 22 (the status-carrying `exit(int)` and
/// `wait(int *)` of xv6-riscv are 27 and 28).
pub mod syscall {
    /// The trap vector of system calls (`int $64`, a DPL-3 trap gate).
    pub const T_SYSCALL: u32 = 64;

    pub const SYS_FORK: u32 = 1;
    /// `exit(void)`: ends the caller with status 0.
    pub const SYS_EXIT: u32 = 2;
    /// `wait(void)`: the pid of an exited child; stores nothing.
    pub const SYS_WAIT: u32 = 3;
    pub const SYS_PIPE: u32 = 4;
    pub const SYS_READ: u32 = 5;
    pub const SYS_KILL: u32 = 6;
    pub const SYS_EXEC: u32 = 7;
    pub const SYS_FSTAT: u32 = 8;
    pub const SYS_CHDIR: u32 = 9;
    pub const SYS_DUP: u32 = 10;
    pub const SYS_GETPID: u32 = 11;
    pub const SYS_SBRK: u32 = 12;
    pub const SYS_SLEEP: u32 = 13;
    pub const SYS_UPTIME: u32 = 14;
    pub const SYS_OPEN: u32 = 15;
    pub const SYS_WRITE: u32 = 16;
    pub const SYS_MKNOD: u32 = 17;
    pub const SYS_UNLINK: u32 = 18;
    pub const SYS_LINK: u32 = 19;
    pub const SYS_MKDIR: u32 = 20;
    pub const SYS_CLOSE: u32 = 21;
    /// Ask the VMM to walk and print the caller's page tables.
    pub const SYS_PGDUMP: u32 = 22;
    /// The number of pages on the kernel's free list.
    pub const SYS_COUNTFREE: u32 = 23;
    /// Hand a user buffer to the VMM's export stream.
    pub const SYS_EXPORT: u32 = 24;
    /// The TSC frequency in kHz the VMM reported.
    pub const SYS_TSCKHZ: u32 = 25;
    /// Open (1) or close (2) a measured window: the VMM counts the VM exits inside.
    pub const SYS_MARK: u32 = 26;
    /// `exit(int status)`: ends the caller with `status & 0xff`.
    pub const SYS_EXIT_STATUS: u32 = 27;
    /// `wait(int *status)`: the pid of an exited child; stores its status unless the
    /// pointer is 0.
    pub const SYS_WAIT_STATUS: u32 = 28;
}

/// The memory layout both sides build on (docs/abi.md; xv6's memlayout.h).
pub mod layout {
    /// Start of extended memory: the kernel is loaded here (xv6 `EXTMEM`).
    pub const EXTMEM: u32 = 0x0010_0000;
    /// First kernel virtual address; the kernel maps RAM at `P2V(pa) = pa + KERNBASE`.
    pub const KERNBASE: u32 = 0x8000_0000;
    /// Where the kernel is linked: `KERNBASE + EXTMEM` (guest/kernel.ld, checked by a test).
    pub const KERNLINK: u32 = KERNBASE + EXTMEM;
    /// Start of the MMIO hole, mapped one to one up to 4 GiB (xv6 `DEVSPACE`).
    pub const DEVSPACE: u32 = 0xFE00_0000;
    /// RAM at the top the VMM keeps for boot modules: `PHYSTOP = mem - BOOT_RESERVED`.
    pub const BOOT_RESERVED: u32 = 32 << 20;
    /// Physical address of the boot timestamps (two little-endian u64, docs/abi.md): the
    /// TSC at the kernel's first instruction, and the TSC when the first process is about
    /// to run its first user instruction (0 until then). The kernel writes them; the VMM
    /// reads them after the run (`--stats`, `vmm bench boot`).
    pub const BOOT_TIMES: u32 = 0x5000;
}

/// Several CPUs (docs/abi.md "CPUs"): how many the kernel can run, where the VMM puts the MP
/// table that lists them, and where the kernel puts the code other CPUs start in.
pub mod smp {
    /// Most CPUs the kernel runs (xv6 `NCPU`); `vmm run --cpus` takes 1 to this.
    pub const NCPU: usize = 8;
    /// Where the VMM writes the MP floating pointer structure (Intel MP spec 1.4), with the
    /// configuration table right after it: in the BIOS area, which the kernel searches
    /// (0xF0000-0xFFFFF) when the EBDA and the last KiB of base memory hold none. No MP
    /// table: the kernel runs on one CPU.
    pub const MP_FLOATING: u32 = 0x000F_0000;
    /// Physical address of the application processors' real-mode start code (the
    /// trampoline, a page): the STARTUP IPI's vector is this address >> 12. Below 1 MiB and
    /// page aligned, clear of the VMM's boot data (0x500-0x7FFF) and command line (0x20000).
    pub const AP_START: u32 = 0x8000;
}

/// The x86 paging numbers both sides use (xv6's mmu.h): the page size, the page-table entry
/// bits, and the control-register bits the kernel sets and the VMM reads back.
pub mod mmu {
    /// Bytes mapped by a page.
    pub const PGSIZE: u32 = 4096;
    /// PTE/PDE: present.
    pub const PTE_P: u32 = 0x001;
    /// PTE/PDE: writeable.
    pub const PTE_W: u32 = 0x002;
    /// PTE/PDE: user.
    pub const PTE_U: u32 = 0x004;
    /// PDE: page size (a 4 MiB page, with CR4.PSE set).
    pub const PTE_PS: u32 = 0x080;
    /// PTE: copy-on-write (a bit the CPU leaves to software; not in xv6): shared after a
    /// `cow` fork, PTE_W off until the first write copies it.
    pub const PTE_COW: u32 = 0x200;
    /// CR0: protection enable.
    pub const CR0_PE: u32 = 1 << 0;
    /// CR0: extension type (the FPU is a 387; always set on modern CPUs).
    pub const CR0_ET: u32 = 1 << 4;
    /// CR0: write protect (the kernel honours read-only pages too).
    pub const CR0_WP: u32 = 1 << 16;
    /// CR0: not write-through (with CR0_CD: no write-back either). Set at reset.
    pub const CR0_NW: u32 = 1 << 29;
    /// CR0: cache disable. Set at reset, so a CPU started by INIT/SIPI runs uncached until
    /// its boot code clears it.
    pub const CR0_CD: u32 = 1 << 30;
    /// CR0: paging.
    pub const CR0_PG: u32 = 1 << 31;
    /// CR4: page size extension (4 MiB pages).
    pub const CR4_PSE: u32 = 1 << 4;
}

/// The kernel command-line words the VMM writes and the kernel reads (docs/abi.md).
pub mod cmdline {
    /// Always there: the console is COM1.
    pub const CONSOLE: &str = "console=com1";
    /// No boot summary.
    pub const QUIET: &str = "quiet";
    /// Demand-paged sbrk.
    pub const LAZY: &str = "lazy";
    /// Copy-on-write fork.
    pub const COW: &str = "cow";
    /// The key of `tsc_khz=N`: the TSC frequency from KVM_GET_TSC_KHZ.
    pub const TSC_KHZ: &str = "tsc_khz";
    /// The key of `dirout=data,out/x`: the GUESTDIRs (no leading `/`, comma-separated) the
    /// kernel exports through `ports::DIROUT` when the first process exits (`--dir …:rw`).
    pub const DIROUT: &str = "dirout";
}

/// Exit statuses the kernel gives and `vmm` passes on or gives itself (docs/abi.md).
pub mod status {
    /// The first program cannot run (not an ELF32 i386 executable, argument list too long).
    pub const NOT_EXECUTABLE: u8 = 126;
    /// The first program is not in the archive.
    pub const NOT_FOUND: u8 = 127;
    /// Killed by `kill()` (128 + SIGKILL).
    pub const KILLED: u8 = 137;
    /// Killed for a bad memory access (128 + SIGSEGV).
    pub const SEGV: u8 = 139;
}

/// The record `pfbench` exports (docs/abi.md, "pfbench export record").
pub mod pfbench {
    /// First word: `"PFB1"`.
    pub const MAGIC: u32 = 0x3142_4650;
    /// Bit of the flags word: the closing timestamps were `lfence; rdtsc; lfence` (the CPU has
    /// no `rdtscp`).
    pub const FLAG_NO_RDTSCP: u32 = 1;
}

/// forkbench's export record (docs/abi.md, "forkbench export record").
pub mod forkbench {
    /// "FKB1" as a little-endian u32: the record's first word.
    pub const MAGIC: u32 = 0x3142_4B46;
    /// u64 words before the samples: magic | tsc_khz << 32, then the three sample counts.
    pub const HEADER_WORDS: usize = 4;
}

/// `spinbench`'s export record (`vmm bench smp`): u64 words `MAGIC | tsc_khz << 32`, the
/// number of children, then the cycles from the first fork to the last wait.
pub mod spinbench {
    /// "SPB1" as a little-endian u32: the record's first word.
    pub const MAGIC: u32 = 0x3142_5053;
    /// u64 words in the record.
    pub const WORDS: usize = 3;
}

/// The guest's file system as the VMM fills it (`vmm run --add`): sizes both sides rely on.
pub mod fs {
    /// Bytes of a name in a directory entry (xv6 DIRSIZ).
    pub const DIRSIZ: usize = 14;
    /// Inodes of the guest's file system: the root, `/console`, the built-in programs, up to
    /// MAX_ADDED_FILES host files, and at least 200 more for programs to create (xv6 mkfs's
    /// NINODES).
    pub const NINODE: usize = 400;
    /// The most files `--add` puts into the guest (a directory's files counted one by one;
    /// a host PROGRAM is one more).
    pub const MAX_ADDED_FILES: usize = 128;
    /// Archive names the guest's `/` cannot take: its own entries, the console, and cpio's
    /// end-of-archive marker.
    pub const RESERVED_NAMES: [&str; 4] = [".", "..", "console", "TRAILER!!!"];
}

/// open's mode bits (xv6 fcntl.h), and O_TRUNC, an extension from xv6-riscv.
pub mod fcntl {
    pub const O_RDONLY: i32 = 0x000;
    pub const O_WRONLY: i32 = 0x001;
    pub const O_RDWR: i32 = 0x002;
    pub const O_CREATE: i32 = 0x200;
    /// Opening a regular file with it empties the file (xv6-riscv's value; xv6-public's
    /// programs never pass it).
    pub const O_TRUNC: i32 = 0x400;
}

/// What exec takes: the VMM refuses a first process's argv the kernel would refuse.
pub mod exec {
    /// The most argument strings (argv[0] included), xv6's MAXARG.
    pub const MAXARG: usize = 32;
    /// Bytes of the words exec pushes below the strings on the stack page: the fake return PC,
    /// argc, the argv pointer, MAXARG pointers and the closing 0.
    pub const USTACK_BYTES: usize = (3 + MAXARG + 1) * 4;
}

/// The I/O ports of the VMM's devices.
pub mod ports {
    /// 16550 UART, COM1: the kernel log when there is no COM2 (eight registers from here).
    pub const COM1: u16 = 0x3F8;
    /// 16550 UART, COM2: the kernel's log and panics (host stderr).
    pub const COM2: u16 = 0x2F8;
    /// `out` a 32-bit status: the VM ends and `vmm` exits with it.
    pub const EXIT: u16 = 0x501;
    /// The kernel panicked; `vmm` exits 125. `out32` the guest-physical address of a panic
    /// report ([`crate::panic`]); any other `out` (no report) works too.
    pub const PANIC: u16 = 0x502;
    /// `out`: walk the page tables of the current CR3 and check them with KVM_TRANSLATE;
    /// `in` (32-bit): that walk's mismatches, or `u32::MAX` if none was made.
    pub const PGDUMP: u16 = 0x503;
    /// `out` (32-bit): a guest-physical address; the VMM appends `EXPORT_LEN` bytes there to
    /// the run's export stream.
    pub const EXPORT: u16 = 0x505;
    /// `out` (32-bit): the length for the next `EXPORT`.
    pub const EXPORT_LEN: u16 = 0x506;
    /// `out` (32-bit): 1 opens a measured window, 2 closes it.
    pub const MARK: u16 = 0x507;
    /// Paravirtual console, `out` (32-bit) the guest-physical address of a request block
    /// (see [`crate::console`]): write `[pa, pa + len)` to the program's stdout.
    pub const CONS_STDOUT: u16 = 0x508;
    /// The same for the program's stderr.
    pub const CONS_STDERR: u16 = 0x509;
    /// The same for stdin: read at most `len` available bytes into `[pa, pa + len)`.
    pub const CONS_STDIN: u16 = 0x50A;
    /// `out` (32-bit) the guest-physical address of a user-symbol request
    /// ([`crate::usersym`]): the VMM names a user address for a fault line.
    pub const USER_SYMBOL: u16 = 0x50B;
    /// `out` (32-bit): a guest-physical address; the VMM appends `DIROUT_LEN` bytes there to
    /// the run's write-back stream (`--dir …:rw`: the kernel's export of the GUESTDIRs at
    /// the first process's exit, a cpio newc archive).
    pub const DIROUT: u16 = 0x50C;
    /// `out` (32-bit): the length for the next `DIROUT`.
    pub const DIROUT_LEN: u16 = 0x50D;
}

/// The user-symbol request, at the guest-physical address the kernel `out32`s to
/// `ports::USER_SYMBOL`: the kernel fills `eip` (little-endian u32) and `name` (the process's
/// name, NUL-padded); the VMM looks `eip` up in the symbols of the program of that name in
/// the run's archive and writes `text`: `symbol+0xOFF` (or `symbol`), NUL-terminated, or an
/// empty string when the program is unknown, stripped, or no symbol covers `eip`.
pub mod usersym {
    /// Offset of `eip`.
    pub const OFF_EIP: usize = 0;
    /// Offset of `name`.
    pub const OFF_NAME: usize = 4;
    /// Bytes of `name` (xv6's `proc.name`).
    pub const NAME_LEN: usize = 16;
    /// Offset of `text`.
    pub const OFF_TEXT: usize = OFF_NAME + NAME_LEN;
    /// Bytes of `text`, its NUL included.
    pub const TEXT_LEN: usize = 64;
}

/// The kernel's panic report, at the guest-physical address it `out32`s to `ports::PANIC`:
/// little-endian u32s `magic`, `msg_len`, `nframes`, then `MAX_FRAMES` return addresses
/// (kernel virtual, innermost first, from the frame-pointer chain), then `msg_len` bytes of
/// UTF-8: the panic message and its location (`MESSAGE at FILE:LINE`).
pub mod panic {
    /// `"PNC1"`.
    pub const MAGIC: u32 = 0x3143_4e50;
    /// Offset of `msg_len`.
    pub const OFF_MSG_LEN: usize = 4;
    /// Offset of `nframes` (at most `MAX_FRAMES`).
    pub const OFF_NFRAMES: usize = 8;
    /// Offset of the return addresses.
    pub const OFF_FRAMES: usize = 12;
    /// How many return addresses the report holds.
    pub const MAX_FRAMES: usize = 16;
    /// Offset of the message.
    pub const OFF_MSG: usize = OFF_FRAMES + 4 * MAX_FRAMES;
    /// The longest message kept (longer ones are cut).
    pub const MAX_MSG: usize = 512;
    /// The report's size in bytes.
    pub const SIZE: usize = OFF_MSG + MAX_MSG;
}

/// The paravirtual console's request block: three little-endian u32s `{pa, len, ret}` at a
/// guest-physical address the guest `out32`s to a `CONS_*` port; one VM exit per request.
pub mod console {
    /// Offset of `pa`, the guest-physical address of the piece.
    pub const OFF_PA: usize = 0;
    /// Offset of `len`, its length in bytes.
    pub const OFF_LEN: usize = 4;
    /// Offset of `ret`, set by the VMM: bytes written or read; for stdin 0 = end of input.
    pub const OFF_RET: usize = 8;
    /// `ret` of a stdin request when no byte is available yet: ask again later.
    pub const NOTHING_YET: u32 = 0xFFFF_FFFF;
    /// `ret` of a request the VMM refused (piece outside RAM, too long, zero-length read).
    pub const BAD_REQUEST: u32 = 0xFFFF_FFFE;
    /// The longest piece one request may carry.
    pub const MAX_PIECE: u32 = 64 << 10;
}
