//! What `vmm lab status` says: where the lab's cache is, whether its assets are ready, which
//! QEMU (and Bochs, for the Intel lab) it would use, and so whether a lab run can start.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

use crate::apt::{run_tool, which};
use crate::assets::{check_assets, lab_dir, Assets, Cached, ASSETS_SUBDIR};
use crate::error::LabError;
use crate::qemu::find_qemu;

/// What `vmm lab status` prints: where things are and whether the lab can run.
#[derive(Debug, Clone)]
pub struct LabStatus {
    /// The lab directory (see [`lab_dir`]), if one can be determined.
    pub lab_dir: Result<PathBuf, String>,
    /// The cached assets, if complete.
    pub assets: Option<Assets>,
    /// Why the cached assets cannot be used, if they are there but damaged.
    pub damaged: Option<String>,
    /// The QEMU binary, if found.
    pub qemu: Option<PathBuf>,
    /// First line of `qemu-system-x86_64 --version`.
    pub qemu_version: Option<String>,
    /// Whether `apt-get` and `dpkg-deb` are there to fetch assets.
    pub can_fetch: bool,
    /// The apt packages the Intel lab (Bochs) still needs (none: its tools are there).
    pub intel_missing: Vec<&'static str>,
}

impl LabStatus {
    /// Whether the AMD lab ([`crate::run`]) can start right away (no fetch needed).
    pub fn ready(&self) -> bool {
        self.assets.is_some() && self.qemu.is_some()
    }

    /// Whether the Intel lab can start right away (its tools and the shared assets are there).
    pub fn intel_ready(&self) -> bool {
        self.assets.is_some() && self.intel_missing.is_empty()
    }

    /// The Intel lab's line: `ready`, or what it needs.
    fn intel_line(&self) -> String {
        if !self.intel_missing.is_empty() {
            format!(
                "needs apt packages {0} (as root: apt-get install --no-install-recommends {0})",
                self.intel_missing.join(" ")
            )
        } else if self.assets.is_none() {
            "needs the lab's assets (shared with lab-amd): `vmm lab setup`".to_string()
        } else {
            "ready".to_string()
        }
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = if self.ready() {
            "ready".to_string()
        } else if self.qemu.is_none() {
            LabError::QemuMissing.to_string()
        } else if let Some(why) = &self.damaged {
            format!("cached assets damaged ({why}): `vmm lab setup` (or the next lab run) fetches them again")
        } else if self.can_fetch {
            "not set up: `vmm lab setup` (or the first lab run) fetches the assets".to_string()
        } else {
            "not set up and apt-get/dpkg-deb are missing: cannot fetch assets".to_string()
        };
        writeln!(f, "lab-amd: {ready}")?;
        writeln!(f, "lab-intel: {}", self.intel_line())?;
        match &self.lab_dir {
            Ok(d) => writeln!(f, "lab dir: {}", d.display())?,
            Err(e) => writeln!(f, "lab dir: {e}")?,
        }
        match &self.assets {
            Some(a) => {
                writeln!(f, "kernel: {} ({})", a.kernel_version, a.kernel.display())?;
                writeln!(f, "packages: {}", a.packages.join(" "))?;
                writeln!(f, "modules (lab-amd): {}", a.modules.join(" "))?;
                writeln!(f, "modules (lab-intel): {}", a.intel_modules.join(" "))?;
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
    let cached = dir
        .as_ref()
        .map_or(Cached::Missing, |d| check_assets(&d.join(ASSETS_SUBDIR)));
    let (assets, damaged) = match cached {
        Cached::Ready(a) => (Some(a), None),
        Cached::Damaged(why) => (None, Some(why)),
        Cached::Missing => (None, None),
    };
    let qemu = find_qemu().ok();
    let qemu_version = qemu.as_ref().and_then(|q| {
        run_tool(Command::new(q).arg("--version"))
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
    });
    LabStatus {
        lab_dir: dir.map_err(|e| e.to_string()),
        assets,
        damaged,
        qemu,
        qemu_version,
        can_fetch: which("apt-get").is_some() && which("dpkg-deb").is_some(),
        intel_missing: crate::bochs::find_tools().err().unwrap_or_default(),
    }
}
