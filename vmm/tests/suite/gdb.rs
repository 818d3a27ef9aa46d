//! `vmm run --gdb` with a real gdb (Debian's), on the engine `auto` picks (here the lab: the
//! outer `vmm` listens, the lab bridges the port to the inner `vmm`'s virtio-serial device).
//!
//! The first session is the README's: stopped before the first instruction, registers with
//! the selectors, kernel memory by its link address; `break` at kinit2 and a backtrace through
//! kmain; a kernel variable; a host-built C program's symbols, `break main` in it, its memory
//! below KERNBASE through its own page tables, a write watchpoint on its global seen to hit;
//! a single step; and the guest's exit status. The second interrupts a running guest with
//! Ctrl-C (SIGINT to gdb, which sends its interrupt byte), asks the monitor commands, and
//! kills the guest.

use crate::common;
use common::*;

use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn gdb_available() -> bool {
    let ok = Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and no gdb (tools/dev test installs Debian's gdb)");
    }
    ok
}

/// A `vmm run --gdb` waiting for gdb, and the gdb script for it.
struct Session {
    vmm: Child,
    /// vmm's stderr, collected to the end.
    log: std::thread::JoinHandle<String>,
    /// vmm's stderr lines as they come.
    lines: std::sync::mpsc::Receiver<String>,
    script: std::path::PathBuf,
    /// The Unix socket vmm listens on, if it was given one.
    socket: Option<std::path::PathBuf>,
}

impl Session {
    /// Starts `vmm run --quiet --gdb 127.0.0.1:PORT PROGRAM…` (with `unix`: `--gdb PATH`,
    /// a Unix socket) (stdin: `stdin`) and waits (bounded) until it waits for gdb; writes
    /// `script` with the target and `subst` filled in.
    fn start(
        program: &[&str],
        stdin: Stdio,
        script: &str,
        subst: &[(&str, &str)],
        unix: bool,
    ) -> Session {
        let port = free_port();
        let target = if unix {
            std::env::temp_dir()
                .join(format!("vmm-gdb-{port}.sock"))
                .display()
                .to_string()
        } else {
            format!("127.0.0.1:{port}")
        };
        let mut text = script.replace("127.0.0.1:PORT", &target);
        for (k, v) in subst {
            text = text.replace(k, v);
        }
        let path = std::env::temp_dir().join(format!("vmm-gdb-{port}.gdb"));
        std::fs::write(&path, text).unwrap();
        let mut vmm = Command::new(VMM)
            .args(["run", "--quiet", "--gdb", &target])
            .args(program)
            .stdin(stdin)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = std::io::BufReader::new(vmm.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut all = String::new();
            for l in err.lines().map_while(Result::ok) {
                let _ = tx.send(l.clone());
                all.push_str(&l);
                all.push('\n');
            }
            all
        });
        let s = Session {
            socket: unix.then(|| target.clone().into()),
            vmm,
            log,
            lines: rx,
            script: path,
        };
        assert!(
            s.wait_for("waiting for a debugger on"),
            "vmm never waited for gdb"
        );
        s
    }

    /// Waits (up to 120 s) for a line of vmm's stderr holding `what`.
    fn wait_for(&self, what: &str) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(120);
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// gdb on the script, from the repository (kernel.elf's path is relative).
    fn gdb(&self) -> Command {
        let mut c = Command::new("gdb");
        c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["-nx", "-batch", "-x"])
            .arg(&self.script)
            .stdin(Stdio::null());
        c
    }

    /// Waits for vmm; its exit code and stderr. A Unix socket it listened on is gone.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.vmm.wait().unwrap();
        let _ = std::fs::remove_file(&self.script);
        if let Some(sock) = &self.socket {
            assert!(!sock.exists(), "{} left behind", sock.display());
        }
        (status.code(), self.log.join().unwrap())
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn expect(out: &str, log: &str, what: &str) {
    assert!(
        out.contains(what),
        "no {what:?} in gdb's output:\n{out}\nvmm:\n{log}"
    );
}

#[test]
fn gdb_session_breaks_walks_reads_watches_steps_and_sees_the_exit() {
    if engine().is_none() || !gdb_available() {
        return;
    }
    let program = build_c_program("watched", true);
    let p = program.display().to_string();
    let session = Session::start(
        &[&p],
        Stdio::null(),
        include_str!("../fixtures/gdb/session.gdb"),
        &[("PROGRAM", &p)],
        false,
    );
    let gdb = session.gdb().output().unwrap();
    let (status, log) = session.finish();
    let out = text(&gdb);
    let expect = |what: &str| expect(&out, &log, what);
    // Stopped before the first instruction: the PVH entry (paging off), flat selectors.
    expect("eip at entry: 0x100000");
    expect("cs=0x8 ds=0x10 eflags=0x2");
    // Kernel text read at its link address (paging off: at va - KERNBASE).
    expect("0x80100000 <entry>:");
    // break at kinit2 (an int3, or in the lab a debug register), the stack through kmain.
    expect("Breakpoint 1, xv6::kalloc::Kmem::kinit2");
    expect(" in xv6::kmain::kmain (");
    // A kernel variable: PHYSTOP of the default 256 MiB machine (224 MiB, below the modules).
    expect("{value: 234881024}");
    // The user program: stopped at its main, its global read through its page tables.
    expect("Breakpoint 2, main (");
    expect("<counter>:\t0x00000000");
    // The write watchpoint on it hits at the first increment.
    expect("Hardware watchpoint 3: counter");
    expect("Old value = 0\nNew value = 1");
    expect("eip after stepi: 0x");
    // main returns 4 + 3.
    expect("exited with code 07");
    assert_eq!(status, Some(7), "{log}");
}

#[test]
fn ctrl_c_stops_a_running_guest_and_the_monitor_answers() {
    ctrl_c_session(1);
}

/// The same at `--cpus 2`: Ctrl-C stops both vCPUs (gdb hears of vCPU 0), the monitor
/// answers for vCPU 0, and four threads ran confined (vcpu1 too).
#[test]
fn ctrl_c_stops_every_vcpu() {
    ctrl_c_session(2);
}

/// Ctrl-C, the monitor commands and kill on a guest idling in `cat`, with `cpus` vCPUs.
fn ctrl_c_session(cpus: usize) {
    if engine().is_none() || !gdb_available() {
        return;
    }
    // cat blocks reading a stdin that stays open: the guest idles, running, until stopped.
    let n = cpus.to_string();
    let session = Session::start(
        &["--stats", "--cpus", &n, "cat"],
        Stdio::piped(),
        include_str!("../fixtures/gdb/interrupt.gdb"),
        &[],
        true,
    );
    let gdb = session
        .gdb()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once gdb is connected, give it time to continue; then Ctrl-C it as a terminal would.
    assert!(
        session.wait_for("debugger connected"),
        "gdb never connected"
    );
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill on our own child's pid; no memory involved.
    unsafe { libc::kill(gdb.id() as i32, libc::SIGINT) };
    let gdb = gdb.wait_with_output().unwrap();
    let (status, log) = session.finish();
    let out = text(&gdb);
    let expect = |what: &str| expect(&out, &log, what);
    // ("Program received…" with one thread, "Thread 1 received…" with several.)
    expect(" received signal SIGINT");
    expect("interrupted at 0x80");
    // monitor pgdump: the current page directory, kmap's mappings, no mismatch.
    // (The text row's end moves with the kernel's size.)
    assert!(
        out.lines()
            .any(|l| l.starts_with("0x80100000-0x801") && l.ends_with(" -> 0x00100000 r-k")),
        "no kernel text row in gdb's output:\n{out}\nvmm:\n{log}"
    );
    expect(", 0 translate mismatches");
    // monitor regs: the crash report's registers; an unknown command lists the known ones.
    expect("cr0=0x80010011");
    expect("monitor commands: pgdump");
    // kill ends the guest: vmm's one-line error and its status.
    assert!(log.contains("vmm: error: gdb killed the guest"), "{log}");
    assert_eq!(status, Some(125), "{log}");
    if cpus > 1 {
        expect("vCPU 0:");
    }
    // Under gdb these threads ran confined: main, vcpu0, the Ctrl-C watcher, vcpu1...
    let seccomp = log
        .lines()
        .find(|l| l.starts_with("vmm: seccomp: "))
        .unwrap_or_else(|| panic!("no seccomp line: {log}"));
    assert!(
        seccomp.starts_with(&format!("vmm: seccomp: filter on {} threads", 2 + cpus)),
        "{log}"
    );
    assert!(
        seccomp.contains("gdb ") && seccomp.contains("vcpu0 "),
        "{log}"
    );
}

/// `--cpus 2`: the vCPUs are gdb's threads 1 and 2; a breakpoint stops on the vCPU that hit
/// it (kinit2 on the boot CPU, mpmain on the other), each thread's registers are its vCPU's
/// (the other's EIP differs), memory reads through thread 2's page tables, a step of thread 2,
/// and the run goes on to the program's exit.
#[test]
fn two_vcpus_are_two_threads_each_with_its_breakpoints_and_registers() {
    if engine().is_none() || !gdb_available() {
        return;
    }
    let session = Session::start(
        &["--cpus", "2", "hello"],
        Stdio::null(),
        include_str!("../fixtures/gdb/smp.gdb"),
        &[],
        false,
    );
    let gdb = session.gdb().output().unwrap();
    let (status, log) = session.finish();
    let out = text(&gdb);
    let expect = |what: &str| expect(&out, &log, what);
    // Before the first instruction: two threads, named by their vCPU.
    expect(" (vCPU 0) 0x00100000 in ?? ()");
    expect(" (vCPU 1) ");
    // The boot CPU runs kinit2; only the other runs mpmain (gdb switches to it).
    expect("kinit2 on thread 1");
    expect("hit Breakpoint 2, xv6::smp::mpmain");
    expect("mpmain on thread 2");
    let mpmain = eip_after(&out, "eip            0x");
    let bsp = eip_after(&out, "thread 1 eip: 0x");
    assert_ne!(mpmain, bsp, "each thread has its vCPU's registers:\n{out}");
    assert!(
        out.contains("<xv6::smp::mpmain"),
        "code at thread 2's EIP:\n{out}\n{log}"
    );
    expect("thread 2 after stepi: thread 2 eip 0x");
    expect("exited normally");
    assert_eq!(status, Some(0), "{log}");
}

/// A crash on another vCPU than 0 is reported as that vCPU's: gdb stops vCPU 1 at mpmain,
/// points its EIP at 0 (unmapped in the kernel's page directory) and detaches; the guest runs
/// on without gdb, vCPU 1 faults, and the run ends with its crash report.
#[test]
fn a_crash_on_vcpu_1_is_reported_as_vcpu_1s() {
    if engine().is_none() || !gdb_available() {
        return;
    }
    let session = Session::start(
        &["--cpus", "2", "hello"],
        Stdio::null(),
        include_str!("../fixtures/gdb/apcrash.gdb"),
        &[],
        false,
    );
    let gdb = session.gdb().output().unwrap();
    let (status, log) = session.finish();
    let out = text(&gdb);
    expect(&out, &log, "thread 2 eip now 0\n");
    assert!(log.contains("vmm: crash: on vCPU 1\n"), "{log}");
    assert_eq!(status, Some(125), "{log}");
}

/// The hex number after `prefix` in gdb's output.
fn eip_after(out: &str, prefix: &str) -> u32 {
    let at = out
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"));
    let hex: String = out[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u32::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("{prefix:?}{hex}: {out}"))
}

/// A Unix socket path that exists is refused in one line (2), before any boot, on every
/// engine, and left alone; a device path through the lab likewise.
#[test]
fn an_existing_socket_path_or_a_device_through_the_lab_is_refused_in_one_line() {
    if engine().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gdb.sock");
    std::fs::write(&sock, b"mine").unwrap();
    let out = vmm(&["run", "--gdb", sock.to_str().unwrap(), "hello"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.starts_with("vmm: error")).count(),
        1,
        "{log}"
    );
    assert!(log.contains("exists"), "{log}");
    assert_eq!(std::fs::read(&sock).unwrap(), b"mine", "left alone");
    if engine() == Some("lab") {
        let out = vmm(&["run", "--gdb", "/dev/null", "hello"]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{log}");
        assert!(
            log.contains("a device works only with --engine kvm"),
            "{log}"
        );
    }
}
