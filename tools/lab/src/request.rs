//! What a lab run is asked to do ([`LabRequest`]: the program, its arguments, files,
//! environment, stdin, ports and bounds), how it may end ([`LabOutcome`]), the options of a
//! run ([`LabOptions`]), and the checks a request passes before anything starts.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::assets::Vendor;
use crate::error::LabError;
use crate::script;
use crate::{initramfs, qemu};

/// RAM the lab's own Linux gets on top of the program's guest.
pub const LAB_OVERHEAD_MIB: u64 = 512;

/// The program's stdin inside the lab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LabStdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// This process's stdin, streamed as it arrives (a pipe, a file, or a terminal: what is
    /// typed, as the terminal hands it over, line by line); its end is the program's end of
    /// input. The program starts without waiting for any.
    Inherit,
    /// A host file, streamed the same way.
    File(PathBuf),
}

/// One program run in the lab.
#[derive(Debug, Clone, Default)]
pub struct LabRequest {
    /// Host path of the static-or-dynamic x86_64 Linux binary to run inside the lab (normally
    /// `std::env::current_exe()` of vmm).
    pub program: PathBuf,
    /// Arguments passed to it (argv[1..]) inside the lab, verbatim (any bytes but NUL).
    pub args: Vec<OsString>,
    /// Extra host files to make available inside the lab: (host path, absolute path inside the
    /// lab). The caller rewrites its args to use the lab paths.
    pub files: Vec<(PathBuf, String)>,
    /// Environment variables to set inside (e.g. RUST_LOG).
    pub env: Vec<(String, String)>,
    /// The program's stdin (a virtio-serial port fed as input arrives, or `/dev/null`).
    pub stdin: LabStdin,
    /// Extra virtio-serial ports, each bridged to a TCP address on the host. For each
    /// `(NAME, ADDR)`, QEMU listens on ADDR from its start (not waiting for a client; one
    /// client at a time, later ones once it has gone; an address in use fails the run before
    /// boot with QEMU's message), and the program finds the port as `/dev/virtio-ports/NAME`,
    /// a character device to open read-write; bytes pass unchanged both ways. NAME: 1–64 of
    /// `[A-Za-z0-9._-]`, not starting with `.`, `-` or `lab.` (the lab's own ports).
    ///
    /// While no client is connected, a read returns 0 (end of file) at once, `poll` reports
    /// `POLLHUP` (without waking when one connects: poll again every few ms), and writes are
    /// dropped; `host_connected: 1` in `/sys/kernel/debug/virtio-ports/<device>` (the device
    /// `/dev/virtio-ports/NAME` links to) says one is there. After the client leaves, reads
    /// return what it sent, then 0 again.
    pub tcp_ports: Vec<(String, SocketAddr)>,
    /// The same bridges on Unix sockets: for each `(NAME, PATH)`, QEMU creates a listening
    /// socket at PATH (which must not exist; mode 0600: QEMU runs with umask 077) and the
    /// lab removes it once QEMU is gone. NAME as for [`LabRequest::tcp_ports`], unique across
    /// both lists.
    pub unix_ports: Vec<(String, PathBuf)>,
    /// Where on the host to write what the program leaves in [`script::RESULT_PATH`] inside
    /// the lab (text lines), once it has exited; nothing is written if it left nothing.
    pub result_file: Option<PathBuf>,
    /// Where on the host to write what the program leaves in [`script::COLLECT_PATH`]
    /// inside the lab (any bytes, at most [`COLLECT_MAX`]), sent on a virtio-serial port of
    /// its own once it has exited; the file is created (0600, it must not exist) whenever
    /// this is set, and holds all of it once the run returns [`LabOutcome::Exited`] (a run
    /// that ends otherwise may leave a part). The AMD lab only: the Intel lab, with no
    /// virtio-serial, leaves it empty.
    pub collect: Option<PathBuf>,
    /// Guest RAM the program will want (MiB); the lab VM gets enough on top of it.
    pub guest_mem_mib: u64,
    /// Overall bound for the lab run (boot + program); on expiry QEMU is killed and
    /// [`LabOutcome::TimedOut`] returned.
    pub timeout: Duration,
    /// A bound on the program's own run, from the moment it starts (on the host's clock, so
    /// nothing inside the lab can stretch it); on expiry as [`LabRequest::timeout`].
    pub run_timeout: Option<Duration>,
    /// Which lab: AMD (QEMU, kvm_amd; the default) or Intel (Bochs, kvm_intel; see [`crate::bochs`]).
    pub vendor: Vendor,
    /// vCPUs the program runs (`vmm run --cpus N`). The AMD lab's machine gets as many CPUs,
    /// at most [`qemu::lab_cpus`] (one unless `XV6_LAB_CPUS` says more: beyond one, QEMU's
    /// emulation of nested SVM is not reliable; there, the vCPUs take turns); one vCPU
    /// always gets one CPU, which restores and runs a single vCPU fastest
    /// (see [`LabRequest::machine_cpus`]). The Intel lab (Bochs) always has one.
    pub cpus: u32,
}

impl LabRequest {
    /// The AMD lab machine's CPU count for this request (part of the warm snapshot's key).
    pub fn machine_cpus(&self) -> u32 {
        machine_cpus(self.cpus, qemu::lab_cpus())
    }
}

/// CPUs of a lab machine for a program of `wanted` vCPUs on a lab of at most `most`.
fn machine_cpus(wanted: u32, most: u32) -> u32 {
    if wanted <= 1 {
        1
    } else {
        wanted.min(most).max(1)
    }
}

/// The most [`LabRequest::collect`] takes: more fails the run (`LabError::Output`).
pub const COLLECT_MAX: u64 = 256 << 20;

/// How a lab run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabOutcome {
    /// The program exited with this status (0..=255; 128+N if killed by signal N).
    Exited(i32),
    /// The timeout expired; QEMU was killed.
    TimedOut,
    /// This process received this signal (see [`term::interrupt`]); QEMU was killed.
    Interrupted(i32),
}

/// Knobs for tests and experiments; [`crate::run`] uses the defaults.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// QEMU `-cpu` model. Without `+svm`, kvm_amd cannot load (used to test that failure).
    pub cpu: String,
    /// Extra QEMU arguments, appended (for experiments, e.g. another `-bios`).
    pub extra_qemu_args: Vec<String>,
    /// How the machine starts.
    pub start: Start,
}

/// How a lab machine starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// Restored from the warm snapshot when the request allows (no TCP bridges, the default
    /// machine) and [`crate::warm::WARM_ENV`] is not `0`; else booted.
    #[default]
    Auto,
    /// Always booted (what the warm start saves: `vmm bench lab`).
    Cold,
    /// Restored from the warm snapshot (built first if need be); a request that cannot
    /// start warm is an error.
    Warm,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            cpu: qemu::DEFAULT_CPU.to_string(),
            extra_qemu_args: Vec::new(),
            start: Start::Auto,
        }
    }
}

/// Paths inside the lab a request's files may not use.
pub(crate) const RESERVED: &[&str] = &[
    "init", "bin", "sbin", "dev", "proc", "sys", "lab/bin", "lab/lib",
];

pub(crate) fn check_ports(req: &LabRequest) -> Result<(), LabError> {
    let names: Vec<&String> = req
        .tcp_ports
        .iter()
        .map(|(n, _)| n)
        .chain(req.unix_ports.iter().map(|(n, _)| n))
        .collect();
    for (_, path) in &req.unix_ports {
        if path.symlink_metadata().is_ok() {
            return Err(LabError::InvalidRequest(format!(
                "{} exists: a Unix socket bridge is created anew (remove it or pick another path)",
                path.display()
            )));
        }
    }
    for (i, name) in names.iter().enumerate() {
        let why = if !qemu::valid_port_name(name) {
            "must be 1-64 of A-Z a-z 0-9 . _ - and not start with . or -"
        } else if name.starts_with(script::RESERVED_PORT_PREFIX) {
            "names starting with lab. are the lab's own"
        } else if names[..i].contains(name) {
            "is given twice"
        } else {
            continue;
        };
        return Err(LabError::InvalidRequest(format!(
            "port name {name:?} {why}"
        )));
    }
    Ok(())
}

pub(crate) fn check_request(req: &LabRequest) -> Result<(), LabError> {
    if let LabStdin::File(path) = &req.stdin {
        if !path.is_file() {
            return Err(LabError::InvalidRequest(format!(
                "stdin {} is not a readable file",
                path.display()
            )));
        }
    }
    check_ports(req)?;
    for (k, v) in &req.env {
        if !script::valid_env_name(k) {
            return Err(LabError::InvalidRequest(format!(
                "environment variable name {k:?} is not a valid shell name"
            )));
        }
        if v.contains('\0') {
            return Err(LabError::InvalidRequest(format!(
                "value of {k} contains NUL"
            )));
        }
    }
    for a in &req.args {
        if a.as_encoded_bytes().contains(&0) {
            return Err(LabError::InvalidRequest(format!(
                "argument {a:?} contains NUL"
            )));
        }
    }
    for (host, lab) in &req.files {
        let name =
            initramfs::archive_name(lab).map_err(|e| LabError::InvalidRequest(e.to_string()))?;
        if RESERVED
            .iter()
            .any(|r| name == *r || name.starts_with(&format!("{r}/")))
        {
            return Err(LabError::InvalidRequest(format!(
                "lab path {lab} is reserved (use e.g. /lab/files/...)"
            )));
        }
        if !host.is_file() {
            return Err(LabError::InvalidRequest(format!(
                "{} is not a readable file",
                host.display()
            )));
        }
    }
    if !req.program.is_file() {
        return Err(LabError::InvalidRequest(format!(
            "program {} not found",
            req.program.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_cpu_unless_several_are_wanted_and_the_host_has_them() {
        assert_eq!(machine_cpus(0, 2), 1);
        assert_eq!(machine_cpus(1, 8), 1);
        assert_eq!(machine_cpus(2, 2), 2);
        assert_eq!(machine_cpus(4, 2), 2);
        assert_eq!(machine_cpus(3, 8), 3);
        assert_eq!(machine_cpus(8, 1), 1);
    }

    use super::*;

    fn req() -> LabRequest {
        LabRequest {
            program: std::env::current_exe().unwrap(),
            args: vec![],
            files: vec![],
            guest_mem_mib: 16,
            timeout: Duration::from_secs(1),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(check_request(&req()).is_ok());
        let mut r = req();
        r.env.push(("BAD-NAME".into(), "x".into()));
        assert!(matches!(
            check_request(&r),
            Err(LabError::InvalidRequest(_))
        ));
        let mut r = req();
        r.files.push((r.program.clone(), "/init".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files.push((r.program.clone(), "/lab/lib/x".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files.push((r.program.clone(), "relative".into()));
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.files
            .push((r.program.clone(), "/lab/files/kernel".into()));
        assert!(check_request(&r).is_ok());
        let mut r = req();
        r.program = "/nonexistent".into();
        assert!(check_request(&r).is_err());
        let mut r = req();
        r.stdin = LabStdin::File("/nonexistent".into());
        assert!(check_request(&r).is_err());
        r.stdin = LabStdin::File(r.program.clone());
        assert!(check_request(&r).is_ok());
    }

    #[test]
    fn tcp_port_names_are_checked() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let with = |names: &[&str]| {
            let mut r = req();
            r.tcp_ports = names.iter().map(|n| (n.to_string(), addr)).collect();
            check_request(&r).map_err(|e| e.to_string())
        };
        assert!(with(&["gdb", "x.y-z_1"]).is_ok());
        let err = with(&["lab.stdin"]).unwrap_err();
        assert!(err.contains("lab's own"), "{err}");
        assert!(with(&["gdb", "gdb"]).unwrap_err().contains("twice"));
        assert!(with(&["a,b"]).unwrap_err().contains("must be"));
        assert!(with(&[""]).is_err());
    }
}
