# crt0.S: the entry point. exec leaves the stack as xv6 does: a fake return PC, argc, argv.
# _start calls main(argc, argv) and exits with what it returns (exit_status, call 27).
.text
.globl _start
_start:
    pushl 8(%esp)       # argv
    pushl 8(%esp)       # argc (the push moved it to 8(%esp))
    call main
    pushl %eax
    call exit_status

.section .note.GNU-stack, "", @progbits
