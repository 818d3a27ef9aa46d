//! The command line: `vmm run`, `vmm check`, `vmm lab`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Boots an xv6-style 32-bit kernel on KVM (chapter 2 of the xv6 book: page tables) and runs a
/// user program in it.
#[derive(Debug, Parser)]
#[command(name = "vmm", version, about, long_about = None, after_help = EXIT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_HELP: &str = "Exit status of `vmm run`: the guest's status (0-255); 124 --timeout \
expired; 125 the VMM or the guest kernel failed (one line on stderr says why); 126 program not \
executable; 127 program not found; 2 bad command-line syntax.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the kernel and run PROGRAM in it (default: the built-in default program).
    Run(RunArgs),
    /// Show what this host's KVM can do and which engine `auto` picks.
    Check,
    /// Measure things about the guest.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Manage the nested-KVM lab (QEMU TCG + a Debian kernel with kvm_amd).
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Demand page-fault latency in the guest next to the host Linux's anonymous page fault.
    Pagefault(BenchArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Pages each run touches.
    #[arg(long, default_value_t = 16384)]
    pub pages: usize,
    /// Runs (each: a prefaulted-RAM boot, a cold-RAM boot, a host measurement); samples pool.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a latency histogram (SVG, log scale) here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Where to run the VMs.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Guest RAM.
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub mem: String,
    /// Bound on each guest run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// Print the raw samples as JSON instead of a report (what the lab run sends back).
    #[arg(long, hide = true)]
    pub raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Fetch and cache the lab's assets (Debian kernel, kvm modules, busybox).
    Setup,
    /// Show where the lab's assets are and whether it is ready.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// `kvm` if this host's KVM runs legacy 32-bit paging, else `lab`.
    Auto,
    /// This host's /dev/kvm.
    Kvm,
    /// The same `vmm` re-run inside the nested-KVM lab.
    Lab,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kernel image to boot (ELF32 i386 with a PVH note) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Guest RAM: a multiple of 4M from 64M to 2016M (e.g. 64M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub mem: String,
    /// Where to run the VM.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Stop the guest after SECS seconds (exit 124); 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Print the guest's page tables (walked from outside, checked with KVM_TRANSLATE) to
    /// stderr whenever the guest asks for a dump.
    #[arg(long)]
    pub pgdump: bool,
    /// Demand paging: sbrk only moves the break; each page is allocated on its first touch.
    #[arg(long)]
    pub lazy: bool,
    /// Copy-on-write fork: fork shares pages read-only; the first write copies.
    #[arg(long)]
    pub cow: bool,
    /// Print the VM exits by reason and the run time to stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// Back all guest RAM with host memory before boot (default: lazily, on first touch).
    #[arg(long)]
    pub prefault: bool,
    /// Hide the kernel's boot summary (stderr); panics and fault reports still show.
    #[arg(short, long)]
    pub quiet: bool,
    /// Extra words for the kernel command line.
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// The program to run and its arguments: a built-in program's name, or a host path (with a
    /// '/') to a static ELF32 i386 executable. Default: the built-in `tour`.
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub program: Vec<String>,
}
