//! The trap frame (xv6 x86.h `struct trapframe`): the registers a trap saves on the kernel
//! stack, in the order `alltraps` (trapasm.rs) pushes them.

/// What `alltraps` leaves on the kernel stack (xv6 `struct trapframe`): the registers of
/// `pushal`, the data segment registers, the vector and error code the stub pushed, then
/// what the CPU pushed (esp and ss only on a trap from user mode). Segment selectors take
/// a 32-bit slot each; only their low 16 bits mean anything.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TrapFrame {
    // pushal
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    /// The esp pushal saw (useless, ignored by popal).
    pub oesp: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    // the rest of alltraps
    pub gs: u32,
    pub fs: u32,
    pub es: u32,
    pub ds: u32,
    pub trapno: u32,
    // the CPU, or the vector stub for err
    pub err: u32,
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
    // only on a crossing from user to kernel
    pub esp: u32,
    pub ss: u32,
}

impl TrapFrame {
    /// Did the trap come from user mode (CPL 3 in the saved cs)?
    #[must_use]
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapframe_layout() {
        assert_eq!(core::mem::size_of::<TrapFrame>(), 19 * 4);
        assert_eq!(core::mem::offset_of!(TrapFrame, eax), 28);
        assert_eq!(core::mem::offset_of!(TrapFrame, trapno), 48);
        assert_eq!(core::mem::offset_of!(TrapFrame, eip), 56);
        assert_eq!(core::mem::offset_of!(TrapFrame, esp), 68);
        let mut tf = TrapFrame {
            cs: 0x1b,
            ..Default::default()
        };
        assert!(tf.from_user());
        tf.cs = 0x08;
        assert!(!tf.from_user());
    }
}
