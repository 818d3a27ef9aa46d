//! User programs: finding the one `vmm run` was asked for, and the two boot modules that carry
//! it to the kernel — the program archive (cpio newc: every built-in program, plus the host
//! program if one was given) and the first process's argv (NUL-terminated strings).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::elf::{header, program_header::PT_LOAD, Elf};

use crate::images;

/// The program `vmm run` runs when given none.
pub const DEFAULT_PROGRAM: &str = "tour";
/// User memory ends where the kernel half starts.
const KERNBASE: u64 = 0x8000_0000;

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
    if strings + USTACK_BYTES > 4096 {
        return Err(ProgramError::NotExecutable(format!(
            "argument list too long: {strings} bytes of strings, at most {} fit on the stack page",
            4096 - USTACK_BYTES
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
    let mut files: Vec<(&str, &[u8])> = images::USER_PROGRAMS
        .iter()
        .filter(|(n, _)| extra.is_none_or(|e| e.name != *n))
        .map(|(n, b)| (*n, *b))
        .collect();
    if let Some(e) = extra {
        files.push((&e.name, &e.image));
    }
    cpio_newc(&files)
}

/// A cpio newc archive of regular files at the root.
pub fn cpio_newc(files: &[(&str, &[u8])]) -> Vec<u8> {
    let inputs = files.iter().enumerate().map(|(i, (name, bytes))| {
        let builder = cpio::newc::Builder::new(name)
            .ino(i as u32 + 1)
            .mode(0o100_755)
            .nlink(1);
        (builder, std::io::Cursor::new(*bytes))
    });
    cpio::write_cpio(inputs, Vec::new()).expect("writing to memory cannot fail")
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
        // This test binary: ELF64.
        let me = std::env::current_exe().unwrap();
        match resolve(me.to_str().unwrap()) {
            Err(ProgramError::NotExecutable(m)) => assert!(m.contains("64-bit"), "{m}"),
            other => panic!("{other:?}"),
        }
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        assert!(matches!(
            resolve(readme),
            Err(ProgramError::NotExecutable(_))
        ));
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
        let bytes = archive(Some(&extra));
        let mut reader = std::io::Cursor::new(bytes);
        let mut names = Vec::new();
        loop {
            let r = cpio::NewcReader::new(reader).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_string());
            let size = r.entry().file_size();
            let mut r = r;
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut content).unwrap();
            assert_eq!(content.len() as u32, size);
            if names.last().unwrap() == "hello" {
                assert_eq!(content, b"host hello");
            }
            reader = r.finish().unwrap();
        }
        let mut expected: Vec<String> = builtin_names().iter().map(|s| s.to_string()).collect();
        expected.sort();
        names.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn argv_is_nul_terminated_strings() {
        assert_eq!(
            argv_block(&["echo".into(), "a b".into(), "".into()]),
            b"echo\0a b\0\0"
        );
    }
}
