//! The checker on small trees written here (it finds what it must, and only that), and on
//! this repository's host crates, which must keep both rules.

use std::path::{Path, PathBuf};

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn long_fn(name: &str, body_lines: usize) -> String {
    let body: String = (0..body_lines)
        .map(|i| format!("    let _x{i} = {i};\n"))
        .collect();
    format!("pub fn {name}() {{\n{body}}}\n")
}

#[test]
fn a_circle_through_use_code_and_macros_is_found_with_its_steps() {
    let dir = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b/mod.rs",
            "pub struct B;\nfn f() { let _ = format!(\"{:?}\", crate::c::C); }\n",
        ),
        (
            "c.rs",
            "pub struct C;\nfn g() -> super::a::A { super::a::A }\n",
        ),
    ]);
    let r = structure::check_dir(dir.path(), 60).unwrap();
    assert_eq!(r.circles.len(), 1, "{:?}", r.lines());
    let (members, steps) = &r.circles[0];
    assert_eq!(members, &["a", "b", "c"]);
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0].from, "a");
    assert_eq!(steps[0].line, 1);
    assert_eq!(steps[2].to, "a");
}

#[test]
fn a_parent_and_child_naming_each_other_is_a_circle_but_tests_modules_are_not() {
    let dir = tree(&[
        ("lib.rs", "pub mod dev;\n"),
        (
            "dev/mod.rs",
            "pub mod console;\npub struct Bus;\nuse console::Traffic;\n",
        ),
        (
            "dev/console.rs",
            "pub struct Traffic;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
    ]);
    let r = structure::check_dir(dir.path(), 60).unwrap();
    assert!(r.is_empty(), "{:?}", r.lines());
    let dir = tree(&[
        ("lib.rs", "pub mod dev;\n"),
        (
            "dev/mod.rs",
            "pub mod console;\npub struct Bus;\nuse console::Traffic;\n",
        ),
        ("dev/console.rs", "pub struct Traffic(super::Bus);\n"),
    ]);
    let r = structure::check_dir(dir.path(), 60).unwrap();
    assert_eq!(r.circles.len(), 1, "{:?}", r.lines());
}

#[test]
fn long_functions_are_found_and_flat_dispatch_matches_are_not() {
    let arms: String = (0..70)
        .map(|i| format!("        {i} => f{i}(),\n"))
        .collect();
    let dispatch = format!(
        "pub fn dispatch(n: u32) {{\n    match n {{\n{arms}        _ => {{}}\n    }}\n}}\n"
    );
    let text = format!("{}{}{dispatch}", long_fn("short", 58), long_fn("long", 61));
    let dir = tree(&[("lib.rs", &text)]);
    let r = structure::check_dir(dir.path(), 60).unwrap();
    let names: Vec<&str> = r.long_fns.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["long"], "{:?}", r.lines());
    assert_eq!(r.long_fns[0].lines, 63);
    assert_eq!(r.long_fns[0].line, 61);
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host crates that keep both rules. (guest/src and guest/abi/src join when they do.)
const CHECKED: &[&str] = &[
    "vmm/src",
    "tools/lab/src",
    "tools/term/src",
    "tools/structure/src",
];

#[test]
fn this_repository_keeps_the_rules() {
    let mut findings = Vec::new();
    for dir in CHECKED {
        let r = structure::check_dir(&repo().join(dir), structure::MAX_FN_LINES).unwrap();
        findings.extend(r.lines());
    }
    assert!(findings.is_empty(), "\n{}", findings.join("\n"));
}

/// Every crate of the repository, the guest's and the benches' too: no import circles (the
/// 60-line rule is kept by the crates above and by the kernel's own structure_tests.rs).
const NO_CIRCLES: &[&str] = &[
    "guest/src",
    "guest/abi/src",
    "guest-user/src",
    "tools/pfbench/src",
];

#[test]
fn no_crate_has_an_import_circle() {
    let mut circles = Vec::new();
    for dir in CHECKED.iter().chain(NO_CIRCLES) {
        let r = structure::check_dir(&repo().join(dir), structure::MAX_FN_LINES).unwrap();
        for (members, _) in &r.circles {
            circles.push(format!("{dir}: {}", members.join(", ")));
        }
    }
    assert!(circles.is_empty(), "\n{}", circles.join("\n"));
}
