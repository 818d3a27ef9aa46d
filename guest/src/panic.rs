//! The kernel's panic handler: prints `xv6: panic: <message> at <file>:<line>`, tells the VMM
//! (debug port 0x502) and halts this CPU forever.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::x86::cli();
    match info.location() {
        Some(l) => crate::printf::print_unlocked(format_args!(
            "xv6: panic: {} at {}:{}\n",
            info.message(),
            l.file(),
            l.line()
        )),
        None => crate::printf::print_unlocked(format_args!("xv6: panic: {}\n", info.message())),
    }
    crate::debugport::panic_notify();
    crate::x86::halt_forever()
}

/// The prebuilt `core` was compiled with unwinding and references the personality routine;
/// the kernel aborts on panic, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
