//! The warm lab's snapshot through its life, in a private lab directory (the cached assets
//! linked in): two first runs at once build it once; a build killed midway leaves nothing a
//! later run trusts; a snapshot damaged in place (size and mtime kept) is found and built
//! again; a snapshot QEMU cannot restore makes the run boot cold, in one line, with its stdin
//! intact (and is removed); another `vmm` build never restores this one's snapshot; a snapshot
//! directory that cannot be made means a cold boot, in one line. Every run's output is checked.
//!
//! Runs where the lab is the engine; skipped on hardware KVM.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, VMM};

/// The text every warm build prints when it starts.
const BUILDING: &str = "building the lab's warm snapshot";

/// A lab directory with the real one's assets linked in and nothing else.
fn private_lab_dir() -> Option<tempfile::TempDir> {
    if common::engine() != Some("lab") {
        eprintln!("SKIPPED: the lab is not the engine here");
        return None;
    }
    let status = stdout(&common::vmm(&["lab", "status"]));
    let real = status
        .lines()
        .find_map(|l| l.strip_prefix("lab dir: "))
        .expect("lab status names its directory");
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(real).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("assets-") {
            std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    Some(dir)
}

fn spawn(vmm: &Path, lab: &Path, args: &[&str]) -> Child {
    Command::new(vmm)
        .args(args)
        .env("XV6_LAB_DIR", lab)
        .env_remove("XV6_LAB_WARM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run vmm")
}

/// `vmm run --quiet cat` with `input`: its output must be `input`, exit 0.
fn cat(vmm: &Path, lab: &Path, input: &[u8]) -> Output {
    let mut child = spawn(vmm, lab, &["run", "--quiet", "cat"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout == input, "cat's output: {}", stdout(&out));
    out
}

/// The snapshot directories under `lab`.
fn snapshots(lab: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(lab.join("warm-v1")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta").is_file())
        .collect()
}

fn the_snapshot(lab: &Path) -> PathBuf {
    let s = snapshots(lab);
    assert_eq!(s.len(), 1, "one snapshot: {s:?}");
    s.into_iter().next().unwrap()
}

/// Overwrites bytes of `file` at `at`, keeping its size and modification time.
fn damage_in_place(file: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let mtime = fs::metadata(file).unwrap().modified().unwrap();
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(bytes, at).unwrap();
    f.set_modified(mtime).unwrap();
}

fn crc32(file: &Path) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&fs::read(file).unwrap());
    h.finalize()
}

#[test]
fn the_warm_snapshot_is_built_once_checked_and_never_trusted_blindly() {
    let Some(lab) = private_lab_dir() else { return };
    let lab = lab.path();
    let vmm = Path::new(VMM);
    let input: Vec<u8> = (0..50_000u32).map(|i| (i * 13 % 251) as u8).collect();

    // A build killed midway: only a temporary directory is left, and it is never used.
    let mut killed = spawn(vmm, lab, &["run", "--quiet", "hello"]);
    drop(killed.stdin.take());
    let end = Instant::now() + Duration::from_secs(120);
    let building = || {
        fs::read_dir(lab.join("warm-v1")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".build-"))
        })
    };
    while !building() {
        assert!(Instant::now() < end, "no build started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    killed.kill().unwrap(); // SIGKILL: no cleanup
    killed.wait().unwrap();
    assert!(snapshots(lab).is_empty(), "a killed build installs nothing");

    // Two first runs at once: one builds, the other waits for it; both run.
    let a = spawn(vmm, lab, &["run", "--quiet", "hello"]);
    let b = spawn(vmm, lab, &["run", "--quiet", "hello"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        assert_eq!(stdout(o), "hello, world\n");
    }
    let builds = [&a, &b]
        .iter()
        .filter(|o| stderr(o).contains(&format!("{BUILDING} (")))
        .count();
    assert_eq!(
        builds,
        1,
        "built once:\n{}\n---\n{}",
        stderr(&a),
        stderr(&b)
    );
    let snap = the_snapshot(lab);
    assert!(!building(), "the killed build's directory was swept");

    // Restored: no build, byte-exact streams.
    let out = cat(vmm, lab, &input);
    assert!(!stderr(&out).contains(BUILDING), "{}", stderr(&out));

    // Another vmm build (here: the same binary with one byte more) has a key of its own: the
    // snapshot that is there is not one it would restore (`lab status` asks as a run does).
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("vmm");
    fs::copy(vmm, &other).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&other)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let status = |exe: &Path| {
        let out = Command::new(exe)
            .args(["lab", "status"])
            .env("XV6_LAB_DIR", lab)
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(
        status(&other).contains("warm snapshot: not built for this vmm yet"),
        "{}",
        status(&other)
    );
    assert!(
        status(vmm).contains("warm snapshot: ready in "),
        "{}",
        status(vmm)
    );

    // Damaged in place, size and mtime kept: found by its checksum, built again.
    let state = snap.join("state");
    let size = fs::metadata(&state).unwrap().size();
    damage_in_place(&state, size / 2, b"\xde\xad\xbe\xef");
    let out = cat(vmm, lab, &input);
    let err = stderr(&out);
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains(BUILDING), "{err}");
    let snap = the_snapshot(lab);

    // A state QEMU cannot load (its checksum made to match): the run boots cold, in one
    // line, with all of its stdin; the snapshot is dropped and the next run builds it anew.
    let state = snap.join("state");
    damage_in_place(&state, 0, b"XXXX"); // the migration stream's magic
    let meta = fs::read_to_string(snap.join("meta")).unwrap();
    let fixed: String = meta
        .lines()
        .map(|l| match l.strip_prefix("state_crc32=") {
            Some(_) => format!("state_crc32={:08x}\n", crc32(&state)),
            None => format!("{l}\n"),
        })
        .collect();
    fs::write(snap.join("meta"), fixed).unwrap();
    let out = cat(vmm, lab, &input);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("the warm start failed"))
        .unwrap_or_else(|| panic!("no fallback line: {err}"));
    assert!(line.ends_with("booting cold"), "{line}");
    assert!(snapshots(lab).is_empty(), "the bad snapshot was removed");

    // No room for snapshots at all: one line, and the run boots cold.
    fs::remove_dir_all(lab.join("warm-v1")).unwrap();
    fs::write(lab.join("warm-v1"), b"not a directory").unwrap();
    let out = cat(vmm, lab, &input);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("no warm start"))
        .unwrap_or_else(|| panic!("no line about the warm start: {err}"));
    assert!(line.ends_with("booting cold"), "{line}");
}
