//! The process table's bookkeeping (the data half of xv6 proc.c and proc.h): `struct proc`,
//! the table's slots, pids, parents, wait channels, kill and the round-robin pick. Pure and
//! tested on the host, with `()` standing in for page directories; proc.rs does the rest.

use crate::memlayout::UVAddr;

/// Maximum number of processes.
pub const NPROC: usize = 64;
/// Bytes of a process's kernel stack (one page from kalloc).
pub const KSTACKSIZE: u32 = xv6_abi::mmu::PGSIZE;
/// Bytes of a process name (the last component of the program's path, NUL-padded).
pub const NAMELEN: usize = 16;
/// Exit status of a process ended by `kill()`: 128 + SIGKILL.
pub const KILLED_STATUS: i32 = xv6_abi::status::KILLED as i32;
/// Open files per process (xv6 NOFILE).
pub const NOFILE: usize = 16;

/// A process's file descriptors: each an index into the open-file table (file.rs).
pub type Ofile = [Option<u16>; NOFILE];

/// Where a process is in its life (xv6 `enum procstate`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProcState {
    Unused,
    Embryo,
    Sleeping,
    Runnable,
    Running,
    Zombie,
}

/// What a sleeping process waits for (xv6 sleeps on addresses; here a closed set).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Chan {
    /// A child of the process in this slot to exit (wait).
    Proc(usize),
    /// The next clock tick (sleep).
    Ticks,
    /// Console input or its end (read of the console).
    Input,
    /// Data or the writers' end in pipe `n` (a reader waits).
    PipeRead(usize),
    /// Room or the readers' end in pipe `n` (a writer waits).
    PipeWrite(usize),
}

/// A process (xv6 `struct proc`). `M` is the page directory type.
#[derive(Debug)]
pub struct Proc<M> {
    /// Size of process memory (bytes): user addresses `[0, sz)`.
    pub sz: u32,
    /// Where the lazy sbrk region starts: pages of `[lazy_from, sz)` not present yet are
    /// mapped on first touch (lazy.rs, demand paging); `None` when sbrk is eager.
    pub lazy_from: Option<UVAddr>,
    /// Page directory.
    pub pgdir: Option<M>,
    /// Bottom of the kernel stack page (kernel virtual address; 0: none).
    pub kstack: usize,
    pub state: ProcState,
    pub pid: i32,
    /// Slot of the parent process.
    pub parent: Option<usize>,
    /// Trap frame for the current system call: at the top of the kernel stack.
    pub tf: usize,
    /// `swtch` here to run the process (a `*mut Context` on its kernel stack).
    pub context: usize,
    /// If sleeping, on what.
    pub chan: Option<Chan>,
    /// If killed, the status to exit with when it next leaves or enters the kernel.
    pub killed: Option<i32>,
    /// Exit status, for the parent's wait.
    pub xstate: i32,
    /// Process name (debugging, fault lines).
    pub name: [u8; NAMELEN],
    /// Open files (xv6 `ofile`).
    pub ofile: Ofile,
    /// Current directory: an inode number (0: none yet).
    pub cwd: u16,
}

impl<M> Proc<M> {
    /// An unused slot.
    pub const fn new() -> Proc<M> {
        Proc {
            sz: 0,
            lazy_from: None,
            pgdir: None,
            kstack: 0,
            state: ProcState::Unused,
            pid: 0,
            parent: None,
            tf: 0,
            context: 0,
            chan: None,
            killed: None,
            xstate: 0,
            name: [0; NAMELEN],
            ofile: [None; NOFILE],
            cwd: 0,
        }
    }

    /// The name as text.
    #[must_use]
    pub fn name(&self) -> &str {
        name_str(&self.name)
    }

    /// Names the process after the last component of `path` (truncated to fit).
    pub fn set_name(&mut self, path: &[u8]) {
        let base = basename(path);
        let n = base.len().min(NAMELEN - 1);
        self.name = [0; NAMELEN];
        self.name[..n].copy_from_slice(&base[..n]);
    }
}

impl<M> Default for Proc<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// A NUL-padded process name as text.
#[must_use]
pub fn name_str(name: &[u8; NAMELEN]) -> &str {
    let n = name.iter().position(|&c| c == 0).unwrap_or(NAMELEN);
    core::str::from_utf8(&name[..n]).unwrap_or("?")
}

/// The last component of a path: `"/bin/echo"` → `"echo"`.
#[must_use]
pub fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|&c| c == b'/').next().unwrap_or(path)
}

/// The process table (xv6 `ptable`).
pub struct ProcTable<M> {
    pub procs: [Proc<M>; NPROC],
    nextpid: i32,
    /// The first process: adopts orphans; when it exits the machine stops.
    pub initproc: Option<usize>,
}

impl<M> ProcTable<M> {
    /// All slots unused; the first pid will be 1.
    pub const fn new() -> ProcTable<M> {
        ProcTable {
            procs: [const { Proc::new() }; NPROC],
            nextpid: 1,
            initproc: None,
        }
    }

    /// Claims an unused slot as an EMBRYO with a fresh pid and everything else cleared (the
    /// bookkeeping half of xv6 `allocproc`). `None` if the table is full.
    pub fn alloc_slot(&mut self) -> Option<usize> {
        let i = self
            .procs
            .iter()
            .position(|p| p.state == ProcState::Unused)?;
        let pid = self.nextpid;
        self.nextpid += 1;
        self.procs[i] = Proc::new();
        self.procs[i].state = ProcState::Embryo;
        self.procs[i].pid = pid;
        Some(i)
    }

    /// Returns slot `i` to UNUSED, handing back what it owned: the kernel stack and the
    /// page directory for the caller to free.
    pub fn clear_slot(&mut self, i: usize) -> (usize, Option<M>) {
        let p = core::mem::take(&mut self.procs[i]);
        (p.kstack, p.pgdir)
    }

    /// Makes every process sleeping on `chan` runnable (xv6 `wakeup1`); returns how many.
    pub fn wakeup(&mut self, chan: Chan) -> usize {
        let mut n = 0;
        for p in &mut self.procs {
            if p.state == ProcState::Sleeping && p.chan == Some(chan) {
                p.state = ProcState::Runnable;
                n += 1;
            }
        }
        n
    }

    /// Gives the children of `from` to `to` (the init process); true if one of them is
    /// already a zombie (then `to` must be woken to reap it).
    pub fn reparent(&mut self, from: usize, to: usize) -> bool {
        let mut zombie = false;
        for p in &mut self.procs {
            if p.parent == Some(from) && p.state != ProcState::Unused {
                p.parent = Some(to);
                zombie |= p.state == ProcState::Zombie;
            }
        }
        zombie
    }

    /// For wait: whether `parent` has children at all, and a zombie child if there is one.
    #[must_use]
    pub fn zombie_child(&self, parent: usize) -> (bool, Option<usize>) {
        let mut havekids = false;
        for (i, p) in self.procs.iter().enumerate() {
            if p.parent != Some(parent) || p.state == ProcState::Unused {
                continue;
            }
            havekids = true;
            if p.state == ProcState::Zombie {
                return (true, Some(i));
            }
        }
        (havekids, None)
    }

    /// Marks the process with `pid` killed (it will exit with `status`), waking it if it
    /// sleeps (xv6 `kill`). False if there is no such (live) process.
    pub fn kill(&mut self, pid: i32, status: i32) -> bool {
        let Some(p) = self
            .procs
            .iter_mut()
            .find(|p| p.pid == pid && !matches!(p.state, ProcState::Unused | ProcState::Zombie))
        else {
            return false;
        };
        if p.killed.is_none() {
            p.killed = Some(status);
        }
        if p.state == ProcState::Sleeping {
            p.state = ProcState::Runnable;
        }
        true
    }

    /// The next runnable slot after `last`, wrapping around (round robin: every runnable
    /// process gets a turn before any gets a second).
    #[must_use]
    pub fn next_runnable(&self, last: usize) -> Option<usize> {
        (1..=NPROC)
            .map(|k| (last + k) % NPROC)
            .find(|&i| self.procs[i].state == ProcState::Runnable)
    }
}

impl<M> Default for ProcTable<M> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "ptable_tests.rs"]
mod tests;
