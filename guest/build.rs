//! Links the kernel with `kernel.ld` (when building for the 32-bit x86 target) and refuses
//! to build position-independent code, which the linker script and entry code do not expect.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=kernel.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86") {
        return; // host unit tests: no kernel link
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !flags
        .split('\x1f')
        .any(|f| f.contains("relocation-model=static"))
    {
        panic!(
            "the kernel must be built with `-C relocation-model=static` (guest/.cargo/config.toml); \
             an outer build leaking CARGO_ENCODED_RUSTFLAGS/RUSTFLAGS overrides it"
        );
    }
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!(
        "cargo:rustc-link-arg-bins=-T{}",
        dir.join("kernel.ld").display()
    );
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-static");
}
