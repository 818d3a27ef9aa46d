//! The lab's assets: a Debian kernel and a base initramfs (busybox + the KVM modules).
//!
//! They are fetched once with `apt-get download` (Debian bookworm packages
//! `linux-image-cloud-amd64` → the real `linux-image-6.1.0-NN-cloud-amd64`, and `busybox-static`),
//! unpacked with `dpkg-deb -x` (nothing is installed on the host), reduced to what the lab needs
//! (~55 MB) and cached outside the repository in
//! `${XV6_LAB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xv6-vmm/lab}/assets-v6/`:
//!
//! * `vmlinux` — the kernel as a PVH-bootable ELF (see [`crate::kernel`]; ~50 MB, saves ~0.5 s
//!   per boot for QEMU), if that extraction applies,
//! * `vmlinuz` — the bzImage as shipped (~8 MB): what the Intel lab's boot loader loads
//!   (Bochs has no direct kernel boot), and QEMU's kernel when there is no `vmlinux`,
//! * `base.cpio` — `/bin/busybox` and `/lib/modules/lab/*.ko` ([`ROOT_MODULES`] and their
//!   dependencies: both vendors' KVM modules; each lab's init loads only its own, see
//!   [`Assets::modules_for`]; their signatures cut off, see [`unsigned_module`]),
//! * `manifest` — `key=value` lines: kernel version, package versions, module load order, and
//!   the size and SHA-256 of `vmlinux`/`vmlinuz` and `base.cpio` as the fetch wrote them,
//! * `verified` — each file's inode, modification and change time when its SHA-256 last
//!   matched, so a run re-hashes a file only when it changed (a write in place that keeps the
//!   size and puts the mtime back still moves the ctime); the sizes are checked on every run.
//!
//! A cached file whose size or digest no longer matches (a truncated kernel, a garbage archive)
//! makes the assets *damaged*: the next run or `vmm lab setup` says so in one line and fetches
//! them again. A fetch first checks that the disk has room for it.
//!
//! The fetch happens in a fresh temporary directory next to the final one, which is renamed into
//! place only when complete: two processes racing both fetch, one rename wins, both use the
//! result. A directory whose manifest is readable and whose files match it is ready; anything
//! else is fetched again.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::apt::{
    apt_download, check_space, deb_id, dpkg_deb, find_deb, image_package_from_depends, walk,
    FETCH_NEEDS_BYTES,
};
use crate::elf::{module_depends, module_load_order, module_name};
use crate::error::LabError;
use crate::initramfs::Cpio;
use crate::tmp::TempDir;

/// Name of the asset directory inside the lab directory; bump when the layout changes.
pub const ASSETS_SUBDIR: &str = "assets-v6"; // v2: digests; v3: virtio-serial; v4-6: kvm_intel,
                                             // bzImage; v5: modules without signatures
/// The kernel metapackage (resolved to the versioned image package).
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The package providing a static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Where the base archive puts the kernel modules.
pub const LAB_MODULE_DIR: &str = "/lib/modules/lab";
/// The modules the labs load (each with its dependencies, in this order): `kvm_amd` yields
/// `/dev/kvm` in the AMD lab; `virtio_pci` and `virtio_console` the virtio-serial ports that
/// carry the program's stdin, stdout and stderr there (see [`crate::script`]); `kvm_intel`
/// yields `/dev/kvm` in the Intel lab (see [`crate::bochs`]), whose streams are UARTs.
pub const ROOT_MODULES: &[&str] = &["kvm_amd", "virtio_pci", "virtio_console", "kvm_intel"];

/// Which CPU vendor's nested KVM a lab run uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// QEMU TCG with an emulated AMD CPU with SVM and nested paging: `kvm_amd` (the default).
    #[default]
    Amd,
    /// Bochs with an emulated Intel CPU with VMX and EPT: `kvm_intel` (see [`crate::bochs`]).
    Intel,
}

impl Vendor {
    /// The root modules of this vendor's lab (see [`ROOT_MODULES`]).
    pub fn root_modules(self) -> &'static [&'static str] {
        match self {
            Vendor::Amd => &ROOT_MODULES[..3],
            Vendor::Intel => &ROOT_MODULES[3..],
        }
    }

    /// The KVM module that gives this lab its `/dev/kvm`.
    pub fn kvm_module(self) -> &'static str {
        match self {
            Vendor::Amd => "kvm_amd",
            Vendor::Intel => "kvm_intel",
        }
    }

    /// The engine name `vmm` uses for this lab (`lab-amd`, `lab-intel`).
    pub fn engine_name(self) -> &'static str {
        match self {
            Vendor::Amd => "lab-amd",
            Vendor::Intel => "lab-intel",
        }
    }

    fn manifest_key(self) -> &'static str {
        match self {
            Vendor::Amd => "modules",
            Vendor::Intel => "modules.intel",
        }
    }
}

/// The cached lab assets, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// The asset directory.
    pub dir: PathBuf,
    /// The kernel image (`vmlinux` ELF for PVH boot, or the bzImage `vmlinuz`).
    pub kernel: PathBuf,
    /// The kernel as a bzImage (`vmlinuz`), for a boot loader.
    pub bzimage: PathBuf,
    /// The base initramfs (newc): busybox and the modules.
    pub base_initrd: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// Debian package versions used, e.g. `linux-image-6.1.0-56-cloud-amd64=6.1.192-2`.
    pub packages: Vec<String>,
    /// The AMD lab's modules to insmod, in order (paths inside the lab).
    pub modules: Vec<String>,
    /// The Intel lab's modules to insmod, in order (see [`Assets::modules_for`]).
    pub intel_modules: Vec<String>,
}

impl Assets {
    /// The modules `vendor`'s lab loads, in order: its KVM module and what its channels need,
    /// each after its dependencies (never the other vendor's KVM module).
    pub fn modules_for(&self, vendor: Vendor) -> &[String] {
        match vendor {
            Vendor::Amd => &self.modules,
            Vendor::Intel => &self.intel_modules,
        }
    }

    /// The files whose sizes and digests the manifest records.
    fn files(&self) -> Vec<&PathBuf> {
        let mut f = vec![&self.kernel, &self.base_initrd];
        if self.bzimage != self.kernel {
            f.push(&self.bzimage);
        }
        f
    }
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

/// The manifest of `a`, with the size and SHA-256 of its two files as they are on disk now.
fn render_manifest(a: &Assets) -> io::Result<String> {
    let mut text = format!(
        "format={MANIFEST_FORMAT}\nkernel={}\nbzimage={}\nkernel_version={}\npackages={}\n",
        file_name(&a.kernel),
        file_name(&a.bzimage),
        a.kernel_version,
        a.packages.join(","),
    );
    for v in [Vendor::Amd, Vendor::Intel] {
        text.push_str(&format!(
            "{}={}\n",
            v.manifest_key(),
            a.modules_for(v).join(",")
        ));
    }
    for f in a.files() {
        let (size, digest) = (fs::metadata(f)?.len(), sha256_file(f)?);
        text.push_str(&format!(
            "size.{0}={size}\nsha256.{0}={digest}\n",
            file_name(f)
        ));
    }
    Ok(text)
}

/// Version of the manifest's layout (1 had no digests: such a cache is fetched again).
const MANIFEST_FORMAT: &str = "2";

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What is in an asset directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Nothing usable was fetched there (no manifest, an old format, no module list).
    Missing,
    /// A file no longer matches what the fetch recorded: why.
    Damaged(String),
    /// Complete and intact.
    Ready(Assets),
}

/// The identity of a file's current contents as far as the file system tells: inode,
/// modification time and change time. A write changes the ctime even when the mtime is put
/// back (`touch -r`) and the size kept, and nobody but the kernel sets a ctime.
fn stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}.{}:{}.{}",
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Checks the files of `a` against the manifest's sizes and digests `m`. A file is re-hashed
/// only if its stamp differs from the one recorded in `verified` when it last matched.
fn verify(a: &Assets, m: &BTreeMap<String, String>) -> Result<(), String> {
    let verified_path = a.dir.join("verified");
    let verified = parse_manifest(&fs::read_to_string(&verified_path).unwrap_or_default());
    let mut new_stamps = String::new();
    for f in a.files() {
        let name = file_name(f);
        let size = m.get(&format!("size.{name}"));
        let digest = m.get(&format!("sha256.{name}"));
        let (Some(size), Some(digest)) = (size, digest) else {
            return Err(format!("the manifest records no digest of {name}"));
        };
        let actual = fs::metadata(f)
            .map(|m| m.len())
            .map_err(|e| format!("{name}: {e}"))?;
        if actual.to_string() != *size {
            return Err(format!("{name} is {actual} bytes, the fetch wrote {size}"));
        }
        let now = stamp(f).unwrap_or_default();
        if verified.get(&name) != Some(&now) {
            let got = sha256_file(f).map_err(|e| format!("{name}: {e}"))?;
            if got != *digest {
                return Err(format!(
                    "{name} has SHA-256 {got}, the fetch wrote {digest}"
                ));
            }
        }
        new_stamps.push_str(&format!("{name}={now}\n"));
    }
    // Best effort: without it the next run hashes again.
    let _ = fs::write(&verified_path, new_stamps);
    Ok(())
}

/// Looks at the assets in `dir`: missing, damaged (why) or ready.
pub fn check_assets(dir: &Path) -> Cached {
    let Ok(text) = fs::read_to_string(dir.join("manifest")) else {
        return Cached::Missing;
    };
    let m = parse_manifest(&text);
    if m.get("format").map(String::as_str) != Some(MANIFEST_FORMAT) {
        return Cached::Missing;
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
    let (Some(kernel), Some(bzimage), Some(version)) =
        (m.get("kernel"), m.get("bzimage"), m.get("kernel_version"))
    else {
        return Cached::Missing;
    };
    let a = Assets {
        dir: dir.to_path_buf(),
        kernel: dir.join(kernel),
        bzimage: dir.join(bzimage),
        base_initrd: dir.join("base.cpio"),
        kernel_version: version.clone(),
        packages: list("packages"),
        modules: list(Vendor::Amd.manifest_key()),
        intel_modules: list(Vendor::Intel.manifest_key()),
    };
    if a.modules.is_empty() || a.intel_modules.is_empty() {
        return Cached::Missing;
    }
    for f in a.files() {
        if !f.is_file() {
            return Cached::Damaged(format!("{} is missing", file_name(f)));
        }
    }
    match verify(&a, &m) {
        Ok(()) => Cached::Ready(a),
        Err(why) => Cached::Damaged(why),
    }
}

/// The assets in `dir` if they are complete and intact.
pub fn load_assets(dir: &Path) -> Option<Assets> {
    match check_assets(dir) {
        Cached::Ready(a) => Some(a),
        _ => None,
    }
}

/// The marker the kernel's module signing appends after a module's signature.
const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// A kernel module without its appended signature (the module as built), or `data` unchanged
/// if it carries none. The labs' kernels do not enforce signatures (no Secure Boot), and
/// checking one (SHA-256 and RSA over the whole module) costs seconds of emulated CPU per
/// module in the Intel lab's Bochs: ~4 s for kvm.ko alone. The kernel notes the unsigned
/// module once (a taint), and loads it.
pub fn unsigned_module(data: &[u8]) -> &[u8] {
    // The signature, then struct module_signature (12 bytes, its last 4 the signature's
    // length, big-endian), then the magic.
    let Some(body) = data.strip_suffix(MODULE_SIG_MAGIC) else {
        return data;
    };
    let Some(info_at) = body.len().checked_sub(12) else {
        return data;
    };
    let len = u32::from_be_bytes(body[info_at + 8..].try_into().unwrap()) as usize;
    match info_at.checked_sub(len) {
        Some(end) => &data[..end],
        None => data,
    }
}

/// Fetches and builds the assets into `stage` (a fresh directory).
fn fetch_into(work: &Path, stage: &Path) -> Result<Assets, LabError> {
    let root = work.join("root");
    let (image, packages) = fetch_packages(work, &root, stage)?;
    let (kernel, bzimage, kernel_version) = stage_kernel(&root, stage, &image)?;
    let modules = module_closure(&root, &kernel_version, &image)?;
    let base = write_base_initrd(&root, stage, &modules)?;
    let [amd_modules, intel_modules] = modules.vendor_modules;
    let assets = Assets {
        dir: stage.to_path_buf(),
        kernel,
        bzimage,
        base_initrd: base,
        kernel_version,
        packages,
        modules: amd_modules,
        intel_modules,
    };
    let manifest = stage.join("manifest");
    let text = render_manifest(&assets).map_err(|e| LabError::io_path("hashing", stage, e))?;
    fs::write(&manifest, text).map_err(|e| LabError::io_path("writing", &manifest, e))?;
    Ok(assets)
}

/// Downloads the kernel image and busybox packages into `work/debs` and unpacks them into
/// `root`. Returns the kernel image package's name and the packages' `name=version`s.
fn fetch_packages(
    work: &Path,
    root: &Path,
    stage: &Path,
) -> Result<(String, Vec<String>), LabError> {
    let debs = work.join("debs");
    for d in [&debs, &root.to_path_buf(), &stage.to_path_buf()] {
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
    Ok((image, packages))
}

/// Puts the unpacked kernel into `stage`: the bzImage as shipped (a boot loader's kernel)
/// and, when it can be extracted, the PVH ELF inside (what QEMU boots). Returns the kernel
/// QEMU boots, the bzImage and the kernel's version.
fn stage_kernel(
    root: &Path,
    stage: &Path,
    image: &str,
) -> Result<(PathBuf, PathBuf, String), LabError> {
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
    // The bzImage is kept as shipped (a boot loader's kernel); QEMU boots the PVH ELF inside.
    let bzimage = stage.join("vmlinuz");
    fs::write(&bzimage, &bz).map_err(|e| LabError::io_path("writing", &bzimage, e))?;
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
            bzimage.clone()
        }
    };
    Ok((kernel, bzimage, kernel_version))
}

/// The kernel modules the lab loads: every `.ko` of the kernel by canonical name, the load
/// order of [`ROOT_MODULES`] and their dependencies, and each vendor's own order.
struct Modules {
    by_name: BTreeMap<String, PathBuf>,
    order: Vec<String>,
    /// The module paths in the lab, AMD's then Intel's, in load order.
    vendor_modules: [Vec<String>; 2],
}

/// Finds the modules of [`ROOT_MODULES`] and their dependencies in the unpacked kernel
/// `kernel_version` of package `image`.
fn module_closure(root: &Path, kernel_version: &str, image: &str) -> Result<Modules, LabError> {
    // The modules: index every .ko by canonical name, then walk the roots' dependencies.
    let moddir = root.join("lib/modules").join(kernel_version).join("kernel");
    let mut files = Vec::new();
    walk(&moddir, &mut files).map_err(|e| LabError::io_path("listing", &moddir, e))?;
    let by_name: BTreeMap<String, PathBuf> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .map(|p| (module_name(&p.file_name().unwrap().to_string_lossy()), p))
        .collect();
    let mut deps = BTreeMap::new();
    let mut todo: Vec<String> = ROOT_MODULES.iter().map(|m| m.to_string()).collect();
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
    let order = module_load_order(ROOT_MODULES, &deps)
        .map_err(|e| LabError::BadPackage(format!("{image}: {e}")))?;
    let mut vendor_modules: [Vec<String>; 2] = Default::default();
    for v in [Vendor::Amd, Vendor::Intel] {
        vendor_modules[v as usize] = module_load_order(v.root_modules(), &deps)
            .map_err(|e| LabError::BadPackage(format!("{image}: {e}")))?
            .iter()
            .map(|m| format!("{LAB_MODULE_DIR}/{m}.ko"))
            .collect();
    }
    Ok(Modules {
        by_name,
        order,
        vendor_modules,
    })
}

/// Writes `stage/base.cpio`: busybox and the lab's modules (signatures cut off). Returns
/// its path.
fn write_base_initrd(root: &Path, stage: &Path, modules: &Modules) -> Result<PathBuf, LabError> {
    let busybox = root.join("bin/busybox");
    let base = stage.join("base.cpio");
    let f = fs::File::create(&base).map_err(|e| LabError::io_path("creating", &base, e))?;
    let mut cpio = Cpio::new(BufWriter::new(f), &[]);
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
    for m in &modules.order {
        let lab_path = format!("{LAB_MODULE_DIR}/{m}.ko");
        let path = &modules.by_name[m];
        let data = fs::read(path).map_err(|e| LabError::io_path("reading", path, e))?;
        cpio.bytes(&lab_path, 0o644, unsigned_module(&data))
            .map_err(werr)?;
    }
    let w = cpio.finish().map_err(werr)?;
    w.into_inner()
        .map_err(|e| werr(e.into_error()))?
        .sync_all()
        .map_err(werr)?;
    Ok(base)
}

/// Makes sure the lab's kernel and base initramfs are cached, fetching them if needed.
///
/// Idempotent and cheap when the assets are there; safe against a concurrent fetch.
pub fn ensure_assets() -> Result<Assets, LabError> {
    let dir = lab_dir()?;
    let final_dir = dir.join(ASSETS_SUBDIR);
    match check_assets(&final_dir) {
        Cached::Ready(a) => {
            log::debug!("lab: assets ready in {}", final_dir.display());
            return Ok(a);
        }
        Cached::Damaged(why) => eprintln!(
            "lab: the cached assets in {} are damaged ({why}); fetching them again",
            final_dir.display()
        ),
        Cached::Missing => {}
    }
    fs::create_dir_all(&dir).map_err(|e| LabError::io_path("creating", &dir, e))?;
    crate::tmp::sweep_stale(&dir, ".fetch-");
    check_space(&dir, FETCH_NEEDS_BYTES)?;
    let stage_line = term::progress::Stage::start(format!(
        "fetching the lab's assets (a Debian kernel and busybox, ~60 MB with apt-get) into {}",
        final_dir.display()
    ));
    let work = TempDir::new_in(&dir, ".fetch-")?;
    let stage = work.path().join("stage");
    // A fetch that failed for want of room says so, not what dpkg-deb's tar made of it.
    fetch_into(work.path(), &stage).map_err(|e| match check_space(&dir, 64 << 20) {
        Err(no_space) => no_space,
        Ok(()) => e,
    })?;
    if final_dir.exists() && load_assets(&final_dir).is_none() {
        // A broken leftover (damaged, or an older format): move it aside, then drop it.
        let junk = work.path().join("old");
        if fs::rename(&final_dir, &junk).is_ok() {
            log::info!("lab: replaced the old {}", final_dir.display());
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
    let assets = load_assets(&final_dir).ok_or_else(|| {
        LabError::BadPackage(format!("{} incomplete after fetch", final_dir.display()))
    })?;
    stage_line.done();
    Ok(assets)
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

    /// Assets in `d` as a test writes them.
    fn sample_assets(d: &Path) -> Assets {
        Assets {
            dir: d.to_path_buf(),
            kernel: d.join("vmlinuz"),
            bzimage: d.join("vmlinuz"),
            base_initrd: d.join("base.cpio"),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            packages: vec!["a=1".into(), "b=2".into()],
            modules: vec![
                "/lib/modules/lab/kvm.ko".into(),
                "/lib/modules/lab/kvm_amd.ko".into(),
            ],
            intel_modules: vec![
                "/lib/modules/lab/kvm.ko".into(),
                "/lib/modules/lab/kvm_intel.ko".into(),
            ],
        }
    }

    #[test]
    fn manifest_round_trip_and_damage_is_found() {
        let dir = TempDir::new_in(&std::env::temp_dir(), "lab-test-").unwrap();
        let d = dir.path().to_path_buf();
        let a = sample_assets(&d);
        assert_eq!(check_assets(&d), Cached::Missing);
        fs::write(d.join("vmlinuz"), b"kernel bytes").unwrap();
        fs::write(d.join("base.cpio"), b"cpio bytes").unwrap();
        fs::write(d.join("manifest"), render_manifest(&a).unwrap()).unwrap();
        assert_eq!(check_assets(&d), Cached::Ready(a.clone()));
        assert!(d.join("verified").exists(), "the match is remembered");
        let names = |v| {
            a.modules_for(v)
                .iter()
                .map(|m| m.rsplit('/').next().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Vendor::Amd), ["kvm.ko", "kvm_amd.ko"]);
        assert_eq!(names(Vendor::Intel), ["kvm.ko", "kvm_intel.ko"]);
        assert_eq!(
            load_assets(&d),
            Some(a.clone()),
            "and the stamps still match"
        );

        // Truncated: the size says so without hashing.
        fs::write(d.join("vmlinuz"), b"kernel").unwrap();
        match check_assets(&d) {
            Cached::Damaged(why) => assert!(why.contains("vmlinuz is 6 bytes"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Same size, other bytes: the digest says so (the file's stamp changed).
        fs::write(d.join("vmlinuz"), b"kernel bytes").unwrap();
        fs::write(d.join("base.cpio"), b"cpio BYTES").unwrap();
        match check_assets(&d) {
            Cached::Damaged(why) => assert!(why.contains("base.cpio has SHA-256"), "{why}"),
            other => panic!("{other:?}"),
        }
        fs::remove_file(d.join("base.cpio")).unwrap();
        assert_eq!(
            check_assets(&d),
            Cached::Damaged("base.cpio is missing".into())
        );
        // A format-1 manifest (no digests) is not trusted.
        fs::write(d.join("base.cpio"), b"cpio bytes").unwrap();
        fs::write(
            d.join("manifest"),
            "format=1\nkernel=vmlinuz\nkernel_version=x\nmodules=m\n",
        )
        .unwrap();
        assert_eq!(check_assets(&d), Cached::Missing);
    }

    #[test]
    fn module_signatures_are_cut_off() {
        let module = b"\x7fELF module body".to_vec();
        let mut signed = module.clone();
        signed.extend_from_slice(b"SIGNATURE");
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        signed.extend_from_slice(MODULE_SIG_MAGIC);
        assert_eq!(unsigned_module(&signed), &module[..]);
        assert_eq!(unsigned_module(&module), &module[..], "unsigned: unchanged");
        // A length that does not fit: unchanged, never a panic.
        let mut bad = b"x".to_vec();
        bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        bad.extend_from_slice(MODULE_SIG_MAGIC);
        assert_eq!(unsigned_module(&bad), &bad[..]);
        assert_eq!(unsigned_module(MODULE_SIG_MAGIC), MODULE_SIG_MAGIC);
    }

    #[test]
    fn sha256_of_a_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("abc");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
