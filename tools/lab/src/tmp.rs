//! Private temporary directories (the `tempfile` crate: mode 0700, an unguessable name, created
//! anew — never an existing entry), removed with their contents on drop, and a sweep for the ones left by
//! processes that were killed before they could remove them (SIGKILL, a crash).

use std::fs;
use std::path::Path;

use crate::error::LabError;

/// A private directory `parent/<prefix><pid>-<random>`, deleted when dropped.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// Creates a fresh private directory in `parent`. The pid in its name lets
    /// [`sweep_stale`] tell whether its owner still runs.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<TempDir, LabError> {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .prefix(&format!("{prefix}{}-", std::process::id()))
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map(TempDir)
            .map_err(|e| {
                LabError::io(
                    format!("creating a temporary directory in {}", parent.display()),
                    e,
                )
            })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Keeps the directory (no longer removed on drop) and returns its path.
    pub fn keep(self) -> std::path::PathBuf {
        self.0.keep()
    }
}

/// Removes `parent/<prefix><pid>-*` entries (directories or files) left by processes that no
/// longer exist. Only entries owned by this user are touched.
pub fn sweep_stale(parent: &Path, prefix: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
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
        // symlink_metadata: a planted symlink is judged (and removed) as itself.
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.uid() != me
            || pid == std::process::id()
            || Path::new(&format!("/proc/{pid}")).exists()
        {
            continue;
        }
        log::debug!("lab: removing stale {}", e.path().display());
        let _ = if meta.is_dir() {
            fs::remove_dir_all(e.path())
        } else {
            fs::remove_file(e.path())
        };
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn directories_are_private_unique_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let a = TempDir::new_in(parent.path(), "t-").unwrap();
        let b = TempDir::new_in(parent.path(), "t-").unwrap();
        assert_ne!(a.path(), b.path());
        let mode = fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", a.path().display());
        let name = a.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with(&format!("t-{}-", std::process::id())),
            "{name}"
        );
        fs::write(a.path().join("f"), b"x").unwrap();
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }

    #[test]
    fn sweep_removes_only_entries_of_dead_processes() {
        let parent = tempfile::tempdir().unwrap();
        // A pid above the kernel's pid_max (4194304) never runs.
        let dead_dir = parent.path().join("t-4194399-abc");
        let dead_file = parent.path().join("t-4194398-def");
        let dead_link = parent.path().join("t-4194397-ghi");
        let target = parent.path().join("target");
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("inner"), b"x").unwrap();
        fs::write(&dead_file, b"x").unwrap();
        fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &dead_link).unwrap();
        let mine = TempDir::new_in(parent.path(), "t-").unwrap();
        let other = parent.path().join("u-4194399-x");
        fs::create_dir(&other).unwrap();
        sweep_stale(parent.path(), "t-");
        assert!(!dead_dir.exists() && !dead_file.exists());
        assert!(
            dead_link.symlink_metadata().is_err(),
            "the planted link itself goes"
        );
        assert_eq!(fs::read(&target).unwrap(), b"keep", "never its target");
        assert!(mine.path().exists(), "a live process's directory stays");
        assert!(other.exists(), "other prefixes are not touched");
    }
}
