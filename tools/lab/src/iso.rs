//! The Intel lab's boot medium: a small El Torito CD image (ISOLINUX, the lab's bzImage, the
//! run's initramfs and the kernel command line), since Bochs has no direct kernel boot.
//!
//! Built per run with `xorriso -as mkisofs` into the run's private directory. The host files
//! are mapped into the image (`-graft-points`) rather than copied; xorriso patches the boot
//! info table into the image's copy of `isolinux.bin`, never into the file on disk.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::LabError;

/// ISOLINUX's configuration: boot the one entry at once, quietly, with `cmdline`.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "DEFAULT lab\nPROMPT 0\nTIMEOUT 0\nLABEL lab\n  KERNEL /vmlinuz\n  INITRD /initrd\n  APPEND {cmdline}\n"
    )
}

/// What goes where in the image: (path in the image, host file).
fn grafts<'a>(
    isolinux: &'a Path,
    ldlinux: &'a Path,
    cfg: &'a Path,
    kernel: &'a Path,
    initrd: &'a Path,
) -> [(&'static str, &'a Path); 5] {
    [
        ("isolinux/isolinux.bin", isolinux),
        ("isolinux/ldlinux.c32", ldlinux),
        ("isolinux/isolinux.cfg", cfg),
        ("vmlinuz", kernel),
        ("initrd", initrd),
    ]
}

/// The host files an image is made of.
pub struct IsoParts<'a> {
    /// `xorriso`.
    pub xorriso: &'a Path,
    /// ISOLINUX's boot sector (`isolinux.bin`).
    pub isolinux: &'a Path,
    /// ISOLINUX's core module (`ldlinux.c32`).
    pub ldlinux: &'a Path,
    /// The bzImage.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
}

/// Writes the image to `out`, its ISOLINUX configuration (with `cmdline`) beside it in `dir`.
pub fn build(parts: &IsoParts, cmdline: &str, dir: &Path, out: &Path) -> Result<(), LabError> {
    let cfg = dir.join("isolinux.cfg");
    std::fs::write(&cfg, isolinux_cfg(cmdline))
        .map_err(|e| LabError::io_path("writing", &cfg, e))?;
    let mut cmd = Command::new(parts.xorriso);
    cmd.args(["-as", "mkisofs", "-quiet", "-graft-points", "-o"])
        .arg(out)
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]);
    for (inside, host) in grafts(
        parts.isolinux,
        parts.ldlinux,
        &cfg,
        parts.kernel,
        parts.initrd,
    ) {
        let mut a = std::ffi::OsString::from(format!("{inside}="));
        a.push(escape_graft(host));
        cmd.arg(a);
    }
    log::debug!("lab: {cmd:?}");
    let res = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| LabError::io_path("running", parts.xorriso, e))?;
    if !res.status.success() {
        let err = String::from_utf8_lossy(&res.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty());
        return Err(LabError::io(
            format!(
                "xorriso could not build the Intel lab's boot image ({})",
                last.unwrap_or("no message")
            ),
            std::io::Error::other(res.status.to_string()),
        ));
    }
    Ok(())
}

/// A host path as a graft point's source: `=` and `\` are escaped with `\`.
pub fn escape_graft(p: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'=' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_boots_the_one_entry_with_the_command_line() {
        let c = isolinux_cfg("console=ttyS0 rdinit=/init");
        assert!(c.starts_with("DEFAULT lab\nPROMPT 0\nTIMEOUT 0\n"));
        assert!(c.contains("  KERNEL /vmlinuz\n  INITRD /initrd\n"));
        assert!(c.ends_with("  APPEND console=ttyS0 rdinit=/init\n"));
    }

    #[test]
    fn graft_sources_are_escaped() {
        assert_eq!(escape_graft(Path::new("/a/b")), "/a/b");
        assert_eq!(escape_graft(Path::new("/a=b\\c")), "/a\\=b\\\\c");
    }
}
