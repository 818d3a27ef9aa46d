//! Bad memory accesses and other exceptions kill only the process that makes them: the
//! guard page below the stack, the kernel half, unmapped user addresses, read-only text.

use crate::check::{expect_segv, expect_status, Outcome};
use crate::mem::brk;
use ulib::probe::{divide_error, guard_page, invalid_opcode, peek, poke, stack_page};
use ulib::{KERNBASE, PGSIZE};

/// stackguard: the stack is one page with sz at its top; the page below it is the guard
/// page: reading it, writing it, or recursing into it kills the process (139).
pub fn stackguard() -> Outcome {
    let top = stack_page() + PGSIZE;
    ensure!(
        brk() == top,
        "sz {:#x} is not the top of the stack page {top:#x}",
        brk()
    );
    let guard = guard_page();
    expect_segv("reading the guard page", || {
        peek(guard);
    })?;
    expect_segv("reading the guard page's top byte", || {
        peek(guard + PGSIZE - 1);
    })?;
    // SAFETY: the guard page holds no Rust object; the write must kill the child.
    expect_segv("writing the guard page", || unsafe {
        poke(guard + PGSIZE - 4, 1)
    })?;
    expect_segv("recursing off the stack page", || {
        deep(0);
    })?;
    Ok(())
}

/// Recursion with a 256-byte frame, until the stack runs into the guard page.
fn deep(n: u32) -> u32 {
    let frame = core::hint::black_box([n as u8; 256]);
    if core::hint::black_box(n) == u32::MAX {
        return 0;
    }
    deep(n + 1).wrapping_add(u32::from(frame[n as usize % 256]))
}

/// kernmem: the kernel half (KERNBASE and up: low memory, kernel text and data, the free
/// pages, the devices) and unmapped user addresses are out of reach: reading or writing
/// them kills the process.
pub fn kernmem() -> Outcome {
    let kernel = [
        KERNBASE,              // KERNBASE: the I/O space and low memory
        KERNBASE + 0x10_0000,  // KERNLINK: kernel text
        KERNBASE + 0x40_0000,  // free pages (kinit2's range)
        KERNBASE + 0xDFF_FFFF, // the last byte below P2V(PHYSTOP)
        0xFEC0_0000,           // IOAPIC (DEVSPACE)
        0xFEE0_0000,           // LAPIC
        0xFFFF_FFFF,           // the top of the address space
    ];
    for a in kernel {
        expect_segv("reading the kernel half", || {
            peek(a);
        })?;
    }
    // SAFETY: kernel memory is no Rust object of ours; the write must kill the child.
    expect_segv("writing kernel text", || unsafe {
        poke(KERNBASE + 0x10_0000, 0)
    })?;
    let sz = brk();
    for a in [sz, sz + 16 * PGSIZE, KERNBASE - 1] {
        expect_segv("reading past sz", || {
            peek(a);
        })?;
    }
    Ok(())
}

/// textwrite: the program's text is mapped read-only (usertests is linked with text and
/// data in separate segments): writing it kills the process; reading it does not.
pub fn textwrite() -> Outcome {
    let text = textwrite as *const () as usize;
    ensure!(peek(text) == peek(text), "text not readable");
    // SAFETY: if the write succeeded it would change code no one calls afterwards (the
    // child exits at once); it must kill the child.
    expect_segv("writing the program's text", || unsafe { poke(text, 0xc3) })?;
    Ok(())
}

/// exceptions: other user exceptions kill too — invalid opcode 132, divide error 136.
pub fn exceptions() -> Outcome {
    expect_status("ud2", 132, || invalid_opcode())?;
    expect_status("divide by zero", 136, || divide_error())?;
    Ok(())
}
