//! KVM's registers to gdb's i386 set (gdbstub_arch `X86CoreRegs`) and back: the eight
//! general registers, EIP, EFLAGS and the six segment selectors (FPU and SSE registers read
//! as zero). Writes change the general registers, EIP and EFLAGS only.

use gdbstub_arch::x86::reg::X86CoreRegs;
use kvm_bindings::{kvm_regs, kvm_sregs};

/// Fills gdb's registers from KVM's.
pub fn to_gdb(r: &kvm_regs, s: &kvm_sregs, g: &mut X86CoreRegs) {
    g.eax = r.rax as u32;
    g.ecx = r.rcx as u32;
    g.edx = r.rdx as u32;
    g.ebx = r.rbx as u32;
    g.esp = r.rsp as u32;
    g.ebp = r.rbp as u32;
    g.esi = r.rsi as u32;
    g.edi = r.rdi as u32;
    g.eip = r.rip as u32;
    g.eflags = r.rflags as u32;
    g.segments.cs = s.cs.selector.into();
    g.segments.ss = s.ss.selector.into();
    g.segments.ds = s.ds.selector.into();
    g.segments.es = s.es.selector.into();
    g.segments.fs = s.fs.selector.into();
    g.segments.gs = s.gs.selector.into();
}

/// Writes gdb's general registers, EIP and EFLAGS into KVM's.
pub fn from_gdb(g: &X86CoreRegs, r: &mut kvm_regs) {
    r.rax = g.eax.into();
    r.rcx = g.ecx.into();
    r.rdx = g.edx.into();
    r.rbx = g.ebx.into();
    r.rsp = g.esp.into();
    r.rbp = g.ebp.into();
    r.rsi = g.esi.into();
    r.rdi = g.edi.into();
    r.rip = g.eip.into();
    r.rflags = g.eflags.into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_and_selectors_show() {
        let r = kvm_regs {
            rax: 1,
            rcx: 2,
            rdx: 3,
            rbx: 4,
            rsp: 0x8020_0000,
            rbp: 6,
            rsi: 7,
            rdi: 8,
            rip: 0x8010_0123,
            rflags: 0x202,
            ..Default::default()
        };
        let mut s = kvm_sregs::default();
        s.cs.selector = 0x1b;
        s.ss.selector = 0x23;
        let mut g = X86CoreRegs::default();
        to_gdb(&r, &s, &mut g);
        assert_eq!(
            (g.eax, g.esp, g.eip, g.eflags),
            (1, 0x8020_0000, 0x8010_0123, 0x202)
        );
        assert_eq!((g.segments.cs, g.segments.ss), (0x1b, 0x23));
        let mut back = kvm_regs::default();
        from_gdb(&g, &mut back);
        assert_eq!(back, r);
    }
}
