//! The lab's assets: a Debian kernel and a base initramfs (busybox + the KVM modules).
//!
//! They are fetched once with `apt-get download` (Debian bookworm packages
//! `linux-image-cloud-amd64` → the real `linux-image-6.1.0-NN-cloud-amd64`, and `busybox-static`),
//! unpacked with `dpkg-deb -x` (nothing is installed on the host), reduced to what the lab needs
//! (~55 MB) and cached outside the repository in
//! `${XV6_LAB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xv6-vmm/lab}/assets-v1/`:
//!
//! * `vmlinux` — the kernel as a PVH-bootable ELF (see [`crate::kernel`]; ~50 MB, saves ~0.5 s
//!   per boot), or `vmlinuz` (the bzImage as shipped) if that extraction does not apply,
//! * `base.cpio` — `/bin/busybox` and `/lib/modules/lab/*.ko`,
//! * `manifest` — `key=value` lines: kernel version, package versions, module load order.
//!
//! The fetch happens in a fresh temporary directory next to the final one, which is renamed into
//! place only when complete: two processes racing both fetch, one rename wins, both use the
//! result. A directory with a readable manifest is ready; anything else is fetched again.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::elf::{module_depends, module_load_order, module_name};
use crate::initramfs::Cpio;
use crate::tmp::TempDir;
use crate::LabError;

/// Name of the asset directory inside the lab directory; bump when the layout changes.
pub const ASSETS_SUBDIR: &str = "assets-v1";
/// The kernel metapackage (resolved to the versioned image package).
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The package providing a static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Where the base archive puts the kernel modules.
pub const LAB_MODULE_DIR: &str = "/lib/modules/lab";
/// The module whose load (with its dependencies) yields /dev/kvm.
const KVM_MODULE: &str = "kvm_amd";

/// The cached lab assets, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// The asset directory.
    pub dir: PathBuf,
    /// The kernel image (`vmlinux` ELF for PVH boot, or the bzImage `vmlinuz`).
    pub kernel: PathBuf,
    /// The base initramfs (newc): busybox and the modules.
    pub base_initrd: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// Debian package versions used, e.g. `linux-image-6.1.0-56-cloud-amd64=6.1.192-2`.
    pub packages: Vec<String>,
    /// Modules to insmod in order (paths inside the lab).
    pub modules: Vec<String>,
}

/// The lab directory: `$XV6_LAB_DIR`, else `$XDG_CACHE_HOME/xv6-vmm/lab`, else
/// `$HOME/.cache/xv6-vmm/lab`. Empty variables count as unset.
pub fn lab_dir() -> Result<PathBuf, LabError> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    resolve_lab_dir(var("XV6_LAB_DIR"), var("XDG_CACHE_HOME"), var("HOME"))
}

/// The pure part of [`lab_dir`].
pub fn resolve_lab_dir(
    lab: Option<std::ffi::OsString>,
    xdg_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, LabError> {
    if let Some(d) = lab {
        return Ok(PathBuf::from(d));
    }
    let cache = match (xdg_cache, home) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".cache"),
        (None, None) => return Err(LabError::NoCacheDir),
    };
    Ok(cache.join("xv6-vmm").join("lab"))
}

fn parse_manifest(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn render_manifest(a: &Assets) -> String {
    format!(
        "format=1\nkernel={}\nkernel_version={}\npackages={}\nmodules={}\n",
        a.kernel.file_name().unwrap_or_default().to_string_lossy(),
        a.kernel_version,
        a.packages.join(","),
        a.modules.join(",")
    )
}

/// Reads the assets in `dir` if they are complete.
pub fn load_assets(dir: &Path) -> Option<Assets> {
    let text = fs::read_to_string(dir.join("manifest")).ok()?;
    let m = parse_manifest(&text);
    if m.get("format").map(String::as_str) != Some("1") {
        return None;
    }
    let list = |k: &str| -> Vec<String> {
        m.get(k)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let a = Assets {
        dir: dir.to_path_buf(),
        kernel: dir.join(m.get("kernel")?),
        base_initrd: dir.join("base.cpio"),
        kernel_version: m.get("kernel_version")?.clone(),
        packages: list("packages"),
        modules: list("modules"),
    };
    (a.kernel.is_file() && a.base_initrd.is_file() && !a.modules.is_empty()).then_some(a)
}

/// Finds an executable on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Runs a command, returning stdout; on failure the last stderr line.
fn run_tool(cmd: &mut Command) -> Result<String, String> {
    log::debug!("lab: running {cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| l.starts_with("E:"))
            .or_else(|| err.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no message")
            .trim()
            .to_string();
        Err(format!("{}: {last}", out.status))
    }
}

fn apt_download(dir: &Path, packages: &[&str]) -> Result<(), LabError> {
    let which_apt = which("apt-get").ok_or(LabError::ToolMissing { tool: "apt-get" })?;
    log::info!("lab: apt-get download {}", packages.join(" "));
    run_tool(
        Command::new(which_apt)
            .arg("download")
            .args(packages)
            .current_dir(dir),
    )
    .map(drop)
    .map_err(|detail| LabError::AptDownload {
        packages: packages.join(" "),
        detail,
    })
}

/// The `.deb` file in `dir` for `package` (apt names them `NAME_VERSION_ARCH.deb`).
fn find_deb(dir: &Path, package: &str) -> Result<PathBuf, LabError> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)
        .map_err(|e| LabError::io_path("listing", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with(&prefix))
                .unwrap_or(false)
        })
        .ok_or_else(|| LabError::BadPackage(format!("apt-get download left no {package}_*.deb")))
}

fn dpkg_deb(args: &[&std::ffi::OsStr]) -> Result<String, LabError> {
    let tool = which("dpkg-deb").ok_or(LabError::ToolMissing { tool: "dpkg-deb" })?;
    run_tool(Command::new(tool).args(args))
        .map_err(|e| LabError::BadPackage(format!("dpkg-deb {args:?}: {e}")))
}

/// The versioned kernel image package named by the metapackage's `Depends:` field.
pub fn image_package_from_depends(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| {
            name.strip_prefix("linux-image-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(String::from)
}

/// `name=version` of a `.deb`.
fn deb_id(deb: &Path) -> Result<String, LabError> {
    let out = dpkg_deb(&[
        "-f".as_ref(),
        deb.as_os_str(),
        "Package".as_ref(),
        "Version".as_ref(),
    ])?;
    let m: BTreeMap<&str, &str> = out
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    Ok(format!(
        "{}={}",
        m.get("Package").unwrap_or(&"?"),
        m.get("Version").unwrap_or(&"?")
    ))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&e.path(), out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Fetches and builds the assets into `stage` (a fresh directory).
fn fetch_into(work: &Path, stage: &Path) -> Result<Assets, LabError> {
    let debs = work.join("debs");
    let root = work.join("root");
    for d in [&debs, &root, &stage.to_path_buf()] {
        fs::create_dir_all(d).map_err(|e| LabError::io_path("creating", d, e))?;
    }
    apt_download(&debs, &[KERNEL_METAPACKAGE, BUSYBOX_PACKAGE])?;
    let meta = find_deb(&debs, KERNEL_METAPACKAGE)?;
    let depends = dpkg_deb(&["-f".as_ref(), meta.as_os_str(), "Depends".as_ref()])?;
    let image = image_package_from_depends(&depends).ok_or_else(|| {
        LabError::BadPackage(format!(
            "{KERNEL_METAPACKAGE} depends on no linux-image-N package ({})",
            depends.trim()
        ))
    })?;
    apt_download(&debs, &[&image])?;
    let image_deb = find_deb(&debs, &image)?;
    let busybox_deb = find_deb(&debs, BUSYBOX_PACKAGE)?;
    let mut packages = Vec::new();
    for deb in [&image_deb, &busybox_deb] {
        packages.push(deb_id(deb)?);
        log::info!("lab: unpacking {}", deb.display());
        dpkg_deb(&["-x".as_ref(), deb.as_os_str(), root.as_os_str()])?;
    }

    // The kernel.
    let boot = root.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(|e| LabError::io_path("listing", &boot, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| LabError::BadPackage(format!("{image} has no /boot/vmlinuz-*")))?;
    let kernel_version =
        vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    let bz = fs::read(&vmlinuz).map_err(|e| LabError::io_path("reading", &vmlinuz, e))?;
    let kernel = match crate::kernel::extract_pvh_vmlinux(&bz) {
        Some(elf) => {
            log::info!(
                "lab: extracted a PVH-bootable vmlinux ({} MB)",
                elf.len() >> 20
            );
            let p = stage.join("vmlinux");
            fs::write(&p, elf).map_err(|e| LabError::io_path("writing", &p, e))?;
            p
        }
        None => {
            log::info!("lab: kernel is not LZ4+PVH; booting the bzImage");
            let p = stage.join("vmlinuz");
            fs::write(&p, bz).map_err(|e| LabError::io_path("writing", &p, e))?;
            p
        }
    };

    // The modules: index every .ko by canonical name, then walk kvm_amd's dependencies.
    let moddir = root
        .join("lib/modules")
        .join(&kernel_version)
        .join("kernel");
    let mut files = Vec::new();
    walk(&moddir, &mut files).map_err(|e| LabError::io_path("listing", &moddir, e))?;
    let by_name: BTreeMap<String, PathBuf> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .map(|p| (module_name(&p.file_name().unwrap().to_string_lossy()), p))
        .collect();
    let mut deps = BTreeMap::new();
    let mut todo = vec![KVM_MODULE.to_string()];
    while let Some(m) = todo.pop() {
        if deps.contains_key(&m) {
            continue;
        }
        let Some(path) = by_name.get(&m) else {
            continue; // reported by module_load_order as "not found"
        };
        let data = fs::read(path).map_err(|e| LabError::io_path("reading", path, e))?;
        let ds = module_depends(&data)
            .map_err(|e| LabError::BadPackage(format!("{}: {e}", path.display())))?;
        todo.extend(ds.iter().map(|d| module_name(d)));
        deps.insert(m, ds);
    }
    let order = module_load_order(KVM_MODULE, &deps)
        .map_err(|e| LabError::BadPackage(format!("{image}: {e}")))?;

    let busybox = root.join("bin/busybox");
    let base = stage.join("base.cpio");
    let f = fs::File::create(&base).map_err(|e| LabError::io_path("creating", &base, e))?;
    let mut cpio = Cpio::new(BufWriter::new(f), &[]);
    let mut modules = Vec::new();
    let werr = |e| LabError::io_path("writing", &base, e);
    for d in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
    ] {
        cpio.dir(d).map_err(werr)?;
    }
    cpio.host_file("/bin/busybox", &busybox).map_err(werr)?;
    for m in &order {
        let lab_path = format!("{LAB_MODULE_DIR}/{m}.ko");
        cpio.host_file(&lab_path, &by_name[m]).map_err(werr)?;
        modules.push(lab_path);
    }
    let w = cpio.finish().map_err(werr)?;
    w.into_inner()
        .map_err(|e| werr(e.into_error()))?
        .sync_all()
        .map_err(werr)?;

    let assets = Assets {
        dir: stage.to_path_buf(),
        kernel,
        base_initrd: base,
        kernel_version,
        packages,
        modules,
    };
    let manifest = stage.join("manifest");
    fs::write(&manifest, render_manifest(&assets))
        .map_err(|e| LabError::io_path("writing", &manifest, e))?;
    Ok(assets)
}

/// Makes sure the lab's kernel and base initramfs are cached, fetching them if needed.
///
/// Idempotent and cheap when the assets are there; safe against a concurrent fetch.
pub fn ensure_assets() -> Result<Assets, LabError> {
    let dir = lab_dir()?;
    let final_dir = dir.join(ASSETS_SUBDIR);
    if let Some(a) = load_assets(&final_dir) {
        log::debug!("lab: assets ready in {}", final_dir.display());
        return Ok(a);
    }
    log::info!("lab: fetching assets into {}", final_dir.display());
    fs::create_dir_all(&dir).map_err(|e| LabError::io_path("creating", &dir, e))?;
    crate::tmp::sweep_stale(&dir, ".fetch-");
    let work = TempDir::new_in(&dir, ".fetch-")?;
    let stage = work.path().join("stage");
    fetch_into(work.path(), &stage)?;
    if final_dir.exists() && load_assets(&final_dir).is_none() {
        // A broken leftover (interrupted by hand?): move it aside, then drop it.
        let junk = work.path().join("old");
        if fs::rename(&final_dir, &junk).is_ok() {
            log::warn!("lab: replaced incomplete {}", final_dir.display());
        }
    }
    match fs::rename(&stage, &final_dir) {
        Ok(()) => log::info!("lab: assets ready in {}", final_dir.display()),
        Err(e) => {
            if load_assets(&final_dir).is_none() {
                return Err(LabError::io_path("installing", &final_dir, e));
            }
            log::info!("lab: another process installed the assets first; using theirs");
        }
    }
    load_assets(&final_dir).ok_or_else(|| {
        LabError::BadPackage(format!("{} incomplete after fetch", final_dir.display()))
    })
}

/// The path of the QEMU binary: `$XV6_LAB_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf, LabError> {
    if let Some(q) = std::env::var_os("XV6_LAB_QEMU").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(q);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::QemuMissing)
        };
    }
    which("qemu-system-x86_64").ok_or(LabError::QemuMissing)
}

/// What `vmm lab status` prints: where things are and whether the lab can run.
#[derive(Debug, Clone)]
pub struct LabStatus {
    /// The lab directory (see [`lab_dir`]), if one can be determined.
    pub lab_dir: Result<PathBuf, String>,
    /// The cached assets, if complete.
    pub assets: Option<Assets>,
    /// The QEMU binary, if found.
    pub qemu: Option<PathBuf>,
    /// First line of `qemu-system-x86_64 --version`.
    pub qemu_version: Option<String>,
    /// Whether `apt-get` and `dpkg-deb` are there to fetch assets.
    pub can_fetch: bool,
}

impl LabStatus {
    /// Whether [`crate::run`] can start right away (no fetch needed).
    pub fn ready(&self) -> bool {
        self.assets.is_some() && self.qemu.is_some()
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = if self.ready() {
            "ready".to_string()
        } else if self.qemu.is_none() {
            LabError::QemuMissing.to_string()
        } else if self.can_fetch {
            "not set up: `vmm lab setup` (or the first lab run) fetches the assets".to_string()
        } else {
            "not set up and apt-get/dpkg-deb are missing: cannot fetch assets".to_string()
        };
        writeln!(f, "lab: {ready}")?;
        match &self.lab_dir {
            Ok(d) => writeln!(f, "lab dir: {}", d.display())?,
            Err(e) => writeln!(f, "lab dir: {e}")?,
        }
        match &self.assets {
            Some(a) => {
                writeln!(f, "kernel: {} ({})", a.kernel_version, a.kernel.display())?;
                writeln!(f, "packages: {}", a.packages.join(" "))?;
                writeln!(f, "modules: {}", a.modules.join(" "))?;
            }
            None => writeln!(f, "kernel: not fetched")?,
        }
        match (&self.qemu, &self.qemu_version) {
            (Some(q), v) => write!(
                f,
                "qemu: {} ({})",
                q.display(),
                v.as_deref().unwrap_or("version unknown")
            ),
            (None, _) => write!(f, "qemu: not found"),
        }
    }
}

/// Reports the lab's state without fetching or booting anything.
pub fn status() -> LabStatus {
    let dir = lab_dir();
    let assets = dir
        .as_ref()
        .ok()
        .and_then(|d| load_assets(&d.join(ASSETS_SUBDIR)));
    let qemu = find_qemu().ok();
    let qemu_version = qemu.as_ref().and_then(|q| {
        run_tool(Command::new(q).arg("--version"))
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
    });
    LabStatus {
        lab_dir: dir.map_err(|e| e.to_string()),
        assets,
        qemu,
        qemu_version,
        can_fetch: which("apt-get").is_some() && which("dpkg-deb").is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_dir_resolution() {
        let s = |x: &str| Some(std::ffi::OsString::from(x));
        assert_eq!(
            resolve_lab_dir(s("/l"), s("/x"), s("/h")).unwrap(),
            PathBuf::from("/l")
        );
        assert_eq!(
            resolve_lab_dir(None, s("/x"), s("/h")).unwrap(),
            PathBuf::from("/x/xv6-vmm/lab")
        );
        assert_eq!(
            resolve_lab_dir(None, None, s("/h")).unwrap(),
            PathBuf::from("/h/.cache/xv6-vmm/lab")
        );
        assert!(matches!(
            resolve_lab_dir(None, None, None),
            Err(LabError::NoCacheDir)
        ));
    }

    #[test]
    fn image_package() {
        assert_eq!(
            image_package_from_depends("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)").unwrap(),
            "linux-image-6.1.0-56-cloud-amd64"
        );
        assert_eq!(
            image_package_from_depends("foo, linux-image-6.1.0-9-cloud-amd64-unsigned | x")
                .unwrap(),
            "linux-image-6.1.0-9-cloud-amd64-unsigned"
        );
        assert_eq!(image_package_from_depends("linux-image-cloud-amd64"), None);
    }

    #[test]
    fn manifest_round_trip() {
        let dir = TempDir::new_in(&std::env::temp_dir(), "lab-test-").unwrap();
        let d = dir.path().to_path_buf();
        let a = Assets {
            dir: d.clone(),
            kernel: d.join("vmlinuz"),
            base_initrd: d.join("base.cpio"),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            packages: vec!["a=1".into(), "b=2".into()],
            modules: vec!["/lib/modules/lab/kvm.ko".into()],
        };
        assert_eq!(load_assets(&d), None);
        fs::write(d.join("manifest"), render_manifest(&a)).unwrap();
        assert_eq!(load_assets(&d), None, "files missing: not ready");
        fs::write(d.join("vmlinuz"), b"k").unwrap();
        fs::write(d.join("base.cpio"), b"c").unwrap();
        assert_eq!(load_assets(&d), Some(a));
    }
}
