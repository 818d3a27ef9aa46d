//! The walking skeleton booted for real: the kernel's boot summary (its log, on stderr), its
//! page tables seen from outside, and the exit statuses — through the same engine choice as
//! `vmm run`. `--append selftest=...` hooks run right after `boot ok`, before any process.

use crate::common;

use common::{boot, lines_with, stderr, stdout};
use goblin::elf::Elf;

const PGSIZE: u32 = 4096;
const KERNBASE: u32 = 0x8000_0000;

/// The kernel's `end` symbol, from the embedded image.
fn kernel_end() -> u32 {
    let elf = Elf::parse(vmm::boot::images::KERNEL).expect("embedded kernel parses");
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some("end"))
        .expect("kernel has an `end` symbol");
    sym.st_value as u32
}

/// Free pages after boot, as xv6 would count them: kinit1's and kinit2's ranges, less the
/// page directory and the page tables kvmalloc took (one per 4 MiB of RAM below PHYSTOP, one
/// per 4 MiB the boot modules span, and eight for DEVSPACE), and less the reference-count
/// table kinit2 keeps (a byte per page from `end` to PHYSTOP).
fn expected_free_pages(phystop: u32, log: &str) -> (u32, u32) {
    let end = kernel_end().next_multiple_of(PGSIZE) - KERNBASE;
    let kinit1 = (0x40_0000 - end) / PGSIZE;
    let kinit2 = (phystop - 0x40_0000) / PGSIZE;
    let (first, last) = bootmods_span(log);
    let bootmod_tables = (last >> 22) - (first >> 22) + 1;
    let tables = 1 + phystop.div_ceil(0x40_0000) + bootmod_tables + 8;
    let refs = ((phystop + KERNBASE - kernel_end()) / PGSIZE).div_ceil(PGSIZE);
    (kinit1, kinit1 + kinit2 - tables - refs)
}

/// First and last VA of the boot-module mapping, from `xv6: bootmods FIRST-LAST -> PA r-k`.
fn bootmods_span(log: &str) -> (u32, u32) {
    let line = lines_with(log, "xv6: bootmods ");
    let range = line
        .first()
        .unwrap_or_else(|| panic!("no bootmods line in:\n{log}"));
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (first, rest) = range.split_once('-').unwrap();
    (hex(first), hex(rest.split_whitespace().next().unwrap()))
}

fn number_after(text: &str, prefix: &str) -> u32 {
    let line = lines_with(text, prefix);
    let word = line
        .first()
        .unwrap_or_else(|| panic!("no line '{prefix}' in:\n{text}"));
    word.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn boots_and_prints_the_summary() {
    let Some(out) = boot(&["hello"]) else { return };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(
        stdout(&out),
        "hello, world\n",
        "stdout is only the program's"
    );
    assert!(
        log.contains("xv6: PHYSTOP 0x0e000000 (224 MiB), modules 2"),
        "{log}"
    );
    assert!(
        log.contains("xv6: memmap 0x00000000-0x0dffffff ram"),
        "{log}"
    );
    let (kinit1, kinit2) = expected_free_pages(0x0e00_0000, &log);
    assert_eq!(number_after(&log, "xv6: kinit1: "), kinit1, "{log}");
    assert_eq!(number_after(&log, "xv6: kinit2: "), kinit2, "{log}");
    assert!(log.lines().any(|l| l == "xv6: boot ok"), "{log}");
}

#[test]
fn quiet_hides_the_summary() {
    let Some(out) = boot(&["--quiet", "hello"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("xv6: "), "{}", stderr(&out));
}

#[test]
fn kmap_has_the_four_regions_and_matches_the_mmu() {
    // selftest=exit:0 ends the VM right after boot: the only dump is the kernel's own.
    let Some(out) = boot(&["--pgdump", "--append", "selftest=exit:0"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let kmap = lines_with(&log, "xv6: kmap ");
    assert_eq!(kmap.len(), 4, "{log}");
    let data = kmap[2].split('-').next().unwrap();
    let data = u32::from_str_radix(data.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(data % PGSIZE, 0, "kernel data starts on a page");
    assert_eq!(kmap[0], "0x80000000-0x800fffff -> 0x00000000 rwk");
    let text_row = format!("0x80100000-0x{:08x} -> 0x00100000 r-k", data - 1);
    assert_eq!(kmap[1], text_row);
    let data_row = format!("0x{data:08x}-0x8dffffff -> 0x{:08x} rwk", data - KERNBASE);
    assert_eq!(kmap[2], data_row);
    assert_eq!(kmap[3], "0xfe000000-0xffffffff -> 0xfe000000 rwk");

    // The boot modules (program archive, argv): the one read-only row beyond kmap.
    let bootmods = lines_with(&log, "xv6: bootmods ");
    assert_eq!(bootmods.len(), 1, "{log}");
    assert!(bootmods[0].starts_with("0x8e000000-"), "{log}");
    assert!(bootmods[0].ends_with(" -> 0x0e000000 r-k"), "{log}");
    let (first, last) = bootmods_span(&log);
    let bootmod_pages = (last + 1 - first) / PGSIZE;

    // The VMM's walk from outside, checked page by page with KVM_TRANSLATE, sees the same.
    let dump: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.starts_with("pgdump cr3="))
        .collect();
    assert!(dump.len() >= 7, "no pgdump on stderr:\n{log}");
    assert_eq!(&dump[1..4], &kmap[..3], "{log}");
    assert_eq!(dump[4], bootmods[0], "{log}");
    assert_eq!(dump[5], kmap[3], "{log}");
    let pages = (0x0e00_0000 + 0x200_0000) / PGSIZE + bootmod_pages;
    let end = format!("pgdump end: {pages} pages, 0 translate mismatches");
    assert_eq!(dump[6], end, "{log}");
    assert!(log.contains("xv6: pgdump: 0 translate mismatches"), "{log}");
    let cr3 = lines_with(&log, "xv6: kvmalloc: cr3 ");
    assert_eq!(
        dump[0],
        format!("pgdump cr3={}", cr3[0]),
        "the kernel's CR3 is walked"
    );
}

#[test]
fn phystop_follows_mem() {
    let Some(out) = boot(&["--mem", "64M", "--append", "selftest=exit:0"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("xv6: PHYSTOP 0x02000000 (32 MiB)"), "{log}");
    let (_, kinit2) = expected_free_pages(0x0200_0000, &log);
    assert_eq!(number_after(&log, "xv6: kinit2: "), kinit2, "{log}");
}

#[test]
fn guest_exit_status_is_vmms() {
    let Some(out) = boot(&["--append", "selftest=exit:42"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
}

#[test]
fn kernel_panic_exits_125_with_message_and_location() {
    let Some(out) = boot(&["--append", "selftest=panic"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    let panic_line = lines_with(&log, "xv6: panic: ");
    let located = |l: &&str| l.starts_with("selftest at ") && l.contains(".rs:");
    assert!(panic_line.first().is_some_and(located), "{log}");
    assert!(log.contains("the guest kernel panicked"), "{log}");
}

#[test]
fn triple_fault_exits_125() {
    let Some(out) = boot(&["--append", "selftest=pagefault"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{log}");
    assert!(log.contains("triple-faulted"), "{log}");
    // The one-line error first, then the crash report (registers, or why there are none).
    let error = log.find("vmm: error: the guest triple-faulted").unwrap();
    let crash = log
        .find("vmm: crash: ")
        .unwrap_or_else(|| panic!("no crash report: {log}"));
    assert!(error < crash, "{log}");
    assert!(
        log.contains("vmm: crash: eip=") || log.contains("reset the vCPU"),
        "{log}"
    );
}

#[test]
fn timeout_exits_124() {
    let Some(out) = boot(&["--append", "selftest=spin", "--timeout", "2"]) else {
        return;
    };
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(124), "{log}");
    assert!(log.contains("timed out after 2 s"), "{log}");
}
