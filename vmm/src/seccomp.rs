//! The VMM's confinement: one seccomp filter per thread, installed once the VM is set up (with
//! the rust-vmm `seccompiler` crate, as Firecracker does), so a guest that took over a device
//! model could make only the system calls that thread needs. Each filter allows a short
//! list; `ioctl` only on the vCPU's own descriptor and only for the KVM requests the vCPU
//! thread makes. No thread keeps `clone`, `execve`, `socket` or `ptrace`; only the main
//! thread opens files, in three fixed modes (read-only, a directory, and --stats-json's
//! create-and-truncate write). `mmap` and `mprotect` are allowed only without PROT_EXEC. Anything else raises
//! SIGSYS. The handler here prints one line that names the call and the thread, then ends
//! the process with status 125. One call is refused rather than trapped: `openat` on the vCPU
//! and gdb threads fails with EACCES (a second, stacked filter). glibc's malloc opens
//! /proc/sys/vm/overcommit_memory the first time it shrinks a thread's heap, and it copes
//! with the refusal.
//!
//! - [`Role::Main`]: the thread that started the VM. It waits for the vCPU, kicks it at
//!   `--timeout`, reads back the filters' state, and writes `--stats-json`.
//! - [`Role::Vcpu`]: KVM_RUN and the exits' device work: guest memory, the console's
//!   stdin/stdout/stderr, the UART's irqfd, the crash report's register reads. With `--gdb`
//!   it also serves the debugger on its connection.
//! - [`Role::Gdb`]: the debugger's watcher. It polls the connection and kicks the vCPU out
//!   of KVM_RUN when gdb sends a Ctrl-C.
//!
//! `vmm run --no-seccomp` installs none (for debugging the VMM with strace or gdb).
//! `XV6_VMM_SECCOMP_SELFTEST=1` makes the vCPU thread call `socket` once the guest has run,
//! which its filter does not allow: the run must end in the SIGSYS report.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::fd::RawFd;

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use serde::Serialize;

/// The environment variable of the test hook (`1`: the vCPU thread makes a blocked call).
pub const SELFTEST_ENV: &str = "XV6_VMM_SECCOMP_SELFTEST";

/// Whether the test hook is on in this process's environment.
pub fn selftest_requested() -> bool {
    std::env::var_os(SELFTEST_ENV).is_some_and(|v| v == "1")
}

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The thread that started the VM.
    Main,
    /// The vCPU thread, whose KVM descriptor is `fd`; `gdb`: it serves a debugger too, and
    /// then also reads and sets up the other vCPUs (`peers`) while they are stopped.
    Vcpu { fd: RawFd, gdb: bool, peers: Peers },
    /// The debugger's watcher thread.
    Gdb,
}

/// The other vCPUs' descriptors the debugger's vCPU thread may use (at most NCPU − 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peers {
    fds: [RawFd; xv6_abi::smp::NCPU - 1],
    n: usize,
}

impl Peers {
    /// None.
    pub const NONE: Peers = Peers {
        fds: [-1; xv6_abi::smp::NCPU - 1],
        n: 0,
    };

    /// These (the first NCPU − 1 of them).
    pub fn new(fds: &[RawFd]) -> Peers {
        let mut p = Peers::NONE;
        for &fd in fds.iter().take(p.fds.len()) {
            p.fds[p.n] = fd;
            p.n += 1;
        }
        p
    }

    fn iter(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds[..self.n].iter().copied()
    }
}

impl Role {
    /// The thread's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Vcpu { .. } => "vcpu0",
            Role::Gdb => "gdb",
        }
    }
}

// KVM's vCPU requests (linux/kvm.h), by the same macros kvm-ioctls uses.
const KVMIO: u32 = 0xAE;
vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
vmm_sys_util::ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_bindings::kvm_regs);
vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
vmm_sys_util::ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_bindings::kvm_translation);
vmm_sys_util::ioctl_iow_nr!(
    KVM_SET_GUEST_DEBUG,
    KVMIO,
    0x9b,
    kvm_bindings::kvm_guest_debug
);

/// The KVM requests the vCPU thread makes after setup: KVM_RUN; the registers, special
/// registers and address translation that crash reports, `--pgdump` and the exit log read;
/// with a debugger, writing registers and setting breakpoints.
pub fn vcpu_ioctls(gdb: bool) -> Vec<(&'static str, u64)> {
    let mut v = vec![
        ("KVM_RUN", KVM_RUN()),
        ("KVM_GET_REGS", KVM_GET_REGS()),
        ("KVM_GET_SREGS", KVM_GET_SREGS()),
        ("KVM_TRANSLATE", KVM_TRANSLATE()),
    ];
    if gdb {
        v.push(("KVM_SET_REGS", KVM_SET_REGS()));
        v.push(("KVM_SET_GUEST_DEBUG", KVM_SET_GUEST_DEBUG()));
    }
    v
}

/// What every thread needs: memory (never executable), futexes, time and sleeping, signal
/// return and masks, writing its reports, and ending itself or the process.
const BASE: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_write,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn cond(arg: u8, op: Op, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, Len::Dword, op, value).expect("argument index below 6")
}

fn rule(conds: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conds).expect("a rule with conditions")
}

/// The rules of `role`'s filter: system call number → the argument checks (empty: any
/// arguments).
pub fn rules(role: Role) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BASE.iter().map(|&n| (n, vec![])).collect();
    let no_exec = |arg| cond(arg, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    m.insert(libc::SYS_mmap, vec![rule(vec![no_exec(2)])]);
    m.insert(libc::SYS_mprotect, vec![rule(vec![no_exec(2)])]);
    // tgkill(our pid, thread, the kick signal): only the vCPU kick.
    let kick = || {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u64;
        vec![rule(vec![
            cond(0, Op::Eq, pid),
            cond(2, Op::Eq, vmm_sys_util::signal::SIGRTMIN() as u64),
        ])]
    };
    match role {
        Role::Main => main_rules(&mut m, kick()),
        Role::Vcpu { fd, gdb, peers } => {
            vcpu_rules(&mut m, fd, gdb, peers);
            // With several vCPUs, the one whose run ends kicks the others (vstate/aps.rs).
            m.insert(libc::SYS_getpid, vec![]);
            m.insert(libc::SYS_tgkill, kick());
        }
        Role::Gdb => {
            m.insert(libc::SYS_poll, vec![]);
            m.insert(libc::SYS_ppoll, vec![]);
            m.insert(libc::SYS_getpid, vec![]);
            m.insert(libc::SYS_tgkill, kick());
        }
    }
    m
}

/// The main thread's rules beyond the base: the vCPU kick (`kick`), reading
/// /proc/self/task/*/status back, and writing `--stats-json`.
fn main_rules(m: &mut BTreeMap<i64, Vec<SeccompRule>>, kick: Vec<SeccompRule>) {
    m.insert(libc::SYS_getpid, vec![]);
    m.insert(libc::SYS_tgkill, kick);
    // These open modes only (no new executable, no O_APPEND to a log, no O_PATH games).
    let modes = [
        libc::O_RDONLY | libc::O_CLOEXEC,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NONBLOCK,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
    ];
    let opens = modes
        .iter()
        .map(|&f| rule(vec![cond(2, Op::Eq, f as u64)]))
        .collect();
    m.insert(libc::SYS_openat, opens);
    for n in [
        libc::SYS_read,
        libc::SYS_close,
        libc::SYS_getdents64,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
    ] {
        m.insert(n, vec![]);
    }
}

/// The vCPU thread's rules beyond the base: its own vCPU's ioctls (on `fd`; the debug ones
/// with `gdb`, on `peers` too), stdin and the debugger's connection, their readiness, and the end of the run
/// (guest RAM's residency, closing the VM's descriptors).
fn vcpu_rules(m: &mut BTreeMap<i64, Vec<SeccompRule>>, fd: i32, gdb: bool, peers: Peers) {
    let fds: Vec<RawFd> = match gdb {
        true => std::iter::once(fd).chain(peers.iter()).collect(),
        false => vec![fd],
    };
    let ioctls = fds
        .iter()
        .flat_map(|&fd| {
            vcpu_ioctls(gdb)
                .into_iter()
                .map(move |(_, req)| rule(vec![cond(0, Op::Eq, fd as u64), cond(1, Op::Eq, req)]))
        })
        .collect();
    m.insert(libc::SYS_ioctl, ioctls);
    for n in [
        libc::SYS_read,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_mincore,
        libc::SYS_close,
    ] {
        m.insert(n, vec![]);
    }
}

/// The system calls `role` is refused with EACCES instead of trapped (see the module doc).
pub fn refused(role: Role) -> &'static [i64] {
    match role {
        Role::Main => &[],
        Role::Vcpu { .. } | Role::Gdb => &[libc::SYS_openat],
    }
}

/// The compiled filters for `role`, in the order they are installed: if some calls are
/// refused, the filter that fails them with EACCES; then the allow list (anything else traps;
/// the refused calls pass it). Last, as it forbids installing more.
pub fn filters(role: Role) -> Result<Vec<BpfProgram>> {
    let arch: seccompiler::TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow::anyhow!("seccomp: unsupported architecture: {e:?}"))?;
    let compile = |rules, mismatch, matched| -> Result<BpfProgram> {
        let f = SeccompFilter::new(rules, mismatch, matched, arch)
            .map_err(|e| anyhow::anyhow!("seccomp: bad filter for {}: {e}", role.name()))?;
        f.try_into()
            .map_err(|e| anyhow::anyhow!("seccomp: cannot compile the {} filter: {e}", role.name()))
    };
    let mut allow = rules(role);
    let refuse: BTreeMap<i64, Vec<SeccompRule>> =
        refused(role).iter().map(|&n| (n, vec![])).collect();
    allow.extend(refuse.clone());
    let mut progs = Vec::new();
    if !refuse.is_empty() {
        let eacces = SeccompAction::Errno(libc::EACCES as u32);
        progs.push(compile(refuse, SeccompAction::Allow, eacces)?);
    }
    progs.push(compile(allow, SeccompAction::Trap, SeccompAction::Allow)?);
    Ok(progs)
}

thread_local! {
    /// This thread's role name, for the SIGSYS report ("" before a filter is installed).
    static ROLE: Cell<&'static str> = const { Cell::new("") };
}

/// Installs `role`'s filter on the calling thread (after [`install_sigsys_handler`]); returns
/// the allowed system calls.
pub fn install(role: Role) -> Result<BTreeSet<i64>> {
    let allowed: BTreeSet<i64> = rules(role).into_keys().collect();
    let progs = filters(role)?;
    ROLE.with(|r| r.set(role.name()));
    for prog in &progs {
        seccompiler::apply_filter(prog).with_context(|| {
            format!(
                "cannot install the {} thread's seccomp filter (where this kernel has no \
                 seccomp, vmm run --no-seccomp runs without)",
                role.name()
            )
        })?;
    }
    log::debug!(
        "seccomp: {} thread confined to {} system calls",
        role.name(),
        allowed.len()
    );
    Ok(allowed)
}

/// Byte offset of `si_syscall` in a SIGSYS `siginfo_t` (x86-64: after signo, errno, code and
/// padding, then the call address).
const SI_SYSCALL_OFFSET: usize = 24;

/// The SIGSYS handler: one line naming the blocked call and the thread, then exit 125. Only
/// `write` and `exit_group` (allowed everywhere), no allocation, no locks.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS, whose _sigsys member holds the
    // system call number at this offset.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    let mut buf = [0u8; 320];
    let mut w = Buf {
        buf: &mut buf,
        len: 0,
    };
    let thread = ROLE.with(Cell::get);
    sigsys_line(&mut w, thread, i64::from(nr));
    let len = w.len;
    // SAFETY: writes `len` initialized bytes of `buf` to stderr, then ends the process.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(crate::exit::FAILURE);
    }
}

/// The SIGSYS report's line (a function of its own, so it is tested on the host).
fn sigsys_line(w: &mut Buf<'_>, thread: &str, nr: i64) {
    w.push(b"vmm: error: seccomp: the ");
    w.push(if thread.is_empty() {
        b"?"
    } else {
        thread.as_bytes()
    });
    w.push(b" thread made a system call its filter does not allow: ");
    w.push(
        crate::debug::syscall_names::name(nr)
            .unwrap_or("unknown")
            .as_bytes(),
    );
    w.push(b" (#");
    w.push_u64(nr.unsigned_abs());
    w.push(b"); the VMM stopped (vmm run --no-seccomp runs without the filters)\n");
}

/// A fixed buffer that text is appended to, cut at its end (no allocation: signal-safe).
struct Buf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Buf<'_> {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// Installs the SIGSYS handler (once per process; before any filter).
pub fn install_sigsys_handler() -> Result<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
            .map_err(|e| anyhow::anyhow!("cannot install the SIGSYS handler: {e}"));
    });
    result
}

/// The test hook's call: `socket`, which no thread's filter allows. Without a filter (the
/// hook with `--no-seccomp`) the socket is closed again and the run goes on.
pub fn selftest_blocked_call() {
    log::warn!("{SELFTEST_ENV}: the vCPU thread calls socket(), outside its filter");
    // SAFETY: socket has no memory arguments; the descriptor, if any, is closed at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is the socket just created, owned here.
        unsafe { libc::close(fd) };
    }
}

/// What `--stats-json` reports of the confinement, as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Stats {
    /// The main thread's seccomp mode (`/proc/self/status`): "filter", "strict" or
    /// "disabled".
    pub mode: String,
    /// Threads of this process in filter mode (`/proc/self/task/*/status`).
    pub threads: usize,
    /// System calls allowed to some thread (the union of the installed filters' lists).
    pub syscalls: usize,
    /// Each confined thread's allowed count, by role.
    pub per_thread: BTreeMap<String, usize>,
}

impl Stats {
    /// `--stats`'s line: `vmm: seccomp: filter on N threads, M system calls allowed (main
    /// a, vcpu0 b)`, or the mode when no filter is on.
    pub fn line(&self) -> String {
        if self.mode != "filter" {
            let mode = if self.mode.is_empty() {
                "unknown"
            } else {
                &self.mode
            };
            return format!("vmm: seccomp: {mode} (no filters)");
        }
        let each: Vec<String> = self
            .per_thread
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        format!(
            "vmm: seccomp: filter on {} threads, {} system calls allowed ({})",
            self.threads,
            self.syscalls,
            each.join(", ")
        )
    }
}

/// Reads `Seccomp:` of the main thread and of every thread of this process from /proc.
pub fn kernel_view() -> Result<(String, usize)> {
    let mode = match seccomp_field(&read_small("/proc/self/status")?) {
        Some(0) => "disabled",
        Some(1) => "strict",
        Some(2) => "filter",
        _ => "unknown",
    };
    let mut threads = 0;
    let dir = std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?;
    for entry in dir {
        let path = entry.context("cannot list /proc/self/task")?.path();
        // A thread that ended meanwhile has no status any more: not counted.
        if let Ok(text) = read_small(&path.join("status").to_string_lossy()) {
            threads += usize::from(seccomp_field(&text) == Some(2));
        }
    }
    Ok((mode.to_string(), threads))
}

/// A /proc file's text, read with `read` alone (no stat: the filters allow just that).
fn read_small(path: &str) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded: a status file is a few KiB.
    for _ in 0..64 {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {path}"))?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The value of the `Seccomp:` line of a /proc status file.
fn seccomp_field(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_are_linuxs() {
        let v: BTreeMap<&str, u64> = vcpu_ioctls(true).into_iter().collect();
        assert_eq!(v["KVM_RUN"], 0xAE80);
        assert_eq!(v["KVM_GET_REGS"], 0x8090_AE81);
        assert_eq!(v["KVM_SET_REGS"], 0x4090_AE82);
        assert_eq!(v["KVM_GET_SREGS"], 0x8138_AE83);
        assert_eq!(v["KVM_TRANSLATE"], 0xC018_AE85);
        assert_eq!(v["KVM_SET_GUEST_DEBUG"], 0x4048_AE9B);
        assert_eq!(vcpu_ioctls(false).len(), 4);
    }

    /// vCPU ioctls on the thread's own descriptor, and under gdb on the other vCPUs' too.
    #[test]
    fn a_debugger_vcpu_thread_may_use_its_peers_descriptors() {
        let ioctl_rules = |role| rules(role)[&libc::SYS_ioctl].len();
        let peers = Peers::new(&[10, 11]);
        assert_eq!(
            ioctl_rules(Role::Vcpu {
                fd: 9,
                gdb: false,
                peers
            }),
            vcpu_ioctls(false).len()
        );
        assert_eq!(
            ioctl_rules(Role::Vcpu {
                fd: 9,
                gdb: true,
                peers
            }),
            3 * vcpu_ioctls(true).len()
        );
        assert_eq!(Peers::new(&[3; 20]).iter().count(), xv6_abi::smp::NCPU - 1);
    }

    #[test]
    fn no_thread_may_start_programs_threads_or_connections() {
        for role in [
            Role::Main,
            Role::Vcpu {
                fd: 9,
                gdb: true,
                peers: Peers::new(&[10, 11]),
            },
            Role::Gdb,
        ] {
            let r = rules(role);
            for n in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_fork,
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_ptrace,
                libc::SYS_open,
                libc::SYS_mount,
                libc::SYS_seccomp,
            ] {
                assert!(!r.contains_key(&n), "{role:?} allows {n}");
            }
            assert!(filters(role).is_ok(), "{role:?}");
        }
        assert!(!rules(Role::Gdb).contains_key(&libc::SYS_ioctl));
        assert!(!rules(Role::Main).contains_key(&libc::SYS_ioctl));
        assert!(!rules(Role::Vcpu {
            fd: 9,
            gdb: false,
            peers: Peers::NONE
        })
        .contains_key(&libc::SYS_openat));
        assert_eq!(
            filters(Role::Gdb).unwrap().len(),
            2,
            "openat is refused, not allowed"
        );
    }

    #[test]
    fn sigsys_line_names_the_call_and_the_thread() {
        let mut buf = [0u8; 320];
        let mut w = Buf {
            buf: &mut buf,
            len: 0,
        };
        sigsys_line(&mut w, "vcpu0", libc::SYS_socket);
        let len = w.len;
        let line = std::str::from_utf8(&buf[..len]).unwrap();
        assert_eq!(
            line,
            "vmm: error: seccomp: the vcpu0 thread made a system call its filter does not \
             allow: socket (#41); the VMM stopped (vmm run --no-seccomp runs without the \
             filters)\n"
        );
        assert_eq!(
            crate::debug::syscall_names::name(libc::SYS_ioctl),
            Some("ioctl")
        );
        assert_eq!(crate::debug::syscall_names::name(100_000), None);
    }

    #[test]
    fn seccomp_field_is_parsed() {
        assert_eq!(
            seccomp_field("Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"),
            Some(2)
        );
        assert_eq!(seccomp_field("Seccomp:\t0\n"), Some(0));
        assert_eq!(seccomp_field("Name:\tx\n"), None);
    }

    /// A filter installed on a thread of this test process is live: the kernel counts that
    /// thread in filter mode while it runs (and allowed calls, a channel's futexes, work).
    #[test]
    fn an_installed_filter_is_seen_by_the_kernel() {
        use std::sync::mpsc;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            install_sigsys_handler().unwrap();
            let allowed = install(Role::Gdb).unwrap();
            // Refused with EACCES, not trapped (the process goes on).
            let err = std::fs::File::open("/proc/self/status").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EACCES));
            ready_tx.send(allowed.len()).unwrap();
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
        });
        let allowed = ready_rx.recv().unwrap();
        let (mode, threads) = kernel_view().unwrap();
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(allowed, rules(Role::Gdb).len());
        assert_eq!(mode, "disabled", "the test's own thread is not confined");
        assert!(threads >= 1, "the confined thread is not in filter mode");
    }
}
