//! tour: the default program of `vmm run`. It walks a new user through chapter 2 of the
//! xv6 book (page tables) on its own process: where its text, data, bss, stack and heap
//! are; its page tables (pgdump); sbrk growing and shrinking it, with the kernel's free-page
//! count; fork and exec; and a child killed on the guard page. Exits 0.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::ffi::CString;
use alloc::format;
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};
use ulib::probe::{guard_page, peek, stack_page};
use ulib::{countfree, exec, exit, fork, getpid, pgdump, println, sbrk, wait, KERNBASE, PGSIZE};

/// A static with a value: it lives in the data segment, loaded from the ELF file.
static GREETING: AtomicU32 = AtomicU32::new(0x600d_da7a);
/// A zeroed static: it lives in the bss, which exec zeroes (no bytes in the file).
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The address of a static, as a number.
fn addr_of<T>(x: &T) -> usize {
    black_box(x) as *const T as usize
}

/// Part 1: the address space exec built.
fn address_space(sz: usize) {
    let local = 0u32;
    let stack = stack_page();
    let guard = guard_page();
    println!("1. Where my things are (each page is PGSIZE = {PGSIZE} bytes):");
    println!(
        "   text   main(), my code         {:#010x}   from 0: code and constants (R X)",
        main as *const () as usize
    );
    println!(
        "   data   a static with a value   {:#010x}",
        addr_of(&GREETING)
    );
    println!(
        "   bss    a zeroed static         {:#010x}",
        addr_of(&COUNTER)
    );
    println!(
        "   guard  the guard page          {guard:#010x} .. {:#010x}",
        guard + PGSIZE
    );
    println!(
        "   stack  a local variable        {:#010x}   in the one stack page {stack:#010x} .. {:#010x}",
        addr_of(&local),
        stack + PGSIZE
    );
    println!("   sz     sbrk(0) at start        {sz:#010x}   = the top of the stack page");
    let heap = Box::new(7u32);
    println!(
        "   heap   a Box                   {:#010x}   above sz: the heap grows above the stack",
        addr_of(&*heap)
    );
    println!("   exec loaded my ELF segments at their addresses, then added two pages: the");
    println!("   stack page (my argv strings are at its top) and, below it, the guard page. The");
    println!("   guard page is mapped but its PTE_U bit is clear (clearpteu), so if my stack ever");
    println!("   overflows its single page I fault instead of overwriting my data.");
    println!();
}

/// One box of the address-space picture: its bottom address, then what it holds.
fn picture_row(bottom: usize, what: &str, pages: usize, flags: &str, note: &str) {
    let unit = if pages == 1 { "page " } else { "pages" };
    println!("              | {what:<14} {pages:>3} {unit} |  {flags}  {note}");
    println!("   {bottom:#010x} +--------------------------+");
}

/// The address space as text art: from the top of memory down to 0, sizes not to scale.
fn picture() {
    const DEVSPACE: usize = xv6_abi::layout::DEVSPACE as usize;
    let sz = sbrk(0) as usize;
    let stack = stack_page();
    let guard = guard_page();
    // The data segment starts at a page boundary at or below its first static.
    let data = addr_of(&GREETING) & !(PGSIZE - 1);
    let pages = |lo: usize, hi: usize| (hi - lo) / PGSIZE;
    println!("   My address space, high addresses on top (boxes not to scale):");
    println!("   0xffffffff +--------------------------+");
    println!("              | devices (DEVSPACE)       |  rwk  LAPIC, IOAPIC: virtual = physical");
    println!("   {DEVSPACE:#010x} +--------------------------+");
    println!("              :  boot modules, unmapped  :");
    println!("              | the kernel (kmap rows),  |  r-k  kernel text");
    println!("              | the same in every        |  rwk  kernel data, free memory, low");
    println!("              | process                  |       memory: RAM pa at pa + KERNBASE");
    println!("   {KERNBASE:#010x} +-------- KERNBASE --------+");
    println!("              :  unmapped                :  room for the heap to grow");
    println!("   {sz:#010x} +--------------------------+  sz = sbrk(0)");
    picture_row(
        stack + PGSIZE,
        "heap",
        pages(stack + PGSIZE, sz),
        "rwu",
        "sbrk grows it up",
    );
    picture_row(stack, "stack", 1, "rwu", "argv at its top");
    picture_row(guard, "guard page", 1, "rwk", "no PTE_U: my access faults");
    picture_row(data, "data, bss", pages(data, guard), "rwu", "statics");
    picture_row(0, "text", pages(0, data), "r-u", "code and constants");
    println!("   Each page is backed by a physical page the kernel took from its free list");
    println!("   (kalloc); the kernel reaches the same page again at P2V(pa), above KERNBASE.");
    println!();
}

/// Part 2: the page tables, walked by the VMM.
fn page_tables() {
    println!("2. My page tables.");
    picture();
    println!("   pgdump() asks the VMM to walk my page directory from outside the machine,");
    println!("   the way the MMU does (PDX, then PTX).");
    if pgdump() == 0 {
        const LEGEND: &str = "   \
            The VMM printed it on stderr: one line per run of pages, virtual -> physical,
   r or rw, and u (PTE_U: user) or k (kernel only). Mine, from 0: text (r-u:
   read-only), data and bss (rwu), the guard page (rwk: no PTE_U), the stack page
   and the heap (rwu); from KERNBASE up the kernel (..k), the same in every process.
   `vmm run --pgdump-svg as.svg` draws it, with where each page lands in RAM.";
        println!("{LEGEND}");
    } else {
        println!("   The VMM was not asked to show it: run `vmm run --pgdump` to see the dump,");
        println!("   or `vmm run --pgdump-svg as.svg` for a picture of it.");
    }
    println!();
}

/// Part 3: sbrk growing and shrinking the process.
fn grow_and_shrink() {
    const PAGES: usize = 10;
    let n = (PAGES * PGSIZE) as i32;
    println!("3. Growing and shrinking with sbrk (xv6's growproc: allocuvm / deallocuvm).");
    let before = countfree();
    println!("   free pages in the kernel (countfree): {before}");
    let old = sbrk(n);
    let after = countfree();
    println!("   sbrk({n}) returned {old:#x}, my old size: {PAGES} new pages, zeroed and");
    println!(
        "   mapped user-writable from there (first byte reads {}).",
        peek(old as usize)
    );
    println!("   free pages now: {after} ({} fewer)", before - after);
    sbrk(-n);
    let back = countfree();
    println!("   sbrk(-{n}) gives them back to the free list: {back} free pages");
    println!();
}

/// Part 4: a child that execs echo.
fn fork_exec() {
    println!("4. fork() copies my address space into a new process (copyuvm); exec() replaces");
    println!("   the child's with the program `echo`, and passes it arguments on its stack page:");
    let pid = fork();
    if pid == 0 {
        let me = CString::new(format!("{}", getpid())).unwrap_or_default();
        exec(
            c"echo",
            &[
                c"echo",
                c"   echo: hello from the child, pid",
                me.as_c_str(),
            ],
        );
        println!("   exec failed");
        exit(1);
    }
    let mut status = -1;
    let got = wait(Some(&mut status));
    println!("   wait() -> child {got} exited with status {status}");
    println!();
}

/// Part 5: a child touching the guard page.
fn guard_page_demo() {
    let guard = guard_page();
    println!("5. The guard page at work: a child reads address {guard:#010x}, in its guard page.");
    let pid = fork();
    if pid == 0 {
        peek(guard);
        println!("   the read worked?! The guard page should have stopped it.");
        exit(0);
    }
    let mut status = -1;
    let got = wait(Some(&mut status));
    println!(
        "   wait() -> child {got} exited with status {status} (139 = 128 + SIGSEGV: the kernel"
    );
    println!("   killed it for the page fault; its note about it went to stderr).");
    println!();
}

/// The program.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let sz = sbrk(0) as usize;
    COUNTER.fetch_add(black_box(0), Ordering::Relaxed);
    println!(
        "Welcome to xv6's chapter 2 on a real MMU. I am process {}, the program `tour`.",
        getpid()
    );
    println!("Every process has its own page directory: addresses 0 .. KERNBASE ({KERNBASE:#x})");
    println!("are its own memory; the kernel is mapped above KERNBASE in every process, with");
    println!("PTE_U clear, so user code cannot touch it.");
    println!();
    address_space(sz);
    page_tables();
    grow_and_shrink();
    fork_exec();
    guard_page_demo();
    println!("That's the tour. Next: `vmm run usertests` tests all of this; `vmm run echo hi`.");
    0
}
