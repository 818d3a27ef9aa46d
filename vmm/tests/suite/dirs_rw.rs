//! `vmm run --dir HOSTDIR:GUESTDIR:rw`: what the guest creates, changes and removes under
//! GUESTDIR comes back into HOSTDIR when it exits with its own status — and nothing comes
//! back from a run that fails, through a link planted in HOSTDIR, under a name the host does
//! not take, or over a file changed on the host during the run.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{boot, build_c_program, stderr, stdout};

/// A fresh directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tree under `root`: each path with `=contents mode`, `/` for a directory, `@target`
/// for a link.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o777;
            let what = if meta.is_dir() {
                todo.push(p.clone());
                format!("/ {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("@{}", std::fs::read_link(&p).unwrap().display())
            } else {
                format!(
                    "={} {mode:o}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    out
}

/// HOSTDIR: a (0640), b, sub/c, sub/empty/, gone/x.
fn tree(name: &str) -> PathBuf {
    let d = scratch(name);
    let h = d.join("host");
    std::fs::create_dir_all(h.join("sub/empty")).unwrap();
    std::fs::create_dir_all(h.join("gone")).unwrap();
    std::fs::write(h.join("a"), "host a\n").unwrap();
    std::fs::set_permissions(h.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(h.join("b"), "host b\n").unwrap();
    std::fs::write(h.join("sub/c"), "host c\n").unwrap();
    std::fs::write(h.join("gone/x"), "x\n").unwrap();
    h
}

fn rw(host: &Path) -> String {
    format!("{}:/data:rw", host.display())
}

/// The program's steps that create, change and remove.
const CHANGES: &[&str] = &[
    "w",
    "/data/a",
    "changed in the guest\n",
    "w",
    "/data/new",
    "made in the guest\n",
    "u",
    "/data/b",
    "m",
    "/data/nd",
    "w",
    "/data/nd/f",
    "in a new directory\n",
    "u",
    "/data/gone/x",
    "u",
    "/data/gone",
];

/// `vmm run` under `sh -c 'umask MASK; exec vmm run ARGS'`.
fn run_with_umask(mask: &str, args: &[&str]) -> Option<std::process::Output> {
    common::engine()?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask}; exec \"$@\""))
        .arg("sh")
        .arg(common::VMM)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Some(out)
}

#[test]
fn what_the_guest_made_changed_and_removed_comes_back() {
    let host = tree("rw-back");
    let ro = tree("rw-ro-beside");
    let ro_before = snapshot(&ro);
    let prog = build_c_program("dirsrw", false);
    let json = host.parent().unwrap().join("stats.json");
    let mut args = vec![
        "--quiet".to_string(),
        "--stats".into(),
        "--stats-json".into(),
        json.display().to_string(),
        "--dir".into(),
        rw(&host),
        "--dir".into(),
        format!("{}:/ro", ro.display()),
        prog.display().to_string(),
    ];
    args.extend(CHANGES.iter().map(|s| s.to_string()));
    // A read-only tree beside it changes in the guest and stays as it was on the host.
    args.extend(["w", "/ro/a", "not going back"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(out) = run_with_umask("022", &args) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out), "dirsrw: done\n");
    let want: BTreeMap<String, String> = [
        // Changed: the bytes, the mode kept.
        ("a", "=changed in the guest\n 640"),
        // Created: 0666 and 0777 less the umask.
        ("new", "=made in the guest\n 644"),
        ("nd", "/ 755"),
        ("nd/f", "=in a new directory\n 644"),
        // Untouched.
        ("sub", "/ 755"),
        ("sub/c", "=host c\n 644"),
        ("sub/empty", "/ 755"),
        // b and gone/ (with gone/x) are removed.
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(snapshot(&host), want, "{err}");
    assert_eq!(snapshot(&ro), ro_before);
    // --stats: in (both trees), out.
    assert!(
        err.contains(
            "vmm: dir: in 8 files, 46 bytes, 8 directories; out 3 files, 58 bytes, 1 \
             directories made, 3 removed"
        ),
        "{err}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["dir"]["in"]["files"], 8, "{v}");
    assert_eq!(v["dir"]["out"]["files"], 3, "{v}");
    assert_eq!(v["dir"]["out"]["bytes"], 58, "{v}");
    assert_eq!(v["dir"]["out"]["removed"], 3, "{v}");
    // No temporary file is left.
    assert!(
        !snapshot(&host).keys().any(|k| k.contains(".vmm-")),
        "{:?}",
        snapshot(&host)
    );
}

/// A large file comes back whole (in the AMD lab, on the lab's collect port).
#[test]
fn a_large_file_comes_back_byte_for_byte() {
    let host = scratch("rw-large").join("host");
    std::fs::create_dir(&host).unwrap();
    let prog = build_c_program("dirsrw", false);
    let spec = rw(&host);
    let Some(out) = boot(&[
        "--quiet",
        "--dir",
        &spec,
        prog.to_str().unwrap(),
        "b",
        "/data/big",
        "3000",
    ]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = std::fs::read(host.join("big")).unwrap();
    let want: Vec<u8> = (0..3000 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    assert!(
        got == want,
        "{} bytes back, {} written",
        got.len(),
        want.len()
    );
}

#[test]
fn new_files_follow_the_umask_and_a_nonzero_status_still_writes_back() {
    let host = tree("rw-umask");
    let prog = build_c_program("dirsrw", false);
    let spec = rw(&host);
    let Some(out) = run_with_umask(
        "077",
        &[
            "--quiet",
            "--dir",
            &spec,
            prog.to_str().unwrap(),
            "m",
            "/data/p",
            "w",
            "/data/p/f",
            "private",
            "s",
            "3",
        ],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s = snapshot(&host);
    assert_eq!(s["p"], "/ 700");
    assert_eq!(s["p/f"], "=private 600");
}

/// Runs `prog ARGS` with `--dir HOST:/data:rw` and checks nothing reached HOSTDIR.
fn nothing_comes_back(name: &str, extra: &[&str], steps: &[&str], status: i32, line: &str) {
    let host = tree(name);
    let before = snapshot(&host);
    let prog = build_c_program("dirsrw", false);
    let spec = rw(&host);
    let mut args = vec!["--quiet"];
    args.extend_from_slice(extra);
    args.extend(["--dir", &spec, prog.to_str().unwrap()]);
    args.extend_from_slice(steps);
    let Some(out) = boot(&args) else { return };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(status), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(line)).collect();
    assert_eq!(lines.len(), 1, "one line with {line:?}: {err}");
    assert_eq!(snapshot(&host), before, "{err}");
}

#[test]
fn a_run_that_times_out_writes_nothing() {
    let mut steps = CHANGES.to_vec();
    steps.push("spin");
    nothing_comes_back(
        "rw-timeout",
        &["--timeout", "2"],
        &steps,
        124,
        "nothing written back",
    );
}

#[test]
fn a_link_planted_in_hostdir_is_not_followed() {
    // The import skipped the link, so the guest made a directory of that name: writing it
    // back would go through the link. Refused, with everything else.
    let d = scratch("rw-link-outside");
    let host = tree("rw-link");
    std::os::unix::fs::symlink(&d, host.join("l")).unwrap();
    let before = snapshot(&host);
    let prog = build_c_program("dirsrw", false);
    let spec = rw(&host);
    let mut args = vec!["--quiet", "--dir", &spec, prog.to_str().unwrap()];
    args.extend_from_slice(CHANGES);
    args.extend(["m", "/data/l", "w", "/data/l/f", "escaped"]);
    let Some(out) = boot(&args) else { return };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    let refusal: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vmm: error:"))
        .collect();
    assert_eq!(refusal.len(), 1, "{err}");
    assert!(
        refusal[0].contains("write-back refused") && refusal[0].contains("/l exists on the host"),
        "{err}"
    );
    assert_eq!(snapshot(&host), before);
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing outside");
}

#[test]
fn a_name_the_host_does_not_take_is_refused() {
    let mut steps = CHANGES.to_vec();
    steps.extend(["w", "/data/bad\u{1}name", "x"]);
    nothing_comes_back(
        "rw-badname",
        &[],
        &steps,
        125,
        "has a control character the host does not take",
    );
}

/// `vmm run --dir HOST:/data:rw dirsrw CHANGES… wait`, started with piped streams: the
/// guest makes its changes, then waits for a line on stdin.
fn spawn_waiting(host: &std::path::Path) -> std::process::Child {
    let prog = build_c_program("dirsrw", false);
    let mut args = vec![
        "run".to_string(),
        "--quiet".into(),
        "--dir".into(),
        rw(host),
        prog.display().to_string(),
    ];
    args.extend(CHANGES.iter().map(|s| s.to_string()));
    args.push("wait".into());
    Command::new(common::VMM)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_file_changed_on_the_host_during_the_run_is_not_overwritten() {
    if common::engine().is_none() {
        return;
    }
    let host = tree("rw-raced");
    let mut child = spawn_waiting(&host);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "dirsrw: waiting\n");
    // The guest has made its changes; the host edits a file the guest changed too.
    std::fs::write(host.join("a"), "edited on the host\n").unwrap();
    let before = snapshot(&host);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let done = child.wait_with_output().unwrap();
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(125), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("vmm: error:") && l.contains("/a changed on the host")),
        "{err}"
    );
    assert_eq!(snapshot(&host), before, "{err}");
}

/// Ctrl-C while the guest runs: 130, nothing written back, no temporary file or directory
/// of the run left in the temporary directory.
#[test]
fn an_interrupted_run_writes_nothing_and_leaves_no_temporary_files() {
    if common::engine().is_none() {
        return;
    }
    let host = tree("rw-int");
    let before = snapshot(&host);
    let mut child = spawn_waiting(&host);
    let pid = child.id();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "dirsrw: waiting\n");
    let temps = || -> Vec<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("xv6-lab-{pid}-")))
            .collect()
    };
    if common::engine() == Some("lab") {
        assert!(
            temps().iter().any(|n| n.contains("-collect-")),
            "{:?}",
            temps()
        );
    }
    // SAFETY: kill on our own child's pid; no memory involved.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let stdin = child.stdin.take();
    let done = child.wait_with_output().unwrap();
    drop(stdin);
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert_eq!(snapshot(&host), before, "{err}");
    assert!(temps().is_empty(), "{:?}", temps());
}
