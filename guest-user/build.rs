//! Links every user program with `user.ld` (text at virtual address 0) and refuses to build
//! position-independent code.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86") {
        return;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !flags
        .split('\x1f')
        .any(|f| f.contains("relocation-model=static"))
    {
        panic!(
            "user programs must be built with `-C relocation-model=static` \
             (guest-user/.cargo/config.toml); an outer build leaking \
             CARGO_ENCODED_RUSTFLAGS/RUSTFLAGS overrides it"
        );
    }
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!(
        "cargo:rustc-link-arg-bins=-T{}",
        dir.join("user.ld").display()
    );
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-static");
}
