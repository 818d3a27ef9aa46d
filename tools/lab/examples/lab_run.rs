//! Runs a program in the lab from the command line, for trying things by hand:
//! `cargo run -p lab --example lab_run -- [-f HOST_FILE:LAB_PATH]... PROGRAM [ARGS...]`, or
//! `-- --status` (exit status passed through; `LAB_RUN_CPUS=N` runs it as for `vmm run --cpus
//! N`, on a machine of that many CPUs only as far as `XV6_LAB_CPUS` allows;
//! `RUST_LOG=lab=info` prints timings, `=debug` the QEMU command line and the lab console).

use std::time::Duration;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("lab=info")).init();
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "--status") {
        println!("{}", lab::status());
        return;
    }
    let mut files = Vec::new();
    while args.peek().is_some_and(|a| a == "-f") {
        args.next();
        let spec = args
            .next()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((host, lab)) = spec.split_once(':') else {
            eprintln!("lab_run: -f wants HOST_FILE:LAB_PATH");
            std::process::exit(2);
        };
        files.push((host.into(), lab.to_string()));
    }
    let Some(program) = args.next() else {
        eprintln!("usage: lab_run [-f HOST_FILE:LAB_PATH]... PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let req = lab::LabRequest {
        program: program.into(),
        args: args.collect(),
        files,
        stdin: lab::LabStdin::Inherit,
        guest_mem_mib: 256,
        // LAB_RUN_CPUS: the run's vCPUs (default 1); the machine's CPUs: lab::qemu::lab_cpus.
        cpus: std::env::var("LAB_RUN_CPUS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        timeout: Duration::from_secs(300),
        ..Default::default()
    };
    // LAB_RUN_QEMU_ARGS: extra QEMU arguments (whitespace-separated), for experiments.
    let opts = lab::LabOptions {
        extra_qemu_args: std::env::var("LAB_RUN_QEMU_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
        ..Default::default()
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match lab::run_with_options(&req, &opts, &mut out, &mut err) {
        Ok(lab::LabOutcome::Exited(code)) => std::process::exit(code),
        Ok(lab::LabOutcome::TimedOut) => {
            eprintln!("lab_run: timed out");
            std::process::exit(124)
        }
        Ok(lab::LabOutcome::Interrupted(sig)) => {
            std::process::exit(term::interrupt::exit_status(sig))
        }
        Err(e) => {
            eprintln!("lab_run: {e}");
            std::process::exit(125)
        }
    }
}
