//! Bad input: each gets one clear line on stderr and a documented exit status, without a VM
//! being spent on it where none is needed.

use crate::common;

use common::{stderr, vmm};

fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vmm: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line:\n{err}");
    lines[0]
}

#[test]
fn mem_the_kernel_cannot_use_is_refused() {
    for (mem, says) in [
        ("3G", "at most 2016M"),
        ("32M", "at least 64M"),
        ("100000", "multiple of 4 MiB"),
        ("lots", "bad --mem"),
    ] {
        let out = vmm(&["run", "--mem", mem]);
        assert_eq!(out.status.code(), Some(2), "--mem {mem}: a usage error");
        let err = stderr(&out);
        assert!(
            err.contains(says) && err.contains("--mem"),
            "--mem {mem}: {err}"
        );
    }
}

#[test]
fn missing_kernel_file() {
    let out = vmm(&["run", "--kernel", "/no/such/kernel.elf"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(one_error_line(&stderr(&out)).contains("no such kernel /no/such/kernel.elf"));
}

#[test]
fn garbage_kernel_file() {
    let dir = std::env::temp_dir().join(format!("vmm-bad-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.elf");
    std::fs::write(&garbage, b"\x7fELF but not really an ELF file at all").unwrap();
    let not_elf = dir.join("README");
    std::fs::write(&not_elf, "just text\n").unwrap();
    for f in [&garbage, &not_elf] {
        let out = vmm(&["run", "--kernel", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(125), "{}", f.display());
        assert!(
            one_error_line(&stderr(&out)).contains("invalid kernel"),
            "{}",
            stderr(&out)
        );
    }
    // A real ELF that is not an i386 PVH kernel: this very test binary (ELF64).
    let me = std::env::current_exe().unwrap();
    let out = vmm(&["run", "--kernel", me.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        one_error_line(&stderr(&out)).contains("ELF64"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn engine_kvm_without_legacy_paging_names_the_lab() {
    let check = common::stdout(&vmm(&["check"]));
    if check.contains("engine auto: kvm") {
        eprintln!("this host's KVM runs 32-bit paging: nothing to refuse here");
        return;
    }
    let out = vmm(&["run", "--engine", "kvm"]);
    assert_eq!(out.status.code(), Some(125));
    let line = one_error_line(&stderr(&out)).to_string();
    assert!(
        line.contains("legacy") && line.contains("--engine lab"),
        "{line}"
    );
}

#[test]
fn bad_engine_name_is_a_usage_error() {
    let out = vmm(&["run", "--engine", "warp"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_refuses_nonsense_sizes() {
    for args in [
        ["--pages", "0"],
        ["--runs", "0"],
        ["--mem", "3G"],
        ["--pages", "x"],
    ] {
        let mut all = vec!["bench", "pagefault"];
        all.extend_from_slice(&args);
        let out = vmm(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// What could only fail after the whole bench is refused before any boot (so at once).
#[test]
fn bench_checks_its_outputs_and_size_before_it_starts() {
    let t = std::time::Instant::now();
    for (args, says) in [
        (vec!["--pages", "1000000000"], "does not fit in --mem 256M"),
        (
            vec!["--json", "/nonexistent/x.json"],
            "cannot write /nonexistent/x.json",
        ),
        (
            vec!["--svg", "/nonexistent/x.svg"],
            "cannot write /nonexistent/x.svg",
        ),
    ] {
        let mut all = vec!["bench", "pagefault"];
        all.extend_from_slice(&args);
        let out = vmm(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            one_error_line(&stderr(&out)).contains(says),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(t.elapsed().as_secs() < 20, "no VM was booted for these");
}

#[test]
fn option_typos_are_caught_not_taken_for_a_program() {
    let out = vmm(&["run", "--lazzy", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("'--lazzy'") && err.contains("--lazy"), "{err}");
}

#[test]
fn timeouts_beyond_a_week_are_refused_not_wrapped() {
    for t in ["18446744073709551497", "604801", "1e3"] {
        let out = vmm(&["run", "--timeout", t, "hello"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--timeout {t}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
    }
}

#[test]
fn run_help_lists_the_builtin_programs() {
    let out = vmm(&["run", "--help"]);
    assert!(out.status.success());
    let help = common::stdout(&out);
    let line = help
        .lines()
        .find(|l| l.starts_with("Built-in programs: "))
        .unwrap_or_else(|| panic!("{help}"));
    for p in ["hello", "echo", "cat", "usertests", "tour"] {
        assert!(line.contains(p), "{line}");
    }
}

/// PROGRAM must be a regular file of bounded size: a device, FIFO, directory or huge file is
/// refused at once with 126 (never read forever or blocked on).
#[test]
fn program_files_that_are_not_regular_or_too_large_are_126() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let d = dir.path().join("adir");
    std::fs::create_dir(&d).unwrap();
    let t = std::time::Instant::now();
    for (path, says) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (d.display().to_string(), "a directory"),
        (huge.display().to_string(), "larger than 16 MiB"),
    ] {
        let out = vmm(&["run", &path]);
        assert_eq!(out.status.code(), Some(126), "{path}: {}", stderr(&out));
        assert!(
            one_error_line(&stderr(&out)).contains(says),
            "{path}: {}",
            stderr(&out)
        );
    }
    let out = vmm(&["run", "--kernel", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(one_error_line(&stderr(&out)).contains("not a regular file"));
    assert!(
        t.elapsed().as_secs() < 20,
        "nothing blocked or read without bound"
    );
}

#[test]
fn too_many_or_too_long_arguments_are_126_not_a_missing_program() {
    let many: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    let mut args = vec!["run", "echo"];
    args.extend(many.iter().map(String::as_str));
    let out = vmm(&args);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(one_error_line(&stderr(&out)).contains("argument list too long"));
    let long = "x".repeat(4000);
    let out = vmm(&["run", "echo", &long]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(one_error_line(&stderr(&out)).contains("argument list too long"));
}

#[test]
fn a_path_that_is_not_utf8_is_looked_up_not_refused_by_the_parser() {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::OsStr::from_bytes(b"/no/such/\xff\xfe");
    let out = std::process::Command::new(common::VMM)
        .arg("run")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    one_error_line(&stderr(&out));
}
