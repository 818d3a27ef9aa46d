//! `--pgdump-svg FILE`: the picture of a real run (through the lab where this host's KVM
//! cannot page in 32 bits: the dumps come back as text and the host draws them) read back
//! with an XML parser and checked against the `--pgdump` text of the same run; an unwritable
//! FILE refused before boot.

use crate::common;

use vmm::debug::pgdump::{parse_dumps, parse_run, Run};

/// The address `tour` prints after `label` on its line, e.g. `guard  the guard page  0x...`.
fn printed_address(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("tour printed no {label:?} line:\n{stdout}"));
    let hex = line
        .split_whitespace()
        .find(|w| w.starts_with("0x"))
        .unwrap();
    u64::from_str_radix(&hex[2..], 16).unwrap()
}

/// Joins pieces back into maximal runs, as the text dump coalesces them.
fn coalesce(pieces: &[Run]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for p in pieces {
        if let Some(r) = out.last_mut() {
            if r.last_va.checked_add(4096) == Some(p.first_va)
                && r.pa.wrapping_add(p.first_va - r.first_va) == p.pa
                && (r.writable, r.user) == (p.writable, p.user)
            {
                r.last_va = p.last_va;
                continue;
            }
        }
        out.push(*p);
    }
    out
}

fn hex_attr(n: roxmltree::Node, name: &str) -> u64 {
    let v = n.attribute(name).unwrap_or_else(|| panic!("no {name}"));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn the_picture_shows_what_the_text_dump_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("as.svg");
    let Some(out) = common::boot(&[
        "--quiet",
        "--pgdump",
        "--pgdump-svg",
        path.to_str().unwrap(),
        "tour",
    ]) else {
        return;
    };
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dumps = parse_dumps(&stderr);
    assert_eq!(
        dumps.len(),
        2,
        "the kernel's after kvmalloc and tour's: {stderr}"
    );

    let svg = std::fs::read_to_string(&path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let class = |n: &roxmltree::Node, c: &str| n.attribute("class") == Some(c);
    let panels: Vec<_> = doc.descendants().filter(|n| class(n, "panel")).collect();
    assert_eq!(panels.len(), dumps.len(), "one panel per dump");

    for (panel, dump) in panels.iter().zip(&dumps) {
        assert_eq!(hex_attr(*panel, "data-cr3"), u64::from(dump.cr3));
        // Every band is a piece of a run; together they are exactly the dump's runs.
        let pieces: Vec<Run> = panel
            .descendants()
            .filter(|n| class(n, "band"))
            .map(|n| parse_run(n.attribute("data-run").unwrap()).expect("a run line"))
            .collect();
        let mut sorted = pieces.clone();
        sorted.sort_by_key(|p| p.first_va);
        assert_eq!(
            coalesce(&sorted),
            dump.runs,
            "bands of dump cr3={:#x}",
            dump.cr3
        );
        // The regions cover the same pages, with the runs' flags.
        let regions: Vec<_> = panel
            .descendants()
            .filter(|n| class(n, "vregion"))
            .collect();
        let pages: u64 = regions
            .iter()
            .map(|r| r.attribute("data-pages").unwrap().parse::<u64>().unwrap())
            .sum();
        let run_pages: u64 = dump.runs.iter().map(|r| u64::from(r.pages())).sum();
        assert_eq!(pages, run_pages);
        for run in &dump.runs {
            let va = u64::from(run.first_va);
            let r = regions
                .iter()
                .find(|r| hex_attr(**r, "data-first") <= va && va <= hex_attr(**r, "data-last"))
                .unwrap_or_else(|| panic!("no region holds {va:#x}"));
            let line = vmm::debug::pgdump::format_run(run);
            let flags = line.rsplit(' ').next().unwrap();
            assert!(
                r.attribute("data-flags").unwrap().contains(flags),
                "{va:#x}: {flags} not in {:?}",
                r.attribute("data-flags")
            );
        }
        let kinds: Vec<&str> = regions
            .iter()
            .map(|r| r.attribute("data-kind").unwrap())
            .collect();
        for k in [
            "kmap: I/O space, low memory",
            "kmap: kernel text, rodata",
            "kmap: kernel data, free memory",
            "kmap: DEVSPACE (devices)",
        ] {
            assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
        }
    }

    // The kernel's table has no user half; tour's has exec's layout, where tour says it is.
    let kernel = &panels[0];
    assert!(!kernel
        .descendants()
        .any(|n| class(&n, "vregion") && hex_attr(n, "data-first") < 0x8000_0000));
    let region = |kind: &str| {
        panels[1]
            .descendants()
            .find(|n| class(n, "vregion") && n.attribute("data-kind") == Some(kind))
            .unwrap_or_else(|| panic!("tour's panel has no {kind}"))
    };
    let guard = printed_address(&stdout, "guard");
    let g = region("guard page");
    assert_eq!(
        (hex_attr(g, "data-first"), hex_attr(g, "data-last")),
        (guard, guard + 0xfff)
    );
    assert_eq!(g.attribute("data-flags"), Some("rwk"), "PTE_U cleared");
    assert_eq!(hex_attr(region("stack"), "data-first"), guard + 0x1000);
    assert_eq!(hex_attr(region("text"), "data-first"), 0);
    assert_eq!(region("text").attribute("data-flags"), Some("r-u"));
    let data = printed_address(&stdout, "data");
    let d = region("data/bss");
    assert!(hex_attr(d, "data-first") <= data && data <= hex_attr(d, "data-last"));
    assert!(hex_attr(region("heap"), "data-first") >= guard + 0x2000);
    // tour's terminal picture of itself agrees: each box's pages, and its bottom address
    // (the line below it).
    let lines: Vec<&str> = stdout.lines().collect();
    for (name, kind) in [
        ("text", "text"),
        ("data, bss", "data/bss"),
        ("guard page", "guard page"),
        ("stack", "stack"),
        ("heap", "heap"),
    ] {
        let i = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("| {name} ")))
            .unwrap_or_else(|| panic!("no {name} box in tour's picture:\n{stdout}"));
        // `| heap             4 pages |  rwu  ...`: the word before `page(s)` in the box.
        let inside = lines[i].split('|').nth(1).unwrap();
        let box_pages: u64 = inside
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("{}", lines[i]));
        let bottom = lines[i + 1].split_whitespace().next().unwrap();
        let r = region(kind);
        assert_eq!(
            (box_pages, u64::from_str_radix(&bottom[2..], 16).unwrap()),
            (
                r.attribute("data-pages").unwrap().parse().unwrap(),
                hex_attr(r, "data-first")
            ),
            "tour's {name} box: {} / {}",
            lines[i],
            lines[i + 1]
        );
    }
    // The physical strip has the machine's landmarks.
    let names: Vec<&str> = panels[1]
        .descendants()
        .filter(|n| class(n, "pregion"))
        .map(|n| n.attribute("data-name").unwrap())
        .collect();
    for n in [
        "low memory, I/O space",
        "kernel text, rodata",
        "free memory (kalloc)",
        "MMIO hole: IOAPIC, LAPIC",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("frames of user pages")));
}

#[test]
fn an_unwritable_pgdump_svg_is_a_usage_error_before_boot() {
    for bad in ["/nonexistent/dir/p.svg", "/"] {
        let start = std::time::Instant::now();
        let out = common::vmm(&["run", "--pgdump-svg", bad, "hello"]);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&format!("cannot write {bad}")), "{err}");
        assert!(!err.contains("xv6:") && common::stdout(&out).is_empty());
        assert!(start.elapsed().as_secs() < 5, "refused before any boot");
    }
}
