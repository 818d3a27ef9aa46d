//! The kernel binary. Everything lives in the `xv6` library: the PVH entry point (`entry`,
//! entry.rs), `kmain` and the panic handler; this file only links it into the ELF image.

#![cfg_attr(target_arch = "x86", no_std)]
#![cfg_attr(target_arch = "x86", no_main)]

#[cfg(target_arch = "x86")]
use xv6 as _;

/// On other architectures (e.g. `cargo clippy --all-targets` for the host) there is no kernel.
#[cfg(not(target_arch = "x86"))]
fn main() {
    eprintln!("the xv6 kernel only runs as a 32-bit x86 guest: build with --target i586-unknown-linux-gnu");
}
