//! The user runtime: the entry point and the panic handler.
//!
//! exec starts a program at `_start` with the stack xv6 builds: a fake return PC
//! (0xffffffff), argc, argv. That is exactly a cdecl call frame, so `_start` is an ordinary
//! C function of (argc, argv). It must never return (there is nothing to return to):
//! it exits with main's result.

use core::panic::PanicInfo;

extern "C" {
    /// The program's main, defined by the binary.
    fn main(argc: i32, argv: *const *const u8) -> i32;
}

/// Program entry: records the arguments, runs main and exits with its return value.
#[no_mangle]
extern "C" fn _start(argc: i32, argv: *const *const u8) -> ! {
    // SAFETY: exec built argv on the stack page, which lives as long as the process.
    unsafe { crate::args::init(argc, argv) };
    // SAFETY: `main` is the program's C-ABI main with this signature (see the crate docs);
    // argc/argv come from exec as it promises them.
    let status = unsafe { main(argc, argv) };
    crate::syscall::exit(status)
}

/// A panic (including running out of heap) prints its message on stderr and exits 255.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::eprintln!("panic: {}", info.message());
    crate::syscall::exit(-1)
}

/// The prebuilt `core` references the unwinding personality routine; programs abort on
/// panic, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// The prebuilt `alloc` has cleanup paths that resume unwinding; with panic = abort nothing
/// unwinds, so this is never called.
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    crate::syscall::exit(-1)
}

// A trap pad at address 0 (user.ld puts `.text.null` first): nothing else lives at the null
// address, and jumping there raises #UD.
core::arch::global_asm!(
    ".pushsection .text.null, \"ax\"",
    ".fill 8, 2, 0x0b0f", // ud2 ud2 ...
    ".popsection"
);
