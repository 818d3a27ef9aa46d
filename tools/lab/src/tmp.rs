//! A temporary directory removed (with its contents) on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::LabError;

/// A directory that is deleted when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory `parent/<prefix><pid>-<nanos>-<n>`.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<TempDir, LabError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        for _ in 0..100 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = parent.join(format!("{prefix}{}-{nanos}-{n}", std::process::id()));
            match fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(LabError::io_path("creating", &p, e)),
            }
        }
        Err(LabError::io(
            format!("creating a temporary directory in {}", parent.display()),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Removes `parent/<prefix><pid>-*` directories left by processes that no longer exist (killed
/// before their [`TempDir`] could be dropped).
pub fn sweep_stale(parent: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            log::debug!("lab: removing stale {}", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            log::warn!("lab: cannot remove {}: {e}", self.0.display());
        }
    }
}
