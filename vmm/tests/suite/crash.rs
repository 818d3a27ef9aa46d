//! Crash reports, asserted field by field on real boots (the engine `auto` picks): a kernel
//! panic names its message and location in the one-line error and is followed by a
//! symbolized frame-pointer backtrace; a triple fault is followed by the registers (or, where
//! KVM reset the vCPU, a line saying so) and the last VM exits with their kernel symbols; an
//! unexpected exit (KVM's emulator giving up on an MMIO access) by the same fields.

use crate::common;
use common::*;

#[test]
fn panic_report_has_message_location_and_symbolized_backtrace() {
    let Some(out) = boot(&["--quiet", "--append", "selftest=panic"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let error = log
        .lines()
        .position(|l| {
            l.starts_with("vmm: error: the guest kernel panicked: selftest at src/kmain.rs:")
        })
        .unwrap_or_else(|| panic!("no one-line error with message and location: {log}"));
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[error + 1].starts_with("vmm: crash: backtrace"),
        "{log}"
    );
    let frames: Vec<&&str> = lines[error + 2..]
        .iter()
        .filter(|l| l.starts_with("vmm: crash:   #"))
        .collect();
    assert!(frames.len() >= 2, "{log}");
    // The panic was raised in kmain (selftest), through core's panic machinery.
    assert!(frames.iter().any(|l| l.contains(" kmain+0x")), "{log}");
    assert!(frames[0].contains("core::panicking::"), "{log}");
}

#[test]
fn double_fault_is_reported_with_the_faulting_registers_stack_and_backtrace() {
    // selftest=kstack: unbounded recursion with the IDT loaded; the #DF task gate reports it.
    let Some(out) = boot(&["--quiet", "--append", "selftest=kstack"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let error = lines
        .iter()
        .position(|l| {
            l.starts_with("vmm: error: the guest kernel panicked: double fault (#DF): eip 0x801")
        })
        .unwrap_or_else(|| panic!("no one-line double-fault error: {log}"));
    assert!(!log.contains("triple-faulted"), "{log}");
    let report = lines[error..].join("\n");
    // The recursion ran off the bottom of the kernel half: the push below KERNBASE faulted.
    for field in [
        "esp 0x7ff",
        "cr2 0x7ff",
        "cs 0x8 ss 0x10",
        "eax 0x",
        "ebp 0x8000",
        "eflags 0x",
        "stack at 0x80000000: ",
        " at src/trap.rs:",
    ] {
        assert!(report.contains(field), "no {field}: {log}");
    }
    let frames: Vec<&&str> = lines[error..]
        .iter()
        .filter(|l| l.starts_with("vmm: crash:   #"))
        .collect();
    // The faulting task's chain, not the double-fault task's own: the recursion, symbolized.
    assert_eq!(frames.len(), 16, "{log}");
    assert!(
        frames
            .iter()
            .all(|l| l.contains("xv6::selftest::recurse+0x")),
        "{log}"
    );
}

#[test]
fn triple_fault_report_has_registers_or_says_why_and_the_last_exits() {
    let Some(out) = boot(&["--quiet", "--append", "selftest=pagefault"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let error = log
        .find("vmm: error: the guest triple-faulted")
        .expect(&log);
    let rest = &log[error..];
    if rest.contains("vmm: crash: eip=") {
        // Hardware KVM on Intel keeps the state: every field is there.
        for field in [
            "esp=",
            "eflags=",
            "cr0=",
            "cr2=0x10000000",
            "cr3=",
            "cr4=",
            "efer=",
            "cs=0x0008",
            "ss=0x0010",
            "code at eip: ",
        ] {
            assert!(rest.contains(field), "no {field}: {log}");
        }
        assert!(rest.contains("(kmain+0x"), "EIP not symbolized: {log}");
    } else {
        assert!(rest.contains("reset the vCPU"), "{log}");
    }
    let exits = rest
        .find("vmm: crash: last VM exits (oldest first):")
        .expect(&log);
    let exit_lines: Vec<&str> = rest[exits..].lines().skip(1).collect();
    assert!(exit_lines.last().unwrap().contains("shutdown"), "{log}");
    // The exit before the fault: the kernel's pgdump port in kmain, right after kvmalloc.
    assert!(
        exit_lines
            .iter()
            .any(|l| l.contains("eip=0x801") && l.contains("(kmain+0x")),
        "{log}"
    );
}

#[test]
fn unexpected_exit_report_has_registers_code_and_the_last_exits() {
    // selftest=emulation: an x87 load from the MMIO hole, which KVM cannot emulate.
    let Some(out) = boot(&["--quiet", "--append", "selftest=emulation"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let error = log
        .find("vmm: error: KVM internal error in the guest")
        .expect(&log);
    let rest = &log[error..];
    for field in [
        "vmm: crash: eip=0x801",
        "esp=",
        "eflags=",
        "eax=0xfe000000",
        "cr0=0x8001",
        "cr3=",
        "efer=",
        "cs=0x0008",
        "(cpl 0)",
        // fld dword [eax]: d9 00.
        "code at eip: d9 00 ",
        "vmm: crash: last VM exits (oldest first):",
    ] {
        assert!(rest.contains(field), "no {field}: {log}");
    }
    assert!(
        rest.contains("(kmain+0x") || rest.contains("(xv6::x86::fld_from"),
        "EIP not symbolized: {log}"
    );
}
