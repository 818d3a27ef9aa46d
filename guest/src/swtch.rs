//! The context switch (xv6 swtch.S): saves the callee-saved registers of the current kernel
//! thread on its stack, stores that stack pointer in `*old`, loads `new` as the stack
//! pointer and pops the registers saved there. The return address on each stack is its
//! `eip`; caller-saved registers, eflags and segments need no saving (the C calling
//! convention, one address space for all kernel threads).

/// Saved registers of a kernel thread that is not running (xv6 `struct context`): the
/// callee-saved registers of the i386 C calling convention, and the return address of the
/// `swtch` call that saved them. It lives at the bottom of that thread's stack.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Context {
    pub edi: u32,
    pub esi: u32,
    pub ebx: u32,
    pub ebp: u32,
    pub eip: u32,
}

#[cfg(all(target_arch = "x86", not(test)))]
core::arch::global_asm!(
    r#"
    .pushsection .text.swtch, "ax"
    .globl swtch
swtch:
    movl 4(%esp), %eax          # old: where to save the current context pointer
    movl 8(%esp), %edx          # new: the context to switch to

    # Save the old callee-saved registers (eip is already there: the return address).
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi

    # Switch stacks.
    movl %esp, (%eax)
    movl %edx, %esp

    # Load the new callee-saved registers.
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
    .popsection
    "#,
    options(att_syntax)
);

#[cfg(all(target_arch = "x86", not(test)))]
extern "C" {
    /// Switches from the current kernel thread to the one whose saved context is at `new`,
    /// saving the current one's context pointer in `*old`. Returns when some other thread
    /// switches back to `*old`.
    ///
    /// # Safety
    /// `new` must be a context saved by swtch (or built like one by allocproc) on a live
    /// kernel stack; `old` must be valid for a write. Interrupts must be off (the ptable
    /// lock is held across the switch).
    pub fn swtch(old: *mut *mut Context, new: *mut Context);
}

#[cfg(test)]
mod tests {
    #[test]
    fn context_is_five_words_eip_last() {
        assert_eq!(core::mem::size_of::<super::Context>(), 20);
        assert_eq!(core::mem::offset_of!(super::Context, eip), 16);
    }
}
