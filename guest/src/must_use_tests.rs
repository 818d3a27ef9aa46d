//! A forgotten TLB flush must fail the build, not warn: lib.rs denies `unused_must_use`, and
//! vmm/build.rs builds the kernel without the outer RUSTFLAGS, so the crate itself has to say
//! so. This test copies the kernel's sources into a scratch crate (under `target/`), adds a
//! function that drops a `TlbFlush` and a `Forked`, and runs `cargo check` for the kernel's
//! own target: it must fail with that lint, for both. The same function with `.flush()` must
//! pass, so the failure is the dropped tokens' and nothing else's. About 5 s warm (the scratch
//! crate's target directory is kept).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel's target (guest/.cargo/config.toml).
const TARGET: &str = "i586-unknown-linux-gnu";

/// Copies `from` to `to` (a file, or a directory's files recursively), rewriting only what
/// differs so that cargo's fingerprints stay warm.
fn mirror(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            mirror(&e.path(), &to.join(e.file_name()));
        }
    } else {
        let text = std::fs::read(from).unwrap();
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        if std::fs::read(to).ok().as_deref() != Some(&text[..]) {
            std::fs::write(to, text).unwrap();
        }
    }
}

/// The scratch crate: the kernel's sources, with `extra` appended to lib.rs.
fn scratch(extra: &str) -> PathBuf {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = guest.join("target/must-use-probe");
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "kernel.ld",
        "src",
        "abi",
    ] {
        mirror(&guest.join(part), &dir.join(part));
    }
    let lib = std::fs::read_to_string(guest.join("src/lib.rs")).unwrap() + extra;
    if std::fs::read_to_string(dir.join("src/lib.rs")).ok() != Some(lib.clone()) {
        std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
    }
    dir
}

/// `cargo check` of the scratch crate for the kernel's target: success, and stderr.
fn check(dir: &Path) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["check", "--lib", "--offline", "--quiet", "--target", TARGET])
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cannot run cargo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A caller that changes mappings: a PTE (a `TlbFlush`) and a fork's (a `Forked`); `tail` is
/// what it does with each token.
fn probe(tail: &str) -> String {
    format!(
        "\n/// must_use_tests.rs's probe.\npub fn must_use_probe(pgdir: &mut vm::PageDir) {{\n    \
         vm::clearpteu(pgdir, memlayout::UVAddr(0)){tail};\n    \
         cow::cowuvm(pgdir, 0).expect(\"probe\"){tail};\n}}\n"
    )
}

#[test]
fn a_dropped_flush_token_fails_the_kernel_build() {
    let (ok, err) = check(&scratch(&probe("")));
    assert!(!ok, "a dropped TlbFlush or Forked compiled:\n{err}");
    for token in ["TlbFlush", "Forked"] {
        assert!(
            err.contains(&format!("unused `{token}` that must be used")),
            "the build failed, but not for the dropped {token}:\n{err}"
        );
    }
    assert!(err.contains("unused_must_use"), "{err}");
    let (ok, err) = check(&scratch(&probe(".flush()")));
    assert!(ok, "the flushed probe should compile:\n{err}");
}
