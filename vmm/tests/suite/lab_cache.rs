//! The lab's cache is verified: a truncated kernel or a garbage base archive is found by its
//! size or SHA-256, named in one line, fetched again, and the run goes on — instead of every
//! run failing with 125 forever.
//!
//! Runs where the lab is the engine (its cache is there to copy); skipped on hardware KVM.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{stderr, stdout, VMM};

/// A private copy of the ready cache, with `damage` done to it.
fn damaged_copy(damage: impl FnOnce(&Path)) -> Option<tempfile::TempDir> {
    if common::engine() != Some("lab") {
        eprintln!("SKIPPED: the lab is not the engine here");
        return None;
    }
    let status = stdout(&common::vmm(&["lab", "status"]));
    let kernel = status
        .lines()
        .find_map(|l| l.strip_prefix("kernel: "))
        .and_then(|l| l.rsplit_once(" ("))
        .map(|(_, p)| p.trim_end_matches(')').to_string())
        .expect("lab status names the cached kernel");
    let assets = Path::new(&kernel).parent().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let dst = copy.path().join(assets.file_name().unwrap());
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(assets).unwrap().flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    damage(&dst);
    Some(copy)
}

fn vmm_in(lab_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(VMM)
        .args(args)
        .env("XV6_LAB_DIR", lab_dir)
        // About the assets: a cold boot (no warm snapshot built in each copy).
        .env("XV6_LAB_WARM", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_truncated_kernel_is_fetched_again() {
    let Some(dir) = damaged_copy(|d| {
        let k = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("vmlinux"));
        k.map(|f| f.set_len(1000).unwrap()).unwrap_or_else(|_| {
            std::fs::write(d.join("vmlinuz"), b"short").unwrap();
        });
    }) else {
        return;
    };
    let st = vmm_in(dir.path(), &["lab", "status"]);
    assert_eq!(st.status.code(), Some(125));
    assert!(
        stdout(&st).contains("cached assets damaged"),
        "{}",
        stdout(&st)
    );
    let out = vmm_in(dir.path(), &["run", "--quiet", "hello"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out), "hello, world\n");
    assert!(
        err.contains("are damaged (") && err.contains("fetching them again"),
        "{err}"
    );
    assert!(err.contains("done in"), "the fetch reports its end: {err}");
    let st = vmm_in(dir.path(), &["lab", "status"]);
    assert!(stdout(&st).starts_with("lab-amd: ready"), "{}", stdout(&st));
}

#[test]
fn a_garbage_base_archive_of_the_same_size_is_found_by_its_digest() {
    let Some(dir) = damaged_copy(|d| {
        let p = d.join("base.cpio");
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        std::fs::write(&p, vec![0x5a; len]).unwrap();
    }) else {
        return;
    };
    // Found by `lab status` (and by a run, which then fetches again: the truncated kernel's
    // test above takes that path to its end).
    let st = vmm_in(dir.path(), &["lab", "status"]);
    assert_eq!(st.status.code(), Some(125), "{}", stdout(&st));
    assert!(
        stdout(&st).contains("cached assets damaged (base.cpio has SHA-256"),
        "{}",
        stdout(&st)
    );
}

/// A write in place that keeps the size and puts the modification time back is still found:
/// it moves the change time, and the digest is taken again.
#[test]
fn a_base_archive_damaged_in_place_with_its_mtime_kept_is_found() {
    let Some(dir) = damaged_copy(|_| {}) else {
        return;
    };
    // Verified once: the stamps are recorded.
    let st = vmm_in(dir.path(), &["lab", "status"]);
    assert!(stdout(&st).starts_with("lab-amd: ready"), "{}", stdout(&st));
    let assets = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("assets-"))
        .unwrap()
        .path();
    let p = assets.join("base.cpio");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"\xde\xad\xbe\xef", 4096).unwrap();
        f.set_modified(mtime).unwrap();
    }
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    let st = vmm_in(dir.path(), &["lab", "status"]);
    assert!(
        stdout(&st).contains("cached assets damaged") && stdout(&st).contains("base.cpio"),
        "{}",
        stdout(&st)
    );
}
