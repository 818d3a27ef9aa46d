//! How a run ends ([`Outcome`]) and what an exit handler or a device asks of the run loop
//! ([`Request`]). A leaf: the devices and the exit handlers build these, the vCPU loop and
//! everything above it read them, and this module depends on none of them.

use crate::debug::panic_report::PanicReport;

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest wrote its exit status to the exit port.
    Exited(u32),
    /// The guest kernel reported a panic on the panic port (with its report, if it gave one).
    Panicked(Option<PanicReport>),
    /// The CPU shut down: a triple fault.
    TripleFault,
    /// `--timeout` expired.
    TimedOut,
    /// The program's output could not be written to the host (broken pipe, full disk).
    OutputFailed(String),
    /// An exit the VMM cannot handle, or a KVM error.
    Failed(String),
}

/// What a port write asks of the run loop.
#[derive(Debug)]
pub enum Request {
    /// Nothing: run on.
    Continue,
    /// The run is over.
    End(Outcome),
    /// Walk the page tables of the vCPU's CR3 (port PGDUMP).
    Pgdump,
    /// Open (1) or close (2) a measured window of VM-exit counts (port MARK).
    Mark(u32),
    /// A debug exit (breakpoint, watchpoint, single step): only with a debugger attached.
    Debug(kvm_bindings::kvm_debug_exit_arch),
}
