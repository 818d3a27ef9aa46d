//! `vmm run --dir HOSTDIR:GUESTDIR:rw`: what the run did under GUESTDIR, written back into
//! HOSTDIR once the guest has exited with its own status (0–255).
//!
//! When the first process exits, the kernel exports every write-back GUESTDIR as a cpio
//! newc archive (guest/src/dirout.rs, ports DIROUT/DIROUT_LEN; through the lab it travels
//! back in the result file, outputs.rs). Here:
//!
//! 1. [`parse_export`] reads the archive and checks it as an import is checked: names of 1
//!    to DIRSIZ bytes of printable UTF-8 (no control characters: a name the host cannot take
//!    is refused), not `.`/`..`, at most [`MAX_DEPTH`] deep, parents before children, each
//!    file at most [`MAX_DIR_FILE`] bytes, [`MAX_OUT_BYTES`] in all, the trailer present.
//! 2. [`diff`] compares it with what was imported (the same tree the guest booted with):
//!    directories made, files created or changed (bytes differ), files and directories
//!    removed. A file turned into a directory, or the reverse, and a GUESTDIR the guest
//!    removed are refused.
//! 3. [`check_host`] looks at HOSTDIR as it is now: every file to change or remove must
//!    still hold the imported bytes, every name to create must be absent, every directory
//!    to remove must hold nothing but what the guest removed from it. Otherwise HOSTDIR
//!    changed during the run (or holds a link, device or FIFO the import skipped there) and
//!    nothing is written.
//! 4. [`apply`], with SIGINT, SIGTERM and SIGHUP held off: first the new directories and a
//!    private temporary file (`.NAME.vmm-PID-N`, 0600 while written, flushed to disk) for
//!    every file to write, each in its own directory — any failure there removes them all
//!    again, and HOSTDIR is as it was; then each temporary file is renamed over its name,
//!    and the removals are made (files, then directories, deepest first).
//!
//! Every path is opened beneath HOSTDIR with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` and every last component is handled through its directory's
//! descriptor without following it (O_NOFOLLOW, mkdirat, renameat, unlinkat): no link
//! below HOSTDIR is followed, even one planted during the write-back. HOSTDIR itself may be
//! a link (the user named it), as for the import.
//!
//! Modes and times: a changed file keeps its permission bits (owner: whoever runs vmm); a
//! new file gets 0666 and a new directory 0777, less the umask, as `cp` would make them;
//! written files get the write-back's time as their modification time (the guest has no
//! times); files the guest did not change are not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::boot::dirs::{DirSpec, Tree, TreeEntry, MAX_DEPTH, MAX_DIR_FILE, MODE_DIR, MODE_FILE};
use crate::boot::programs::DIRSIZ;

/// The most a run writes back, all files together (the guest's RAM holds them; the lab
/// carries them back through its result file).
pub const MAX_OUT_BYTES: u64 = 64 << 20;

/// One change to make under a HOSTDIR (paths relative to it, `/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    MakeDir(String),
    /// A file written: created (`existing` false) or replaced.
    Write {
        rel: String,
        data: Vec<u8>,
        existing: bool,
    },
    RemoveFile(String),
    RemoveDir(String),
}

/// What one run writes back: each write-back `--dir`'s changes.
#[derive(Debug, Default)]
pub struct Plan {
    pub dirs: Vec<(DirSpec, Vec<Change>)>,
}

impl Plan {
    /// Files written, their bytes, directories made, entries removed.
    pub fn counts(&self) -> (usize, u64, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for ch in self.dirs.iter().flat_map(|(_, v)| v) {
            match ch {
                Change::Write { data, .. } => {
                    c.0 += 1;
                    c.1 += data.len() as u64;
                }
                Change::MakeDir(_) => c.2 += 1,
                Change::RemoveFile(_) | Change::RemoveDir(_) => c.3 += 1,
            }
        }
        c
    }

    /// `, 2 directories made, 1 removed` style text for the stats line.
    pub fn out_text(&self) -> String {
        let (files, bytes, made, removed) = self.counts();
        format!("out {files} files, {bytes} bytes, {made} directories made, {removed} removed")
    }
}

/// Why `name` (one component of an exported path) cannot be written on the host.
fn bad_host_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > DIRSIZ {
        return Some(format!(
            "the name '{}' has {} bytes; at most {DIRSIZ}",
            name.escape_debug(),
            name.len()
        ));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Some(format!("the name '{name}' cannot be written on the host"));
    }
    if name.chars().any(char::is_control) {
        return Some(format!(
            "the name '{}' has a control character the host does not take",
            name.escape_debug()
        ));
    }
    None
}

/// The entries of a write-back export (newc, from the kernel), checked (module doc, 1).
pub fn parse_export(bytes: &[u8]) -> Result<Vec<TreeEntry>, String> {
    let mut out = Vec::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut total = 0u64;
    let mut at = 0usize;
    loop {
        let rec = record(bytes, at)?;
        at = rec.next;
        let name = rec.name;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        check_export_name(name, &dirs, &mut seen)?;
        let data = match rec.mode {
            MODE_DIR => {
                dirs.insert(name.to_string());
                None
            }
            MODE_FILE => Some(export_file(name, rec.data, &mut total)?),
            mode => return Err(format!("/{name} has mode {mode:o}")),
        };
        out.push(TreeEntry {
            path: name.to_string(),
            data,
        });
    }
}

/// One newc record of an export.
struct Record<'a> {
    mode: u32,
    name: &'a str,
    data: &'a [u8],
    /// Where the next record starts.
    next: usize,
}

/// The newc record at byte `at` of `bytes`.
fn record(bytes: &[u8], at: usize) -> Result<Record<'_>, String> {
    let short = || "the export ended early (no trailer)".to_string();
    let h = bytes.get(at..at + 110).ok_or_else(short)?;
    if &h[..6] != b"070701" {
        return Err(format!("the export is not a newc archive at byte {at}"));
    }
    let field = |i: usize| -> Result<u32, String> {
        std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .ok_or_else(|| format!("a bad header field at byte {at}"))
    };
    let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
    if namesize == 0 || namesize > 4096 {
        return Err(format!("a bad name size at byte {at}"));
    }
    let raw = bytes
        .get(at + 110..at + 110 + namesize - 1)
        .ok_or_else(short)?;
    let data_at = (at + 110 + namesize + 3) & !3;
    let data = bytes.get(data_at..data_at + size).ok_or_else(short)?;
    let name = std::str::from_utf8(raw).map_err(|_| {
        format!(
            "the guest made '{}', a name that is not UTF-8, which the host does not take",
            String::from_utf8_lossy(raw).escape_debug()
        )
    })?;
    Ok(Record {
        mode,
        name,
        data,
        next: (data_at + size + 3) & !3,
    })
}

/// An exported name the host can take: good components, not too deep, after its directory
/// (`dirs`), and once (`seen`).
fn check_export_name(
    name: &str,
    dirs: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    if let Some(why) = parts.iter().find_map(|p| bad_host_name(p)) {
        return Err(format!("/{}: {why}", name.escape_debug()));
    }
    if parts.len() > MAX_DEPTH {
        return Err(format!(
            "/{name} is {} levels deep; at most {MAX_DEPTH}",
            parts.len()
        ));
    }
    if parts.len() > 1 && !dirs.contains(&parts[..parts.len() - 1].join("/")) {
        return Err(format!("/{name} comes before its directory"));
    }
    if !seen.insert(name.to_string()) {
        return Err(format!("/{name} is there twice"));
    }
    Ok(())
}

/// An exported file's bytes, within the bounds of one file and (with `total`) of all.
fn export_file(name: &str, data: &[u8], total: &mut u64) -> Result<Vec<u8>, String> {
    let size = data.len() as u64;
    if size > MAX_DIR_FILE {
        return Err(format!(
            "/{name} has {size} bytes; at most {} MiB a file",
            MAX_DIR_FILE >> 20
        ));
    }
    *total += size;
    if *total > MAX_OUT_BYTES {
        return Err(format!(
            "the files hold more than {} MiB in all",
            MAX_OUT_BYTES >> 20
        ));
    }
    Ok(data.to_vec())
}

/// The entries of `entries` strictly below `guest` (components), keyed by their path
/// relative to it; and whether `guest` itself is there as a directory.
fn below(guest: &[String], entries: &[TreeEntry]) -> (BTreeMap<String, Option<Vec<u8>>>, bool) {
    let root = guest.join("/");
    let prefix = format!("{root}/");
    let mut m = BTreeMap::new();
    let mut has_root = false;
    for e in entries {
        if e.path == root {
            has_root |= e.data.is_none();
        } else if let Some(rel) = e.path.strip_prefix(&prefix) {
            m.insert(rel.to_string(), e.data.clone());
        }
    }
    (m, has_root)
}

/// The changes that turn what was imported under `guest` into what the guest exported
/// there (module doc, 2); paths relative to GUESTDIR. Directories are made parents first;
/// removals come files first, then directories, deepest first.
pub fn diff(
    guest: &[String],
    import: &[TreeEntry],
    export: &[TreeEntry],
) -> Result<Vec<Change>, String> {
    let shown = format!("/{}", guest.join("/"));
    let (before, _) = below(guest, import);
    let (after, present) = below(guest, export);
    if !present {
        return Err(format!(
            "the guest removed {shown} (or made it a file); HOSTDIR itself is never removed"
        ));
    }
    let mut made = Vec::new();
    let mut writes = Vec::new();
    for (rel, data) in &after {
        match (before.get(rel), data) {
            (Some(None), None) => {}
            (None, None) => made.push(Change::MakeDir(rel.clone())),
            (Some(Some(old)), Some(new)) if old == new => {}
            (Some(Some(_)), Some(new)) | (None, Some(new)) => writes.push(Change::Write {
                rel: rel.clone(),
                data: new.clone(),
                existing: before.contains_key(rel),
            }),
            (Some(old), _) => {
                let (was, is) = if old.is_some() {
                    ("file", "directory")
                } else {
                    ("directory", "file")
                };
                return Err(format!(
                    "the guest turned the {was} {shown}/{rel} into a {is}; write-back does not \
                     replace one kind with the other"
                ));
            }
        }
    }
    // BTreeMap order puts a directory before what is in it ("a" < "a/b").
    made.sort_by_key(|c| match c {
        Change::MakeDir(r) => r.matches('/').count(),
        _ => 0,
    });
    let mut files = Vec::new();
    let mut gone_dirs: Vec<&String> = Vec::new();
    for (rel, data) in &before {
        if !after.contains_key(rel) {
            match data {
                Some(_) => files.push(Change::RemoveFile(rel.clone())),
                None => gone_dirs.push(rel),
            }
        }
    }
    gone_dirs.sort_by_key(|r| std::cmp::Reverse(r.matches('/').count()));
    let mut all = made;
    all.extend(writes);
    all.extend(files);
    all.extend(gone_dirs.into_iter().map(|r| Change::RemoveDir(r.clone())));
    Ok(all)
}

/// The write-back of a run that exited with the guest's own status: the export parsed and
/// compared with the import for every `:rw` spec (module doc, 1 and 2).
pub fn plan(specs: &[DirSpec], import: &Tree, export: &[u8]) -> Result<Plan, String> {
    let entries = parse_export(export)?;
    let mut plan = Plan::default();
    for s in specs.iter().filter(|s| s.rw) {
        let changes = diff(&s.guest, &import.entries, &entries)?;
        plan.dirs.push((s.clone(), changes));
    }
    Ok(plan)
}

/// An error of the write-back on the host, one line.
fn io_err(host: &Path, rel: &str, what: &str, e: std::io::Error) -> String {
    format!("{}/{rel}: cannot {what}: {e}", host.display())
}

/// A C string for a path component or relative path.
fn cstr(s: &str) -> CString {
    CString::new(s).expect("checked names hold no NUL")
}

/// Opens `rel` (relative, no `..`, "" for the directory itself) beneath `base` without
/// following any symbolic link (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
fn open_beneath(base: &OwnedFd, rel: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let path = cstr(if rel.is_empty() { "." } else { rel });
    // SAFETY: open_how is plain data; all-zero is a valid value (its fields set below).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads the NUL-terminated path and `how` (its size passed), both live
    // for the call; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            base.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat2 just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `rel`'s directory and last name.
fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// What is at `name` in directory `dir` (not following a link): its st_mode, None if absent.
fn lstat_at(dir: &OwnedFd, name: &str) -> std::io::Result<Option<u32>> {
    let c = cstr(name);
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a NUL-terminated name, and a stat buffer we own.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st.st_mode));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Whether the regular file at `rel` still holds `want` (not a link, not another kind).
fn holds(base: &OwnedFd, rel: &str, want: &[u8]) -> std::io::Result<bool> {
    let fd = match open_beneath(base, rel, libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Ok(false);
    }
    let mut got = Vec::with_capacity(want.len());
    f.take(want.len() as u64 + 1).read_to_end(&mut got)?;
    Ok(got == want)
}

/// Checks HOSTDIR as it is now against what the plan assumes (module doc, 3).
pub fn check_host(plan: &Plan, import: &Tree) -> Result<(), String> {
    for (spec, changes) in &plan.dirs {
        let (imported, _) = below(&spec.guest, &import.entries);
        let hc = HostCheck {
            host: &spec.host,
            base: open_root(&spec.host)?,
            imported,
            new_dirs: changes
                .iter()
                .filter_map(|c| match c {
                    Change::MakeDir(r) => Some(r.as_str()),
                    _ => None,
                })
                .collect(),
        };
        for c in changes {
            match c {
                Change::MakeDir(rel) => hc.absent(rel)?,
                Change::Write {
                    rel,
                    existing: false,
                    ..
                } => hc.absent(rel)?,
                Change::Write { rel, .. } | Change::RemoveFile(rel) => hc.as_imported(rel)?,
                Change::RemoveDir(rel) => hc.holds_only_imported(rel)?,
            }
        }
    }
    Ok(())
}

/// One HOSTDIR being checked: what was imported from it and the directories the plan makes.
struct HostCheck<'a> {
    host: &'a Path,
    base: OwnedFd,
    imported: BTreeMap<String, Option<Vec<u8>>>,
    new_dirs: BTreeSet<&'a str>,
}

impl HostCheck<'_> {
    fn changed(&self, rel: &str) -> String {
        format!(
            "{}/{rel} changed on the host during the run; nothing written back (run again)",
            self.host.display()
        )
    }

    /// `rel` is not on the host (it is to be made).
    fn absent(&self, rel: &str) -> Result<(), String> {
        let (dir, name) = split(rel);
        if self.new_dirs.contains(dir) {
            return Ok(());
        }
        let d = open_beneath(&self.base, dir, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| io_err(self.host, dir, "open the directory", e))?;
        match lstat_at(&d, name) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(format!(
                "{}/{rel} exists on the host (made there during the run, or a link, \
                 device or FIFO the import skipped); nothing written back",
                self.host.display()
            )),
            Err(e) => Err(io_err(self.host, rel, "look at", e)),
        }
    }

    /// The file `rel` holds what was imported (it is to be changed or removed).
    fn as_imported(&self, rel: &str) -> Result<(), String> {
        let Some(Some(old)) = self.imported.get(rel) else {
            return Err(self.changed(rel));
        };
        if !holds(&self.base, rel, old).map_err(|e| io_err(self.host, rel, "read", e))? {
            return Err(self.changed(rel));
        }
        Ok(())
    }

    /// The directory `rel` holds nothing that was not imported (it is to be removed).
    fn holds_only_imported(&self, rel: &str) -> Result<(), String> {
        let host = self.host;
        let d = open_beneath(&self.base, rel, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|_| self.changed(rel))?;
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", d.as_raw_fd()))
            .map_err(|e| io_err(host, rel, "list", e))?;
        for e in listing {
            let e = e.map_err(|e| io_err(host, rel, "list", e))?;
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            if !self.imported.contains_key(&child) {
                return Err(format!(
                    "{}/{child} is on the host but was never in the guest (made \
                     during the run, or skipped at import): the guest removed {}/{rel}, \
                     which would have to go; nothing written back",
                    host.display(),
                    host.display()
                ));
            }
        }
        Ok(())
    }
}

/// HOSTDIR, opened as a directory (following it if it is a link: the user named it).
fn open_root(host: &Path) -> Result<OwnedFd, String> {
    std::fs::File::open(host)
        .and_then(|f| {
            if f.metadata()?.is_dir() {
                Ok(OwnedFd::from(f))
            } else {
                Err(std::io::Error::other("not a directory any more"))
            }
        })
        .map_err(|e| format!("{}: cannot open: {e}", host.display()))
}

/// The process's umask (from /proc/self/status: reading it with umask(2) would change it
/// for a moment).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// SIGINT, SIGTERM and SIGHUP held off while alive (delivered once it is dropped).
struct HoldSignals(libc::sigset_t);

impl HoldSignals {
    fn new() -> HoldSignals {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
        // pthread_sigmask only reads `set` and writes `old`, both ours.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            HoldSignals(old)
        }
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// A temporary file written and not yet renamed, or a directory made: undone on failure.
enum Staged {
    Dir {
        base: usize,
        rel: String,
    },
    Temp {
        base: usize,
        dir: String,
        tmp: String,
        name: String,
    },
}

/// Unlinks `name` in `dir` (`flags`: 0 or AT_REMOVEDIR).
fn unlink_at(dir: &OwnedFd, name: &str, flags: i32) -> std::io::Result<()> {
    let c = cstr(name);
    // SAFETY: a valid descriptor and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `data` into a new private temporary file beside `name` in `dir`, with `mode` at
/// the end; returns its name.
fn write_temp(
    dir: &OwnedFd,
    name: &str,
    data: &[u8],
    mode: u32,
    n: usize,
) -> std::io::Result<String> {
    let tmp = format!(".{name}.vmm-{}-{n}", std::process::id());
    let c = cstr(&tmp);
    // SAFETY: a valid descriptor, a NUL-terminated name; returns a new descriptor or -1.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor openat just returned.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let done = f
        .write_all(data)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all());
    if let Err(e) = done {
        let _ = unlink_at(dir, &tmp, 0);
        return Err(e);
    }
    Ok(tmp)
}

/// Makes the plan's changes in HOSTDIR (module doc, 4). On an error before the renames,
/// everything staged is undone and HOSTDIR is as it was.
pub fn apply(plan: &Plan) -> Result<(), String> {
    let _held = HoldSignals::new();
    let mut bases = Vec::new();
    for (spec, _) in &plan.dirs {
        bases.push(open_root(&spec.host)?);
    }
    let mut a = Applier {
        bases,
        staged: Vec::new(),
        mask: umask(),
        n: 0,
    };
    for (i, (spec, changes)) in plan.dirs.iter().enumerate() {
        for c in changes {
            if let Err(e) = a.stage(i, &spec.host, c) {
                a.undo();
                return Err(format!("{e}; nothing written back"));
            }
        }
    }
    // Committing: renames, then removals. These fail only if HOSTDIR is changed under us.
    let mut errors = a.rename_all(plan);
    errors.extend(a.remove_all(plan));
    match errors.first() {
        None => Ok(()),
        Some(e) => Err(format!(
            "{e} (and {} more): the write-back is incomplete",
            errors.len() - 1
        )),
    }
}

/// One write-back being applied: each HOSTDIR opened, what is staged so far.
struct Applier {
    bases: Vec<OwnedFd>,
    staged: Vec<Staged>,
    /// This process's umask, for new files.
    mask: u32,
    /// Temporary files made (their names' serial).
    n: usize,
}

impl Applier {
    /// Opens directory `dir` beneath HOSTDIR number `base`.
    fn open_dir(&self, base: usize, dir: &str) -> std::io::Result<OwnedFd> {
        open_beneath(&self.bases[base], dir, libc::O_RDONLY | libc::O_DIRECTORY)
    }

    /// Stages one change of HOSTDIR number `i` (`host`): a directory made, or a file
    /// written to a temporary beside its name. Removals wait for the commit.
    fn stage(&mut self, i: usize, host: &Path, c: &Change) -> Result<(), String> {
        match c {
            Change::MakeDir(rel) => {
                let (dir, name) = split(rel);
                self.open_dir(i, dir)
                    .and_then(|d| mkdir_at(&d, name))
                    .map_err(|e| io_err(host, rel, "make the directory", e))?;
                self.staged.push(Staged::Dir {
                    base: i,
                    rel: rel.clone(),
                });
            }
            Change::Write {
                rel,
                data,
                existing,
            } => {
                let (dir, name) = split(rel);
                self.n += 1;
                let (mask, n) = (self.mask, self.n);
                let tmp = self
                    .open_dir(i, dir)
                    .and_then(|d| {
                        let mode = match (existing, lstat_at(&d, name)?) {
                            (true, Some(m)) => m & 0o777,
                            _ => 0o666 & !mask,
                        };
                        write_temp(&d, name, data, mode, n)
                    })
                    .map_err(|e| io_err(host, rel, "write", e))?;
                self.staged.push(Staged::Temp {
                    base: i,
                    dir: dir.to_string(),
                    tmp,
                    name: name.to_string(),
                });
            }
            Change::RemoveFile(_) | Change::RemoveDir(_) => {}
        }
        Ok(())
    }

    /// Removes everything staged, last first.
    fn undo(&self) {
        for s in self.staged.iter().rev() {
            let (b, dir, name, flags) = match s {
                Staged::Dir { base, rel } => {
                    let (d, n) = split(rel);
                    (*base, d, n, libc::AT_REMOVEDIR)
                }
                Staged::Temp { base, dir, tmp, .. } => (*base, dir.as_str(), tmp.as_str(), 0),
            };
            if let Ok(d) = self.open_dir(b, dir) {
                let _ = unlink_at(&d, name, flags);
            }
        }
    }

    /// Renames every staged temporary file into place; the errors.
    fn rename_all(&self, plan: &Plan) -> Vec<String> {
        let mut errors = Vec::new();
        for s in &self.staged {
            let Staged::Temp {
                base,
                dir,
                tmp,
                name,
            } = s
            else {
                continue;
            };
            let r = self
                .open_dir(*base, dir)
                .and_then(|d| rename_at(&d, tmp, name));
            if let Err(e) = r {
                let host = &plan.dirs[*base].0.host;
                errors.push(io_err(host, name, "rename into place", e));
            }
        }
        errors
    }

    /// Makes the plan's removals; the errors.
    fn remove_all(&self, plan: &Plan) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, (spec, changes)) in plan.dirs.iter().enumerate() {
            for c in changes {
                let (rel, flags) = match c {
                    Change::RemoveFile(r) => (r, 0),
                    Change::RemoveDir(r) => (r, libc::AT_REMOVEDIR),
                    _ => continue,
                };
                let (dir, name) = split(rel);
                let r = self
                    .open_dir(i, dir)
                    .and_then(|d| unlink_at(&d, name, flags));
                if let Err(e) = r {
                    errors.push(io_err(&spec.host, rel, "remove", e));
                }
            }
        }
        errors
    }
}

/// Makes directory `name` in `dir` (mode 0777, less the umask).
fn mkdir_at(dir: &OwnedFd, name: &str) -> std::io::Result<()> {
    let cn = cstr(name);
    // SAFETY: a valid descriptor and a NUL-terminated name.
    match unsafe { libc::mkdirat(dir.as_raw_fd(), cn.as_ptr(), 0o777) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Renames `from` to `to`, both in `dir` (replacing `to`).
fn rename_at(dir: &OwnedFd, from: &str, to: &str) -> std::io::Result<()> {
    let (cf, ct) = (cstr(from), cstr(to));
    // SAFETY: a valid descriptor (both sides) and NUL-terminated names.
    match unsafe { libc::renameat(dir.as_raw_fd(), cf.as_ptr(), dir.as_raw_fd(), ct.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The write-back of one run that exited with the guest's own status: planned, checked
/// against HOSTDIR, applied. `export` is None when the guest sent none or too much.
pub fn write_back(specs: &[DirSpec], import: &Tree, export: Option<&[u8]>) -> Result<Plan, String> {
    let export = export.ok_or_else(|| {
        format!(
            "the guest sent no complete export of its write-back directories (more than {} MiB, \
             or the kernel never got to it)",
            MAX_OUT_BYTES >> 20
        )
    })?;
    let plan = plan(specs, import, export)?;
    check_host(&plan, import)?;
    apply(&plan)?;
    Ok(plan)
}

/// The `--dir` options that ask for the write-back, parsed (those that do not parse are
/// left out: the import refuses them before any boot).
pub fn rw_specs(dir_options: &[String]) -> Vec<DirSpec> {
    dir_options
        .iter()
        .filter_map(|o| crate::boot::dirs::parse_spec(o).ok())
        .filter(|s| s.rw)
        .collect()
}

/// Refuses two write-back `--dir`s whose HOSTDIRs are the same tree or one inside the
/// other (their changes could collide). HOSTDIRs that cannot be resolved are left to the
/// import, which refuses them.
pub fn check_rw_hosts(specs: &[DirSpec]) -> Result<(), String> {
    let rw: Vec<(&DirSpec, std::path::PathBuf)> = specs
        .iter()
        .filter(|s| s.rw)
        .filter_map(|s| Some((s, s.host.canonicalize().ok()?)))
        .collect();
    for (i, (a, pa)) in rw.iter().enumerate() {
        for (b, pb) in &rw[i + 1..] {
            if pa.starts_with(pb) || pb.starts_with(pa) {
                return Err(format!(
                    "--dir {} and --dir {} write back into the same host tree; give one",
                    a.spec, b.spec
                ));
            }
        }
    }
    Ok(())
}

/// Whether any `--dir` option asks for the write-back.
pub fn any_rw_option(dir_options: &[String]) -> bool {
    !rw_specs(dir_options).is_empty()
}

/// The GUESTDIRs the kernel exports: the `:rw` ones of `--dir`, and (inside the lab) those
/// of `--dir-out`.
pub fn guestdirs(dir_options: &[String], dir_out: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = rw_specs(dir_options).into_iter().map(|s| s.guest).collect();
    out.extend(dir_out.iter().map(|g| {
        g.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }));
    out
}

/// The kernel's `dirout=` word for the write-back GUESTDIRs (None without any).
pub fn cmdline_word(guestdirs: &[Vec<String>]) -> Option<String> {
    (!guestdirs.is_empty()).then(|| {
        let roots: Vec<String> = guestdirs.iter().map(|g| g.join("/")).collect();
        format!("{}={}", xv6_abi::cmdline::DIROUT, roots.join(","))
    })
}

/// What `--dir …:rw` made of one run of the guest in this process (on this host's KVM, or as
/// the inner `vmm` of a lab run, which hands the export to the outer one instead): built by
/// [`after_run`] once the guest has ended.
pub struct RunWriteBack {
    /// The `:rw` specs this process writes back (none inside the lab).
    rw: Vec<DirSpec>,
    /// Any write-back asked for, here or by the outer `vmm` (`--dir-out`).
    asked: bool,
    /// What was (or, inside the lab, would be) written back.
    plan: Option<Plan>,
    /// Why nothing was written back although the guest sent an export.
    failed: Option<String>,
    /// The guest sent no export (it did not exit with its own status).
    nothing_sent: bool,
    /// Inside the lab: the export, for the outer `vmm`.
    export: Option<Vec<u8>>,
}

/// After the guest ended with `outcome` and exported `dirout` (the debug device's stream;
/// None when it overflowed): writes back what this process's `--dir …:rw` asks for, or,
/// inside the lab (`--dir-out`), keeps the export for the outer `vmm`.
pub fn after_run(
    args: &crate::cli::RunArgs,
    tree: &Tree,
    outcome: &crate::outcome::Outcome,
    dirout: Option<&[u8]>,
) -> RunWriteBack {
    use crate::outcome::Outcome;
    let rw = rw_specs(&args.dir);
    let asked = !rw.is_empty() || !args.dir_out.is_empty();
    let mut wb = RunWriteBack {
        rw,
        asked,
        plan: None,
        failed: None,
        nothing_sent: false,
        export: None,
    };
    let sent = match (outcome, dirout) {
        (Outcome::Exited(_), None) if asked => Err(format!(
            "the guest's export is larger than {} MiB, or unreadable; nothing written back",
            crate::devices::debug::DIROUT_MAX >> 20
        )),
        (Outcome::Exited(_), Some(d)) if asked && !d.is_empty() => Ok(d),
        _ => {
            wb.nothing_sent = true;
            return wb;
        }
    };
    match sent {
        Err(e) => wb.failed = Some(e),
        Ok(export) if !wb.rw.is_empty() => match write_back(&wb.rw, tree, Some(export)) {
            Ok(p) => wb.plan = Some(p),
            Err(e) => wb.failed = Some(e),
        },
        Ok(export) => {
            // Inside the lab: the outer vmm writes back; the plan here is for --stats.
            wb.export = Some(export.to_vec());
            wb.plan = plan(&lab_side_specs(&args.dir_out), tree, export).ok();
        }
    }
    wb
}

/// The `:rw` GUESTDIRs the outer `vmm` named (`--dir-out`), as specs with no host side.
fn lab_side_specs(dir_out: &[String]) -> Vec<DirSpec> {
    guestdirs(&[], dir_out)
        .into_iter()
        .map(|guest| DirSpec {
            spec: String::new(),
            host: std::path::PathBuf::new(),
            guest,
            rw: true,
        })
        .collect()
}

impl RunWriteBack {
    /// What `--stats`' `vmm: dir:` line says went out.
    pub fn out_text(&self) -> String {
        match (&self.plan, self.asked) {
            (_, false) => "out 0 files, 0 bytes (read-only)".to_string(),
            (Some(p), true) => p.out_text(),
            (None, true) => "out nothing (no write-back)".to_string(),
        }
    }

    /// Inside the lab: the export, for the outer `vmm` (the run's results carry it out).
    pub fn take_export(&mut self) -> Option<Vec<u8>> {
        self.export.take()
    }

    /// `--stats-json`'s document `json` with the `dir` object: what went in, what came out.
    pub fn stats_json(&self, json: &str, tree: &Tree) -> String {
        with_dir_stats(json, tree, self.plan.as_ref(), self.asked)
    }

    /// The run's exit status: `status`, unless a write-back was refused (125, with its one
    /// line); a run that sent nothing says so in one line.
    pub fn status(&self, status: i32) -> i32 {
        if let Some(e) = &self.failed {
            eprintln!("vmm: error: --dir …:rw: write-back refused: {e}");
            return crate::exit::FAILURE;
        }
        if !self.rw.is_empty() && self.nothing_sent {
            eprintln!("{}", not_written_back(&self.rw));
        }
        status
    }
}

/// The one line a write-back run prints when it did not end with the guest's own status.
pub fn not_written_back(rw: &[DirSpec]) -> String {
    let hosts: Vec<String> = rw.iter().map(|s| s.host.display().to_string()).collect();
    format!(
        "vmm: dir: nothing written back to {} (the run did not end with the guest's own exit \
         status)",
        hosts.join(", ")
    )
}

/// `--stats-json`'s document with a `dir` object: what went in, what came out.
fn with_dir_stats(json: &str, tree: &Tree, plan: Option<&Plan>, rw: bool) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_string();
    };
    let (files, bytes, dirs) = tree.counts();
    let out = plan.map(|p| {
        let (f, b, made, removed) = p.counts();
        serde_json::json!({"files": f, "bytes": b, "dirs_made": made, "removed": removed})
    });
    v["dir"] = serde_json::json!({
        "in": {"files": files, "bytes": bytes, "dirs": dirs},
        "write_back": rw,
        "out": out,
    });
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, data: Option<&str>) -> TreeEntry {
        TreeEntry {
            path: path.to_string(),
            data: data.map(|d| d.as_bytes().to_vec()),
        }
    }

    fn cpio(entries: &[TreeEntry]) -> Vec<u8> {
        Tree {
            entries: entries.to_vec(),
            notes: vec![],
        }
        .to_cpio()
    }

    fn guest(g: &str) -> Vec<String> {
        g.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_diff_names_what_was_made_changed_and_removed() {
        let import = [
            e("d", None),
            e("d/a", Some("a")),
            e("d/b", Some("b")),
            e("d/same", Some("s")),
            e("d/old", None),
            e("d/old/x", Some("x")),
            e("d/old/deeper", None),
            e("other", None),
            e("other/o", Some("o")),
        ];
        let export = [
            e("d", None),
            e("d/a", Some("A")),
            e("d/same", Some("s")),
            e("d/new", None),
            e("d/new/in", None),
            e("d/new/in/f", Some("f")),
            e("d/c", Some("c")),
        ];
        let changes = diff(&guest("/d"), &import, &export).unwrap();
        let w = |rel: &str, data: &str, existing| Change::Write {
            rel: rel.into(),
            data: data.as_bytes().to_vec(),
            existing,
        };
        assert_eq!(
            changes,
            [
                Change::MakeDir("new".into()),
                Change::MakeDir("new/in".into()),
                w("a", "A", true),
                w("c", "c", false),
                w("new/in/f", "f", false),
                Change::RemoveFile("b".into()),
                Change::RemoveFile("old/x".into()),
                Change::RemoveDir("old/deeper".into()),
                Change::RemoveDir("old".into()),
            ]
        );
        // Nothing changed: nothing to do. Another GUESTDIR's entries do not count.
        assert!(diff(&guest("/d"), &import, &import).unwrap().is_empty());
    }

    #[test]
    fn the_diff_refuses_a_removed_guestdir_and_a_change_of_kind() {
        let import = [e("d", None), e("d/a", Some("a")), e("d/s", None)];
        let err = diff(&guest("/d"), &import, &[e("x", None)]).unwrap_err();
        assert!(err.contains("removed /d"), "{err}");
        let err = diff(
            &guest("/d"),
            &import,
            &[e("d", None), e("d/a", None), e("d/s", None)],
        )
        .unwrap_err();
        assert!(err.contains("file /d/a into a directory"), "{err}");
        let err = diff(
            &guest("/d"),
            &import,
            &[e("d", None), e("d/a", Some("a")), e("d/s", Some(""))],
        )
        .unwrap_err();
        assert!(err.contains("directory /d/s into a file"), "{err}");
    }

    #[test]
    fn exports_are_checked_like_imports() {
        let ok = [e("d", None), e("d/f", Some("x"))];
        assert_eq!(parse_export(&cpio(&ok)).unwrap(), ok);
        for (bad, want) in [
            (vec![e("d/f", Some("x"))], "before its directory"),
            (vec![e("d", None), e("d/..", None)], "cannot be written"),
            (vec![e("d", None), e("d", None)], "twice"),
            (
                vec![e("d", None), e("d/a\nb", Some(""))],
                "control character",
            ),
            (
                vec![e("d", None), e("d/abcdefghijklmno", None)],
                "at most 14",
            ),
            (
                vec![
                    e("1", None),
                    e("1/2", None),
                    e("1/2/3", None),
                    e("1/2/3/4", None),
                    e("1/2/3/4/5", None),
                    e("1/2/3/4/5/6", None),
                    e("1/2/3/4/5/6/7", None),
                    e("1/2/3/4/5/6/7/8", None),
                    e("1/2/3/4/5/6/7/8/9", None),
                ],
                "levels deep",
            ),
        ] {
            let err = parse_export(&cpio(&bad)).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // Cut short anywhere: refused, never half taken.
        let whole = cpio(&ok);
        for n in [0, 50, 120, whole.len() - 1] {
            assert!(parse_export(&whole[..n]).is_err(), "{n}");
        }
        // A name that is not UTF-8.
        let mut raw = cpio(&[e("d", None), e("d/zz", Some(""))]);
        let at = raw.windows(4).position(|w| w == b"d/zz").unwrap();
        raw[at + 2] = 0xff;
        assert!(parse_export(&raw).unwrap_err().contains("not UTF-8"));
    }

    /// A HOSTDIR with a, b, sub/c, imported at /d; the import tree as the walk made it.
    fn host_tree() -> (tempfile::TempDir, DirSpec, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h");
        std::fs::create_dir_all(h.join("sub")).unwrap();
        std::fs::write(h.join("a"), "a").unwrap();
        std::fs::write(h.join("b"), "b").unwrap();
        std::fs::write(h.join("sub/c"), "c").unwrap();
        std::fs::set_permissions(h.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let spec = crate::boot::dirs::parse_spec(&format!("{}:/d:rw", h.display())).unwrap();
        let tree = crate::boot::dirs::import(std::slice::from_ref(&spec), 0).unwrap();
        (dir, spec, tree)
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for en in std::fs::read_dir(&d).unwrap() {
                let p = en.unwrap().path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if meta.is_dir() {
                    todo.push(p);
                    out.push(format!("{rel}/"));
                } else if meta.is_file() {
                    let data = std::fs::read_to_string(&p).unwrap();
                    out.push(format!(
                        "{rel}={data} {:o}",
                        meta.permissions().mode() & 0o777
                    ));
                } else {
                    out.push(format!("{rel}@"));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_write_back_makes_changes_and_removes_beneath_hostdir() {
        let (_d, spec, tree) = host_tree();
        let export = cpio(&[
            e("d", None),
            e("d/a", Some("A!")),
            e("d/n", None),
            e("d/n/f", Some("new")),
        ]);
        let plan = write_back(std::slice::from_ref(&spec), &tree, Some(&export)).unwrap();
        assert_eq!(plan.counts(), (2, 5, 1, 3));
        let new_mode = 0o666 & !umask();
        assert_eq!(
            listing(&spec.host),
            [
                "a=A! 640".to_string(),
                "n/".into(),
                format!("n/f=new {new_mode:o}"),
            ]
        );
    }

    #[test]
    fn a_host_changed_during_the_run_or_holding_a_link_is_left_alone() {
        // A file changed on the host since the import.
        let (_d, spec, tree) = host_tree();
        std::fs::write(spec.host.join("a"), "edited on the host").unwrap();
        let before = listing(&spec.host);
        let export = cpio(&[e("d", None), e("d/a", Some("A")), e("d/new", Some("n"))]);
        let err = write_back(std::slice::from_ref(&spec), &tree, Some(&export)).unwrap_err();
        assert!(err.contains("/a changed on the host"), "{err}");
        assert_eq!(listing(&spec.host), before);
        // A link where the guest makes a directory (planted after the import): refused,
        // and nothing is written through it.
        let (d, spec, tree) = host_tree();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, spec.host.join("l")).unwrap();
        let export = cpio(&[e("d", None), e("d/l", None), e("d/l/f", Some("x"))]);
        let err = write_back(std::slice::from_ref(&spec), &tree, Some(&export)).unwrap_err();
        assert!(err.contains("/l exists on the host"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // Even past the check (the link swapped in after it), the walk does not follow it.
        let mut plan = plan(std::slice::from_ref(&spec), &tree, &export).unwrap();
        plan.dirs[0].1.retain(|c| !matches!(c, Change::MakeDir(_)));
        let err = apply(&plan).unwrap_err();
        assert!(err.contains("nothing written back"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A directory the guest removed holds something new on the host.
        let (_d, spec, tree) = host_tree();
        std::fs::write(spec.host.join("sub/extra"), "x").unwrap();
        let export = cpio(&[e("d", None), e("d/a", Some("a")), e("d/b", Some("b"))]);
        let err = write_back(std::slice::from_ref(&spec), &tree, Some(&export)).unwrap_err();
        assert!(err.contains("sub/extra is on the host"), "{err}");
        assert!(spec.host.join("sub/c").exists());
        // No export at all.
        let err = write_back(std::slice::from_ref(&spec), &tree, None).unwrap_err();
        assert!(err.contains("no complete export"), "{err}");
    }

    #[test]
    fn a_failure_while_staging_undoes_what_was_staged() {
        let (_d, spec, tree) = host_tree();
        let before = listing(&spec.host);
        let export = cpio(&[
            e("d", None),
            e("d/a", Some("A")),
            e("d/m", None),
            e("d/m/f", Some("f")),
            e("d/z", Some("z")),
        ]);
        let mut plan = plan(std::slice::from_ref(&spec), &tree, &export).unwrap();
        // A write into a directory that is not there fails after the others were staged.
        plan.dirs[0].1.push(Change::Write {
            rel: "nowhere/f".into(),
            data: b"x".to_vec(),
            existing: false,
        });
        let err = apply(&plan).unwrap_err();
        assert!(
            err.contains("nowhere/f") && err.contains("nothing written back"),
            "{err}"
        );
        assert_eq!(listing(&spec.host), before);
    }

    #[test]
    fn two_write_backs_into_one_host_tree_are_refused() {
        let (_d, spec, _) = host_tree();
        let h = spec.host.display().to_string();
        let specs = |v: &[String]| -> Vec<DirSpec> {
            v.iter()
                .map(|o| crate::boot::dirs::parse_spec(o).unwrap())
                .collect()
        };
        let nested = specs(&[format!("{h}:/a:rw"), format!("{h}/sub:/b:rw")]);
        let err = check_rw_hosts(&nested).unwrap_err();
        assert!(err.contains("the same host tree"), "{err}");
        // Read-only beside a write-back, and two separate trees: fine.
        std::fs::create_dir(spec.host.join("x")).unwrap();
        assert!(check_rw_hosts(&specs(&[format!("{h}:/a:rw"), format!("{h}/sub:/b")])).is_ok());
        assert!(
            check_rw_hosts(&specs(&[format!("{h}/sub:/a:rw"), format!("{h}/x:/b:rw")])).is_ok()
        );
    }

    #[test]
    fn the_command_line_names_the_write_back_guestdirs() {
        let opts = ["h:/a/b:rw".to_string(), "h:/ro".into(), "h:/c:rw".into()];
        let g = guestdirs(&opts, &["/x//y".to_string()]);
        assert_eq!(cmdline_word(&g).unwrap(), "dirout=a/b,c,x/y");
        assert_eq!(cmdline_word(&guestdirs(&["h:/ro".into()], &[])), None);
    }
}
