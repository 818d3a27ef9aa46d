//! The VMM's own promises, checked by a minimal PVH kernel (tests/fixtures/mini-pvh.S,
//! assembled here with binutils' `as` and `ld`): start_info, the memory map, the MMIO hole,
//! COM1, the exit port, and a triple fault.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::{boot, stderr, stdout};

fn mini_kernel() -> PathBuf {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mini-pvh");
    std::fs::create_dir_all(&out).unwrap();
    let obj = out.join("mini-pvh.o");
    let elf = out.join("mini-pvh.elf");
    let ok = Command::new("as")
        .arg("--32")
        .arg(fixtures.join("mini-pvh.S"))
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("binutils `as` is needed to assemble the test kernel");
    assert!(ok.success());
    let ok = Command::new("ld")
        .args(["-m", "elf_i386", "-T"])
        .arg(fixtures.join("mini-pvh.ld"))
        .arg(&obj)
        .arg("-o")
        .arg(&elf)
        .status()
        .expect("binutils `ld` is needed to link the test kernel");
    assert!(ok.success());
    elf
}

#[test]
fn entry_state_memmap_mmio_hole_serial_and_exit_port() {
    let k = mini_kernel();
    let Some(out) = boot(&["--kernel", k.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out).lines().last(), Some("mini"));
}

#[test]
fn triple_fault_is_125() {
    let k = mini_kernel();
    let Some(out) = boot(&["--kernel", k.to_str().unwrap(), "--append", "TRIPLE"]) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(125),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("triple-faulted"), "{}", stderr(&out));
}
