/* exit0: the smallest static Linux x86-64 program, `_exit(0)` and nothing else.
 * `vmm bench fork` fork+execve's it for the Linux baseline of fork+exec+exit+wait (a static
 * program, as the guest's exec of a built-in is: no dynamic loader in either measurement).
 * Built by vmm/build.rs with the system C compiler (-nostdlib -static). */
    .text
    .globl _start
_start:
    mov $60, %eax       /* SYS_exit */
    xor %edi, %edi
    syscall
    .section .note.GNU-stack, "", @progbits
