//! ELF inspection: what a program needs to run in the lab, and in what order kernel modules load.
//!
//! * A dynamically linked program needs its ELF interpreter (`PT_INTERP`) at the same absolute
//!   path and its `DT_NEEDED` libraries, transitively. [`program_deps`] resolves them on the host
//!   the way the dynamic loader would (RPATH/RUNPATH with `$ORIGIN`, `LD_LIBRARY_PATH`,
//!   `/etc/ld.so.conf*`, the default directories), keeping only x86-64 ELF files. Inside the lab
//!   the libraries live in [`LAB_LIB_DIR`], found through `LD_LIBRARY_PATH`. Static programs need
//!   nothing.
//! * A kernel module names its dependencies in its `.modinfo` section (`depends=a,b`);
//!   [`module_load_order`] turns that into an `insmod` order, dependencies first.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use crate::error::LabError;

/// Where the program's shared libraries are put inside the lab.
pub const LAB_LIB_DIR: &str = "/lab/lib";

/// What a program needs besides itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProgramDeps {
    /// `PT_INTERP` (e.g. `/lib64/ld-linux-x86-64.so.2`) and the host file it resolves to.
    pub interpreter: Option<(String, PathBuf)>,
    /// (soname, host path) of every needed library, transitively.
    pub libraries: Vec<(String, PathBuf)>,
}

fn read(path: &Path) -> Result<Vec<u8>, LabError> {
    fs::read(path).map_err(|e| LabError::io_path("reading", path, e))
}

/// Whether `data` is a 64-bit x86-64 ELF object.
fn is_x86_64(data: &[u8]) -> bool {
    data.len() > 20 && &data[..4] == b"\x7fELF" && data[4] == 2 && data[18] == 62 && data[19] == 0
}

/// Directories listed by `/etc/ld.so.conf` and the files it includes (one level of `include`).
fn ld_so_conf_dirs() -> Vec<PathBuf> {
    fn parse(path: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(text) = fs::read_to_string(path) else {
            return;
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include ") {
                if depth > 2 {
                    continue;
                }
                let pattern = pattern.trim();
                // Only the "dir/*.conf" form is supported (what Debian uses).
                if let Some((dir, suffix)) = pattern.rsplit_once("/*") {
                    if let Ok(rd) = fs::read_dir(dir) {
                        let mut files: Vec<PathBuf> = rd
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.to_string_lossy().ends_with(suffix))
                            .collect();
                        files.sort();
                        for f in files {
                            parse(&f, depth + 1, out);
                        }
                    }
                } else {
                    parse(Path::new(pattern), depth + 1, out);
                }
            } else if line.starts_with('/') {
                out.push(PathBuf::from(line));
            }
        }
    }
    let mut out = Vec::new();
    parse(Path::new("/etc/ld.so.conf"), 0, &mut out);
    out
}

/// Library search path for one object, in the loader's order.
fn search_dirs(elf: &Elf, origin: &Path, system: &[PathBuf]) -> Vec<PathBuf> {
    let expand = |list: &[&str]| -> Vec<PathBuf> {
        list.iter()
            .flat_map(|l| l.split(':'))
            .filter(|d| !d.is_empty())
            .map(|d| {
                PathBuf::from(
                    d.replace("${ORIGIN}", &origin.to_string_lossy())
                        .replace("$ORIGIN", &origin.to_string_lossy()),
                )
            })
            .collect()
    };
    let mut dirs = Vec::new();
    if elf.runpaths.is_empty() {
        dirs.extend(expand(&elf.rpaths));
    }
    if let Some(llp) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&llp).filter(|p| p.is_absolute()));
    }
    dirs.extend(expand(&elf.runpaths));
    dirs.extend(system.iter().cloned());
    dirs
}

/// The system library directories: ld.so.conf, then the defaults.
fn system_dirs() -> Vec<PathBuf> {
    let mut dirs = ld_so_conf_dirs();
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// Resolves the interpreter and all `DT_NEEDED` libraries of the program at `program`.
pub fn program_deps(program: &Path) -> Result<ProgramDeps, LabError> {
    let data = read(program)?;
    let elf = Elf::parse(&data)
        .map_err(|e| LabError::Program(format!("{} is not an ELF file: {e}", program.display())))?;
    if !is_x86_64(&data) {
        return Err(LabError::Program(format!(
            "{} is not an x86-64 ELF program",
            program.display()
        )));
    }
    let mut deps = ProgramDeps {
        interpreter: interpreter(&elf, program)?,
        ..ProgramDeps::default()
    };
    let system = system_dirs();
    let mut seen: HashSet<String> = HashSet::new();
    // Work list of (object path, its needed names).
    let mut queue: Vec<(PathBuf, Vec<String>, Vec<PathBuf>)> = Vec::new();
    let origin = program.parent().unwrap_or(Path::new("/")).to_path_buf();
    queue.push((
        program.to_path_buf(),
        elf.libraries.iter().map(|s| s.to_string()).collect(),
        search_dirs(&elf, &origin, &system),
    ));
    while let Some((from, needed, dirs)) = queue.pop() {
        for name in needed {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(path) = find_library(&name, &dirs) else {
                return Err(LabError::Program(format!(
                    "library {name} needed by {} not found on the host",
                    from.display()
                )));
            };
            let lib_data = read(&path)?;
            let lib = Elf::parse(&lib_data).map_err(|e| {
                LabError::Program(format!("{} is not an ELF file: {e}", path.display()))
            })?;
            let origin = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let lib_dirs = search_dirs(&lib, &origin, &system);
            queue.push((
                path.clone(),
                lib.libraries.iter().map(|s| s.to_string()).collect(),
                lib_dirs,
            ));
            let soname = Path::new(&name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(name);
            let canonical = fs::canonicalize(&path).unwrap_or(path);
            deps.libraries.push((soname, canonical));
        }
    }
    deps.libraries.sort();
    Ok(deps)
}

/// The program's ELF interpreter (its path as named, and on the host), if it has one.
fn interpreter(elf: &Elf, program: &Path) -> Result<Option<(String, PathBuf)>, LabError> {
    let Some(interp) = elf.interpreter else {
        return Ok(None);
    };
    let host = fs::canonicalize(interp).map_err(|e| {
        LabError::Program(format!(
            "interpreter {interp} of {} not found on the host: {e}",
            program.display()
        ))
    })?;
    Ok(Some((interp.to_string(), host)))
}

/// Where the library `name` is: the path it names, or the first x86-64 ELF of that name in
/// `dirs`.
fn find_library(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| fs::read(p).map(|d| is_x86_64(&d)).unwrap_or(false))
}

/// The `depends=` list of a kernel module, from its `.modinfo` section.
pub fn module_depends(ko: &[u8]) -> Result<Vec<String>, String> {
    let elf = Elf::parse(ko).map_err(|e| format!("not an ELF module: {e}"))?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or("no .modinfo section")?;
    let start = section.sh_offset as usize;
    let end = start + section.sh_size as usize;
    let info = ko.get(start..end).ok_or(".modinfo out of bounds")?;
    Ok(parse_modinfo_depends(info))
}

/// Extracts `depends=` from a `.modinfo` blob (NUL-separated `key=value` strings).
pub fn parse_modinfo_depends(info: &[u8]) -> Vec<String> {
    info.split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The canonical module name: '-' and '_' are the same to the kernel.
pub fn module_name(name: &str) -> String {
    name.trim_end_matches(".ko").replace('-', "_")
}

/// The `insmod` order for `targets` (in their order), dependencies first, each module once.
/// `deps` maps each module name (canonical, see [`module_name`]) to the names it depends on.
pub fn module_load_order(
    targets: &[&str],
    deps: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        if out.iter().any(|o| o == m) {
            return Ok(());
        }
        if stack.iter().any(|s| s == m) {
            return Err(format!("module dependency cycle through {m}"));
        }
        let Some(ds) = deps.get(m) else {
            return Err(format!("module {m} not found"));
        };
        stack.push(m.to_string());
        for d in ds {
            visit(&module_name(d), deps, stack, out)?;
        }
        stack.pop();
        out.push(m.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    for target in targets {
        visit(&module_name(target), deps, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends() {
        let info = b"license=GPL\0depends=kvm,irqbypass\0retpoline=Y\0";
        assert_eq!(parse_modinfo_depends(info), ["kvm", "irqbypass"]);
        assert!(parse_modinfo_depends(b"depends=\0name=x\0").is_empty());
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let mut deps = BTreeMap::new();
        deps.insert(
            "kvm_amd".to_string(),
            vec!["kvm".to_string(), "ccp".to_string()],
        );
        deps.insert("kvm".to_string(), vec!["irqbypass".to_string()]);
        deps.insert("ccp".to_string(), vec!["irqbypass".to_string()]);
        deps.insert("irqbypass".to_string(), vec![]);
        assert_eq!(
            module_load_order(&["kvm-amd"], &deps).unwrap(),
            ["irqbypass", "kvm", "ccp", "kvm_amd"]
        );
        // Several roots: shared dependencies load once, before their first user.
        deps.insert("virtio_console".to_string(), vec!["virtio".to_string()]);
        deps.insert("virtio".to_string(), vec![]);
        deps.insert("vhost".to_string(), vec!["irqbypass".to_string()]);
        assert_eq!(
            module_load_order(&["kvm_amd", "virtio_console", "vhost"], &deps).unwrap(),
            [
                "irqbypass",
                "kvm",
                "ccp",
                "kvm_amd",
                "virtio",
                "virtio_console",
                "vhost"
            ]
        );
        deps.insert("irqbypass".to_string(), vec!["kvm_amd".to_string()]);
        assert!(module_load_order(&["kvm-amd"], &deps).is_err());
        assert!(module_load_order(&["nope"], &deps).is_err());
    }

    #[test]
    fn own_test_binary_resolves() {
        // The test binary itself is a normal cargo-built program: its deps must resolve.
        let exe = std::env::current_exe().unwrap();
        let deps = program_deps(&exe).unwrap();
        if let Some((interp, host)) = &deps.interpreter {
            assert!(interp.starts_with('/'));
            assert!(host.is_file());
            assert!(deps.libraries.iter().any(|(n, _)| n.starts_with("libc.so")));
        }
    }
}
