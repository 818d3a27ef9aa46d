//! What a crash report says after its one-line error (a triple fault, an unexpected VM exit,
//! a failed KVM_RUN): the vCPU's registers, control registers and selectors, the kernel
//! symbol at EIP, the bytes of the instruction there read through the guest's own page tables
//! (KVM_TRANSLATE), and the last VM exits with the EIP of each.
//!
//! What cannot be had: on AMD SVM (so in the lab) KVM resets the vCPU when it reports a
//! shutdown (its VMCB is undefined after one), and KVM offers no interception of #PF/#DF
//! that could stop the guest before the fault escalates; there the report says so and the
//! last VM exits are the latest state known.

use kvm_ioctls::VcpuFd;
use std::collections::VecDeque;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::debug::symbols::Symbols;
use crate::vstate::vmexit::RecentExit;

/// CR0.PG: paging is on, so EIP is translated through the page tables.
const CR0_PG: u64 = xv6_abi::mmu::CR0_PG as u64;
/// How many instruction bytes are shown.
const CODE_BYTES: u64 = 16;

/// A crash report taken on vCPU `id` (not the boot vCPU), headed by a line that names it.
pub fn on_vcpu(id: usize, report: &str) -> String {
    format!("vmm: crash: on vCPU {id}\n{report}")
}

/// The report's lines (each `vmm: crash: …`), or one line saying why the registers could not
/// be read.
pub fn report(fd: &VcpuFd, mem: &GuestMemoryMmap, syms: &Symbols) -> String {
    let (regs, sregs) = match (fd.get_regs(), fd.get_sregs()) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return format!("vmm: crash: cannot read the registers: {e}"),
    };
    // KVM on AMD (SVM) resets the vCPU when it reports a shutdown: what is left is the reset
    // state (CS 0xf000, EIP 0xfff0), not the crash's. Say so rather than show it.
    if sregs.cs.selector == 0xf000 && regs.rip == 0xfff0 && sregs.cr0 & CR0_PG == 0 {
        return "vmm: crash: no registers: this KVM reset the vCPU when it reported the shutdown \
                (AMD SVM does); the last VM exits below are the latest state known (vmm run \
                --gdb can stop the guest before the fault)"
            .to_string();
    }
    let code = code_bytes(fd, mem, regs.rip, sregs.cr0 & CR0_PG != 0);
    format!(
        "vmm: crash: eip={:#010x} ({}) esp={:#010x} ebp={:#010x} eflags={:#010x}\n\
         vmm: crash: eax={:#010x} ebx={:#010x} ecx={:#010x} edx={:#010x} esi={:#010x} edi={:#010x}\n\
         vmm: crash: cr0={:#010x} cr2={:#010x} cr3={:#010x} cr4={:#010x} efer={:#x}\n\
         vmm: crash: cs={:#06x} ds={:#06x} es={:#06x} fs={:#06x} gs={:#06x} ss={:#06x} (cpl {})\n\
         vmm: crash: code at eip: {code}",
        regs.rip,
        syms.describe(regs.rip as u32),
        regs.rsp,
        regs.rbp,
        regs.rflags,
        regs.rax,
        regs.rbx,
        regs.rcx,
        regs.rdx,
        regs.rsi,
        regs.rdi,
        sregs.cr0,
        sregs.cr2,
        sregs.cr3,
        sregs.cr4,
        sregs.efer,
        sregs.cs.selector,
        sregs.ds.selector,
        sregs.es.selector,
        sregs.fs.selector,
        sregs.gs.selector,
        sregs.ss.selector,
        sregs.cs.selector & 3,
    )
}

/// Up to [`CODE_BYTES`] bytes at `eip` (not past its page), in hex, or why there are none.
fn code_bytes(fd: &VcpuFd, mem: &GuestMemoryMmap, eip: u64, paging: bool) -> String {
    let pa = if paging {
        match fd.translate_gva(eip) {
            Ok(t) if t.valid != 0 => t.physical_address,
            Ok(_) => return "(eip is not mapped)".into(),
            Err(e) => return format!("(KVM_TRANSLATE failed: {e})"),
        }
    } else {
        eip
    };
    let page = u64::from(xv6_abi::mmu::PGSIZE);
    let n = CODE_BYTES.min(page - (pa & (page - 1))) as usize;
    let mut buf = vec![0u8; n];
    match mem.read_slice(&mut buf, GuestAddress(pa)) {
        Ok(()) => {
            let hex: Vec<String> = buf.iter().map(|b| format!("{b:02x}")).collect();
            format!("{} (pa {pa:#x})", hex.join(" "))
        }
        Err(_) => format!("(pa {pa:#x} is not guest RAM)"),
    }
}

/// `vmm: crash: last VM exits (oldest first):` and one line per exit: its reason, port or
/// address, and the EIP with its kernel symbol.
pub fn recent_exits(recent: &VecDeque<RecentExit>, syms: &Symbols) -> String {
    let mut out = String::from("vmm: crash: last VM exits (oldest first):");
    if recent.is_empty() {
        out.push_str(" none");
    }
    for e in recent {
        out.push_str("\nvmm: crash:   ");
        out.push_str(e.reason);
        if let Some(a) = e.addr {
            out.push_str(&format!(" {a:#x}"));
        }
        match e.eip {
            Some(eip) => out.push_str(&format!(" eip={eip:#010x} ({})", syms.describe(eip))),
            None => out.push_str(" eip unknown"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_exits_name_reason_port_and_eip() {
        let mut q = VecDeque::new();
        q.push_back(RecentExit {
            reason: "io-out",
            addr: Some(0x2f8),
            eip: Some(0x8010_0000),
        });
        q.push_back(RecentExit {
            reason: "shutdown",
            addr: None,
            eip: None,
        });
        let s = recent_exits(&q, &Symbols::default());
        assert_eq!(
            s,
            "vmm: crash: last VM exits (oldest first):\n\
             vmm: crash:   io-out 0x2f8 eip=0x80100000 (?)\n\
             vmm: crash:   shutdown eip unknown"
        );
    }
}
