//! Shared helpers of the integration tests: run the real `vmm` binary, and decide whether a
//! VM engine is available (never silently: under CI=true a missing engine fails the test).

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::OnceLock;

pub const VMM: &str = env!("CARGO_BIN_EXE_vmm");

/// Runs `vmm ARGS` with no stdin and returns its output.
pub fn vmm(args: &[&str]) -> Output {
    Command::new(VMM)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run vmm")
}

/// Runs `vmm ARGS` with `input` on its stdin and returns its output.
pub fn vmm_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(VMM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run vmm");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("cannot wait for vmm");
    writer
        .join()
        .expect("stdin writer")
        .expect("writing vmm's stdin");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The engine `auto` picks here ("kvm" or "lab"), if it can run; None (with the reason
/// printed) if no engine can. Under CI=true, no engine is a test failure.
pub fn engine() -> Option<&'static str> {
    static ENGINE: OnceLock<Result<&'static str, String>> = OnceLock::new();
    let found = ENGINE.get_or_init(|| {
        let check = stdout(&vmm(&["check"]));
        if check.contains("engine auto: kvm") {
            return Ok("kvm");
        }
        let lab = vmm(&["lab", "status"]);
        if lab.status.success() && stdout(&lab).contains("lab-amd: ready") {
            Ok("lab")
        } else {
            Err(format!(
                "no engine: this host's KVM cannot run 32-bit paging and the lab is not ready \
                 ({}{}); run tools/dev setup",
                stdout(&lab).trim(),
                stderr(&lab).trim()
            ))
        }
    });
    match found {
        Ok(e) => Some(e),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (no VM engine): {why}");
            None
        }
    }
}

/// Boots with `vmm run ARGS` when an engine exists.
pub fn boot(args: &[&str]) -> Option<Output> {
    engine()?;
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    Some(vmm(&all))
}

/// Lines of `text` that start with `prefix`, the prefix removed.
pub fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// Builds `tests/fixtures/c/NAME.c` with the README's recipe for C programs (the host's gcc,
/// guest-user/c's crt0.S, usys.S and user.h; xv6's `-N -Ttext 0` layout), plus `-g` when
/// `debug`, into a fresh file under the target directory; returns its path.
pub fn build_c_program(name: &str, debug: bool) -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let c = root.join("../guest-user/c");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let built = Command::new("gcc")
        .args(["-m32", "-ffreestanding", "-nostdlib", "-fno-pic"])
        .args(["-fno-stack-protector", "-static", "-O2", "-I"])
        .arg(&c)
        .args(debug.then_some("-g"))
        .arg("-Wl,-N,-e,_start,-Ttext,0,--no-warn-rwx-segments,--build-id=none")
        .arg("-o")
        .arg(&exe)
        .arg(c.join("crt0.S"))
        .arg(c.join("usys.S"))
        .arg(root.join(format!("tests/fixtures/c/{name}.c")))
        .status()
        .expect("gcc is needed for the C fixtures");
    assert!(built.success(), "gcc could not build {name}.c");
    exe
}
