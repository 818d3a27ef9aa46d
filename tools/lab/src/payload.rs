//! What a run puts into the lab: where the program goes and what it needs ([`Placed`]),
//! the run's init script, and a cold boot's initramfs (the cached base plus the program, its
//! libraries and the request's files).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::assets::Assets;
use crate::elf::{self, LAB_LIB_DIR};
use crate::error::LabError;
use crate::initramfs::Cpio;
use crate::request::{LabRequest, LabStdin};
use crate::script::{self, InitSpec};

/// The program of a request as the lab holds it: its path inside, what it needs, and the
/// environment it runs with.
pub(crate) struct Placed {
    /// `/lab/bin/NAME`.
    pub lab_program: String,
    /// Its interpreter and shared libraries.
    pub deps: elf::ProgramDeps,
    /// The request's variables, after `LD_LIBRARY_PATH` when the program needs libraries.
    pub env: Vec<(String, String)>,
}

/// Where `req.program` goes in the lab and what comes with it.
pub(crate) fn place(req: &LabRequest) -> Result<Placed, LabError> {
    let deps = elf::program_deps(&req.program)?;
    let name = req
        .program
        .file_name()
        .map(|n| n.to_string_lossy().replace(['/', '\n'], "_"))
        .unwrap_or_else(|| "program".to_string());
    let mut env = Vec::new();
    if !deps.libraries.is_empty() && !req.env.iter().any(|(k, _)| k == "LD_LIBRARY_PATH") {
        env.push(("LD_LIBRARY_PATH".to_string(), LAB_LIB_DIR.to_string()));
    }
    env.extend(req.env.iter().cloned());
    Ok(Placed {
        lab_program: format!("/lab/bin/{name}"),
        deps,
        env,
    })
}

/// The run's own script: its environment, arguments, streams and ports.
pub(crate) fn run_spec<'a>(
    req: &'a LabRequest,
    placed: &'a Placed,
    modules: &'a [String],
    args: &'a [&'a OsStr],
    extra_ports: &'a [String],
) -> InitSpec<'a> {
    InitSpec {
        modules,
        program: &placed.lab_program,
        args,
        env: &placed.env,
        stdin_port: req.stdin != LabStdin::Null,
        extra_ports,
    }
}

/// Writes an initramfs to `path`: the cached base, then an archive with `init`, the program
/// with its interpreter and libraries, and `files` (host path, lab path). Returns its size.
pub(crate) fn write_initrd(
    assets: &Assets,
    program: &Path,
    placed: &Placed,
    init: &[u8],
    files: &[(PathBuf, String)],
    path: &Path,
) -> Result<u64, LabError> {
    let werr = |e| LabError::io_path("writing", path, e);
    let mut out = private_file(path).map_err(werr)?;
    let mut base = fs::File::open(&assets.base_initrd)
        .map_err(|e| LabError::io_path("reading", &assets.base_initrd, e))?;
    io::copy(&mut base, &mut out).map_err(werr)?;
    let mut cpio = Cpio::new(BufWriter::new(out), &["bin", "dev", "lib"]);
    cpio.char_dev("/dev/console", 5, 1).map_err(werr)?;
    cpio.bytes("/init", 0o755, init).map_err(werr)?;
    add_file(&mut cpio, &placed.lab_program, program)?;
    let deps = &placed.deps;
    if let Some((interp, host)) = &deps.interpreter {
        add_file(&mut cpio, interp, host)?;
    }
    for (soname, host) in &deps.libraries {
        add_file(&mut cpio, &format!("{LAB_LIB_DIR}/{soname}"), host)?;
    }
    for (host, lab) in files {
        add_file(&mut cpio, lab, host)?;
    }
    let w = cpio.finish().map_err(werr)?;
    let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
    let size = f.metadata().map_err(werr)?.len();
    log::debug!(
        "lab: initramfs {} ({} KiB): {}, interpreter {:?}, {} libraries, {} files",
        path.display(),
        size / 1024,
        placed.lab_program,
        deps.interpreter.as_ref().map(|i| &i.0),
        deps.libraries.len(),
        files.len()
    );
    Ok(size)
}

/// Adds the host file `host` to `cpio` as `lab`.
pub(crate) fn add_file<W: Write>(
    cpio: &mut Cpio<W>,
    lab: &str,
    host: &Path,
) -> Result<(), LabError> {
    cpio.host_file(lab, host)
        .map_err(|e| LabError::io(format!("adding {} to the lab as {lab}", host.display()), e))
}

/// Writes a cold boot's initramfs for `req` to `path`. Returns its size.
pub(crate) fn build_initrd(
    assets: &Assets,
    req: &LabRequest,
    path: &Path,
) -> Result<u64, LabError> {
    let placed = place(req)?;
    let args: Vec<&OsStr> = req.args.iter().map(OsString::as_os_str).collect();
    let ports: Vec<String> = req
        .tcp_ports
        .iter()
        .map(|(n, _)| n.clone())
        .chain(req.unix_ports.iter().map(|(n, _)| n.clone()))
        .collect();
    let init = script::init_script(&run_spec(req, &placed, &assets.modules, &args, &ports));
    write_initrd(assets, &req.program, &placed, &init, &req.files, path)
}

/// Creates `path` anew (never following or reusing what is there), readable by us alone: the
/// initramfs holds the program and its input.
pub(crate) fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}
