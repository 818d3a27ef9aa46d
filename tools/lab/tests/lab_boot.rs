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
    let why = match (lab::qemu::find_qemu(), lab::ensure_assets()) {
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
        guest_mem_mib: 64,
        timeout: Duration::from_secs(120),
        ..Default::default()
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

/// The program's own bound is kept on the host's clock from the moment it starts, whatever
/// happens inside the lab (here: a program that outlives it by far).
#[test]
fn a_program_is_stopped_at_its_run_timeout() {
    if !lab_ready() {
        return;
    }
    let req = lab::LabRequest {
        program: PathBuf::from("/bin/sleep"),
        args: vec!["600".into()],
        guest_mem_mib: 0,
        timeout: Duration::from_secs(600),
        run_timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let t = Instant::now();
    let outcome = lab::run_with(&req, &mut Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(outcome, lab::LabOutcome::TimedOut);
    // A warm start (or a cold one after a failed build) plus the 2 s: far below 600 s.
    assert!(t.elapsed() < Duration::from_secs(90), "{:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_secs(2));
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
        guest_mem_mib: 0,
        timeout: Duration::from_secs(8),
        ..Default::default()
    };
    // Booted cold: a warm start would first build a snapshot for /bin/sleep when none is
    // there yet (9.4 s seen), and that build is not what this bound is about.
    let opts = lab::LabOptions {
        start: lab::Start::Cold,
        ..Default::default()
    };
    let t = Instant::now();
    let outcome = lab::run_with_options(&req, &opts, &mut Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(outcome, lab::LabOutcome::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
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
        guest_mem_mib: 0,
        timeout: Duration::from_secs(60),
        ..Default::default()
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

/// `LabRequest::tcp_ports`: a program inside the lab echoes 256 bytes (every value) from its
/// port back to the TCP client that sent them on the host.
#[test]
fn a_tcp_port_carries_bytes_both_ways() {
    use std::io::{Read, Write};
    let _ = env_logger::builder().is_test(true).try_init();
    if !lab_ready() {
        return;
    }
    // A free port (the listener is dropped before QEMU binds it).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let script = r#"
p=/dev/virtio-ports/test.echo
d=$(readlink $p)
n=0
until grep -q '^host_connected: 1' /sys/kernel/debug/virtio-ports/${d##*/}; do
  n=$((n + 1)); [ $n -gt 1200 ] && exit 3; sleep 0.05
done
exec 3<>$p
head -c 256 <&3 >&3
"#;
    let req = lab::LabRequest {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), script.into()],
        tcp_ports: vec![("test.echo".into(), addr)],
        timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let sent: Vec<u8> = (0..=255u8).collect();
    let client = std::thread::spawn(move || {
        let start = Instant::now();
        let mut conn = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(c) => break c,
                Err(_) if start.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("QEMU never listened on {addr}: {e}"),
            }
        };
        conn.set_read_timeout(Some(Duration::from_secs(90)))
            .unwrap();
        conn.write_all(&(0..=255u8).collect::<Vec<_>>()).unwrap();
        let mut back = vec![0u8; 256];
        conn.read_exact(&mut back).map(|()| back)
    });
    let mut err = Vec::new();
    let outcome = lab::run_with(&req, &mut Vec::new(), &mut err).unwrap();
    let back = client.join().unwrap();
    assert_eq!(
        outcome,
        lab::LabOutcome::Exited(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(back.unwrap(), sent, "the bytes must come back unchanged");
}

/// 5 MB through the host's `cat` inside the lab: stdin streamed in from a file (its end is
/// the program's end of input), stdout back byte-exact, stderr separate.
#[test]
fn five_megabytes_through_cat_in_the_lab_are_byte_exact() {
    let _ = env_logger::builder().is_test(true).try_init();
    if !lab_ready() {
        return;
    }
    let mut x: u32 = 0x9E37_79B9;
    let input: Vec<u8> = (0..5_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &input).unwrap();
    let req = lab::LabRequest {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "cat; echo done >&2".into()],
        stdin: lab::LabStdin::File(file.path().to_path_buf()),
        timeout: Duration::from_secs(180),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let outcome = lab::run_with(&req, &mut out, &mut err).unwrap();
    eprintln!("5 MB through the lab in {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(outcome, lab::LabOutcome::Exited(0));
    assert_eq!(err, b"done\n");
    assert!(
        out == input,
        "{} of {} bytes came back (or other bytes)",
        out.len(),
        input.len()
    );
}
