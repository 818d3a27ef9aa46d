//! Debian packages fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing
//! is installed on the host), and the host tools and checks that takes: a tool on `PATH`, a
//! tool's output, the disk space a fetch needs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::LabError;

/// Bytes free for us on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c is a NUL-terminated path and st points to writable memory for one statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled st.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// What a fetch needs on disk at its peak: the .debs, their unpacked tree and the assets.
pub const FETCH_NEEDS_BYTES: u64 = 512 << 20;

/// Refuses to start a fetch (or explains a failed one) when `dir`'s disk lacks `need` bytes.
pub(crate) fn check_space(dir: &Path, need: u64) -> Result<(), LabError> {
    match free_bytes(dir) {
        Some(free) if free < need => Err(LabError::NoSpace {
            dir: dir.to_path_buf(),
            free_mib: free >> 20,
            need_mib: need >> 20,
        }),
        _ => Ok(()),
    }
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
pub(crate) fn run_tool(cmd: &mut Command) -> Result<String, String> {
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

pub(crate) fn apt_download(dir: &Path, packages: &[&str]) -> Result<(), LabError> {
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
pub(crate) fn find_deb(dir: &Path, package: &str) -> Result<PathBuf, LabError> {
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

pub(crate) fn dpkg_deb(args: &[&std::ffi::OsStr]) -> Result<String, LabError> {
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
pub(crate) fn deb_id(deb: &Path) -> Result<String, LabError> {
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

pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_full_disk_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_space(dir.path(), u64::MAX).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("no space left for the lab's assets"), "{s}");
        assert!(s.contains("XV6_LAB_DIR"), "{s}");
        assert!(check_space(dir.path(), 1).is_ok());
    }
}
