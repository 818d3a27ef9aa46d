//! User programs: finding the one `vmm run` was asked for, and the two boot modules that carry
//! it to the kernel — the program archive (cpio newc: every built-in program, plus the host
//! program if one was given) and the first process's argv (NUL-terminated strings).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::elf::{header, program_header::PT_LOAD, Elf};

use crate::boot::images;

/// The program `vmm run` runs when given none.
pub const DEFAULT_PROGRAM: &str = "tour";
/// User memory ends where the kernel half starts.
const KERNBASE: u64 = xv6_abi::layout::KERNBASE as u64;

/// A program to run: its name in the archive and its image.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub image: Vec<u8>,
    /// Set for a program that came from a host file.
    pub host_path: Option<PathBuf>,
}

/// Why a program cannot run: 127 or 126.
#[derive(Debug)]
pub enum ProgramError {
    NotFound(String),
    NotExecutable(String),
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramError::NotFound(m) | ProgramError::NotExecutable(m) => f.write_str(m),
        }
    }
}

/// The largest host program (or data file) `vmm run` takes: it must fit, with the built-ins,
/// in the 32 MiB of boot-module space above PHYSTOP.
pub const MAX_HOST_FILE: u64 = 16 << 20;

/// Reads the host file `path` for the guest: a regular file (after symlinks) of at most
/// `limit` bytes. A missing file is `NotFound` (127); a directory, a device, a FIFO, an
/// unreadable or oversized file is `NotExecutable` (126). Never blocks on a FIFO and never
/// reads more than `limit + 1` bytes (a file that grows while read is caught too).
pub fn read_host_file(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, ProgramError> {
    use std::io::Read;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ProgramError::NotFound(format!("no such {what} {shown}: give an existing file"))
        }
        _ => ProgramError::NotExecutable(format!("cannot read {what} {shown}: {e}")),
    })?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(ProgramError::NotExecutable(format!(
            "{what} {shown} is {kind}: give a regular file"
        )));
    }
    let too_big = || {
        ProgramError::NotExecutable(format!(
            "{what} {shown} is larger than {} MiB, the most a run takes",
            limit >> 20
        ))
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let file = std::fs::File::open(path)
        .map_err(|e| ProgramError::NotExecutable(format!("cannot read {what} {shown}: {e}")))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ProgramError::NotExecutable(format!("cannot read {what} {shown}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Finds `spec`: a host path if it contains `/`, else a built-in program's name.
pub fn resolve(spec: impl AsRef<OsStr>) -> Result<Program, ProgramError> {
    let spec = spec.as_ref();
    let shown = spec.to_string_lossy();
    if spec.as_bytes().contains(&b'/') {
        let path = Path::new(spec);
        let image = read_host_file(path, "program", MAX_HOST_FILE)?;
        check_executable(&image)
            .map_err(|why| ProgramError::NotExecutable(format!("{shown} cannot run: {why}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ProgramError::NotFound(format!("{shown} names no file")))?;
        if let Some(why) = reserved(&name) {
            return Err(ProgramError::NotExecutable(format!(
                "program {shown}: {why}; copy it to another name"
            )));
        }
        return Ok(Program {
            name,
            image,
            host_path: Some(path.to_path_buf()),
        });
    }
    let name = spec.to_str().unwrap_or_default();
    match images::user_program(name) {
        Some(image) => Ok(Program {
            name: name.to_string(),
            image: image.to_vec(),
            host_path: None,
        }),
        None => {
            let hint = if Path::new(spec).exists() {
                format!("; to run the host file, say ./{shown}")
            } else {
                "; give a path with '/' for a host file".to_string()
            };
            Err(ProgramError::NotFound(format!(
                "no built-in program '{shown}' (built-ins: {}{hint})",
                builtin_names().join(", ")
            )))
        }
    }
}

/// Finds `spec` among the `--add` files first (by name, when it has no `/`; it must be an
/// executable then), else as `resolve` does. A program from `added` has no host path of its
/// own: it travels with the added files.
pub fn resolve_among(spec: &OsStr, added: &[Program]) -> Result<Program, ProgramError> {
    if spec.as_bytes().contains(&b'/') {
        let program = resolve(spec)?;
        if let Some(a) = added
            .iter()
            .find(|a| guest_name(&a.name) == guest_name(&program.name))
        {
            return Err(ProgramError::NotExecutable(format!(
                "program {} and --add {} would both be '{}' in the guest: rename the added \
                 file (HOSTPATH:NAME)",
                spec.to_string_lossy(),
                a.host_path
                    .as_deref()
                    .map_or_else(|| a.name.clone(), |p| p.display().to_string()),
                a.name
            )));
        }
        check_module_space(added, Some(&program))?;
        return Ok(program);
    }
    check_module_space(added, None)?;
    match added.iter().rev().find(|a| OsStr::new(&a.name) == spec) {
        Some(a) => {
            check_executable(&a.image).map_err(|why| {
                ProgramError::NotExecutable(format!("{} cannot run: {why}", a.name))
            })?;
            Ok(Program {
                host_path: None,
                ..a.clone()
            })
        }
        None => resolve(spec),
    }
}

/// Refuses a first-process argv the kernel's exec cannot take: more than MAXARG strings, or
/// more than fit, with exec's stack words, on the one stack page. (126, as exec's own refusal.)
pub fn check_argv(argv: &[OsString]) -> Result<(), ProgramError> {
    use xv6_abi::exec::{MAXARG, USTACK_BYTES};
    if argv.len() > MAXARG {
        return Err(ProgramError::NotExecutable(format!(
            "argument list too long: {} words, at most {MAXARG} with the program name",
            argv.len()
        )));
    }
    // Each string NUL-terminated and aligned to 4 on the stack, below the argv words.
    let strings: usize = argv.iter().map(|a| (a.len() + 1).next_multiple_of(4)).sum();
    const PGSIZE: usize = xv6_abi::mmu::PGSIZE as usize;
    if strings + USTACK_BYTES > PGSIZE {
        return Err(ProgramError::NotExecutable(format!(
            "argument list too long: {strings} bytes of strings, at most {} fit on the stack page",
            PGSIZE - USTACK_BYTES
        )));
    }
    Ok(())
}

/// Names of the built-in programs.
pub fn builtin_names() -> Vec<&'static str> {
    images::USER_PROGRAMS.iter().map(|(n, _)| *n).collect()
}

/// Whether `image` is a static ELF32 i386 executable the kernel's exec can load. Reads only
/// what exec reads — the ELF header and the program headers — so a file whose section headers
/// are stripped or cut off still passes.
pub fn check_executable(image: &[u8]) -> Result<(), String> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
    let h = Elf::parse_header(image).map_err(|e| format!("not an ELF executable ({e})"))?;
    if h.e_ident[header::EI_CLASS] == header::ELFCLASS64 {
        return Err("a 64-bit ELF; the kernel runs 32-bit i386 programs".into());
    }
    if h.e_machine != header::EM_386 {
        return Err(format!("ELF machine {} is not i386", h.e_machine));
    }
    if h.e_type != header::ET_EXEC {
        return Err("not a static executable (ET_EXEC); link with -static, no PIE".into());
    }
    let ctx = Ctx::new(Container::Little, Endian::Little);
    let phdrs = ProgramHeader::parse(image, h.e_phoff as usize, h.e_phnum as usize, ctx)
        .map_err(|e| format!("its program headers are cut off or malformed ({e})"))?;
    if phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        return Err("dynamically linked; the kernel has no dynamic loader".into());
    }
    let mut loads = phdrs.iter().filter(|p| p.p_type == PT_LOAD).peekable();
    if loads.peek().is_none() {
        return Err("no loadable segment".into());
    }
    for p in loads {
        if p.p_vaddr.saturating_add(p.p_memsz) > KERNBASE {
            return Err(format!(
                "a segment at {:#x} reaches the kernel half",
                p.p_vaddr
            ));
        }
        if p.p_offset.saturating_add(p.p_filesz) > image.len() as u64 {
            return Err(format!(
                "the segment at {:#x} runs past the end of the file",
                p.p_vaddr
            ));
        }
    }
    Ok(())
}

/// The program archive: every built-in program, and `extra` (which wins over a built-in of the
/// same name).
pub fn archive(extra: Option<&Program>) -> Vec<u8> {
    archive_with(extra.map(std::slice::from_ref).unwrap_or_default())
}

/// The program archive: every built-in program, and the host files `extra` (each wins over a
/// built-in of the same name; of two host files with one name, the last).
pub fn archive_with(extra: &[Program]) -> Vec<u8> {
    cpio_newc(&archive_files(extra))
}

/// The files of [`archive_with`]'s archive, by name.
pub fn archive_files(extra: &[Program]) -> Vec<(&str, &[u8])> {
    let wins = |i: usize, name: &str| extra[i + 1..].iter().all(|e| e.name != name);
    let mut files: Vec<(&str, &[u8])> = images::USER_PROGRAMS
        .iter()
        .filter(|(n, _)| extra.iter().all(|e| e.name != *n))
        .map(|(n, b)| (*n, *b))
        .collect();
    for (i, e) in extra.iter().enumerate() {
        if wins(i, &e.name) {
            files.push((&e.name, &e.image));
        }
    }
    files
}

/// Bytes a name in the guest's directories may have (xv6 DIRSIZ).
pub const DIRSIZ: usize = xv6_abi::fs::DIRSIZ;
/// The largest host file `--add` takes (the whole archive must fit the 32 MiB module area:
/// `check_module_space`).
pub const MAX_ADD_SIZE: u64 = 16 << 20;
/// The most files `--add` puts into the guest (the guest's file system has inodes for them
/// and 200 more, xv6-abi `fs`).
pub const MAX_ADD_FILES: usize = xv6_abi::fs::MAX_ADDED_FILES;

/// The name the guest's directory entry holds for `name`: its first DIRSIZ bytes (the kernel
/// cuts longer ones, as xv6 does).
fn guest_name(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(DIRSIZ)]
}

/// Why `name` cannot be a file in the guest's `/` (None if it can): `.`, `..`, `console`
/// (the console device is there) or `TRAILER!!!` (cpio's end-of-archive marker).
fn reserved(name: &str) -> Option<String> {
    xv6_abi::fs::RESERVED_NAMES
        .contains(&std::str::from_utf8(guest_name(name)).unwrap_or(""))
        .then(|| {
            format!(
                "the name '{name}' is taken in the guest's / (reserved: . .. console TRAILER!!!)"
            )
        })
}

/// Refuses added files (and a host program) that, with the built-in programs, would not fit
/// the boot-module area above PHYSTOP (xv6-abi `layout::BOOT_RESERVED`) — checked here, with
/// one line and 126, rather than when the modules are placed.
fn check_module_space(added: &[Program], program: Option<&Program>) -> Result<(), ProgramError> {
    check_space_with_tree(added, program, &[])
}

/// One more file or directory of the archive: its name, cpio mode and contents.
pub type ArchiveEntry<'a> = (&'a str, u32, &'a [u8]);

/// [`check_module_space`] with the `--dir` trees' entries (`Tree::archive_entries`) too.
pub fn check_space_with_tree(
    added: &[Program],
    program: Option<&Program>,
    tree: &[ArchiveEntry<'_>],
) -> Result<(), ProgramError> {
    let mut extra: Vec<Program> = added.to_vec();
    extra.extend(program.filter(|p| p.host_path.is_some()).cloned());
    let files = archive_files(&extra);
    // cpio newc: a 110-byte header and the NUL-terminated name padded to 4, the data padded
    // to 4, each; the trailer; then the argv module (at most a page) on the next page.
    let archive: usize = files
        .iter()
        .map(|(n, b)| (n.len(), b.len()))
        .chain(tree.iter().map(|(n, _, b)| (n.len(), b.len())))
        .map(|(n, b)| (110 + n + 1).next_multiple_of(4) + b.next_multiple_of(4))
        .sum::<usize>()
        + 124;
    let room = xv6_abi::layout::BOOT_RESERVED as usize - 2 * xv6_abi::mmu::PGSIZE as usize;
    if archive > room {
        return Err(ProgramError::NotExecutable(format!(
            "--add/--dir: the added files, the --dir trees, a host program and the built-in \
             programs come to {} KiB, more than the {} KiB of boot-module space; add fewer or \
             smaller files",
            archive.div_ceil(1024),
            room / 1024
        )));
    }
    Ok(())
}

/// The files `--add HOSTPATH[:NAME]` puts into the guest's `/`: a regular file (named NAME,
/// default its file name), or every regular file of a directory (by their names). Missing:
/// 127; not a regular file or directory, unreadable, too big, a name that does not fit a
/// directory entry or is reserved (`.`, `..`, `console`, `TRAILER!!!`), a name given twice,
/// or more than MAX_ADD_FILES files in all: 126. Everything is refused here, before boot.
pub fn resolve_adds(specs: &[String]) -> Result<Vec<Program>, ProgramError> {
    let mut out: Vec<Program> = Vec::new();
    let too_many = |spec: &str| {
        ProgramError::NotExecutable(format!(
            "--add {spec}: more than {MAX_ADD_FILES} files in all; the guest takes at most \
             {MAX_ADD_FILES}"
        ))
    };
    for spec in specs {
        let (path, name) = match spec.rsplit_once(':') {
            Some((p, n)) if !p.is_empty() && !n.contains('/') => (p, Some(n)),
            _ => (spec.as_str(), None),
        };
        let path = Path::new(path);
        let meta = std::fs::metadata(path)
            .map_err(|e| ProgramError::NotFound(format!("--add {spec}: {e}")))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ProgramError::NotExecutable(format!("--add {spec}: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            if out.len() + entries.len() > MAX_ADD_FILES {
                return Err(too_many(spec));
            }
            for p in entries {
                let file = add_file(spec, &p, None)?;
                push_unique(&mut out, spec, file)?;
            }
        } else {
            if out.len() >= MAX_ADD_FILES {
                return Err(too_many(spec));
            }
            let file = add_file(spec, path, name)?;
            push_unique(&mut out, spec, file)?;
        }
    }
    Ok(out)
}

/// Adds `file` to `out` unless a file there has the same name in the guest (126).
fn push_unique(out: &mut Vec<Program>, spec: &str, file: Program) -> Result<(), ProgramError> {
    if let Some(first) = out
        .iter()
        .find(|a| guest_name(&a.name) == guest_name(&file.name))
    {
        return Err(ProgramError::NotExecutable(format!(
            "--add {spec}: the name '{}' is given twice (also to {}); give each file its own \
             name (HOSTPATH:NAME)",
            file.name,
            first
                .host_path
                .as_deref()
                .map_or_else(|| first.name.clone(), |p| p.display().to_string())
        )));
    }
    out.push(file);
    Ok(())
}

/// One `--add` file, checked.
fn add_file(spec: &str, path: &Path, name: Option<&str>) -> Result<Program, ProgramError> {
    let bad = |why: String| ProgramError::NotExecutable(format!("--add {spec}: {why}"));
    let name = match name {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if name.is_empty() || name.len() > DIRSIZ || name.contains('/') || name.contains('\0') {
        return Err(bad(format!(
            "the name '{name}' must have 1 to {DIRSIZ} bytes and no '/' (give HOSTPATH:NAME)"
        )));
    }
    if let Some(why) = reserved(&name) {
        return Err(bad(format!("{why}; give another (HOSTPATH:NAME)")));
    }
    // One bounded read (never more than MAX_ADD_SIZE + 1 bytes, whatever the size said).
    let image = read_host_file(path, "file", MAX_ADD_SIZE).map_err(|e| match e {
        ProgramError::NotFound(m) => ProgramError::NotFound(format!("--add {spec}: {m}")),
        ProgramError::NotExecutable(m) => bad(m),
    })?;
    Ok(Program {
        name,
        image,
        host_path: Some(path.to_path_buf()),
    })
}

/// The notes `vmm run` prints for added files that hide a built-in program.
pub fn shadow_notes(added: &[Program]) -> Vec<String> {
    added
        .iter()
        .filter(|a| builtin_names().contains(&a.name.as_str()))
        .map(|a| {
            format!(
                "vmm: note: the host file '{}' shadows the built-in program of that name",
                a.name
            )
        })
        .collect()
}

/// A cpio newc archive of regular files at the root.
pub fn cpio_newc(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<(&str, u32, &[u8])> = files.iter().map(|(n, b)| (*n, 0o100_755, *b)).collect();
    cpio_newc_modes(&entries)
}

/// A cpio newc archive of entries (name, mode, bytes): regular files and directories.
pub fn cpio_newc_modes(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let inputs = entries.iter().enumerate().map(|(i, (name, mode, bytes))| {
        let builder = cpio::newc::Builder::new(name)
            .ino(i as u32 + 1)
            .mode(*mode)
            .nlink(1);
        (builder, std::io::Cursor::new(*bytes))
    });
    cpio::write_cpio(inputs, Vec::new()).expect("writing to memory cannot fail")
}

/// The program archive with the `--dir` trees' entries (`Tree::archive_entries`, dirs.rs)
/// after the programs.
pub fn archive_with_tree(extra: &[Program], tree: &[ArchiveEntry<'_>]) -> Vec<u8> {
    let mut entries: Vec<(&str, u32, &[u8])> = archive_files(extra)
        .into_iter()
        .map(|(n, b)| (n, 0o100_755, b))
        .collect();
    entries.extend_from_slice(tree);
    cpio_newc_modes(&entries)
}

/// The argv module: each argument NUL-terminated, back to back.
pub fn argv_block(argv: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in argv {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_and_unknown_names_do_not() {
        let hello = resolve("hello").unwrap();
        assert_eq!(hello.name, "hello");
        assert!(check_executable(&hello.image).is_ok());
        match resolve("no-such-program") {
            Err(ProgramError::NotFound(m)) => assert!(m.contains("hello"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve("/no/such/file"),
            Err(ProgramError::NotFound(_))
        ));
    }

    #[test]
    fn host_files_that_cannot_run_are_not_executable() {
        // The start of this test binary (an ELF64; the whole may be above the size limit).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let elf64 = dir.path().join("elf64");
        std::fs::write(&elf64, &me[..64 * 1024]).unwrap();
        match resolve(&elf64) {
            Err(ProgramError::NotExecutable(m)) => assert!(m.contains("64-bit"), "{m}"),
            other => panic!("{other:?}"),
        }
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        assert!(matches!(
            resolve(readme),
            Err(ProgramError::NotExecutable(_))
        ));
    }

    /// The members of a cpio archive: names and contents.
    fn members(bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        let mut reader = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        loop {
            let mut r = cpio::NewcReader::new(reader).unwrap();
            if r.entry().is_trailer() {
                return out;
            }
            let (name, size) = (r.entry().name().to_string(), r.entry().file_size());
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut content).unwrap();
            assert_eq!(content.len() as u32, size);
            out.push((name, content));
            reader = r.finish().unwrap();
        }
    }

    #[test]
    fn only_what_exec_reads_is_checked() {
        let hello = resolve("hello").unwrap().image;
        let elf = Elf::parse(&hello).unwrap();
        let end = elf
            .program_headers
            .iter()
            .map(|p| p.p_offset + p.p_filesz)
            .max()
            .unwrap() as usize;
        assert!(
            end < hello.len(),
            "hello has section headers after its segments"
        );
        // Cut off the section headers (and the section data after the segments): exec never
        // reads them, so the program still runs.
        assert_eq!(check_executable(&hello[..end]), Ok(()));
        // Cut into a segment: refused, saying why.
        let why = check_executable(&hello[..end - 1]).unwrap_err();
        assert!(why.contains("past the end of the file"), "{why}");
        // Cut into the program headers.
        let phoff = elf.header.e_phoff as usize;
        let why = check_executable(&hello[..phoff + 10]).unwrap_err();
        assert!(why.contains("program headers"), "{why}");
    }

    #[test]
    fn argv_is_bounded_as_exec_bounds_it() {
        let words = |n: usize, len: usize| -> Vec<OsString> {
            (0..n).map(|_| OsString::from("x".repeat(len))).collect()
        };
        assert!(check_argv(&words(32, 1)).is_ok());
        assert!(check_argv(&words(33, 1)).is_err());
        // 4096 - 144 bytes of ustack words = 3952 for the strings, each padded to 4 with its NUL.
        assert!(check_argv(&words(1, 3951)).is_ok());
        assert!(check_argv(&words(1, 3952)).is_err());
    }

    #[test]
    fn archive_holds_every_builtin_and_the_extra_one_wins() {
        let extra = Program {
            name: "hello".into(),
            image: b"host hello".to_vec(),
            host_path: None,
        };
        let files = members(archive(Some(&extra)));
        let hello: Vec<_> = files.iter().filter(|(n, _)| n == "hello").collect();
        assert_eq!(hello.len(), 1);
        assert_eq!(hello[0].1, b"host hello");
        let mut names: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
        let mut expected: Vec<String> = builtin_names().iter().map(|s| s.to_string()).collect();
        expected.sort();
        names.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn adds_are_refused_before_boot_for_what_the_guest_cannot_take() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), "a").unwrap();
        std::fs::write(d.join("b"), "b").unwrap();
        let p = |n: &str| d.join(n).display().to_string();
        let refused = |specs: &[String], want: &str| match resolve_adds(specs) {
            Err(ProgramError::NotExecutable(m)) => {
                assert!(m.contains(want), "{m}");
                assert!(!m.contains('\n'), "one line: {m}");
            }
            other => panic!("{specs:?}: {other:?}"),
        };
        // Reserved names.
        for name in [".", "..", "console", "TRAILER!!!"] {
            refused(&[format!("{}:{name}", p("a"))], "is taken in the guest");
        }
        // The same name twice, also through a directory, also cut to DIRSIZ.
        refused(&[p("a"), format!("{}:a", p("b"))], "given twice");
        refused(&[p("a"), d.display().to_string()], "given twice");
        refused(
            &[
                format!("{}:abcdefghijklmn", p("a")),
                format!("{}:abcdefghijklmn", p("b")),
            ],
            "given twice",
        );
        // Too many files: one by one, or in one directory.
        let many = d.join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..=MAX_ADD_FILES {
            std::fs::write(many.join(format!("f{i}")), "").unwrap();
        }
        refused(&[many.display().to_string()], "at most 128");
        let specs: Vec<String> = (0..=MAX_ADD_FILES)
            .map(|i| format!("{}:f{i}", p("a")))
            .collect();
        refused(&specs, "at most 128");
        assert_eq!(resolve_adds(&specs[..MAX_ADD_FILES]).unwrap().len(), 128);
    }

    #[test]
    fn host_programs_and_module_space_are_checked_before_boot() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), "a").unwrap();
        let p = |n: &str| d.join(n).display().to_string();
        // A host program named like an added file.
        let prog = d.join("sub");
        std::fs::create_dir(&prog).unwrap();
        let hello = resolve("hello").unwrap().image;
        std::fs::write(prog.join("a"), &hello).unwrap();
        let added = resolve_adds(&[p("a")]).unwrap();
        match resolve_among(prog.join("a").as_os_str(), &added) {
            Err(ProgramError::NotExecutable(m)) => assert!(m.contains("would both be"), "{m}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(prog.join("console"), &hello).unwrap();
        assert!(matches!(
            resolve(prog.join("console")),
            Err(ProgramError::NotExecutable(_))
        ));
        // Files that together do not fit the boot-module area.
        let big: Vec<Program> = (0..3)
            .map(|i| Program {
                name: format!("big{i}"),
                image: vec![0; 12 << 20],
                host_path: None,
            })
            .collect();
        assert!(check_module_space(&big[..2], None).is_ok());
        match check_module_space(&big, None) {
            Err(ProgramError::NotExecutable(m)) => assert!(m.contains("boot-module space"), "{m}"),
            other => panic!("{other:?}"),
        }
        // What check_module_space counts is the archive's size.
        let counted = archive_with(&big[..1]).len();
        assert!(counted > 12 << 20);
    }

    #[test]
    fn the_guest_has_inodes_for_every_file_add_allows() {
        let boot = 2 + builtin_names().len() + MAX_ADD_FILES + 1;
        assert!(
            boot + 200 <= xv6_abi::fs::NINODE,
            "{boot} inodes at boot leave fewer than 200 of {}",
            xv6_abi::fs::NINODE
        );
    }

    #[test]
    fn adds_name_files_and_a_name_given_twice_is_refused() {
        let dir = std::env::temp_dir().join(format!("vmm-resolve-adds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/b"), "b").unwrap();
        std::fs::write(dir.join("d/a"), "a").unwrap();
        std::fs::write(dir.join("x"), "x").unwrap();
        let specs = [
            format!("{}", dir.join("d").display()),
            format!("{}:a", dir.join("x").display()),
        ];
        assert!(matches!(
            resolve_adds(&specs),
            Err(ProgramError::NotExecutable(_))
        ));
        let specs = [
            format!("{}", dir.join("d").display()),
            format!("{}:c", dir.join("x").display()),
        ];
        let added = resolve_adds(&specs).unwrap();
        let names: Vec<&str> = added.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let files = members(archive_with(&added));
        let c: Vec<_> = files.iter().filter(|(n, _)| n == "c").collect();
        assert_eq!(c.len(), 1, "one entry named c");
        assert_eq!(c[0].1, b"x");
        assert!(matches!(
            resolve_adds(&[format!("{}", dir.join("nope").display())]),
            Err(ProgramError::NotFound(_))
        ));
        // An added program is found by name before the built-ins; a data file cannot run.
        assert!(matches!(
            resolve_among(OsStr::new("a"), &added),
            Err(ProgramError::NotExecutable(_))
        ));
        assert_eq!(
            resolve_among(OsStr::new("hello"), &added).unwrap().name,
            "hello"
        );
        assert!(shadow_notes(&added).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn argv_is_nul_terminated_strings() {
        assert_eq!(
            argv_block(&["echo".into(), "a b".into(), "".into()]),
            b"echo\0a b\0\0"
        );
    }
}
