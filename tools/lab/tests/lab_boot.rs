//! Boots the real lab and runs `examples/kvm_probe` inside it: KVM works, stdout and stderr stay
//! separate and byte-exact, arguments/env/files arrive verbatim, the exit status comes back.
//!
//! Skipped (with a message) when the lab cannot be made ready, unless CI=true, where that fails.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/kvm_probe`, built by `cargo test` alongside this test.
fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join("kvm_probe")
}

fn lab_ready() -> bool {
    let why = match (lab::assets::find_qemu(), lab::ensure_assets()) {
        (Ok(_), Ok(_)) => return true,
        (Err(e), _) | (_, Err(e)) => e.to_string(),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("lab not ready on CI: {why}");
    }
    eprintln!("SKIP: lab not ready: {why}");
    false
}

#[test]
fn probe_runs_on_real_kvm() {
    let _ = env_logger::builder().is_test(true).try_init();
    if !lab_ready() {
        return;
    }
    let probe = probe_binary();
    assert!(
        probe.is_file(),
        "{} missing: run `cargo test -p lab` (it builds the examples)",
        probe.display()
    );
    let dir = std::env::temp_dir().join(format!("lab-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payload.txt");
    std::fs::write(&file, b"payload 123").unwrap();
    let nasty = OsString::from_vec(b"it's \"q\" $HOME `x` \\ *\nnext\xff".to_vec());
    let req = lab::LabRequest {
        program: probe,
        args: vec!["7".into(), "plain".into(), nasty.clone(), "".into()],
        files: vec![(file, "/lab/files/payload.txt".into())],
        env: vec![
            ("LAB_PROBE_VAR".into(), "v a'l".into()),
            ("LAB_PROBE_FILE".into(), "/lab/files/payload.txt".into()),
        ],
        stdin: None,
        result_file: None,
        guest_mem_mib: 64,
        timeout: Duration::from_secs(120),
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let t = Instant::now();
    let outcome = lab::run_with(&req, &mut out, &mut err).unwrap();
    eprintln!("lab run took {:.2}s", t.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&dir).unwrap();
    let out_text = String::from_utf8_lossy(&out);
    eprintln!(
        "stdout: {out_text:?}\nstderr: {:?}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(outcome, lab::LabOutcome::Exited(7));
    assert!(out_text.starts_with("probe: KVM_GET_API_VERSION=12\nprobe: KVM_CREATE_VM ok\n"));
    let mut want_args = b"arg[2]=plain\narg[3]=".to_vec();
    want_args.extend_from_slice(nasty.as_encoded_bytes());
    want_args.extend_from_slice(b"\narg[4]=\n");
    assert!(
        out.windows(want_args.len()).any(|w| w == want_args),
        "arguments must arrive verbatim"
    );
    assert!(out_text.contains("var=v a'l\n"));
    assert!(out_text.contains("file=payload 123\n"));
    assert!(
        out.ends_with(b"raw:a\nb\r\nc\x00\xff\n"),
        "stdout must be byte-exact"
    );
    assert_eq!(err, b"probe: this goes to stderr\n");
}

#[test]
fn timeout_kills_the_lab() {
    if !lab_ready() {
        return;
    }
    let req = lab::LabRequest {
        program: PathBuf::from("/bin/sleep"),
        args: vec!["600".into()],
        files: vec![],
        env: vec![],
        stdin: None,
        result_file: None,
        guest_mem_mib: 0,
        timeout: Duration::from_secs(8),
    };
    let t = Instant::now();
    let outcome = lab::run_with(&req, &mut Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(outcome, lab::LabOutcome::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn missing_svm_is_a_clear_error() {
    if !lab_ready() {
        return;
    }
    let req = lab::LabRequest {
        program: PathBuf::from("/bin/true"),
        args: vec![],
        files: vec![],
        env: vec![],
        stdin: None,
        result_file: None,
        guest_mem_mib: 0,
        timeout: Duration::from_secs(60),
    };
    let opts = lab::LabOptions {
        cpu: "qemu64,-svm".into(),
        ..Default::default()
    };
    let err = lab::run_with_options(&req, &opts, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, lab::LabError::KvmUnavailable { .. }), "{msg}");
    assert!(
        msg.starts_with("kvm_amd did not load inside the lab: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}
