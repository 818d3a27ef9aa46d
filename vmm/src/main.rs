//! The `vmm` command: see `vmm --help`.

use clap::Parser;
use vmm::bench::{self, boot as bench_boot, console as bench_console, fork as bench_fork};
use vmm::cli::{BenchWhat, Cli, Command, LabAction};
use vmm::{engine, nested, probe};

fn main() {
    init_logging();
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => engine::run(&args),
        Command::Check => check(),
        Command::Bench {
            what: BenchWhat::Pagefault(args),
        } => bench::run(&args),
        Command::Bench {
            what: BenchWhat::Fork(args),
        } => bench_fork::run(&args),
        Command::Bench {
            what: BenchWhat::Boot(args),
        } => bench_boot::run(&args),
        Command::Bench {
            what: BenchWhat::Lab(args),
        } => vmm::bench::lab_cost::run(&args),
        Command::Bench {
            what: BenchWhat::Console(args),
        } => bench_console::run(&args),
        Command::Bench {
            what: BenchWhat::Smp(args),
        } => vmm::bench::smp::run(&args),
        Command::Lab { action } => lab(action),
    };
    std::process::exit(status);
}

/// env_logger from RUST_LOG (default `warn`); goblin's note parsing stays at `warn` unless
/// RUST_LOG names it, so `RUST_LOG=debug` shows what the VMM does. Colour only on a terminal
/// (env_logger's default; RUST_LOG_STYLE overrides).
fn init_logging() {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("goblin")) {
        b.filter_module("goblin", log::LevelFilter::Warn);
    }
    b.init();
}

/// `vmm check`: the KVM flavour, the probe's verdict, and the engine `auto` picks.
fn check() -> i32 {
    println!("kvm module: {}", probe::kvm_flavour());
    match probe::probe_legacy_paging(nested::probe_bound()) {
        Ok(p) => {
            let yes = if p.legacy_paging { "yes" } else { "no" };
            println!("legacy 32-bit paging: {yes} ({})", p.detail);
            let auto = if p.legacy_paging { "kvm" } else { "lab" };
            println!("engine auto: {auto}");
        }
        Err(e) => {
            println!("legacy 32-bit paging: no ({e:#})");
            println!("engine auto: lab");
        }
    }
    println!("{}", nested::status_text());
    0
}

/// The guest RAM of a default `vmm run`, whose warm snapshot `vmm lab setup` builds.
const DEFAULT_MEM_MIB: u64 = 256;

fn lab(action: LabAction) -> i32 {
    match action {
        LabAction::Setup => nested::setup(DEFAULT_MEM_MIB),
        LabAction::Status => nested::status(DEFAULT_MEM_MIB),
    }
}
