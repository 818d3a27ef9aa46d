//! `vmm run --dir HOSTDIR:GUESTDIR[:rw]`: a host directory tree imported into the guest's
//! file system at boot; read-only (nothing goes back to the host) unless `:rw` asks for the
//! write-back at the end of the run (writeback.rs).
//!
//! The VMM walks HOSTDIR on the host — regular files and directories; a symbolic link, a
//! device, a FIFO or a socket is skipped with one note each — and puts the tree into the
//! program archive (boot module 0) under GUESTDIR: one cpio newc directory entry (mode
//! 040755) for GUESTDIR, for each of its ancestors and for each subdirectory, parents before
//! children, and one regular-file entry (0100644) per file, named by its full guest path
//! without the leading `/` (`data/sub/f`). The kernel's `fsinit` makes the directories and
//! links the files where their paths say (docs/abi.md).
//!
//! The walk never follows a symbolic link below HOSTDIR: each entry is examined and opened
//! through its parent directory's descriptor (`/proc/self/fd/N/NAME`, O_NOFOLLOW), so a link
//! swapped in during the walk is refused by the open rather than followed. HOSTDIR itself may
//! be a link to a directory (the user named it).
//!
//! Bounds, all checked before boot: names of 1 to DIRSIZ bytes in UTF-8, paths at most
//! [`MAX_DEPTH`] components deep (GUESTDIR's own included), each file at most
//! [`MAX_DIR_FILE`] bytes, the files and directories of every `--dir` and `--add` together at
//! most MAX_ADDED_FILES (the guest's inodes), and all of it with the built-in programs within
//! the boot-module area (programs.rs). A host problem (missing, unreadable, not a directory,
//! a bound) is 126; a bad GUESTDIR (not absolute, `.`/`..`, a clash with another `--dir`, an
//! `--add` name, a program's name) is a usage error, 2.
//!
//! Through the lab, the outer `vmm` walks the host tree (the notes are its own) and ships the
//! finished tree as one cpio file; the inner `vmm` takes it with the hidden `--dir-tree FILE`
//! and checks it again with the same rules ([`parse_tree`]).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::boot::programs::{ProgramError, DIRSIZ, MAX_ADD_FILES};

/// The most path components a file under `--dir` may have in the guest, GUESTDIR's included
/// (`/a/b/c` is 3): keeps every path well below the 128-byte buffers xv6's programs use.
pub const MAX_DEPTH: usize = 8;
/// The largest file `--dir` takes (as `--add`).
pub const MAX_DIR_FILE: u64 = crate::boot::programs::MAX_ADD_SIZE;
/// The largest `--dir-tree` file the inner vmm reads (the boot-module area).
const MAX_TREE_FILE: u64 = xv6_abi::layout::BOOT_RESERVED as u64;

/// Mode of a directory entry in the archive.
pub const MODE_DIR: u32 = 0o040_755;
/// Mode of a `--dir` file in the archive.
pub const MODE_FILE: u32 = 0o100_644;

/// One `--dir` option, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    /// The option's value as given (for messages).
    pub spec: String,
    pub host: PathBuf,
    /// GUESTDIR's components (no `/`).
    pub guest: Vec<String>,
    pub rw: bool,
}

/// Why `--dir` was refused: a usage error (2) or a host tree the guest cannot take (126).
#[derive(Debug)]
pub enum DirError {
    Usage(String),
    Refused(String),
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirError::Usage(m) | DirError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<DirError> for ProgramError {
    fn from(e: DirError) -> ProgramError {
        ProgramError::NotExecutable(e.to_string())
    }
}

/// One entry of an imported tree: its guest path without the leading `/`, and its bytes
/// (`None` for a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub data: Option<Vec<u8>>,
}

/// What every `--dir` put into the guest, in archive order (parents first), and the notes
/// (skipped entries) for stderr.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    pub entries: Vec<TreeEntry>,
    pub notes: Vec<String>,
}

impl Tree {
    /// Files, their bytes and directories (GUESTDIR and its ancestors included).
    pub fn counts(&self) -> (usize, u64, usize) {
        let files = self.entries.iter().filter_map(|e| e.data.as_ref());
        let (n, bytes) = files.fold((0, 0u64), |(n, b), d| (n + 1, b + d.len() as u64));
        (n, bytes, self.entries.len() - n)
    }

    /// The `--stats` line for it (None without `--dir`); `out` says what went back
    /// (writeback.rs).
    pub fn stats_line(&self, out: &str) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let (files, bytes, dirs) = self.counts();
        Some(format!(
            "vmm: dir: in {files} files, {bytes} bytes, {dirs} directories; {out}"
        ))
    }

    /// The tree as a cpio newc archive (what the lab ships to the inner vmm).
    pub fn to_cpio(&self) -> Vec<u8> {
        let entries: Vec<(&str, u32, &[u8])> = self.archive_entries().collect();
        crate::boot::programs::cpio_newc_modes(&entries)
    }

    /// Name, mode and bytes of each entry, for the program archive.
    pub fn archive_entries(&self) -> impl Iterator<Item = (&str, u32, &[u8])> {
        self.entries.iter().map(|e| match &e.data {
            Some(d) => (e.path.as_str(), MODE_FILE, d.as_slice()),
            None => (e.path.as_str(), MODE_DIR, &[][..]),
        })
    }
}

/// Why `name` cannot be a component of a guest path (None if it can).
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > DIRSIZ {
        return Some(format!(
            "the name '{name}' has {} bytes; the guest's names have 1 to {DIRSIZ} (xv6 DIRSIZ)",
            name.len()
        ));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Some(format!("the name '{name}' cannot be a guest file's name"));
    }
    None
}

/// Parses `HOSTDIR:GUESTDIR[:rw]`. GUESTDIR must be absolute, not `/`, with names the guest
/// can hold, at most MAX_DEPTH − 1 deep; `:rw` asks for the write-back (writeback.rs).
pub fn parse_spec(spec: &str) -> Result<DirSpec, DirError> {
    let usage = |why: &str| DirError::Usage(format!("--dir {spec}: {why}"));
    let (rest, rw) = match spec.strip_suffix(":rw") {
        Some(r) => (r, true),
        None => (spec.strip_suffix(":ro").unwrap_or(spec), false),
    };
    let Some((host, guest)) = rest.rsplit_once(':') else {
        return Err(usage("give HOSTDIR:GUESTDIR, e.g. ./data:/data"));
    };
    if host.is_empty() {
        return Err(usage("HOSTDIR is empty; give HOSTDIR:GUESTDIR"));
    }
    if !guest.starts_with('/') {
        // `HOST:/guest:xx`: a mode we do not know, not a relative GUESTDIR.
        if let Some((_, g)) = host.rsplit_once(':').filter(|(_, g)| g.starts_with('/')) {
            return Err(usage(&format!(
                "unknown mode ':{guest}' after GUESTDIR {g}; give :rw (write back), or :ro or \
                 nothing (read-only)"
            )));
        }
        return Err(usage(&format!(
            "GUESTDIR '{guest}' is not absolute; give e.g. /data"
        )));
    }
    let parts: Vec<String> = guest
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if parts.is_empty() {
        return Err(usage(
            "GUESTDIR cannot be / (the programs are there); give a directory such as /data",
        ));
    }
    if let Some(why) = parts.iter().find_map(|p| bad_name(p)) {
        return Err(usage(&format!("GUESTDIR: {why}")));
    }
    if rw && guest.contains(|c: char| c == ',' || c.is_whitespace()) {
        return Err(usage(
            "a write-back GUESTDIR cannot hold a comma or white space (the kernel command \
             line names it); pick another name",
        ));
    }
    if parts.len() >= MAX_DEPTH {
        return Err(usage(&format!(
            "GUESTDIR has {} levels; at most {} (files under it at most {MAX_DEPTH} deep)",
            parts.len(),
            MAX_DEPTH - 1
        )));
    }
    Ok(DirSpec {
        spec: spec.to_string(),
        host: PathBuf::from(host),
        guest: parts,
        rw,
    })
}

/// Refuses GUESTDIRs that clash: two equal or one inside another, or a first component that
/// is a file in the guest's `/` (`taken`: the built-in programs, `--add` names, a host
/// program, the reserved names).
pub fn check_clashes(specs: &[DirSpec], taken: &[&str]) -> Result<(), DirError> {
    for (i, a) in specs.iter().enumerate() {
        let top = a.guest[0].as_str();
        let root_taken = taken
            .iter()
            .chain(xv6_abi::fs::RESERVED_NAMES.iter())
            .any(|t| t.as_bytes()[..t.len().min(DIRSIZ)] == *top.as_bytes());
        if root_taken {
            return Err(DirError::Usage(format!(
                "--dir {}: /{top} is already a file in the guest (a program, an --add file or \
                 reserved); choose another GUESTDIR",
                a.spec
            )));
        }
        for b in &specs[..i] {
            let n = a.guest.len().min(b.guest.len());
            if a.guest[..n] == b.guest[..n] {
                return Err(DirError::Usage(format!(
                    "--dir {}: its GUESTDIR overlaps that of --dir {}; give each its own",
                    a.spec, b.spec
                )));
            }
        }
    }
    Ok(())
}

/// Limits of a walk, shared by every `--dir` of a run.
struct Walk {
    /// Entries still allowed (files and directories).
    room: usize,
    /// Directory paths already in the tree (ancestors shared by two GUESTDIRs).
    dirs: BTreeSet<String>,
}

/// Imports every `--dir` tree (parsed and checked with [`check_clashes`]); `added` files
/// (`--add`, a host program) count against the same MAX_ADDED_FILES.
pub fn import(specs: &[DirSpec], added: usize) -> Result<Tree, DirError> {
    let mut tree = Tree::default();
    let mut walk = Walk {
        room: MAX_ADD_FILES.saturating_sub(added),
        dirs: BTreeSet::new(),
    };
    for spec in specs {
        import_one(spec, &mut walk, &mut tree)?;
    }
    Ok(tree)
}

/// The "too many" error.
fn too_many(spec: &DirSpec) -> DirError {
    DirError::Refused(format!(
        "--dir {}: more than {MAX_ADD_FILES} files and directories with every --dir and --add; \
         the guest takes at most {MAX_ADD_FILES}",
        spec.spec
    ))
}

/// Adds a directory entry unless it is there already.
fn push_dir(
    spec: &DirSpec,
    walk: &mut Walk,
    tree: &mut Tree,
    path: String,
) -> Result<(), DirError> {
    if walk.dirs.contains(&path) {
        return Ok(());
    }
    walk.room = walk.room.checked_sub(1).ok_or_else(|| too_many(spec))?;
    walk.dirs.insert(path.clone());
    tree.entries.push(TreeEntry { path, data: None });
    Ok(())
}

fn import_one(spec: &DirSpec, walk: &mut Walk, tree: &mut Tree) -> Result<(), DirError> {
    let refused = |why: String| DirError::Refused(format!("--dir {}: {why}", spec.spec));
    let meta = std::fs::metadata(&spec.host).map_err(|e| {
        refused(format!(
            "cannot use HOSTDIR {}: {e}; give an existing directory",
            spec.host.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(refused(format!(
            "HOSTDIR {} is not a directory; give a directory (--add takes a file)",
            spec.host.display()
        )));
    }
    let root = open_dir(&spec.host)
        .map_err(|e| refused(format!("cannot read HOSTDIR {}: {e}", spec.host.display())))?;
    for depth in 1..=spec.guest.len() {
        push_dir(spec, walk, tree, spec.guest[..depth].join("/"))?;
    }
    walk_dir(
        spec,
        walk,
        tree,
        &root,
        &spec.host,
        &spec.guest.join("/"),
        spec.guest.len(),
    )
}

/// Opens a directory (following a link only for HOSTDIR itself, which the user named).
fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

/// `name` in the directory open as `dir`, as a path through its descriptor: resolving it
/// cannot leave that directory, whatever happens to the path above it.
fn beneath(dir: &std::fs::File, name: &std::ffi::OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Opens `name` in `dir` without following a link in its last component (O_NOFOLLOW: a link
/// is ELOOP), without blocking on a FIFO swapped in (O_NONBLOCK).
fn open_beneath(
    dir: &std::fs::File,
    name: &std::ffi::OsStr,
    extra: i32,
) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | extra)
        .open(beneath(dir, name))
}

/// What kind of thing a skipped entry is, for its note.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file or directory"
    }
}

#[allow(clippy::too_many_arguments)]
fn walk_dir(
    spec: &DirSpec,
    walk: &mut Walk,
    tree: &mut Tree,
    dir: &std::fs::File,
    host: &Path,
    guest: &str,
    depth: usize,
) -> Result<(), DirError> {
    let refused = |why: String| DirError::Refused(format!("--dir {}: {why}", spec.spec));
    let names =
        sorted_names(dir).map_err(|e| refused(format!("cannot read {}: {e}", host.display())))?;
    for name in names {
        let host_path = host.join(&name);
        let shown = host_path.display();
        let meta = std::fs::symlink_metadata(beneath(dir, &name))
            .map_err(|e| refused(format!("cannot read {shown}: {e}")))?;
        let t = meta.file_type();
        if !t.is_dir() && !t.is_file() {
            tree.notes.push(format!(
                "vmm: note: --dir {}: skipped {shown}: {} (only regular files and directories \
                 are imported)",
                spec.spec,
                kind_of(t)
            ));
            continue;
        }
        let text = guest_name(&name, &host_path, depth).map_err(refused)?;
        let path = format!("{guest}/{text}");
        let open_error = |e: std::io::Error| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(format!("{shown} became a symbolic link during the walk")),
            _ => refused(format!("cannot read {shown}: {e}")),
        };
        if t.is_dir() {
            let sub = open_beneath(dir, &name, libc::O_DIRECTORY).map_err(open_error)?;
            push_dir(spec, walk, tree, path.clone())?;
            walk_dir(spec, walk, tree, &sub, &host_path, &path, depth + 1)?;
        } else {
            let file = open_beneath(dir, &name, 0).map_err(open_error)?;
            let data = read_regular(file, &host_path).map_err(refused)?;
            walk.room = walk.room.checked_sub(1).ok_or_else(|| too_many(spec))?;
            tree.entries.push(TreeEntry {
                path,
                data: Some(data),
            });
        }
    }
    Ok(())
}

/// The names in the opened directory `dir`, sorted.
fn sorted_names(dir: &std::fs::File) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(beneath(dir, std::ffi::OsStr::new(".")))? {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

/// `name` (of `host_path`, found `depth` levels deep) as a guest name, or why it cannot be.
fn guest_name<'n>(
    name: &'n std::ffi::OsStr,
    host_path: &Path,
    depth: usize,
) -> Result<&'n str, String> {
    let shown = host_path.display();
    let Some(text) = name.to_str() else {
        return Err(format!(
            "the name of {shown} is not UTF-8; the guest's names are; rename it"
        ));
    };
    if let Some(why) = bad_name(text) {
        return Err(format!("{shown}: {why}; rename it"));
    }
    if depth + 1 > MAX_DEPTH {
        return Err(format!(
            "{shown} is more than {MAX_DEPTH} levels deep in the guest (GUESTDIR's \
             included); the guest takes at most {MAX_DEPTH}"
        ));
    }
    Ok(text)
}

/// Reads an opened file that must (still) be a regular file, at most MAX_DIR_FILE bytes.
fn read_regular(file: std::fs::File, shown: &Path) -> Result<Vec<u8>, String> {
    let shown = shown.display();
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown} changed during the walk: it is no longer a regular file"
        ));
    }
    let too_big = || {
        format!(
            "{shown} is larger than {} MiB, the most a file may be",
            MAX_DIR_FILE >> 20
        )
    };
    if meta.len() > MAX_DIR_FILE {
        return Err(too_big());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_DIR_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if data.len() as u64 > MAX_DIR_FILE {
        return Err(too_big());
    }
    Ok(data)
}

/// Reads a tree the outer vmm shipped (`--dir-tree FILE`), checking it as an import is
/// checked: names, depth, parents before children, no entry twice, the counts.
pub fn read_tree(path: &Path, added: usize) -> Result<Tree, DirError> {
    let bad = |why: String| DirError::Refused(format!("--dir-tree {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TREE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_TREE_FILE {
        return Err(bad("larger than the boot-module area".into()));
    }
    parse_tree(&bytes, added).map_err(bad)
}

/// The tree in a cpio newc archive made by [`Tree::to_cpio`], checked.
pub fn parse_tree(bytes: &[u8], added: usize) -> Result<Tree, String> {
    let mut tree = Tree::default();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut reader = std::io::Cursor::new(bytes);
    loop {
        let mut r = cpio::NewcReader::new(reader).map_err(|e| format!("not a tree: {e}"))?;
        if r.entry().is_trailer() {
            break;
        }
        let (name, mode) = (r.entry().name().to_string(), r.entry().mode());
        let parts: Vec<&str> = name.split('/').collect();
        if let Some(why) = parts.iter().find_map(|p| bad_name(p)) {
            return Err(format!("entry '{name}': {why}"));
        }
        if parts.len() > MAX_DEPTH {
            return Err(format!("entry '{name}' is deeper than {MAX_DEPTH}"));
        }
        if parts.len() > 1 && !dirs.contains(&parts[..parts.len() - 1].join("/")) {
            return Err(format!("entry '{name}' comes before its directory"));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("entry '{name}' is there twice"));
        }
        if tree.entries.len() + added >= MAX_ADD_FILES {
            return Err(format!("more than {MAX_ADD_FILES} entries"));
        }
        let data = match mode {
            MODE_DIR => {
                dirs.insert(name.clone());
                None
            }
            MODE_FILE => {
                let mut d = Vec::new();
                r.read_to_end(&mut d).map_err(|e| e.to_string())?;
                Some(d)
            }
            _ => return Err(format!("entry '{name}' has mode {mode:o}")),
        };
        tree.entries.push(TreeEntry { path: name, data });
        reader = r.finish().map_err(|e| e.to_string())?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(spec: &str, want: &str) {
        match parse_spec(spec) {
            Err(DirError::Usage(m)) => {
                assert!(m.contains(want), "{spec}: {m}");
                assert!(!m.contains('\n'));
            }
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn specs_parse_and_bad_guestdirs_are_usage_errors() {
        let s = parse_spec("./in:/data/x").unwrap();
        assert_eq!(s.host, PathBuf::from("./in"));
        assert_eq!(s.guest, ["data", "x"]);
        assert!(!s.rw);
        assert_eq!(parse_spec("a:b:/d:ro").unwrap().host, PathBuf::from("a:b"));
        assert_eq!(parse_spec("in://d//").unwrap().guest, ["d"]);
        usage("in", "give HOSTDIR:GUESTDIR");
        usage(":/d", "HOSTDIR is empty");
        usage("in:d", "not absolute");
        usage("in:/d:rx", "unknown mode ':rx' after GUESTDIR /d");
        usage("in:/", "cannot be /");
        usage("in:/a/../b", "cannot be a guest file's name");
        usage("in:/abcdefghijklmno", "1 to 14");
        usage("in:/1/2/3/4/5/6/7/8", "at most 7");
        assert!(parse_spec("in:/d:rw").unwrap().rw);
        usage("in:/a b:rw", "comma or white space");
    }

    #[test]
    fn clashing_guestdirs_are_refused() {
        let specs = |gs: &[&str]| -> Vec<DirSpec> {
            gs.iter()
                .map(|g| parse_spec(&format!("h:{g}")).unwrap())
                .collect()
        };
        assert!(check_clashes(&specs(&["/a/b", "/a/c"]), &["hello"]).is_ok());
        for (gs, want) in [
            (&["/a", "/a"][..], "overlaps"),
            (&["/a", "/a/b"][..], "overlaps"),
            (&["/a/b/c", "/a/b"][..], "overlaps"),
            (&["/hello/x"][..], "already a file"),
            (&["/console"][..], "already a file"),
            // A name in / longer than DIRSIZ is cut there (and may cut a UTF-8 character).
            (&["/ééééééé"][..], "already a file"),
        ] {
            match check_clashes(&specs(gs), &["hello", "éééééééé"]) {
                Err(DirError::Usage(m)) => assert!(m.contains(want), "{gs:?}: {m}"),
                other => panic!("{gs:?}: {other:?}"),
            }
        }
    }

    fn refused(r: Result<Tree, DirError>, want: &str) {
        match r {
            Err(DirError::Refused(m)) => {
                assert!(m.contains(want), "{m}");
                assert!(!m.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn imports_files_and_directories_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub/empty")).unwrap();
        std::fs::write(d.join("b"), "bee").unwrap();
        std::fs::write(d.join("sub/a"), "a").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("dirlink")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let spec = parse_spec(&format!("{}:/out/x", d.display())).unwrap();
        let tree = import(&[spec], 0).unwrap();
        let paths: Vec<(&str, bool)> = tree
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.data.is_some()))
            .collect();
        assert_eq!(
            paths,
            [
                ("out", false),
                ("out/x", false),
                ("out/x/b", true),
                ("out/x/sub", false),
                ("out/x/sub/a", true),
                ("out/x/sub/empty", false),
            ]
        );
        assert_eq!(tree.counts(), (2, 4, 4));
        assert_eq!(tree.notes.len(), 3, "{:?}", tree.notes);
        assert!(tree
            .notes
            .iter()
            .any(|n| n.contains("dirlink: a symbolic link")));
        assert!(tree.notes.iter().any(|n| n.contains("fifo: a FIFO")));
        // What the lab ships is read back the same.
        let back = parse_tree(&tree.to_cpio(), 0).unwrap();
        assert_eq!(back.entries, tree.entries);
        // Two GUESTDIRs share their ancestors.
        let a = parse_spec(&format!("{}:/out/y", d.join("sub").display())).unwrap();
        let spec = parse_spec(&format!("{}:/out/x", d.display())).unwrap();
        let both = import(&[spec, a], 0).unwrap();
        assert_eq!(both.entries.iter().filter(|e| e.path == "out").count(), 1);
    }

    #[test]
    fn bounds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let spec = |p: &Path| parse_spec(&format!("{}:/d", p.display())).unwrap();
        // Missing, a file.
        refused(
            import(&[spec(&d.join("nope"))], 0),
            "give an existing directory",
        );
        std::fs::write(d.join("f"), "").unwrap();
        refused(import(&[spec(&d.join("f"))], 0), "not a directory");
        // A name longer than DIRSIZ.
        let long = d.join("long");
        std::fs::create_dir(&long).unwrap();
        std::fs::write(long.join("abcdefghijklmno"), "").unwrap();
        refused(import(&[spec(&long)], 0), "1 to 14");
        // Too deep: /d is 1, so 7 levels of directories below it, then a file is 9.
        let deep = d.join("deep");
        let mut p = deep.clone();
        for _ in 0..7 {
            p = p.join("x");
        }
        std::fs::create_dir_all(&p).unwrap();
        assert!(import(&[spec(&deep)], 0).is_ok());
        std::fs::write(p.join("f"), "").unwrap();
        refused(import(&[spec(&deep)], 0), "levels deep");
        // Too many, counting --add files.
        let many = d.join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..10 {
            std::fs::write(many.join(format!("f{i}")), "").unwrap();
        }
        assert!(import(&[spec(&many)], MAX_ADD_FILES - 11).is_ok());
        refused(import(&[spec(&many)], MAX_ADD_FILES - 10), "at most 128");
        // Too big.
        let big = d.join("big");
        std::fs::create_dir(&big).unwrap();
        let f = std::fs::File::create(big.join("f")).unwrap();
        f.set_len(MAX_DIR_FILE + 1).unwrap();
        refused(import(&[spec(&big)], 0), "larger than 16 MiB");
    }

    #[test]
    fn shipped_trees_are_checked_again() {
        let tree = |entries: &[(&str, Option<&[u8]>)]| Tree {
            entries: entries
                .iter()
                .map(|(p, d)| TreeEntry {
                    path: p.to_string(),
                    data: d.map(<[u8]>::to_vec),
                })
                .collect(),
            notes: vec![],
        };
        let ok = tree(&[("a", None), ("a/f", Some(b"x"))]);
        assert!(parse_tree(&ok.to_cpio(), 0).is_ok());
        for (bad, want) in [
            (tree(&[("a/f", Some(b"x"))]), "before its directory"),
            (tree(&[("a", None), ("a/..", None)]), "cannot be a guest"),
            (tree(&[("a", None), ("a", None)]), "twice"),
            (tree(&[("/a", None)]), "1 to 14"),
        ] {
            let e = parse_tree(&bad.to_cpio(), 0).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(parse_tree(b"junk", 0).is_err());
    }
}
