//! Bad input: each gets one clear line on stderr and a documented exit status, without a VM
//! being spent on it where none is needed.

mod common;

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
        assert_eq!(out.status.code(), Some(125), "--mem {mem}");
        let line = one_error_line(&stderr(&out)).to_string();
        assert!(line.contains(says), "--mem {mem}: {line}");
    }
}

#[test]
fn missing_kernel_file() {
    let out = vmm(&["run", "--kernel", "/no/such/kernel.elf"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(one_error_line(&stderr(&out)).contains("cannot read kernel /no/such/kernel.elf"));
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
    for args in [["--pages", "0"], ["--runs", "0"], ["--mem", "3G"]] {
        let mut all = vec!["bench", "pagefault"];
        all.extend_from_slice(&args);
        let out = vmm(&all);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        one_error_line(&stderr(&out));
    }
}
