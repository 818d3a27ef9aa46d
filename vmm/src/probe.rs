//! `vmm check`: what this host's KVM can do, decided by running a tiny guest.
//!
//! The probe guest starts in 32-bit protected mode, turns on legacy 2-level paging with a
//! 4 MiB PSE page (exactly what the xv6 kernel's entry does), reads a word through a virtual
//! address that only the page table makes valid, and writes it to the exit port. Hardware KVM
//! passes; kvm_pvm (paging only in long mode) faults or shuts down.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use vm_memory::{Bytes, GuestAddress};

use crate::arch::regs;
use crate::debug::symbols::UserSymbols;
use crate::devices::{Devices, NoInput};
use crate::outcome::Outcome;
use crate::vstate::thread::run_on_vcpu_thread;
use crate::vstate::vcpu::{PgdumpMode, Stop, Vcpu, VcpuSetup};
use crate::vstate::{memory, vm};

const CODE: u64 = 0x1000;
const PGDIR: u64 = 0x2000;
const MAGIC_PA: u64 = 0x3000;
const MAGIC: u32 = 0x2bad_c0de;

/// The probe's code, at physical 0x1000.
const PROBE_CODE: &[u8] = &[
    0x0f, 0x20, 0xe0, // mov eax, cr4
    0x83, 0xc8, 0x10, // or eax, 0x10 (PSE)
    0x0f, 0x22, 0xe0, // mov cr4, eax
    0xb8, 0x00, 0x20, 0x00, 0x00, // mov eax, 0x2000 (page directory)
    0x0f, 0x22, 0xd8, // mov cr3, eax
    0x0f, 0x20, 0xc0, // mov eax, cr0
    0x0d, 0x00, 0x00, 0x01, 0x80, // or eax, 0x80010000 (PG | WP)
    0x0f, 0x22, 0xc0, // mov cr0, eax
    0xa1, 0x00, 0x30, 0x40, 0x00, // mov eax, [0x403000] (VA 4 MiB + 0x3000 -> PA 0x3000)
    0xba, 0x01, 0x05, 0x00, 0x00, // mov edx, 0x501 (exit port)
    0xef, // out dx, eax
    0xf4, // hlt
];

/// The probe's verdict.
#[derive(Debug)]
pub struct ProbeResult {
    pub legacy_paging: bool,
    /// What happened, in words.
    pub detail: String,
}

/// Runs the probe guest, for at most `bound` (the caller knows how slow this host's CPU
/// may be: `nested::probe_bound`).
pub fn probe_legacy_paging(bound: Duration) -> Result<ProbeResult> {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    run_on_vcpu_thread(
        Some(bound),
        expired,
        |_| {},
        move |_| run_probe(flag, bound),
    )
}

/// Builds the probe guest (4 MiB; `code` at [`CODE`], the page directory and the magic word
/// of the paging probe), enters it in 32-bit protected mode and hands its vCPU to `f`.
fn with_probe_vcpu<T>(
    code: &[u8],
    expired: Arc<AtomicBool>,
    f: impl FnOnce(&mut Vcpu<'_>) -> Result<T>,
) -> Result<T> {
    let kvm = vm::open_kvm()?;
    let mem = memory::create_guest_memory(4 << 20).context("probe memory")?;
    mem.write_slice(code, GuestAddress(CODE))?;
    // PDE[0] and PDE[1] both map PA 0 as a 4 MiB page: P | W | PS.
    mem.write_obj(0x83u32, GuestAddress(PGDIR))?;
    mem.write_obj(0x83u32, GuestAddress(PGDIR + 4))?;
    mem.write_obj(MAGIC, GuestAddress(MAGIC_PA))?;
    regs::write_boot_gdt(&mem)?;
    let vm = vm::Vm::new(kvm, mem, false)?;
    let fd = vm.create_vcpu()?;
    regs::setup_pvh_entry(&fd, CODE as u32, 0)?;
    let sink = Box::new(std::io::sink());
    let devices = Devices::new(None, sink, Box::new(NoInput), UserSymbols::default())?;
    let setup = VcpuSetup {
        pgdumps: Default::default(),
        pgdump: PgdumpMode::Off,
        expired,
        symbols: Arc::default(),
        seccomp_selftest: false,
    };
    let devices = std::sync::Arc::new(std::sync::Mutex::new(devices));
    let mut vcpu = Vcpu::new(fd, &vm.mem, devices, setup);
    f(&mut vcpu)
}

/// The breakpoint probe's code: an int3, then a hlt.
const INT3_CODE: &[u8] = &[0xcc, 0xf4];

/// Whether an int3 in a guest reaches this KVM as a debug exit when guest debugging uses
/// software breakpoints (KVM_GUESTDBG_USE_SW_BP). Hardware KVM: yes. The lab: no — QEMU's
/// TCG checks an int3 of its nested guest against the INTn intercept only, never against the
/// #BP intercept KVM sets, so the probe guest takes the #BP itself (and, with no IDT, shuts
/// down). Decides how `vmm run --gdb` carries out gdb's `break` (see [`crate::debug::gdb`]).
pub fn int3_reaches_kvm(bound: Duration) -> Result<bool> {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    run_on_vcpu_thread(
        Some(bound),
        expired,
        |_| {},
        move |_| {
            with_probe_vcpu(INT3_CODE, flag, |vcpu| {
                let dbg = kvm_bindings::kvm_guest_debug {
                    control: kvm_bindings::KVM_GUESTDBG_ENABLE
                        | kvm_bindings::KVM_GUESTDBG_USE_SW_BP,
                    ..Default::default()
                };
                vcpu.fd
                    .set_guest_debug(&dbg)
                    .context("KVM_SET_GUEST_DEBUG on the probe guest")?;
                Ok(matches!(vcpu.run_until_stop(), Stop::Debug(d) if d.exception == 3))
            })
        },
    )
}

fn run_probe(expired: Arc<AtomicBool>, bound: Duration) -> Result<ProbeResult> {
    with_probe_vcpu(PROBE_CODE, expired, |vcpu| Ok(paging_verdict(vcpu, bound)))
}

/// What the paging probe's run says.
fn paging_verdict(vcpu: &mut Vcpu<'_>, bound: Duration) -> ProbeResult {
    match vcpu.run() {
        Outcome::Exited(MAGIC) => {
            let cr0 = vcpu.fd.get_sregs().map(|s| s.cr0).unwrap_or(0);
            let paging = cr0 & u64::from(xv6_abi::mmu::CR0_PG) != 0;
            ProbeResult {
                legacy_paging: paging,
                detail: if paging {
                    "32-bit paging with 4 MiB pages works".into()
                } else {
                    "the probe ran but CR0.PG did not stick".into()
                },
            }
        }
        Outcome::Exited(v) => ProbeResult {
            legacy_paging: false,
            detail: format!("the probe read a wrong value through its page table ({v:#x})"),
        },
        Outcome::TripleFault => ProbeResult {
            legacy_paging: false,
            detail: "enabling 32-bit paging shut the probe guest down (#GP: no legacy paging)"
                .into(),
        },
        Outcome::TimedOut => ProbeResult {
            legacy_paging: false,
            detail: format!(
                "the probe guest did not finish within {} s",
                bound.as_secs()
            ),
        },
        other => ProbeResult {
            legacy_paging: false,
            detail: format!("the probe guest failed: {other:?}"),
        },
    }
}

/// The KVM module that serves /dev/kvm here (`kvm_intel`, `kvm_amd`, `kvm_pvm`, or `unknown`),
/// from /sys/module, else /proc/modules.
pub fn kvm_flavour() -> &'static str {
    KVM_MODULES
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists())
        .or_else(|| {
            std::fs::read_to_string("/proc/modules")
                .ok()
                .and_then(|t| kvm_module_in_proc_modules(&t))
        })
        .unwrap_or("unknown")
}

/// The KVM vendor modules [`kvm_flavour`] knows, in the order it looks for them.
pub const KVM_MODULES: [&str; 3] = ["kvm_intel", "kvm_amd", "kvm_pvm"];

/// The KVM vendor module loaded according to `/proc/modules`' text (its first word per line).
pub fn kvm_module_in_proc_modules(text: &str) -> Option<&'static str> {
    let loaded: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    KVM_MODULES.into_iter().find(|m| loaded.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_module_is_read_from_proc_modules() {
        let text = "kvm_intel 380928 0 - Live 0x0000000000000000\n\
                    kvm 1142784 1 kvm_intel, Live 0x0000000000000000\n\
                    irqbypass 16384 1 kvm, Live 0x0000000000000000\n";
        assert_eq!(kvm_module_in_proc_modules(text), Some("kvm_intel"));
        assert_eq!(
            kvm_module_in_proc_modules("kvm_amd 1 0 - Live 0\nkvm 2 1 kvm_amd, Live 0\n"),
            Some("kvm_amd")
        );
        assert_eq!(kvm_module_in_proc_modules("kvm 2 0 - Live 0\n"), None);
        assert_eq!(kvm_module_in_proc_modules("kvm_amdx 1 0 - Live 0\n"), None);
        assert_eq!(kvm_module_in_proc_modules(""), None);
    }
}
