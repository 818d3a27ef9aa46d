//! Two rules for a crate's source tree, checked from its files (parsed with `syn`):
//!
//! - **No import circles.** Each file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`); a
//!   file depends on another when it names an item there through `crate::`, `super::`,
//!   `self::` or a child module's name — in a `use`, in code, or inside a macro's tokens. The
//!   items of a file's inline modules (`mod tests { .. }`) count as the file's. A set of files
//!   that reach each other is a circle; each one is reported with a path around it and the
//!   line of every step.
//! - **No long functions.** A function (free, in an `impl` or a trait) is at most
//!   [`MAX_FN_LINES`] lines from `fn` to its closing brace, unless it is a flat dispatch: one
//!   `match` holds all but a few of its lines, and every arm of it is short.
//!
//! `main.rs` beside a `lib.rs` is a separate crate (the binary), so its edges are not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};

/// The longest a function may be, in lines.
pub const MAX_FN_LINES: usize = 60;
/// A flat dispatch match: at most this many of the function's lines lie outside the match...
const DISPATCH_OUTSIDE_LINES: usize = 12;
/// ...and no arm of it is longer than this.
const DISPATCH_ARM_LINES: usize = 12;

/// A function over the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFn {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub lines: usize,
}

/// One step of a circle: `from` names something in `to` at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
    pub line: usize,
}

/// What a directory's check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each circle: the modules that reach each other, and a path around them (the last step
    /// returns to the first module).
    pub circles: Vec<(Vec<String>, Vec<Step>)>,
    /// Every dependency between two modules of the same circle (what to cut from).
    pub circle_edges: Vec<Step>,
    pub long_fns: Vec<LongFn>,
}

impl Report {
    /// The number of findings.
    pub fn len(&self) -> usize {
        self.circles.len() + self.long_fns.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line per finding, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (members, c) in &self.circles {
            let steps: Vec<String> = c
                .iter()
                .map(|s| format!("{} -> {} ({}:{})", s.from, s.to, s.file.display(), s.line))
                .collect();
            out.push(format!(
                "import circle among {{{}}}: {}",
                members.join(", "),
                steps.join(", ")
            ));
        }
        for s in &self.circle_edges {
            out.push(format!(
                "  circle edge: {} -> {} ({}:{})",
                s.from,
                s.to,
                s.file.display(),
                s.line
            ));
        }
        for f in &self.long_fns {
            out.push(format!(
                "{}:{}: fn {} is {} lines (limit {MAX_FN_LINES})",
                f.file.display(),
                f.line,
                f.name,
                f.lines
            ));
        }
        out
    }
}

/// Checks the crate source directory `dir` (holding `lib.rs` or `main.rs`).
pub fn check_dir(dir: &Path, max_fn_lines: usize) -> io::Result<Report> {
    let files = module_files(dir)?;
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let has_lib = dir.join("lib.rs").exists();
    let mut edges: BTreeMap<(Vec<String>, Vec<String>), (PathBuf, usize)> = BTreeMap::new();
    let mut long_fns = Vec::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path)?;
        let ast = syn::parse_file(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let mut v = FileVisitor {
            current: module.clone(),
            known: &known,
            uses: Vec::new(),
            long_fns: Vec::new(),
            max_fn_lines,
        };
        v.visit_file(&ast);
        for f in v.long_fns {
            long_fns.push(LongFn {
                file: path.clone(),
                ..f
            });
        }
        let is_bin =
            has_lib && path.file_name().is_some_and(|n| n == "main.rs") && module.is_empty();
        if is_bin {
            continue;
        }
        for (target, line) in v.uses {
            if target != *module {
                edges
                    .entry((module.clone(), target))
                    .or_insert((path.clone(), line));
            }
        }
    }
    let circles = circles(&edges);
    let in_circle = |m: &Vec<String>| circles.iter().find(|(ms, _)| ms.contains(&name(m)));
    let circle_edges = edges
        .iter()
        .filter(|((from, to), _)| in_circle(from).is_some_and(|c| c.0.contains(&name(to))))
        .map(|((from, to), (file, line))| Step {
            from: name(from),
            to: name(to),
            file: file.clone(),
            line: *line,
        })
        .collect();
    Ok(Report {
        circles,
        circle_edges,
        long_fns,
    })
}

/// The `.rs` files under `dir` with their module paths (the crate root is `[]`). Files under
/// `bin/` and a `main.rs` beside a `lib.rs` are other crates: the latter is kept (for its
/// functions) under the root's path but its edges are skipped by the caller.
fn module_files(dir: &Path) -> io::Result<Vec<(Vec<String>, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push((module_of(rel), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `a/b/mod.rs` and `a/b.rs` → `[a, b]`; `lib.rs`, `main.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        let root = parts.is_empty() && (stem == "lib" || stem == "main");
        if stem != "mod" && !root {
            parts.push(stem.to_string());
        }
    }
    parts
}

/// Collects a file's module references and long functions.
struct FileVisitor<'a> {
    /// The module being visited (the file's, or an inline module inside it).
    current: Vec<String>,
    known: &'a BTreeSet<Vec<String>>,
    /// (target file module, line)
    uses: Vec<(Vec<String>, usize)>,
    long_fns: Vec<LongFn>,
    max_fn_lines: usize,
}

impl FileVisitor<'_> {
    /// Records `segs` (a path as written, at `line`) if it names a module of this crate.
    fn record(&mut self, segs: &[String], line: usize) {
        if let Some(target) = resolve(&self.current, segs, self.known) {
            self.uses.push((target, line));
        }
    }

    fn check_fn(&mut self, name: String, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span().start().line;
        let end = block.brace_token.span.close().end().line;
        let lines = end + 1 - start;
        if lines > self.max_fn_lines && !is_flat_dispatch(block, lines) {
            self.long_fns.push(LongFn {
                file: PathBuf::new(),
                line: start,
                name,
                lines,
            });
        }
    }
}

/// The file module `segs` (written in module `current`) points into, if any.
fn resolve(
    current: &[String],
    segs: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = current.to_vec();
    let mut rest = segs;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = current.to_vec();
            child.push(first.to_string());
            if !known.contains(&child) {
                return None;
            }
        }
        None => return None,
    }
    let mut full = base;
    full.extend(rest.iter().cloned());
    // The longest prefix that is a file module (the crate root at worst).
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| known.contains(m))
}

/// Whether a long function is a flat dispatch: one `match` holds all but
/// [`DISPATCH_OUTSIDE_LINES`] of its lines and no arm is over [`DISPATCH_ARM_LINES`].
fn is_flat_dispatch(block: &syn::Block, lines: usize) -> bool {
    struct Biggest(Option<(usize, usize)>);
    impl Visit<'_> for Biggest {
        fn visit_expr_match(&mut self, m: &syn::ExprMatch) {
            let span = span_lines(m.span());
            let longest_arm = m.arms.iter().map(|a| span_lines(a.span())).max();
            if self.0.is_none_or(|(s, _)| span > s) {
                self.0 = Some((span, longest_arm.unwrap_or(0)));
            }
            visit::visit_expr_match(self, m);
        }
    }
    let mut b = Biggest(None);
    b.visit_block(block);
    b.0.is_some_and(|(span, arm)| {
        lines.saturating_sub(span) <= DISPATCH_OUTSIDE_LINES && arm <= DISPATCH_ARM_LINES
    })
}

fn span_lines(s: proc_macro2::Span) -> usize {
    s.end().line + 1 - s.start().line
}

/// The paths in a `use` tree, flattened (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            if n.ident != "self" {
                full.push(n.ident.to_string());
            }
            out.push(full);
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            out.push(full);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

/// The `crate::a::b`, `super::a`, `self::a` paths inside a macro's tokens.
fn macro_paths(tokens: TokenStream, out: &mut Vec<(Vec<String>, usize)>) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Group(g) => macro_paths(g.stream(), out),
            TokenTree::Ident(id) if id == "crate" || id == "super" || id == "self" => {
                let line = id.span().start().line;
                let mut segs = vec![id.to_string()];
                while let (
                    Some(TokenTree::Punct(a)),
                    Some(TokenTree::Punct(b)),
                    Some(TokenTree::Ident(n)),
                ) = (tts.get(i + 1), tts.get(i + 2), tts.get(i + 3))
                {
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    segs.push(n.to_string());
                    i += 3;
                }
                if segs.len() > 1 {
                    out.push((segs, line));
                }
            }
            _ => {}
        }
        i += 1;
    }
}

impl<'ast> Visit<'ast> for FileVisitor<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.current.push(m.ident.to_string());
            visit::visit_item_mod(self, m);
            self.current.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut paths);
        let line = u.span().start().line;
        for p in paths {
            self.record(&p, line);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.record(&segs, p.span().start().line);
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut found = Vec::new();
        macro_paths(m.tokens.clone(), &mut found);
        for (segs, line) in found {
            self.record(&segs, line);
        }
        visit::visit_macro(self, m);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check_fn(f.sig.ident.to_string(), &f.sig, &f.block);
        visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.check_fn(f.sig.ident.to_string(), &f.sig, &f.block);
        visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.check_fn(f.sig.ident.to_string(), &f.sig, block);
        }
        visit::visit_trait_item_fn(self, f);
    }
}

type Edges = BTreeMap<(Vec<String>, Vec<String>), (PathBuf, usize)>;

/// The circles of the module graph: for each strongly connected component of more than one
/// module, one cycle through all of it found by walking its edges.
fn circles(edges: &Edges) -> Vec<(Vec<String>, Vec<Step>)> {
    let mut adj: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        adj.entry(from).or_default().push(to);
        adj.entry(to).or_default();
    }
    sccs(&adj)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|comp| {
            let members = comp.iter().map(|m| name(m)).collect();
            (members, cycle_in(&comp, &adj, edges))
        })
        .collect()
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

/// A shortest cycle from the component's first module back to itself, as steps.
fn cycle_in(
    comp: &BTreeSet<&Vec<String>>,
    adj: &BTreeMap<&Vec<String>, Vec<&Vec<String>>>,
    edges: &Edges,
) -> Vec<Step> {
    let start = *comp.iter().next().expect("a component is not empty");
    // Breadth-first search inside the component for the way back to `start`.
    let mut prev: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    while let Some(m) = queue.pop_front() {
        for &n in &adj[m] {
            if n == start {
                last = Some(m);
                break;
            }
            if comp.contains(n) && !prev.contains_key(n) {
                prev.insert(n, m);
                queue.push_back(n);
            }
        }
        if last.is_some() {
            break;
        }
    }
    let last = last.expect("a strongly connected component has a cycle");
    let mut chain = vec![last];
    let mut at = last;
    while at != start {
        at = prev[at];
        chain.push(at);
    }
    chain.reverse();
    chain.push(start);
    chain
        .windows(2)
        .map(|w| {
            let (file, line) = edges[&(w[0].clone(), w[1].clone())].clone();
            Step {
                from: name(w[0]),
                to: name(w[1]),
                file,
                line,
            }
        })
        .collect()
}

/// Tarjan's strongly connected components.
fn sccs<'a>(
    adj: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
) -> Vec<BTreeSet<&'a Vec<String>>> {
    struct T<'a, 'g> {
        adj: &'g BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<BTreeSet<&'a Vec<String>>>,
    }
    impl<'a> T<'a, '_> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for &w in &self.adj[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.insert(w);
                    if w == v {
                        break;
                    }
                }
                self.out.push(comp);
            }
        }
    }
    let mut t = T {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in adj.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}
