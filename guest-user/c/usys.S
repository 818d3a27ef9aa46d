# usys.S: one stub per system call of user.h: the number in %eax, int $64; the arguments
# stay where the cdecl call put them (argument n at %esp + 4 + 4n in the stub).
#define SYSCALL(name, num) \
    .globl name; \
    .type name, @function; \
name: \
    movl $num, %eax; \
    int $64; \
    ret

.text
SYSCALL(fork, 1)
SYSCALL(exit, 2)
SYSCALL(wait, 3)
SYSCALL(pipe, 4)
SYSCALL(read, 5)
SYSCALL(kill, 6)
SYSCALL(exec, 7)
SYSCALL(fstat, 8)
SYSCALL(chdir, 9)
SYSCALL(dup, 10)
SYSCALL(getpid, 11)
SYSCALL(sbrk, 12)
SYSCALL(sleep, 13)
SYSCALL(uptime, 14)
SYSCALL(open, 15)
SYSCALL(write, 16)
SYSCALL(mknod, 17)
SYSCALL(unlink, 18)
SYSCALL(link, 19)
SYSCALL(mkdir, 20)
SYSCALL(close, 21)
SYSCALL(pgdump, 22)
SYSCALL(countfree, 23)
SYSCALL(export, 24)
SYSCALL(tsckhz, 25)
SYSCALL(mark, 26)
SYSCALL(exit_status, 27)
SYSCALL(wait_status, 28)

.section .note.GNU-stack, "", @progbits
