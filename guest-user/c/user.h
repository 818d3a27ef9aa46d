/* user.h: the system calls of this runtime for C programs (xv6-public's user.h prototypes,
 * numbers 1-21, then this project's 22-28), and xv6's struct stat, struct dirent and open
 * modes. Stubs: usys.S; entry: crt0.S (calls main(argc, argv), then exit with its result).
 * docs/abi.md is the contract. Written for this project. */
#ifndef XV6_RUNTIME_USER_H
#define XV6_RUNTIME_USER_H

typedef unsigned int uint;
typedef unsigned short ushort;

/* open's modes */
#define O_RDONLY 0x000
#define O_WRONLY 0x001
#define O_RDWR 0x002
#define O_CREATE 0x200

/* inode types */
#define T_DIR 1
#define T_FILE 2
#define T_DEV 3

#define DIRSIZ 14

struct stat {
    short type; /* T_DIR, T_FILE or T_DEV */
    int dev;
    uint ino;
    short nlink;
    uint size;
};

/* What read() of a directory returns; inum 0 is a free slot. */
struct dirent {
    ushort inum;
    char name[DIRSIZ];
};

/* xv6-public's calls */
int fork(void);
int exit(void) __attribute__((noreturn)); /* status 0 */
int wait(void);                            /* a child's pid; stores nothing */
int pipe(int *fds);
int write(int fd, const void *buf, int n);
int read(int fd, void *buf, int n);
int close(int fd);
int kill(int pid);
int exec(char *path, char **argv);
int open(const char *path, int mode);
int mknod(const char *path, short major, short minor);
int unlink(const char *path);
int fstat(int fd, struct stat *st);
int link(const char *old, const char *new);
int mkdir(const char *path);
int chdir(const char *path);
int dup(int fd);
int getpid(void);
char *sbrk(int n);
int sleep(int ticks);
int uptime(void);

/* this project's */
int pgdump(void);
int countfree(void);
int export(const void *buf, int len);
int tsckhz(void);
int mark(int n);
void exit_status(int status) __attribute__((noreturn)); /* 27: exit(int) */
int wait_status(int *status);                            /* 28: wait(int *) */

#endif
