//! The walking skeleton booted for real: the kernel's boot summary, its page tables seen from
//! outside, and the exit statuses — through the same engine choice as `vmm run`.

mod common;

use common::{boot, lines_with, stderr, stdout};
use goblin::elf::Elf;

const PGSIZE: u32 = 4096;
const KERNBASE: u32 = 0x8000_0000;

/// The kernel's `end` symbol, from the embedded image.
fn kernel_end() -> u32 {
    let elf = Elf::parse(vmm::images::KERNEL).expect("embedded kernel parses");
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some("end"))
        .expect("kernel has an `end` symbol");
    sym.st_value as u32
}

/// Free pages after boot, as xv6 would count them: kinit1's and kinit2's ranges, less the
/// page directory and the page tables setupkvm took (one per 4 MiB of RAM below PHYSTOP, and
/// eight for DEVSPACE).
fn expected_free_pages(phystop: u32) -> (u32, u32) {
    let end = kernel_end().next_multiple_of(PGSIZE) - KERNBASE;
    let kinit1 = (0x40_0000 - end) / PGSIZE;
    let kinit2 = (phystop - 0x40_0000) / PGSIZE;
    let tables = 1 + phystop.div_ceil(0x40_0000) + 8;
    (kinit1, kinit1 + kinit2 - tables)
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
    let Some(out) = boot(&[]) else { return };
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{}",
        stderr(&out)
    );
    assert!(text.contains("xv6: PHYSTOP 0x0e000000 (224 MiB)"), "{text}");
    assert!(
        text.contains("xv6: memmap 0x00000000-0x0dffffff ram"),
        "{text}"
    );
    let (kinit1, kinit2) = expected_free_pages(0x0e00_0000);
    assert_eq!(number_after(&text, "xv6: kinit1: "), kinit1, "{text}");
    assert_eq!(number_after(&text, "xv6: kinit2: "), kinit2, "{text}");
    assert!(text.lines().any(|l| l == "xv6: boot ok"), "{text}");
}

#[test]
fn kmap_has_the_four_regions_and_matches_the_mmu() {
    let Some(out) = boot(&["--pgdump"]) else {
        return;
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{err}"
    );
    let kmap = lines_with(&text, "xv6: kmap ");
    assert_eq!(kmap.len(), 4, "{text}");
    let data = kmap[2].split('-').next().unwrap();
    let data = u32::from_str_radix(data.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(data % PGSIZE, 0, "kernel data starts on a page");
    assert_eq!(kmap[0], "0x80000000-0x800fffff -> 0x00000000 rwk");
    assert_eq!(
        kmap[1],
        format!("0x80100000-0x{:08x} -> 0x00100000 r-k", data - 1)
    );
    assert_eq!(
        kmap[2],
        format!("0x{data:08x}-0x8dffffff -> 0x{:08x} rwk", data - KERNBASE)
    );
    assert_eq!(kmap[3], "0xfe000000-0xffffffff -> 0xfe000000 rwk");

    // The VMM's walk from outside, checked page by page with KVM_TRANSLATE, sees the same.
    let dump: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("pgdump cr3="))
        .collect();
    assert!(!dump.is_empty(), "no pgdump on stderr:\n{err}");
    assert_eq!(&dump[1..5], &kmap[..], "{err}");
    let pages = (0x10_0000 + (0x0e00_0000 - 0x10_0000) + 0x200_0000) / PGSIZE;
    assert_eq!(
        dump[5],
        format!("pgdump end: {pages} pages, 0 translate mismatches"),
        "{err}"
    );
    assert!(
        text.contains("xv6: pgdump: 0 translate mismatches"),
        "{text}"
    );
    let cr3 = lines_with(&text, "xv6: kvmalloc: cr3 ");
    assert_eq!(
        dump[0],
        format!("pgdump cr3={}", cr3[0]),
        "the kernel's CR3 is the one walked"
    );
}

#[test]
fn phystop_follows_mem() {
    let Some(out) = boot(&["--mem", "64M"]) else {
        return;
    };
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("xv6: PHYSTOP 0x02000000 (32 MiB)"), "{text}");
    let (_, kinit2) = expected_free_pages(0x0200_0000);
    assert_eq!(number_after(&text, "xv6: kinit2: "), kinit2, "{text}");
}

#[test]
fn guest_exit_status_is_vmms() {
    let Some(out) = boot(&["--append", "selftest=exit:42"]) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn kernel_panic_exits_125_with_message_and_location() {
    let Some(out) = boot(&["--append", "selftest=panic"]) else {
        return;
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(125), "{text}{err}");
    let panic_line = lines_with(&text, "xv6: panic: ");
    assert!(
        panic_line
            .first()
            .is_some_and(|l| l.starts_with("selftest at ") && l.contains(".rs:")),
        "{text}"
    );
    assert!(err.contains("the guest kernel panicked"), "{err}");
}

#[test]
fn triple_fault_exits_125() {
    let Some(out) = boot(&["--append", "selftest=pagefault"]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{}{err}", stdout(&out));
    assert!(err.contains("triple-faulted"), "{err}");
}

#[test]
fn timeout_exits_124() {
    let Some(out) = boot(&["--append", "selftest=spin", "--timeout", "2"]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(124), "{}{err}", stdout(&out));
    assert!(err.contains("timed out after 2 s"), "{err}");
}
