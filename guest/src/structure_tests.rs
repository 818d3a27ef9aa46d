//! The kernel's shape, checked on the host: no import circles between its modules, no
//! function over 60 lines (flat dispatch matches excepted, by name), and the numbers that
//! files outside Rust repeat — kernel.ld, guest-user's user.ld and usys.S — equal to xv6-abi's.
//!
//! The module graph counts every `crate::NAME` path of a module's own code (imports and
//! inline paths; comments and `#[cfg(test)]` modules left out), NAME being another file of
//! src/.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest function allowed, in lines (signature to closing brace).
const MAX_FN_LINES: usize = 60;

/// Functions allowed to be longer: flat dispatch matches, one arm per case.
const FLAT_DISPATCH: &[&str] = &[];

/// The code of src/`name`.rs without its comments and without its test modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "#[cfg(test)]" {
            let next = lines.peek().copied().unwrap_or("");
            if next.contains("mod ") || next.starts_with("#[path") {
                break; // test modules come last
            }
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every module of src/ (not the binary, not the `_tests.rs` files) and its code.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.extension().is_some_and(|x| x == "rs")
            && !name.ends_with("_tests")
            && name != "main"
        {
            m.insert(name, code(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    m
}

/// The first path segments after `crate::` in `code`, `crate::{a, b::c}` giving a and b.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with('$') {
            continue; // a macro's `$crate::`: the user of the macro depends, not its file
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(&item));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// The module graph: module → the other modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    mods.iter()
        .map(|(name, code)| {
            let deps = crate_paths(code)
                .into_iter()
                .filter(|d| d != name && mods.contains_key(d))
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// The modules reachable from `from`.
fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(n) = todo.pop() {
        for d in &g[&n] {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// The import circles of a graph: its strongly connected groups of more than one module.
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let reaches: BTreeMap<_, _> = g.keys().map(|n| (n.clone(), reach(g, n))).collect();
    g.keys()
        .filter(|n| reaches[*n].contains(*n))
        .map(|n| {
            let mut c: Vec<String> = reaches[n]
                .iter()
                .filter(|m| reaches[*m].contains(n))
                .cloned()
                .collect();
            c.sort();
            c
        })
        .collect()
}

#[test]
fn the_checker_finds_circles_and_grouped_imports() {
    let deps = crate_paths("use crate::{a, b::{c, d}, e::f};\nlet x = crate::g::h(); $crate::i");
    assert_eq!(deps, ["a", "b", "e", "g"].map(String::from).into());
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(n, d)| (n.to_owned(), [d.to_owned()].into()))
        .collect();
    assert_eq!(
        circles(&g),
        [vec!["a", "b", "c"].into_iter().map(String::from).collect()].into()
    );
    assert_eq!(code("a // b\n#[cfg(test)]\nmod tests {}\n"), "a \n");
    let src = format!(
        "fn a() {{\n{}}}\nfn b();\npub fn c() {{ }}\n",
        "x;\n".repeat(60)
    );
    assert_eq!(long_functions(&src), [("a".to_owned(), 62)]);
}

#[test]
fn no_import_circles() {
    let g = graph();
    if std::env::var_os("XV6_SHOW_GRAPH").is_some() {
        for (m, deps) in &g {
            eprintln!("{m} -> {deps:?}");
        }
    }
    let found = circles(&g);
    assert!(
        found.is_empty(),
        "import circles between modules: {found:?}"
    );
}

/// Every function of `code` longer than MAX_FN_LINES: (name, lines).
fn long_functions(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("fn ").filter(|&at| {
            let before = line[..at].trim();
            before.is_empty()
                || before.ends_with("pub")
                || before.ends_with(')')
                || before.ends_with("unsafe")
                || before.ends_with("const")
                || before.ends_with("\"C\"")
        }) else {
            continue;
        };
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i32, false);
        for (j, l) in lines[i..].iter().enumerate() {
            for c in l.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    ';' if !opened => break,
                    _ => {}
                }
            }
            if !opened && l.contains(';') {
                break; // a declaration without a body
            }
            if opened && depth == 0 {
                if j + 1 > MAX_FN_LINES && !FLAT_DISPATCH.contains(&name.as_str()) {
                    out.push((name.clone(), j + 1));
                }
                break;
            }
        }
    }
    out
}

#[test]
fn no_function_over_60_lines() {
    let long: Vec<_> = modules()
        .iter()
        .flat_map(|(m, code)| {
            long_functions(code)
                .into_iter()
                .map(move |f| (m.clone(), f))
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:?}"
    );
}

/// A file of the repository, from guest/.
fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn linker_scripts_use_the_abi_numbers() {
    use xv6_abi::layout::{KERNBASE, KERNLINK};
    use xv6_abi::mmu::PGSIZE;
    let k = repo_file("guest/kernel.ld");
    assert!(
        k.contains(&format!("KERNBASE = {KERNBASE:#x};")),
        "kernel.ld's KERNBASE"
    );
    assert!(
        k.contains(&format!(". = {KERNLINK:#x};")),
        "kernel.ld's KERNLINK"
    );
    assert!(
        k.contains(&format!("ALIGN({PGSIZE:#x})")),
        "kernel.ld's page size"
    );
    let u = repo_file("guest-user/user.ld");
    assert!(
        u.contains(&format!("ALIGN({PGSIZE:#x})")),
        "user.ld's page size"
    );
}

#[test]
fn usys_stubs_use_the_abi_numbers() {
    use xv6_abi::syscall::*;
    let abi = [
        ("fork", SYS_FORK),
        ("exit", SYS_EXIT),
        ("wait", SYS_WAIT),
        ("pipe", SYS_PIPE),
        ("read", SYS_READ),
        ("kill", SYS_KILL),
        ("exec", SYS_EXEC),
        ("fstat", SYS_FSTAT),
        ("chdir", SYS_CHDIR),
        ("dup", SYS_DUP),
        ("getpid", SYS_GETPID),
        ("sbrk", SYS_SBRK),
        ("sleep", SYS_SLEEP),
        ("uptime", SYS_UPTIME),
        ("open", SYS_OPEN),
        ("write", SYS_WRITE),
        ("mknod", SYS_MKNOD),
        ("unlink", SYS_UNLINK),
        ("link", SYS_LINK),
        ("mkdir", SYS_MKDIR),
        ("close", SYS_CLOSE),
        ("pgdump", SYS_PGDUMP),
        ("countfree", SYS_COUNTFREE),
        ("export", SYS_EXPORT),
        ("tsckhz", SYS_TSCKHZ),
        ("mark", SYS_MARK),
        ("exit_status", SYS_EXIT_STATUS),
        ("wait_status", SYS_WAIT_STATUS),
    ];
    let numbers: BTreeSet<u32> = abi.iter().map(|&(_, n)| n).collect();
    assert_eq!(
        numbers,
        (1..=abi.len() as u32).collect(),
        "every number once"
    );
    let s = repo_file("guest-user/c/usys.S");
    let stubs: BTreeMap<&str, u32> = s
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SYSCALL(")?
                .strip_suffix(')')?
                .split_once(", ")
        })
        .map(|(name, n)| (name, n.parse().unwrap()))
        .collect();
    assert_eq!(stubs, abi.into_iter().collect(), "usys.S against xv6-abi");
    assert!(
        s.contains(&format!("int ${T_SYSCALL}")),
        "usys.S's trap vector"
    );
}
