//! The trap entry code (xv6 vectors.S and trapasm.S): one stub per vector, which pushes an
//! error code (a 0 where the CPU pushes none, so every trap frame has the same layout) and its
//! vector number and jumps to `alltraps`; `alltraps` saves the segment and general registers
//! to complete a `TrapFrame` and calls `trap` (trap.rs, by its symbol); `trapret` undoes that
//! and `iret`s. Which vectors carry an error code is `traps::ERROR_CODE_VECTORS`.

use crate::mmu::{selector, SEG_KDATA};
use crate::traps::ERROR_CODE_VECTORS;

core::arch::global_asm!(
    r#"
    # vectors: the address of each vector's stub.
    .pushsection .rodata.vectors, "a"
    .balign 4
    .globl vectors
vectors:
    .popsection

    .pushsection .text.vectors, "ax"
    .set vecno, 0
    .rept 256
    .pushsection .rodata.vectors, "a"
    .long 1f
    .popsection
1:
    # The CPU pushed an error code (a bit of ERROR_CODE_VECTORS; the guard, as the
    # assembler's shift counts wrap at 64).
    .if (vecno < 32) && (({errvecs} >> vecno) & 1)
    .else
    pushl $0
    .endif
    pushl $vecno
    jmp alltraps
    .set vecno, vecno + 1
    .endr

    # Builds the rest of the trap frame and calls trap(tf).
    .globl alltraps
alltraps:
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    pushal
    # The kernel's data segment; the string instructions go forward.
    movw ${kdata}, %ax
    movw %ax, %ds
    movw %ax, %es
    cld
    pushl %esp
    call trap
    addl $4, %esp

    # Returns from a trap (and starts every new process, via forkret).
    .globl trapret
trapret:
    popal
    popl %gs
    popl %fs
    popl %es
    popl %ds
    addl $8, %esp           # trapno and err
    iret

    # The double-fault task's first instruction (the IDT's #DF task gate switches here, on
    # its own stack, with the faulting task's registers saved in its TSS). The CPU pushed the
    # error code (always 0); a zero EBP ends the backtrace of this stack.
    .globl dblflt_entry
dblflt_entry:
    xorl %ebp, %ebp
    call double_fault
2:
    hlt
    jmp 2b
    .popsection
    "#,
    kdata = const selector(SEG_KDATA, 0),
    errvecs = const ERROR_CODE_VECTORS,
    options(att_syntax)
);

extern "C" {
    /// The entry stubs' addresses (above).
    #[link_name = "vectors"]
    pub static VECTORS: [u32; 256];
    /// The second half of alltraps: where a new process's kernel stack "returns" to.
    pub fn trapret();
}
