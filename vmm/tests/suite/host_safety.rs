//! The host side of a lab run is safe against a hostile temp directory and against signals:
//! its temporary files are private and unguessable, none survives the run — not even one
//! stopped by Ctrl-C or SIGTERM (which exit 130 / 143 and say so) — and the files of a run
//! killed outright are swept by the next one.
//!
//! These exercise the lab path (the only one that creates files), so they run where the lab is
//! the engine; on a host whose KVM runs the kernel directly they are skipped with a note.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::VMM;

/// Only where the lab is what `auto` picks (here: always; on hardware KVM: skipped).
fn lab_engine() -> bool {
    match common::engine() {
        Some("lab") => true,
        Some(other) => {
            eprintln!("SKIPPED: the engine here is {other}; these tests cover the lab's files");
            false
        }
        None => false,
    }
}

/// How the lab machine starts: booted (the only start that creates temporary files) or
/// restored from the warm snapshot (which creates none).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Cold,
    Warm,
}

fn spawn_in(tmp: &Path, args: &[&str]) -> Child {
    spawn_as(Start::Cold, tmp, args)
}

fn spawn_as(start: Start, tmp: &Path, args: &[&str]) -> Child {
    Command::new(VMM)
        .args(args)
        .env("TMPDIR", tmp)
        .env("XV6_LAB_WARM", if start == Start::Cold { "0" } else { "1" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run vmm")
}

/// Everything under `dir` (one level of subdirectories), with its permission bits.
fn entries(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        out.push((e.path(), m.permissions().mode() & 0o777));
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(e.path()) {
                for f in rd.flatten() {
                    if let Ok(fm) = f.path().symlink_metadata() {
                        out.push((f.path(), fm.permissions().mode() & 0o777));
                    }
                }
            }
        }
    }
    out
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("vmm did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until the run has created its lab directory.
fn wait_for_lab_dir(tmp: &Path) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let names = entries(tmp);
        if names
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("xv6-lab-"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no xv6-lab- directory appeared in {}", tmp.display());
}

#[test]
fn lab_temp_files_are_private_unguessable_and_removed() {
    if !lab_engine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // What an attacker plants under the guessable names of a dead process's files, and a
    // victim file a symlink points at.
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let dead = 4_194_399; // above pid_max: never a live process
    std::os::unix::fs::symlink(&victim, tmp.path().join(format!("xv6-lab-{dead}-x"))).unwrap();
    fs::create_dir(tmp.path().join(format!("xv6-lab-{dead}-y"))).unwrap();

    let input: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let planted: Vec<PathBuf> = entries(tmp.path()).into_iter().map(|(p, _)| p).collect();
    let mut child = spawn_in(tmp.path(), &["run", "--quiet", "cat"]);
    // Stdin is streamed: written while the run goes on.
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    // Watch the directory while the run lasts: nothing it creates may be readable by others.
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        for (p, mode) in entries(tmp.path()) {
            if !planted.contains(&p) && !seen.contains(&p) {
                assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", p.display());
                seen.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        reader.join().unwrap() == input,
        "stdin came back byte-exact through cat"
    );
    assert!(
        seen.iter()
            .any(|p| p.to_string_lossy().contains("xv6-lab-")),
        "the run's files were seen: {seen:?}"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "the symlink's target is untouched"
    );
    let left: Vec<_> = entries(tmp.path())
        .into_iter()
        .filter(|(p, _)| *p != victim)
        .collect();
    assert!(
        left.is_empty(),
        "nothing left behind, the stale entries swept: {left:?}"
    );
}

#[test]
fn a_signal_stops_a_lab_run_cleanly_with_128_plus_n() {
    if !lab_engine() {
        return;
    }
    for (start, sig, status, name) in [
        (Start::Cold, libc::SIGINT, 130, "SIGINT"),
        (Start::Cold, libc::SIGTERM, 143, "SIGTERM"),
        (Start::Warm, libc::SIGINT, 130, "SIGINT"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = spawn_as(
            start,
            tmp.path(),
            &["run", "--quiet", "--append", "selftest=spin", "hello"],
        );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"some input")
            .unwrap();
        if start == Start::Cold {
            wait_for_lab_dir(tmp.path());
            std::thread::sleep(Duration::from_millis(300));
        } else {
            std::thread::sleep(Duration::from_millis(1500));
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let st = wait_bounded(&mut child, Duration::from_secs(30));
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let name = format!("{name} ({start:?})");
        assert_eq!(st.code(), Some(status), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "interrupted ({})",
                name.split(' ').next().unwrap()
            )),
            "{name}: {err}"
        );
        assert!(
            !err.contains("error"),
            "{name}: no error reported for a signal: {err}"
        );
        assert!(
            entries(tmp.path()).is_empty(),
            "{name}: {:?}",
            entries(tmp.path())
        );
    }
}

#[test]
fn files_of_a_killed_run_are_swept_by_the_next() {
    if !lab_engine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_in(
        tmp.path(),
        &["run", "--quiet", "--append", "selftest=spin", "hello"],
    );
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    wait_for_lab_dir(tmp.path());
    child.kill().unwrap(); // SIGKILL: no cleanup possible
    child.wait().unwrap();
    assert!(
        !entries(tmp.path()).is_empty(),
        "a SIGKILLed run leaves its files"
    );
    let mut next = spawn_in(tmp.path(), &["run", "--quiet", "hello"]);
    drop(next.stdin.take());
    let st = wait_bounded(&mut next, Duration::from_secs(120));
    assert_eq!(st.code(), Some(0));
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

/// A warm run creates nothing in the temporary directory, and the snapshot it restores is
/// private: its directory 0700, its files 0600.
#[test]
fn a_warm_run_leaves_no_files_and_its_snapshot_is_private() {
    if !lab_engine() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_as(Start::Warm, tmp.path(), &["run", "--quiet", "hello"]);
    drop(child.stdin.take());
    let st = wait_bounded(&mut child, Duration::from_secs(300));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        st.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    let status = Command::new(VMM).args(["lab", "status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let dir = status
        .lines()
        .find_map(|l| l.strip_prefix("warm snapshot: ready in "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no warm snapshot after a warm run: {status}"));
    let entries = entries(Path::new(dir).parent().unwrap());
    let mine: Vec<_> = entries.iter().filter(|(p, _)| p.starts_with(dir)).collect();
    assert!(mine.len() >= 4, "{mine:?}");
    for (p, mode) in mine {
        let want = if p == Path::new(dir) { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is mode {mode:o}", p.display());
    }
}
