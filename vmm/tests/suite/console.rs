//! The paravirtual console end to end: large stdin and stdout byte-exact, input that arrives
//! late, end of input, a broken stdout pipe, and the VM exits a KiB costs (`--stats`). Each
//! test boots a real VM on the engine `auto` picks.

use crate::common;

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::stderr;

/// Pseudo-random bytes (every byte value, no pattern a short cycle could fake).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_F491;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(common::VMM)
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run vmm")
}

/// Runs `vmm run ARGS` with `input` written to its stdin by `feed` (then closed).
fn run_fed(args: &[&str], feed: impl FnOnce(&mut dyn Write) + Send + 'static) -> Output {
    let mut child = spawn(args);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || feed(&mut stdin));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The numbers after `key` in a `vmm: console:` stats line, e.g. `out 13 bytes in 1 exits`.
fn console_stat(err: &str, key: &str) -> (u64, u64) {
    let line = err
        .lines()
        .find(|l| l.starts_with("vmm: console: "))
        .unwrap_or_else(|| panic!("no console stats in: {err}"));
    let rest = line.split(key).nth(1).unwrap_or_else(|| panic!("{line}"));
    let nums: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 2, "{key:?} in {line:?}");
    (nums[0], nums[1])
}

/// Total VM exits from the `vmm: stats:` line.
fn total_exits(err: &str) -> u64 {
    let line = err
        .lines()
        .find(|l| l.starts_with("vmm: stats: "))
        .unwrap_or_else(|| panic!("no stats in: {err}"));
    line.split(" VM exits")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn a_mebibyte_through_cat_is_byte_exact_at_under_two_exits_per_kib() {
    if common::engine().is_none() {
        return;
    }
    let input = noise(1 << 20);
    let data = input.clone();
    let out = run_fed(&["--quiet", "--stats", "cat"], move |w| {
        w.write_all(&data).unwrap()
    });
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        out.stdout == input,
        "cat returned {} of {} bytes (or other bytes)",
        out.stdout.len(),
        input.len()
    );
    assert_eq!(console_stat(&err, "out ").0, 1 << 20, "{err}");
    assert_eq!(console_stat(&err, ", in ").0, 1 << 20, "{err}");
    // Every VM exit of the run, the boot's included, over the KiB moved.
    let per_kib = total_exits(&err) as f64 / 1024.0;
    assert!(per_kib <= 2.0, "{per_kib:.2} VM exits per KiB: {err}");
}

#[test]
fn input_that_arrives_late_is_read_when_it_comes() {
    if common::engine().is_none() {
        return;
    }
    // As `(sleep 3; echo hi; sleep 1; echo there) | vmm run cat`: the guest boots and waits.
    let out = run_fed(&["--quiet", "cat"], |w| {
        std::thread::sleep(Duration::from_secs(3));
        w.write_all(b"hi\n").unwrap();
        w.flush().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        w.write_all(b"there\n").unwrap();
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nthere\n");
}

#[test]
fn end_of_input_ends_cat_at_once() {
    if common::engine().is_none() {
        return;
    }
    let out = run_fed(&["--quiet", "cat"], |_| {});
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // No stdin at all (closed /dev/null) is an end of input too.
    let out = common::vmm(&["run", "--quiet", "cat"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_broken_stdout_pipe_fails_the_run_with_one_line() {
    if common::engine().is_none() {
        return;
    }
    let mut child = spawn(&["--quiet", "cat"]);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = noise(64 << 10);
        // Until vmm stops reading (it exits): a bounded amount.
        for _ in 0..64 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // as `| head -c 10`
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert_eq!(status.code(), Some(125), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("cannot write the program's stdout"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with("vmm: error: ") && line.contains("roken pipe"),
        "{line}"
    );
}

/// 5 MB of every byte value in through stdin and out through stdout, ending without a
/// newline: byte-exact (in the lab, both directions are its virtio-serial streams).
#[test]
fn five_megabytes_through_cat_are_byte_exact() {
    if common::engine().is_none() {
        return;
    }
    let input = noise(5_000_000);
    let data = input.clone();
    let out = run_fed(&["--quiet", "cat"], move |w| w.write_all(&data).unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout == input,
        "cat returned {} of {} bytes (or other bytes)",
        out.stdout.len(),
        input.len()
    );
}

/// As `(sleep N; echo x) | vmm run cat`: the guest boots — its kernel says `boot ok` on
/// stderr — before the producer has written anything, then reads the input when it comes.
#[test]
fn the_guest_boots_before_a_slow_producer_writes() {
    use std::io::BufRead;
    if common::engine().is_none() {
        return;
    }
    let mut child = spawn(&["cat"]);
    let mut stdin = child.stdin.take().unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = String::new();
        for l in err.lines().map_while(Result::ok) {
            if l.contains("xv6: boot ok") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    // Nothing written yet, stdin still open: the guest must boot regardless.
    let booted = rx.recv_timeout(Duration::from_secs(120));
    stdin.write_all(b"x\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = lines.join().unwrap();
    assert!(booted.is_ok(), "no `boot ok` before any input: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, b"x\n");
}

/// A stdin that stays open and silent does not hold up a program that never reads it.
#[test]
fn an_endless_stdin_does_not_hold_up_a_program_that_does_not_read() {
    if common::engine().is_none() {
        return;
    }
    let mut child = spawn(&["--quiet", "hello"]);
    let stdin = child.stdin.take().unwrap(); // held open, never written, until the end
    let end = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("vmm run hello waited for a stdin it never reads");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello, world\n");
}

/// `vmm bench console`: the four transfers, each with a rate, the guest's within the
/// console's exit bar, in the table and the JSON.
#[test]
fn bench_console_reports_rates_and_exits_per_kib() {
    if common::engine().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("console.json");
    let out = common::vmm(&[
        "bench",
        "console",
        "--bytes",
        "256K",
        "--runs",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("guest cat < pipe > pipe (stdin+stdout)"),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let figures = doc["console"].as_array().unwrap();
    assert_eq!(figures.len(), 4, "{doc}");
    for f in figures {
        let name = f["name"].as_str().unwrap();
        assert!(f["mb_per_s"].as_f64().unwrap() > 0.0, "{name}: {f}");
        assert_eq!(f["bytes"], 256 * 1024);
        if name.starts_with("guest") {
            let all = f["all_exits_per_kib"].as_f64().unwrap();
            assert!(all > 0.0 && all <= 2.0, "{name}: {all} exits per KiB");
        } else {
            assert!(f["all_exits_per_kib"].is_null(), "{name}: {f}");
        }
    }
    assert_eq!(doc["report"]["ratios"].as_array().unwrap().len(), 2);
}
