//! `RUST_LOG=debug` shows what the VMM does, readable in a file: no flood from goblin's ELF-note
//! parsing and no colour codes (the lab's inner `vmm` writes to a serial line, which is a
//! terminal to it).

use crate::common;

#[test]
fn debug_log_into_a_file_is_plain_and_about_the_vmm() {
    if common::engine().is_none() {
        return;
    }
    let out = std::process::Command::new(common::VMM)
        .args(["run", "--quiet", "hello"])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains('\u{1b}'), "no escape sequences: {err:?}");
    assert!(!err.contains("goblin"), "{err}");
    assert!(
        err.contains("DEBUG"),
        "the VMM's own debug lines are there: {err}"
    );
}
