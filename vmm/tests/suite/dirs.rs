//! `vmm run --dir HOSTDIR:GUESTDIR`: a host tree imported into the guest read-only — what the
//! guest sees, that nothing it does reaches the host (whatever its status, and when the run
//! is interrupted), what is skipped, and what is refused before boot.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{boot, build_c_program, stderr, stdout, vmm};

/// A fresh directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tree under `root`: every path (relative) with its contents (None for a directory,
/// the link target for a symbolic link), and each entry's modification time.
fn snapshot(root: &Path) -> BTreeMap<String, (Option<Vec<u8>>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let data = if meta.is_dir() {
                todo.push(p.clone());
                None
            } else if meta.file_type().is_symlink() {
                Some(
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                Some(std::fs::read(&p).unwrap())
            };
            out.insert(rel, (data, meta.modified().unwrap()));
        }
    }
    out
}

/// A small tree: a, b, sub/c, an empty directory, and a symbolic link out of it.
fn tree(name: &str) -> PathBuf {
    let d = scratch(name);
    std::fs::write(d.join("a"), "host a file\n").unwrap();
    std::fs::write(d.join("b"), "host b\n").unwrap();
    std::fs::create_dir_all(d.join("sub/empty")).unwrap();
    std::fs::write(d.join("sub/c"), "host sub/c\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", d.join("escape")).unwrap();
    d
}

#[test]
fn the_tree_is_in_the_guest_and_nothing_goes_back() {
    let host = tree("dir-ro");
    let before = snapshot(&host);
    let prog = build_c_program("dirs", false);
    let spec = format!("{}:/data", host.display());
    for status in ["0", "3"] {
        let Some(out) = boot(&[
            "--quiet",
            "--stats",
            "--dir",
            &spec,
            prog.to_str().unwrap(),
            "/data/sub/c",
            status,
        ]) else {
            return;
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(status.parse().unwrap()), "{err}");
        // The nested file, then /data/a changed in the guest, then a file made there.
        assert_eq!(
            stdout(&out),
            "host sub/c\nCHANGEDfile\nmade in the guest\n",
            "{err}"
        );
        // The link was skipped, with one note naming it.
        let notes: Vec<&str> = err.lines().filter(|l| l.contains("skipped")).collect();
        assert_eq!(notes.len(), 1, "{err}");
        assert!(notes[0].contains("escape: a symbolic link"), "{err}");
        // --stats: what went in (a, b, sub/c; /data, sub, sub/empty), nothing out.
        assert!(
            err.contains("vmm: dir: in 3 files, 30 bytes, 3 directories; out 0 files"),
            "{err}"
        );
        // Read-only: the host tree is as it was, contents and times.
        assert_eq!(snapshot(&host), before);
    }
}

#[test]
fn an_empty_directory_and_a_deep_guestdir_are_made() {
    let host = scratch("dir-empty");
    let Some(out) = boot(&[
        "--quiet",
        "--dir",
        &format!("{}:/x/y/z", host.display()),
        "cat",
        "/x/y/z",
    ]) else {
        return;
    };
    // cat of a directory prints its entries (. and ..) and succeeds: it exists.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A file where the tree puts nothing is not there.
    let Some(out) = boot(&[
        "--quiet",
        "--dir",
        &format!("{}:/x/y/z", host.display()),
        "cat",
        "/x/y/z/f",
    ]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// One refusal: the status, one line naming the option, and no boot (no kernel output).
fn refused(args: &[&str], status: i32, want: &str) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = vmm(&all);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line: {err}");
    assert!(
        lines[0].starts_with("vmm: error: --") && lines[0].contains("--dir"),
        "{err}"
    );
    assert!(lines[0].contains(want), "{args:?}: {err}");
}

#[test]
fn bad_dirs_are_refused_before_boot() {
    let d = scratch("dir-bad");
    let ok = d.join("ok");
    std::fs::create_dir(&ok).unwrap();
    let file = d.join("file");
    std::fs::write(&file, "x").unwrap();
    let ok_at = |g: &str| format!("{}:{g}", ok.display());
    // Usage errors (2): GUESTDIR not absolute, /, a clash, a write-back GUESTDIR the kernel
    // command line cannot name.
    refused(&["--dir", &ok_at("data"), "hello"], 2, "not absolute");
    refused(&["--dir", &ok_at("/"), "hello"], 2, "cannot be /");
    refused(&["--dir", &ok_at("/hello"), "hello"], 2, "already a file");
    refused(
        &["--dir", &ok_at("/a"), "--dir", &ok_at("/a/b"), "hello"],
        2,
        "overlaps",
    );
    refused(
        &["--dir", &ok_at("/a,b:rw"), "hello"],
        2,
        "comma or white space",
    );
    // Host problems (126): missing, a file, a name longer than DIRSIZ, too deep, too many.
    refused(
        &[
            "--dir",
            &format!("{}:/d", d.join("nope").display()),
            "hello",
        ],
        126,
        "existing directory",
    );
    refused(
        &["--dir", &format!("{}:/d", file.display()), "hello"],
        126,
        "not a directory",
    );
    let long = d.join("long");
    std::fs::create_dir(&long).unwrap();
    std::fs::write(long.join("fifteen-bytes-x"), "").unwrap();
    refused(
        &["--dir", &format!("{}:/d", long.display()), "hello"],
        126,
        "1 to 14",
    );
    let deep = d.join("deep");
    let mut p = deep.clone();
    for _ in 0..8 {
        p = p.join("x");
    }
    std::fs::create_dir_all(&p).unwrap();
    refused(
        &["--dir", &format!("{}:/d", deep.display()), "hello"],
        126,
        "levels deep",
    );
    let many = d.join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..128 {
        std::fs::write(many.join(format!("f{i}")), "").unwrap();
    }
    refused(
        &["--dir", &format!("{}:/d", many.display()), "hello"],
        126,
        "at most 128",
    );
    // Too much in all: three 12 MiB files pass one by one but not together.
    let big = d.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..3 {
        std::fs::File::create(big.join(format!("b{i}")))
            .unwrap()
            .set_len(12 << 20)
            .unwrap();
    }
    refused(
        &["--dir", &format!("{}:/d", big.display()), "hello"],
        126,
        "boot-module space",
    );
}

/// Ctrl-C while the guest runs: 130, the host tree untouched, and the temporary file that
/// carried the tree into the lab removed.
#[test]
fn an_interrupted_run_leaves_the_host_tree_and_no_temporary_file() {
    if common::engine().is_none() {
        return;
    }
    let host = tree("dir-int");
    let before = snapshot(&host);
    let spec = format!("{}:/data", host.display());
    // cat with no file copies stdin: the guest runs until we stop it.
    let mut child = Command::new(common::VMM)
        .args(["run", "--quiet", "--dir", &spec, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"running\n").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "running\n", "the guest echoes once it runs");
    let temps = |pid: u32| -> Vec<PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("xv6-lab-{pid}-dirs-"))
            })
            .collect()
    };
    if common::engine() == Some("lab") {
        assert_eq!(
            temps(pid).len(),
            1,
            "the tree travels into the lab as one file"
        );
    }
    // SAFETY: kill on our own child's pid; no memory involved.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "vmm did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(temps(pid).is_empty(), "{:?}", temps(pid));
    assert_eq!(snapshot(&host), before);
}
