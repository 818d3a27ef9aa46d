//! The Intel lab (`--engine lab-intel`: kvm_intel under Bochs's VMX): a short suite, once per
//! test run, in three Bochs boots (a boot costs ~11 s): one `vmm run` as a user runs it, with
//! binary stdin through the program and back, a `--dir …:rw` write-back (its export comes back
//! in the result lines: the Intel lab has no virtio-serial) and `--stats-json` (which KVM ran
//! it); one in which a shell runs the inner `vmm` on kvm_intel — hello (also at `--cpus 2`),
//! usertests eager and with `--cow --lazy`, and xv6-public's own usertests when `XV6_PUBLIC_DIR` names their
//! binaries (`tools/dev test --conformance DIR` sets it); and a Ctrl-C during a boot.
//!
//! Without Bochs the tests say why and pass, except under CI=true, where they fail.

use crate::common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Whether the Intel lab can run here; None (with the reason printed) if not. Under CI=true,
/// a missing Intel lab is a test failure.
/// One Bochs at a time: its UART has no flow control, and a second Bochs on our 2 cores
/// slows the lab enough that it overflows the 16-byte FIFO while stdin streams in (seen
/// once in CI: the run then fails loudly, 125, but fails).
static ONE_BOCHS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_bochs() -> std::sync::MutexGuard<'static, ()> {
    ONE_BOCHS.lock().unwrap_or_else(|e| e.into_inner())
}

fn intel_lab() -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let status = common::stdout(&common::vmm(&["lab", "status"]));
        match status.lines().find(|l| l.starts_with("lab-intel: ")) {
            Some("lab-intel: ready") => Ok(()),
            Some(line) => Err(format!("{line} (tools/dev setup installs it)")),
            None => Err(format!(
                "vmm lab status says nothing of lab-intel: {status}"
            )),
        }
    });
    match ready {
        Ok(()) => Some(()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the Intel lab cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (no Intel lab): {why}");
            None
        }
    }
}

/// The inner runs of the usertests boot: (name, `vmm run` arguments after `--engine kvm`).
const USERTESTS: &[(&str, &str)] = &[
    ("hello", "hello"),
    // Two vCPUs on kvm_intel: the kernel's INIT/SIPI and VMX's wait-for-SIPI state.
    ("hello --cpus 2", "--cpus 2 hello"),
    ("usertests", "usertests"),
    ("usertests --cow --lazy", "--cow --lazy usertests"),
];

/// Where xv6-public's binaries go in the lab, and the ones its usertests needs.
const XV6_IN_LAB: &str = "/lab/files/xv6";
const XV6_PROGRAMS: [&str; 3] = ["init", "echo", "usertests"];
/// The run of xv6-public's usertests (as tools/conformance runs it), from [`XV6_IN_LAB`].
const XV6_USERTESTS: (&str, &str) = (
    "xv6-public usertests",
    "--add init --add echo --add usertests usertests",
);

/// xv6-public's binaries, from `XV6_PUBLIC_DIR`: (host path, lab path) of each, or None
/// (said) when it is not set.
fn xv6_public_files() -> Option<Vec<(std::path::PathBuf, String)>> {
    let Some(dir) = std::env::var_os("XV6_PUBLIC_DIR").filter(|d| !d.is_empty()) else {
        eprintln!(
            "xv6-public's usertests left out of the Intel suite: XV6_PUBLIC_DIR is not set \
             (tools/dev test --conformance DIR sets it)"
        );
        return None;
    };
    let dir = std::path::PathBuf::from(dir);
    Some(
        XV6_PROGRAMS
            .iter()
            .map(|p| {
                let host = dir.join(p);
                assert!(host.is_file(), "XV6_PUBLIC_DIR: no {}", host.display());
                (host, format!("{XV6_IN_LAB}/{p}"))
            })
            .collect(),
    )
}

#[test]
fn hello_and_usertests_pass_on_kvm_intel_eager_and_with_cow_and_lazy() {
    if intel_lab().is_none() {
        return;
    }
    let _one = one_bochs();
    let xv6 = xv6_public_files();
    let mut runs = USERTESTS.to_vec();
    if xv6.is_some() {
        runs.push(XV6_USERTESTS);
    }
    let mut script = format!("set -u\ncd {XV6_IN_LAB} 2>/dev/null || cd /\n");
    for (name, args) in &runs {
        script.push_str(&format!(
            "echo '=== {name}'\n/lab/files/vmm run --engine kvm --quiet --timeout 600 {args} </dev/null\n\
             echo \"=== {name} exit $?\"\n"
        ));
    }
    // The lab ships the program's (sh's) libraries; vmm's own go beside it.
    let mut files = vec![(common::VMM.into(), "/lab/files/vmm".to_string())];
    files.extend(xv6.into_iter().flatten());
    let deps = lab::elf::program_deps(std::path::Path::new(common::VMM)).unwrap();
    for (soname, host) in deps.libraries {
        files.push((host, format!("/lab/files/lib/{soname}")));
    }
    let req = lab::LabRequest {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        files,
        env: vec![
            (lab::IN_LAB_ENV.into(), "1".into()),
            ("XV6_VMM_ENGINE".into(), "lab-intel".into()),
            ("LD_LIBRARY_PATH".into(), "/lab/lib:/lab/files/lib".into()),
        ],
        guest_mem_mib: 256,
        timeout: Duration::from_secs(1500),
        vendor: lab::Vendor::Intel,
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = lab::run_with(&req, &mut out, &mut err);
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert!(
        matches!(outcome, Ok(lab::LabOutcome::Exited(0))),
        "{outcome:?}\n{out}\n{err}"
    );
    for (name, _) in &runs {
        let section = out
            .split(&format!("=== {name}\n"))
            .nth(1)
            .and_then(|rest| rest.split(&format!("=== {name} exit ")).next())
            .unwrap_or_else(|| panic!("no output of {name}:\n{out}\n{err}"));
        let passed = match *name {
            "hello" | "hello --cpus 2" => section == "hello, world\n",
            _ => section.contains("ALL TESTS PASSED"),
        };
        assert!(passed, "{name}:\n{section}\n{err}");
        assert!(
            out.contains(&format!("=== {name} exit 0\n")),
            "{name} failed:\n{out}\n{err}"
        );
    }
}

/// Through `vmm run` as a user runs it, in one Bochs boot: stdin (in frames over the control
/// UART) and stdout (its own UART) are 8-bit clean and complete — every byte value, CR and LF
/// among them, goes through the program and back —, a `--dir …:rw` write-back comes out of the
/// lab (in its result lines: Bochs has no virtio-serial), and `--stats-json` says which KVM
/// ran the guest.
#[test]
fn stdin_stdout_write_back_and_stats_come_through_the_intel_lab() {
    if intel_lab().is_none() {
        return;
    }
    let _one = one_bochs();
    let mut x: u32 = 12345;
    let data: Vec<u8> = (0..2000)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if i < 256 {
                i as u8
            } else {
                (x >> 16) as u8
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("h");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("a"), "host a\n").unwrap();
    std::fs::write(host.join("b"), "host b\n").unwrap();
    let prog = common::build_c_program("dirsrw", false);
    let spec = format!("{}:/data:rw", host.display());
    let stats = dir.path().join("stats.json");
    let steps = [
        "cat",
        "w",
        "/data/a",
        "changed\n",
        "u",
        "/data/b",
        "b",
        "/data/k",
        "64",
    ];
    let mut args = vec!["run", "--engine", "lab-intel", "--quiet", "--dir", &spec];
    args.extend([
        "--stats-json",
        stats.to_str().unwrap(),
        prog.to_str().unwrap(),
    ]);
    args.extend(steps);
    let out = common::vmm_with_stdin(&args, &data);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let mut want = data.clone();
    want.extend_from_slice(b"dirsrw: done\n");
    assert!(
        out.stdout == want,
        "the program returned {} of {} bytes (or other bytes): {}",
        out.stdout.len(),
        want.len(),
        common::stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(host.join("a")).unwrap(),
        "changed\n"
    );
    assert!(!host.join("b").exists());
    let k = std::fs::read(host.join("k")).unwrap();
    assert_eq!(k.len(), 64 * 1024);
    assert!(k
        .iter()
        .enumerate()
        .all(|(i, &c)| c == b'a' + (i % 26) as u8));
    let text = std::fs::read_to_string(&stats).expect("the stats came back from the lab");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["kvm_module"], "kvm_intel", "{text}");
    assert_eq!(v["engine"], "lab-intel", "{text}");
    assert!(v["vm_exits_total"].as_u64().unwrap() > 0, "{text}");
}

#[test]
fn a_missing_bochs_is_one_line_naming_the_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::VMM)
        .args(["run", "--engine", "lab-intel", "hello"])
        .env("XV6_LAB_BOCHS", "/nonexistent/bochs-bin")
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("install the apt packages bochs"), "{err}");
    assert!(err.contains("--engine lab-amd"), "{err}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Processes whose working directory is under `dir` (Bochs runs in its run's directory).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                found.push(format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    cwd.display()
                ));
            }
        }
    }
    found
}

/// Ctrl-C while Bochs boots: exit status 130, one line, Bochs gone, nothing left in $TMPDIR.
#[test]
fn an_interrupted_intel_run_stops_bochs_and_leaves_nothing() {
    if intel_lab().is_none() {
        return;
    }
    let _one = one_bochs();
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(common::VMM)
        .args(["run", "--engine", "lab-intel", "hello"])
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until Bochs runs in the run's directory.
    let start = std::time::Instant::now();
    while processes_in(tmp.path()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Bochs never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill with a pid we spawned and still own (not yet reaped).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(err.trim(), "vmm: interrupted (SIGINT); the run was stopped");
    assert!(
        processes_in(tmp.path()).is_empty(),
        "Bochs outlived the run"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
