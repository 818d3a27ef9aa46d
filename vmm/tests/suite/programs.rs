//! `vmm run PROGRAM`: user programs in their own address spaces, their output, their exit
//! statuses, and what `vmm` says when the program cannot run.

use crate::common;

use common::{boot, stderr, stdout, vmm};

#[test]
fn echo_prints_its_arguments_and_exit_status_is_vmms() {
    let Some(out) = boot(&["--quiet", "echo", "a", "b"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "a b\n",
        "stdout is exactly the program's output"
    );
}

#[test]
fn default_program_tours_the_address_space() {
    let Some(out) = boot(&["--quiet", "--pgdump"]) else {
        return;
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    assert!(text.contains("guard page"), "{text}");
    // The tour asks for a dump of its own page tables: user rows below KERNBASE, with the
    // guard page present but not user-accessible, and the kernel half as in kmap.
    // (The first dump is the kernel's own, right after kvmalloc.)
    let dumps: Vec<&str> = err.split("pgdump cr3=").skip(1).collect();
    let has_user_rows = |d: &&&str| d.lines().any(|l| l.starts_with("0x0") && l.contains("->"));
    let user = *dumps
        .iter()
        .find(has_user_rows)
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        user.lines()
            .any(|l| l.starts_with("0x00000000-") && l.ends_with('u')),
        "{user}"
    );
    assert!(
        user.lines()
            .any(|l| l.starts_with("0x0") && l.ends_with("rwk")),
        "guard page: {user}"
    );
    assert!(
        user.contains("0xfe000000-0xffffffff -> 0xfe000000 rwk"),
        "{user}"
    );
    assert!(user.contains(" 0 translate mismatches"), "{user}");
}

#[test]
fn usertests_pass() {
    assert_usertests_pass(&[]);
}

/// `vmm run [FLAGS] usertests` prints ALL TESTS PASSED (with the free-page count equal
/// before and after, which usertests itself checks) and exits 0; returns its stdout and
/// stderr.
pub fn assert_usertests_pass(flags: &[&str]) -> (String, String) {
    let mut args = vec!["--quiet", "--timeout", "600"];
    args.extend_from_slice(flags);
    args.push("usertests");
    let Some(out) = boot(&args) else {
        return Default::default();
    };
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(
        text.contains("ALL TESTS PASSED"),
        "{flags:?}\nstdout:\n{text}\nstderr:\n{err}"
    );
    assert_eq!(out.status.code(), Some(0), "{flags:?}\n{text}\n{err}");
    (text, err)
}

#[test]
fn unknown_program_is_127() {
    for spec in ["no-such-program", "/no/such/program"] {
        let out = vmm(&["run", spec]);
        assert_eq!(out.status.code(), Some(127), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("vmm: error: "), "{}", stderr(&out));
    }
}

#[test]
fn non_elf_or_wrong_elf_is_126() {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let me = std::env::current_exe().unwrap();
    for spec in [readme, me.to_str().unwrap()] {
        let out = vmm(&["run", spec]);
        assert_eq!(out.status.code(), Some(126), "{spec}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}

/// How to link a C fixture.
#[derive(Clone, Copy)]
enum Layout {
    /// xv6's own `ld -N -Ttext 0`: one RWX segment at VA 0, file offset not page-aligned.
    XV6,
    /// ld's default: several PT_LOADs from 0x08048000, a bss-only one last.
    Default,
}

/// Builds tests/fixtures/c/NAME.c with the host's gcc and binutils against the xv6 x86 ABI
/// (no libc, entered at main) and returns the executable's path.
fn build_c(name: &str, layout: Layout) -> std::path::PathBuf {
    use std::process::Command;
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c");
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-fixtures");
    std::fs::create_dir_all(&out).unwrap();
    let obj = out.join(format!("{name}.o"));
    let run = |cmd: &mut Command| {
        let status = cmd
            .status()
            .expect("gcc and binutils are needed for the C fixtures");
        assert!(status.success(), "{cmd:?}");
    };
    run(Command::new("gcc")
        .args([
            "-m32",
            "-ffreestanding",
            "-nostdlib",
            "-fno-pic",
            "-fno-stack-protector",
        ])
        .args(["-static", "-O2", "-c"])
        .arg(fixtures.join(format!("{name}.c")))
        .arg("-o")
        .arg(&obj));
    let (exe, flags): (_, &[&str]) = match layout {
        Layout::XV6 => (
            out.join(format!("{name}-n")),
            &["-N", "-Ttext", "0", "--no-warn-rwx-segments"],
        ),
        Layout::Default => (out.join(name), &[]),
    };
    run(Command::new("ld")
        .args(["-m", "elf_i386", "-e", "main"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&obj));
    exe
}

#[test]
fn host_built_c_programs_run_unmodified_in_both_layouts() {
    for exe in [
        build_c("argexit", Layout::XV6),
        build_c("argexit", Layout::Default),
    ] {
        let path = exe.to_str().unwrap();
        let Some(out) = boot(&["--quiet", path, "7"]) else {
            return;
        };
        let (text, err) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(27), "{path}: {text}\n{err}");
        assert!(
            text.starts_with("hello from C (xv6 x86 ABI): pid 1, argc 2, argv: argexit"),
            "{path}: {text}"
        );
    }
}

#[test]
fn a_faulting_first_process_is_killed_with_139_and_a_reason() {
    let exe = build_c("fault", Layout::Default);
    let Some(out) = boot(&["--quiet", exe.to_str().unwrap()]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(139), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("page fault"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with("pid 1 (fault): page fault at 0x80001000 (kernel address)"),
        "{line}"
    );
    // The store is in main, the program's own symbol (the VMM names EIP from its ELF).
    assert!(
        line.contains(" (main) ") || line.contains(" (main+0x"),
        "{line}"
    );
    assert!(line.ends_with("killed"), "{line}");
}

#[test]
fn stdin_reaches_the_program_and_ends() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if common::engine().is_none() {
        return;
    }
    let input: Vec<u8> = (0..20_000u32)
        .map(|i| b"xv6 page tables\n"[(i % 16) as usize])
        .collect();
    let mut child = Command::new(common::VMM)
        .args(["run", "--quiet", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout == input,
        "cat returned {} of {} bytes",
        out.stdout.len(),
        input.len()
    );
}

// The three other paging modes run at two vCPUs (smp.rs has the default mode there, and
// --cow --lazy at four); one vCPU runs the default mode above, and the Intel suite runs
// --cow --lazy on one.
#[test]
fn usertests_pass_with_lazy_sbrk_on_two_cpus() {
    assert_usertests_pass(&["--lazy", "--cpus", "2"]);
}

#[test]
fn usertests_pass_with_cow_fork_on_two_cpus() {
    let (text, err) = assert_usertests_pass(&["--cow", "--cpus", "2"]);
    if common::engine().is_none() {
        return;
    }
    // cowbig's fork of a 64 MiB heap costs page tables only; cowoom's child dies for want
    // of a page to copy into, with its reason.
    let took: u32 = text
        .split("cowbig: fork of a 64 MiB heap took ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(took < 64, "{text}");
    assert!(err.contains("(out of memory)"), "{err}");
}

#[test]
fn cow_read_stores_into_the_readers_copy_only() {
    if common::engine().is_none() {
        return;
    }
    let args = ["run", "--quiet", "--cow", "usertests", "cowread"];
    let out = common::vmm_with_stdin(&args, b"input for a shared page\n");
    let text = stdout(&out);
    assert!(
        text.contains("cowread: read 24 bytes into a shared page")
            && text.contains("ALL TESTS PASSED"),
        "{text}\n{}",
        stderr(&out)
    );
}

#[test]
fn usertests_pass_with_lazy_sbrk_and_cow_fork_on_two_cpus() {
    assert_usertests_pass(&["--lazy", "--cow", "--cpus", "2"]);
}

/// The number before `guest pages host-backed` in a `vmm: stats:` line.
fn backed_pages(line: &str) -> u64 {
    line.split(", ")
        .find_map(|part| part.strip_suffix(" guest pages host-backed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn boot_backs_o1_of_guest_ram() {
    // 2016 MiB of RAM, of which hello needs a few hundred pages: kinit2 must not touch the
    // free pages, nor the VMM the RAM (the bar: at most 2048 host-backed pages).
    for (flags, check, warm) in [
        (
            &["--mem", "2016M"][..],
            (|n| n <= 2048) as fn(u64) -> bool,
            "0",
        ),
        (
            &["--mem", "64M", "--prefault"][..],
            |n| n == (64 << 20) / 4096,
            "1",
        ),
    ] {
        if common::engine().is_none() {
            return;
        }
        // The 2016M run boots the lab cold: a warm start would first build a snapshot of a
        // lab big enough for 2 GiB of guest RAM, for this one run (the boot is measured the
        // same). The 64M run fits the usual snapshot.
        let out = std::process::Command::new(common::VMM)
            .args(["run", "--quiet", "--stats"])
            .args(flags)
            .arg("hello")
            .env("XV6_LAB_WARM", warm)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cannot run vmm");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("vmm: stats: "))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(check(backed_pages(line)), "{flags:?}: {line}");
    }
}

#[test]
fn stats_count_exits_and_prefault_boots() {
    let Some(out) = boot(&["--quiet", "--stats", "--prefault", "hello"]) else {
        return;
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out), "hello, world\n");
    let line = err
        .lines()
        .find(|l| l.starts_with("vmm: stats: "))
        .unwrap_or_else(|| panic!("{err}"));
    // At least the exit port and hello's one console write.
    let io_out: u64 = line
        .split("io-out ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(io_out >= 2, "{line}");
    // hello's 13 bytes leave in one console request (one VM exit), not one per byte.
    assert!(
        err.contains("vmm: console: out 13 bytes in 1 exits,"),
        "{err}"
    );
    assert!(
        line.contains(" s in the guest (") && line.contains(" kHz"),
        "{line}"
    );
    // The kernel's boot timestamps were read: a time, not "unknown".
    assert!(
        line.contains(" ms to the first user instruction), "),
        "{line}"
    );
}

/// read() into a bad buffer returns −1 and leaves the input for the next read.
#[test]
fn a_failed_read_loses_no_input() {
    use std::io::Write;
    if common::engine().is_none() {
        return;
    }
    let exe = build_c("readbad", Layout::XV6);
    let mut child = std::process::Command::new(common::VMM)
        .args(["run", "--quiet"])
        .arg(&exe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "1: the bad read did not fail, 2: the input was lost: {}",
        stderr(&out)
    );
}
