//! The command line: `vmm run`, `vmm check`, `vmm lab`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
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
executable (not a regular file, unreadable, too large, not ELF32 i386, argument list too long); \
127 program not found; 2 bad command line or option value; 130/143/129 stopped by \
SIGINT/SIGTERM/SIGHUP during a lab run.";

/// The longest `--timeout`: a week.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// `vmm run --help`'s closing text: the built-in programs.
fn run_help() -> String {
    format!(
        "Built-in programs: {} (default: {}). A PROGRAM with a '/' is a host file: a static \
         ELF32 i386 executable of at most {} MiB.",
        crate::boot::programs::builtin_names().join(", "),
        crate::boot::programs::DEFAULT_PROGRAM,
        crate::boot::programs::MAX_HOST_FILE >> 20
    )
}

/// A count of at least 1.
fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--mem`: a size the kernel can use, checked while parsing (a bad one is a usage error, 2).
fn parse_cpus(text: &str) -> Result<u8, String> {
    let max = xv6_abi::smp::NCPU;
    match text.parse::<u8>() {
        Ok(n) if (1..=max).contains(&usize::from(n)) => Ok(n),
        _ => Err(format!("--cpus takes 1 to {max}, not {text:?}")),
    }
}

fn parse_mem(text: &str) -> Result<u64, String> {
    crate::vstate::memory::parse_mem_size(text).map_err(|e| format!("{e:#}"))
}

// Parsed once per process: the size of `run`'s options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the kernel and run PROGRAM in it (default: the built-in default program).
    #[command(after_help = run_help())]
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
    /// fork+exit+wait, fork+exec+exit+wait and the fork of a big heap, eager and --cow, next
    /// to the same on Linux.
    Fork(ForkArgs),
    /// Boot time to the first user instruction, the whole run of hello, its VM exits and the
    /// guest pages the host backed, at several RAM sizes; Linux starting a program beside.
    Boot(BootArgs),
    /// MB/s and VM exits per KiB through the paravirtual console (`cat` of a file and of
    /// stdin), next to the same pipes through Linux `cat`.
    Console(ConsoleArgs),
    /// What a lab run costs: the lab booted cold next to it restored from its warm snapshot
    /// (wall time of whole `vmm run`s, medians).
    Lab(LabBenchArgs),
    /// CPU-bound children at once on one vCPU and on several: wall time and each vCPU's
    /// CPU time.
    Smp(SmpArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SmpArgs {
    /// vCPUs of the run compared with one vCPU.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_cpus)]
    pub cpus: u8,
    /// CPU-bound children, all at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=16).map(|n| n as usize))]
    pub children: usize,
    /// Work of each child, in millions of steps.
    #[arg(long, value_name = "M", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000).map(|n| n as usize))]
    pub millions: usize,
    /// Runs of each CPU count (interleaved; medians reported).
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub runs: usize,
    /// Guest RAM.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_mem)]
    pub mem: u64,
    /// Bound on each guest run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    #[command(flatten)]
    pub common: BenchCommon,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LabBenchArgs {
    /// Runs of each start (interleaved; the median is reported).
    #[arg(long, default_value_t = 5, value_parser = positive_usize)]
    pub runs: usize,
    /// The built-in program each run runs.
    #[arg(long, default_value = "hello")]
    pub program: String,
    /// Runs in the Intel lab (Bochs, always a cold boot; 0: none).
    #[arg(long, default_value_t = 1)]
    pub intel_runs: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The options every bench has.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchCommon {
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Where to run the VMs.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Print the raw measurement as JSON instead of a report (what the lab run sends back).
    #[arg(long, hide = true)]
    pub raw: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Bytes each transfer moves (at most 16M, what `--add` takes).
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_bytes)]
    pub bytes: u64,
    /// Runs of each transfer (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub runs: usize,
    /// Guest RAM.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem)]
    pub mem: u64,
    /// Bound on each transfer, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    #[command(flatten)]
    pub common: BenchCommon,
}

/// A byte count for `bench console --bytes`: N, NK or NM, from 1 byte to 16 MiB.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let (num, unit) = match text.strip_suffix(['K', 'k']) {
        Some(n) => (n, 1u64 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(n) => (n, 1 << 20),
            None => (text, 1),
        },
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 4096, 512K, 8M)"))?;
    match n.checked_mul(unit) {
        Some(b) if (1..=16 << 20).contains(&b) => Ok(b),
        _ => Err(format!("{text} is outside 1 byte .. 16M")),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BootArgs {
    /// Guest RAM sizes to boot (repeatable).
    #[arg(long, value_name = "SIZE", default_values = ["64M", "256M", "2016M"], value_parser = parse_mem)]
    pub mem: Vec<u64>,
    /// Boots per size (sizes interleaved).
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub runs: usize,
    /// Linux fork+execve+waitpid round trips for the baseline.
    #[arg(long, default_value_t = 100, value_parser = positive_usize)]
    pub linux_iterations: usize,
    /// Bound on each boot, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    #[command(flatten)]
    pub common: BenchCommon,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ForkArgs {
    /// Round trips of each kind per mode (the big-heap fork: at most 8).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000).map(|n| n as usize))]
    pub iterations: usize,
    /// Heap of the big process, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024).map(|n| n as usize))]
    pub heap_mib: usize,
    /// Guest RAM (the eager fork of the big heap needs twice the heap).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem)]
    pub mem: u64,
    /// Bound on each guest run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// vCPUs of each guest run (forkbench runs alone: what more CPUs cost it).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u8,
    #[command(flatten)]
    pub common: BenchCommon,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Pages each run touches (at least 1; at most what --mem holds).
    #[arg(long, default_value_t = 16384, value_parser = positive_usize)]
    pub pages: usize,
    /// Runs (each: a prefaulted-RAM boot, a cold-RAM boot, a host measurement); samples pool.
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub runs: usize,
    /// Write a latency histogram (SVG, log scale) here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Guest RAM.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem)]
    pub mem: u64,
    /// Bound on each guest run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// vCPUs of each guest run (pfbench runs alone: what more CPUs cost it).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u8,
    #[command(flatten)]
    pub common: BenchCommon,
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
    /// The same `vmm` re-run inside the nested-KVM lab (the AMD one: `lab-amd`).
    Lab,
    /// The AMD lab: QEMU TCG with SVM and nested paging, kvm_amd.
    LabAmd,
    /// The Intel lab: Bochs with VMX and EPT, kvm_intel (slower: ~25 s to boot).
    LabIntel,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Kernel image to boot (ELF32 i386 with a PVH note) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// vCPUs, 1 to 8: the kernel learns them from an MP table and starts them as xv6 does.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u8,
    /// Guest RAM: a multiple of 4M from 64M to 2016M (e.g. 64M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_mem)]
    pub mem: u64,
    /// Where to run the VM.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Stop the guest after SECS seconds (exit 124); 0 = never; at most a week (604800).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// Print the guest's page tables (walked from outside, checked with KVM_TRANSLATE) to
    /// stderr whenever the guest asks for a dump.
    #[arg(long)]
    pub pgdump: bool,
    /// Draw the address space as SVG into FILE each time the guest asks for a page-table dump
    /// (as --pgdump): one panel per dump, written when the run ends.
    #[arg(long, value_name = "FILE")]
    pub pgdump_svg: Option<PathBuf>,
    /// Inside the lab: leave what --stats-json and --pgdump-svg would write in FILE, as
    /// tagged text lines the outer vmm sorts out (the lab sends one text file back).
    #[arg(long, value_name = "FILE", hide = true)]
    pub lab_results: Option<PathBuf>,
    /// Serve the GDB remote protocol and wait for gdb before the guest's first instruction;
    /// --timeout does not apply. [ADDR:]PORT listens on TCP (default address 127.0.0.1) with
    /// no authentication: whoever connects first controls the guest. A PATH (with a '/')
    /// creates a Unix socket there, mode 0600, which only you can connect to (--engine kvm);
    /// a PATH naming a character device serves on that device (used by the lab).
    #[arg(long, value_name = "[ADDR:]PORT|PATH", value_parser = crate::debug::gdb::conn::parse_endpoint)]
    pub gdb: Option<crate::debug::gdb::conn::GdbEndpoint>,
    /// Demand paging: sbrk only moves the break; each page is allocated on its first touch.
    #[arg(long)]
    pub lazy: bool,
    /// Copy-on-write fork: fork shares pages read-only; the first write copies.
    #[arg(long)]
    pub cow: bool,
    /// Print the VM exits by reason and the run time to stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// Write the run's figures as JSON to FILE at the end: guest time, VM exits by reason,
    /// host-backed guest pages, console traffic (the same as --stats, for scripts).
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Back all guest RAM with host memory before boot (default: lazily, on first touch).
    #[arg(long)]
    pub prefault: bool,
    /// Run without the seccomp filters the VMM's threads install once the VM is set up
    /// (for debugging the VMM itself, e.g. under strace).
    #[arg(long)]
    pub no_seccomp: bool,
    /// Hide the kernel's boot summary (stderr); panics and fault reports still show.
    #[arg(short, long)]
    pub quiet: bool,
    /// Extra words for the kernel command line.
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Put the host file HOSTPATH into the guest's `/` as NAME (default: its file name); a
    /// directory adds its regular files. Repeatable; a host file shadows a built-in program.
    #[arg(long = "add", value_name = "HOSTPATH[:NAME]")]
    pub add: Vec<String>,
    /// Import the host directory tree HOSTDIR (regular files and directories; links, devices
    /// and FIFOs are skipped with a note) into the guest at GUESTDIR, an absolute path made
    /// as needed. Read-only: nothing the guest does goes back, unless `:rw` is added: then,
    /// when the guest exits with its own status, what the run created, changed or removed
    /// under GUESTDIR is written back into HOSTDIR. Repeatable.
    #[arg(long = "dir", value_name = "HOSTDIR:GUESTDIR[:rw]")]
    pub dir: Vec<String>,
    /// Inside the lab: the --dir trees the outer vmm imported, as a cpio archive.
    #[arg(long = "dir-tree", value_name = "FILE", hide = true)]
    pub dir_tree: Option<PathBuf>,
    /// Inside the lab: a GUESTDIR the outer vmm writes back (`--dir …:rw`): the kernel
    /// exports it at the end, and the export goes back in --lab-results.
    #[arg(long = "dir-out", value_name = "GUESTDIR", hide = true)]
    pub dir_out: Vec<String>,
    /// Inside the lab: write the --dir-out export into FILE (the lab's collect file)
    /// rather than into --lab-results.
    #[arg(long = "dir-collect", value_name = "FILE", hide = true)]
    pub dir_collect: Option<PathBuf>,
    /// The program to run and its arguments: a built-in program's name, or a host path (with a
    /// '/') to a static ELF32 i386 executable. Default: the built-in `tour`. Options of `vmm`
    /// come before PROGRAM; everything after it goes to the program (`--` also ends them).
    #[arg(value_name = "PROGRAM", trailing_var_arg = true)]
    pub program: Vec<OsString>,
}

impl RunArgs {
    /// `--timeout` as a bound (None: 0, no bound).
    pub fn timeout_duration(&self) -> Option<std::time::Duration> {
        (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout))
    }
}

/// `vmm run ARGV…` parsed as the command line would be (for tests).
#[cfg(test)]
pub(crate) fn parse_run(argv: &[&str]) -> RunArgs {
    use clap::Parser;
    let mut all = vec!["vmm", "run"];
    all.extend_from_slice(argv);
    match Cli::parse_from(all).command {
        Command::Run(a) => a,
        other => panic!("not a run: {other:?}"),
    }
}
