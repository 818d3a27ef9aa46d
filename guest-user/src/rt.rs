//! The user runtime: the entry point and the panic handler.
//!
//! exec (in the kernel, next issue) starts a program at `_start` with the stack xv6 builds:
//! a fake return PC (0xffffffff), argc, argv. That is exactly a cdecl call frame, so `_start`
//! is an ordinary C function of (argc, argv).

use core::panic::PanicInfo;

extern "C" {
    /// The program's main, defined by the binary.
    fn main(argc: i32, argv: *const *const u8) -> i32;
}

/// Program entry: runs main and exits with its return value.
#[no_mangle]
extern "C" fn _start(argc: i32, argv: *const *const u8) -> ! {
    // SAFETY: `main` is the program's C-ABI main with this signature (see the crate docs);
    // argc/argv come from exec as it promises them.
    let status = unsafe { main(argc, argv) };
    crate::syscall::exit(status)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::eprintln!("panic: {}", info.message());
    crate::syscall::exit(-1)
}

/// The prebuilt `core` references the unwinding personality routine; programs abort on
/// panic, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

// A trap pad at address 0 (user.ld puts `.text.null` first): nothing else lives at the null
// address, and jumping there raises #UD.
core::arch::global_asm!(
    ".pushsection .text.null, \"ax\"",
    ".fill 8, 2, 0x0b0f", // ud2 ud2 ...
    ".popsection"
);
