//! The nested-KVM lab (the `lab` crate, tools/lab) behind one adapter: the only place that
//! names the lab crate, with [`run`] (a `vmm run` re-run inside the lab). Everything else in
//! the VMM asks here: which engine this process runs on, whether it is inside the lab, the
//! one lab request a run or a bench starts from, `vmm lab setup|status`.

pub mod run;

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub use lab::Vendor;

/// Set by the outer `vmm` for the inner one: the engine the run is on (`lab-amd`,
/// `lab-intel`), for `--stats` (see [`engine_name`]).
pub const ENGINE_ENV: &str = "XV6_VMM_ENGINE";

/// Where the inner `vmm` leaves a small text result the lab sends back (`--stats-json`,
/// `--pgdump-svg`, see outputs.rs).
pub const RESULT_PATH: &str = lab::script::RESULT_PATH;

/// The engine this process's guest runs on, for `--stats`: `kvm`, or the lab the outer `vmm`
/// named in [`ENGINE_ENV`] (anything else there counts as `kvm`).
pub fn engine_name() -> &'static str {
    engine_name_from(std::env::var(ENGINE_ENV).ok().as_deref())
}

/// The pure part of [`engine_name`].
pub fn engine_name_from(var: Option<&str>) -> &'static str {
    match var {
        Some("lab-amd") => "lab-amd",
        Some("lab-intel") => "lab-intel",
        _ => "kvm",
    }
}

/// Whether this process runs inside the lab (the outer `vmm` said so in its environment).
pub fn in_lab() -> bool {
    std::env::var_os(lab::IN_LAB_ENV).is_some()
}

/// How long a host probe (`probe.rs`) may take here: 2 s, or 30 s inside the lab, whose
/// emulated CPU on a loaded host can take longer than 2 s to create a VM and run a few
/// instructions.
pub fn probe_bound() -> Duration {
    match in_lab() {
        true => Duration::from_secs(30),
        false => Duration::from_secs(2),
    }
}

/// The environment of the inner `vmm`: our log filter, and no colour or spinners (its stderr
/// is a serial line, a terminal to it, but what it writes ends up wherever ours goes), and
/// which lab it runs in.
pub fn inner_env(vendor: Vendor) -> Vec<(String, String)> {
    let mut env = vec![
        ("RUST_LOG_STYLE".to_string(), "never".to_string()),
        (lab::IN_LAB_ENV.to_string(), "1".to_string()),
        (ENGINE_ENV.to_string(), vendor.engine_name().to_string()),
    ];
    if let Ok(v) = std::env::var("RUST_LOG") {
        env.push(("RUST_LOG".to_string(), v));
    }
    // The seccomp test hook must reach the vmm that runs the VM.
    if let Ok(v) = std::env::var(crate::seccomp::SELFTEST_ENV) {
        env.push((crate::seccomp::SELFTEST_ENV.to_string(), v));
    }
    env
}

/// The lab request every run and bench starts from: this very binary run inside the lab of
/// `vendor` as `vmm ARGS`, with the inner environment ([`inner_env`]), `mem` bytes for its
/// guests and the whole lab run bounded by `timeout`. A caller adds what else it needs
/// (files, ports, stdin) with struct update syntax.
pub fn request(
    args: Vec<OsString>,
    mem: u64,
    timeout: Duration,
    vendor: Vendor,
) -> Result<lab::LabRequest> {
    let exe = std::env::current_exe().context("cannot find the vmm binary to run in the lab")?;
    Ok(lab::LabRequest {
        program: exe,
        args,
        env: inner_env(vendor),
        guest_mem_mib: mem >> 20,
        timeout,
        vendor,
        ..Default::default()
    })
}

/// Runs `vmm ARGS` inside the AMD lab with `mem` bytes for its guests and a machine for
/// `cpus` vCPUs at once (a bench with `--engine kvm --raw`); returns its stdout. Its stderr
/// is ours.
pub fn run_captured(args: Vec<OsString>, mem: u64, cpus: u8, timeout: Duration) -> Result<String> {
    term::interrupt::install();
    let req = lab::LabRequest {
        cpus: u32::from(cpus),
        ..request(args, mem, timeout, Vendor::Amd)?
    };
    let mut out = Vec::new();
    let mut err = std::io::stderr();
    match lab::run_with(&req, &mut out, &mut err).context("the nested-KVM lab failed")? {
        lab::LabOutcome::Exited(0) => {}
        lab::LabOutcome::Exited(n) => bail!("the bench inside the lab failed (exit status {n})"),
        lab::LabOutcome::TimedOut => bail!("the bench inside the lab timed out"),
        lab::LabOutcome::Interrupted(sig) => bail!("interrupted ({})", term::interrupt::name(sig)),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Whether the Intel lab (Bochs) can run here; if not, the apt packages it needs.
pub fn intel_lab_missing() -> Option<Vec<String>> {
    lab::bochs::find_tools()
        .err()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
}

/// What `vmm check` says of the lab: its assets and whether it can run.
pub fn status_text() -> String {
    lab::status().to_string()
}

/// The vCPU counts whose warm snapshots `vmm lab setup` builds and `vmm lab status` shows:
/// one, and two (xv6's own default, `--cpus 2`) where `XV6_LAB_CPUS` lets the lab machine
/// have two CPUs (lab::qemu::lab_cpus: one by default).
fn snapshot_cpus() -> Vec<u32> {
    if lab::qemu::lab_cpus() > 1 {
        vec![1, 2]
    } else {
        vec![1]
    }
}

/// The warm snapshot lines of `vmm lab status` for this `vmm` with `mem_mib` of guest RAM.
fn warm_status(mem_mib: u64) -> String {
    match std::env::current_exe() {
        Ok(exe) => snapshot_cpus()
            .into_iter()
            .map(|cpus| lab::warm::status_line(&exe, mem_mib, cpus))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("warm snapshot: unavailable ({e})"),
    }
}

/// `vmm lab setup`: fetches the lab's assets and builds the warm snapshots for guests of
/// `mem_mib` (one lab CPU, and two where the host has them); prints the status. Returns the
/// exit status.
pub fn setup(mem_mib: u64) -> i32 {
    let made = lab::ensure_assets().and_then(|_| {
        let exe = std::env::current_exe().map_err(|e| lab::LabError::Snapshot(e.to_string()))?;
        for cpus in snapshot_cpus() {
            lab::warm::prepare(&exe, mem_mib, cpus)?;
        }
        Ok(())
    });
    match made {
        Ok(_) => {
            println!("{}", lab::status());
            println!("{}", warm_status(mem_mib));
            0
        }
        Err(e) => {
            eprintln!("vmm: error: {e}");
            crate::exit::FAILURE
        }
    }
}

/// `vmm lab status`: prints it; 0 if the lab can run, else [`crate::exit::FAILURE`].
pub fn status(mem_mib: u64) -> i32 {
    let status = lab::status();
    println!("{status}");
    println!("{}", warm_status(mem_mib));
    if status.ready() {
        0
    } else {
        crate::exit::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_name_comes_from_the_outer_vmm() {
        assert_eq!(engine_name_from(None), "kvm");
        assert_eq!(engine_name_from(Some("lab-amd")), "lab-amd");
        assert_eq!(engine_name_from(Some("lab-intel")), "lab-intel");
        assert_eq!(engine_name_from(Some("something else")), "kvm");
        let env = inner_env(Vendor::Intel);
        assert!(env.contains(&(ENGINE_ENV.to_string(), "lab-intel".to_string())));
        let env = inner_env(Vendor::Amd);
        assert!(env.contains(&(ENGINE_ENV.to_string(), "lab-amd".to_string())));
    }
}
