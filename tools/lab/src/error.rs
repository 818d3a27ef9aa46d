//! [`LabError`]: every way the lab can fail, each rendered as one line that says what to do.

use std::fmt;
use std::io;

/// How many console lines an error message quotes (the full tail is in the variant).
const QUOTED_LINES: usize = 6;

/// An error from the lab. `Display` is a single line naming the cause and the remedy.
#[derive(Debug)]
pub enum LabError {
    /// `qemu-system-x86_64` is not on `PATH` (nor at `$XV6_LAB_QEMU`).
    QemuMissing,
    /// A host tool the asset fetch needs (`apt-get`, `dpkg-deb`) is missing.
    ToolMissing {
        /// The missing tool.
        tool: &'static str,
    },
    /// `apt-get download` failed (usually: the package lists were never fetched).
    AptDownload {
        /// The packages asked for.
        packages: String,
        /// The last line apt printed.
        detail: String,
    },
    /// A downloaded package does not look like expected (no vmlinuz, no kvm-amd.ko, ...).
    BadPackage(String),
    /// Neither `XV6_LAB_DIR`, `XDG_CACHE_HOME` nor `HOME` is set.
    NoCacheDir,
    /// The request is malformed (bad env name, relative lab path, unreadable program, ...).
    InvalidRequest(String),
    /// The program (or one of its libraries) could not be prepared for the lab.
    Program(String),
    /// Inside the lab, KVM did not come up (kvm_amd failed to load, /dev/kvm missing).
    KvmUnavailable {
        /// What the lab's init reported.
        reason: String,
        /// The last lines of the lab's kernel console.
        console_tail: Vec<String>,
    },
    /// QEMU exited with an error before the lab reported anything.
    QemuFailed {
        /// QEMU's exit status, as text.
        status: String,
        /// QEMU's own stderr (last line quoted in Display).
        stderr: String,
    },
    /// The lab machine stopped without reporting the program's exit status.
    NoExitStatus {
        /// The last lines of the lab's kernel console.
        console_tail: Vec<String>,
    },
    /// The disk holding the lab's cache has too little room for a fetch.
    NoSpace {
        /// The lab directory.
        dir: std::path::PathBuf,
        /// MiB free there.
        free_mib: u64,
        /// MiB a fetch needs.
        need_mib: u64,
    },
    /// The program's output could not be passed on to our stdout/stderr (broken pipe, full
    /// disk); the run was stopped.
    Output {
        /// "stdout" or "stderr".
        stream: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The program's output ports sent more than arrived here.
    OutputLost {
        /// "stdout" or "stderr".
        stream: &'static str,
        /// Bytes that arrived.
        received: u64,
        /// Bytes the lab reported sent.
        sent: u64,
    },
    /// A warm start's machine did not come back from its snapshot (the caller boots cold).
    RestoreFailed(String),
    /// The warm snapshot could not be built or used (the caller boots cold).
    Snapshot(String),
    /// An I/O error, with what we were doing.
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The Intel lab's tools (Bochs, its BIOS, ISOLINUX, xorriso) are not all installed.
    IntelLabMissing {
        /// The Debian packages that would provide what is missing.
        packages: Vec<&'static str>,
    },
}

impl LabError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }

    /// An I/O error about a path.
    pub(crate) fn io_path(what: &str, path: &std::path::Path, source: io::Error) -> Self {
        Self::io(format!("{what} {}", path.display()), source)
    }
}

/// Whether the lab's console shows its init (busybox and the generated script) dying.
fn init_died(console: &[String]) -> bool {
    console.iter().any(|l| {
        l.contains("Attempted to kill init")
            || l.contains("segfault at")
            || l.contains("Failed to execute /init")
            || l.contains("Initramfs unpacking failed")
    })
}

/// The last non-empty line of `text`.
pub(crate) fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// Joins the last few console lines into one line.
pub(crate) fn quote_tail(lines: &[String]) -> String {
    // Drop the kernel's timestamps and the power-off line: they say nothing about the cause.
    let useful: Vec<&str> = lines
        .iter()
        .map(|l| {
            let l = l.trim();
            match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((t, rest)) if t.trim().parse::<f64>().is_ok() => rest.trim(),
                _ => l,
            }
        })
        .filter(|l| !l.is_empty() && !l.starts_with("reboot: "))
        .collect();
    let quoted = &useful[useful.len().saturating_sub(QUOTED_LINES)..];
    if quoted.is_empty() {
        "(console empty; run with RUST_LOG=debug for the full lab console)".to_string()
    } else {
        quoted.join(" | ")
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::QemuMissing => write!(
                f,
                "qemu-system-x86_64 not found: install it with `apt-get install qemu-system-x86` (as root), or set XV6_LAB_QEMU to its path"
            ),
            LabError::ToolMissing { tool } => write!(
                f,
                "{tool} not found: the lab fetches its kernel and busybox from Debian packages and needs a Debian/Ubuntu host with apt ({tool})"
            ),
            LabError::AptDownload { packages, detail } => write!(
                f,
                "apt-get download {packages} failed ({detail}): run `apt-get update` (as root) first"
            ),
            LabError::BadPackage(what) => write!(f, "unexpected Debian package contents: {what}"),
            LabError::RestoreFailed(why) => {
                write!(f, "the lab machine did not come back from its snapshot: {why}")
            }
            LabError::Snapshot(why) => write!(f, "the lab's warm snapshot: {why}"),
            LabError::NoCacheDir => write!(
                f,
                "no cache directory for the lab: set XV6_LAB_DIR (or HOME / XDG_CACHE_HOME)"
            ),
            LabError::InvalidRequest(what) => write!(f, "invalid lab request: {what}"),
            LabError::Program(what) => write!(f, "cannot prepare the program for the lab: {what}"),
            LabError::KvmUnavailable {
                reason,
                console_tail,
            } => write!(
                f,
                "{reason} inside the lab: {}",
                quote_tail(console_tail)
            ),
            LabError::QemuFailed { status, stderr } => {
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message");
                write!(f, "qemu-system-x86_64 failed ({status}): {last}")
            }
            LabError::NoExitStatus { console_tail } => no_exit_status(f, console_tail),
            LabError::NoSpace {
                dir,
                free_mib,
                need_mib,
            } => write!(
                f,
                "no space left for the lab's assets: {free_mib} MiB free where {} is, a fetch \
                 needs about {need_mib} MiB; free some space or set XV6_LAB_DIR to another disk",
                dir.display()
            ),
            LabError::Output { stream, source } => {
                write!(f, "cannot write the program's {stream}: {source}")
            }
            LabError::OutputLost {
                stream,
                received,
                sent,
            } => write!(
                f,
                "the lab lost part of the program's {stream}: {received} of the {sent} bytes it \
                 wrote arrived (RUST_LOG=lab=debug shows the lab's console)"
            ),
            LabError::Io { context, source } => write!(f, "{context}: {source}"),
            LabError::IntelLabMissing { packages } => write!(
                f,
                "the Intel lab (Bochs) is not installed: install the apt packages {0} \
                 (as root: apt-get install --no-install-recommends {0}), or use --engine lab-amd",
                packages.join(" ")
            ),
        }
    }
}

/// [`LabError::NoExitStatus`]'s message: the console's tail, and a hint when the lab's own
/// init died.
fn no_exit_status(f: &mut fmt::Formatter<'_>, console_tail: &[String]) -> fmt::Result {
    write!(
        f,
        "the lab stopped without reporting the program's exit status: {}",
        quote_tail(console_tail)
    )?;
    if init_died(console_tail) {
        write!(
            f,
            " (the lab's own init died: its cached assets may be damaged; \
             `vmm lab setup` checks and fetches them again)"
        )?;
    }
    Ok(())
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Io { source, .. } | LabError::Output { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line() {
        let e = LabError::KvmUnavailable {
            reason: "kvm_amd did not load".into(),
            console_tail: (0..10).map(|i| format!("line {i}\r")).collect(),
        };
        let s = e.to_string();
        assert!(!s.contains('\n') && !s.contains('\r'), "{s}");
        assert!(s.starts_with("kvm_amd did not load inside the lab: line 4 | "));
        assert!(s.ends_with("line 9"));
        let e = LabError::NoExitStatus {
            console_tail: vec![
                "[    2.175995] has_svm: svm not available".into(),
                "[    2.248894] reboot: Power down".into(),
            ],
        };
        assert_eq!(
            e.to_string(),
            "the lab stopped without reporting the program's exit status: has_svm: svm not available"
        );
        let e = LabError::NoExitStatus {
            console_tail: vec![
                "[    1.0] init[1]: segfault at 0 ip 0000 sp 0000 error 4".into(),
                "[    1.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b"
                    .into(),
            ],
        };
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(
            s.ends_with("`vmm lab setup` checks and fetches them again)"),
            "{s}"
        );
        let e = LabError::QemuFailed {
            status: "exit status: 1".into(),
            stderr: "warn\nqemu: could not load kernel\n\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "qemu-system-x86_64 failed (exit status: 1): qemu: could not load kernel"
        );
        assert!(LabError::QemuMissing
            .to_string()
            .contains("apt-get install qemu-system-x86"));
    }
}
