//! `vmm run --gdb` with a real gdb (Debian's), on the engine `auto` picks (here the lab: the
//! outer `vmm` listens, the lab bridges the port to the inner `vmm`'s virtio-serial device).
//! The session is the README's: stopped before the first instruction, registers with the
//! selectors, kernel memory by its link address; `break` at kinit2 and a backtrace through
//! kmain; a kernel variable; a host-built C program's symbols, `break main` in it, its
//! memory below KERNBASE through its own page tables, a write watchpoint on its global seen
//! to hit; a single step; and the guest's exit status.

mod common;
use common::*;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The gdb commands, with PORT filled in.
const SCRIPT: &str = include_str!("fixtures/gdb/session.gdb");

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

#[test]
fn gdb_session_breaks_walks_reads_watches_steps_and_sees_the_exit() {
    if engine().is_none() || !gdb_available() {
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let port = free_port();
    let program = build_c_program("watched", true);
    let script = SCRIPT
        .replace("PORT", &port.to_string())
        .replace("PROGRAM", &program.display().to_string());
    let script_path = std::env::temp_dir().join(format!("vmm-gdb-{port}.gdb"));
    std::fs::write(&script_path, script).unwrap();

    let mut vmm = Command::new(VMM)
        .args(["run", "--quiet", "--gdb", &format!("127.0.0.1:{port}")])
        .arg(&program)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(vmm.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = String::new();
        for l in err.lines().map_while(Result::ok) {
            if l.contains("waiting for a debugger on") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let waiting = rx.recv_timeout(Duration::from_secs(120));
    let gdb = Command::new("gdb")
        .current_dir(root)
        .args(["-nx", "-batch", "-x"])
        .arg(&script_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let status = vmm.wait().unwrap();
    let log = lines.join().unwrap();
    let _ = std::fs::remove_file(&script_path);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&gdb.stdout),
        String::from_utf8_lossy(&gdb.stderr)
    );
    assert!(waiting.is_ok(), "vmm never waited for gdb: {log}");
    let expect = |what: &str| {
        assert!(
            out.contains(what),
            "no {what:?} in gdb's output:\n{out}\nvmm:\n{log}"
        )
    };
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
    expect("<counter>:	0x00000000");
    // The write watchpoint on it hits at the first increment.
    expect("Hardware watchpoint 3: counter");
    expect("Old value = 0\nNew value = 1");
    expect("eip after stepi: 0x");
    // main returns 4 + 3.
    expect("exited with code 07");
    assert_eq!(status.code(), Some(7), "{log}");
}
