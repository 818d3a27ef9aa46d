//! The lab's `/init` (a busybox `sh` script generated per run) and the marker protocol it speaks.
//!
//! Channels of the lab VM (see [`crate::qemu`] for the host side):
//!
//! | lab device | host side | carries |
//! |---|---|---|
//! | ttyS0 (16550) | console log (`log::debug!`, tail quoted in errors) | kernel console, init's own messages |
//! | ttyS1 (16550) | marker parser | lines `XV6LAB <word> <text>`, see [`Marker`] |
//! | `/dev/virtio-ports/lab.stdout` | our stdout | the program's stdout, raw |
//! | `/dev/virtio-ports/lab.stderr` | our stderr | the program's stderr, raw |
//! | `/dev/virtio-ports/lab.stdin` | a socket we feed | the program's stdin as it arrives (when streamed) |
//! | `/dev/virtio-ports/NAME` | a TCP listen address | a request's own bridges (`LabRequest::tcp_ports`) |
//!
//! init links `/dev/virtio-ports/NAME` to the port devices (as udev would) and waits, bounded,
//! for every port the run needs. The program runs with stdin `lab.stdin` (or `/dev/null`), cwd
//! `/`, the kernel's initial environment plus the request's variables, and `LD_LIBRARY_PATH`
//! pointing at the copied libraries when it is dynamically linked.
//!
//! End of input: when the host shuts down its side of the stdin socket, QEMU reads the rest,
//! then end of file, and tells the guest the host side closed; the guest's `read` returns what
//! is left, then 0.
//!
//! The end of a run: writes to a virtio port complete before the data has left QEMU (it holds
//! them while our pipe is full), so init cannot know when output has arrived. Instead it
//! reports what the ports sent (`sent`, from the guest driver's `bytes_sent` in debugfs),
//! then the exit status (`$?` of the shell: 128+N if killed by signal N), and waits; the host
//! stops the machine once it has received that many bytes of each stream.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of every marker line on the control channel.
pub const MARKER_PREFIX: &str = "XV6LAB";

/// One line of the control channel, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// A boot stage was reached (`init`, `kvm`, `exec`).
    Stage(String),
    /// The program exited with this status.
    Exit(i32),
    /// The lab could not get ready (kvm_amd did not load, /dev/kvm missing, ...).
    Fail(String),
    /// One line of what the program left in [`RESULT_PATH`].
    Result(String),
    /// The bytes the collect port sent ([`COLLECT_PATH`]'s), as the guest counted them;
    /// reported before [`Marker::Sent`].
    Collected(u64),
    /// The bytes the program's stdout and stderr ports sent, as the guest counted them.
    Sent {
        /// Bytes of stdout.
        stdout: u64,
        /// Bytes of stderr.
        stderr: u64,
    },
}

/// The port carrying the program's stdin (when streamed).
pub const STDIN_PORT: &str = "lab.stdin";
/// The port carrying the program's stdout.
pub const STDOUT_PORT: &str = "lab.stdout";
/// The port carrying the program's stderr.
pub const STDERR_PORT: &str = "lab.stderr";
/// The port a warm machine's agent reads its run from (see [`agent_script`]).
pub const REQUEST_PORT: &str = "lab.request";
/// Where a warm run's request puts the run's own script (see [`run_script`]).
pub const RUN_SCRIPT_PATH: &str = "/lab/run";
/// The port that carries [`COLLECT_PATH`] back after the program (`LabRequest::collect`).
pub const COLLECT_PORT: &str = "lab.collect";
/// Where a program inside the lab may leave a file (any bytes, e.g. `vmm --dir …:rw`'s
/// export) for the host: init sends it on [`COLLECT_PORT`] after the program exits.
pub const COLLECT_PATH: &str = "/lab/collect";
/// Port names starting with this are the lab's own.
pub const RESERVED_PORT_PREFIX: &str = "lab.";

/// The agent's stage once the machine runs again after a restore.
pub const RESTORED_STAGE: &str = "restored";

/// Where a program inside the lab may leave a small text result (e.g. `vmm --stats-json`);
/// init sends it back line by line after the program exits (see `LabRequest::result_file`).
pub const RESULT_PATH: &str = "/lab/result";

/// Where a request's files (`LabRequest::files`) go inside the lab, by convention: under
/// this directory (the lab's own paths under `/lab` are reserved).
pub const FILES_DIR: &str = "/lab/files";

/// The path inside the lab of `rel` under [`FILES_DIR`].
pub fn files_path(rel: &str) -> String {
    format!("{FILES_DIR}/{rel}")
}

/// The path inside the lab of the virtio-serial port `name` (a request's own bridge).
pub fn port_path(name: &str) -> String {
    format!("/dev/virtio-ports/{name}")
}

/// Parses one control-channel line; anything else yields `None`.
pub fn parse_marker(line: &str) -> Option<Marker> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line
        .trim_start()
        .strip_prefix(MARKER_PREFIX)?
        .strip_prefix(' ')?;
    let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
    match word {
        "stage" => Some(Marker::Stage(text.trim().to_string())),
        "exit" => text.trim().parse::<i32>().ok().map(Marker::Exit),
        "fail" => Some(Marker::Fail(text.trim().to_string())),
        "result" => Some(Marker::Result(text.to_string())),
        "sent" => parse_sent(text),
        "collected" => text.trim().parse::<u64>().ok().map(Marker::Collected),
        _ => None,
    }
}

fn parse_sent(text: &str) -> Option<Marker> {
    let mut nums = text.split_whitespace().map(str::parse::<u64>);
    match (nums.next(), nums.next(), nums.next()) {
        (Some(Ok(stdout)), Some(Ok(stderr)), None) => Some(Marker::Sent { stdout, stderr }),
        _ => None,
    }
}

/// Quotes a byte string for POSIX `sh` so it stays one word, byte for byte.
///
/// Single quotes preserve everything except a single quote, which is written as `'\''`.
pub fn shell_quote(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Whether `name` can be an environment variable set by `export` in sh.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// What the generated `/init` runs.
pub struct InitSpec<'a> {
    /// Kernel modules to `insmod`, in order (paths inside the lab).
    pub modules: &'a [String],
    /// The program's path inside the lab.
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [&'a OsStr],
    /// Variables to export (names already validated).
    pub env: &'a [(String, String)],
    /// Whether the program's stdin is the [`STDIN_PORT`] (else `/dev/null`).
    pub stdin_port: bool,
    /// The request's own ports (TCP bridges), waited for like the lab's.
    pub extra_ports: &'a [String],
}

/// Generates `/init` of a cold boot: the lab's own setup ([`setup_script`]), then the run
/// ([`run_script`]). Arguments and values are quoted with [`shell_quote`]; `spec.env` names
/// must satisfy [`valid_env_name`] (checked by the caller). A NUL byte cannot be passed (the
/// kernel's argv cannot carry one either).
pub fn init_script(spec: &InitSpec) -> Vec<u8> {
    let mut s = setup_script(spec.modules);
    s.extend(run_script(spec));
    s
}

/// Mounts, the control channel, the modules, KVM's checks and the port helpers: everything
/// up to the run itself.
fn setup_script(modules: &[String]) -> Vec<u8> {
    let mut s: Vec<u8> = Vec::new();
    s.extend_from_slice(INIT_HEAD);
    s.extend_from_slice(MEMORY_TUNING);
    for m in modules {
        push_insmod(&mut s, m);
    }
    s.extend_from_slice(INIT_KVM_AND_PORTS);
    s
}

/// Generates `/init` of a warm machine: the lab's own setup, then the agent. It waits for
/// its ports, reports `stage ready` and waits for a line on the control channel; the host
/// saves the machine there (see [`crate::warm`]). Every restore continues from that read:
/// the host sends `go`, the agent reports `stage restored`, unpacks the newc archive the host
/// streams on [`REQUEST_PORT`] into `/` (the run's files and its [`RUN_SCRIPT_PATH`]) and
/// runs that script. The ports are opened only after the restore: QEMU hands a port data
/// only once the guest offers it buffers after the machine starts.
pub fn agent_script(modules: &[String]) -> Vec<u8> {
    let mut s = setup_script(modules);
    s.extend_from_slice(
        format!(
            "wait_ports {STDOUT_PORT} {STDERR_PORT} {STDIN_PORT} {REQUEST_PORT} {COLLECT_PORT}\n\
             mark stage ready\n\
             read -r go < $ctl\n\
             mark stage restored\n\
             cd / && cpio -i -d -m -u < /dev/virtio-ports/{REQUEST_PORT} 2>/dev/null\n\
             [ -r {RUN_SCRIPT_PATH} ] || fail 'the run request did not arrive'\n\
             . {RUN_SCRIPT_PATH}\n"
        )
        .as_bytes(),
    );
    s
}

/// The run itself, after the lab's setup: waits for the run's ports, starts the program
/// with its environment, arguments and streams, and reports its end (see "The end of a run").
/// Sourced by a warm machine's agent, the tail of a cold boot's `/init`.
pub fn run_script(spec: &InitSpec) -> Vec<u8> {
    let mut s: Vec<u8> = Vec::new();
    s.extend_from_slice(b"wait_ports");
    let mut ports = vec![STDOUT_PORT, STDERR_PORT];
    ports.extend(spec.stdin_port.then_some(STDIN_PORT));
    ports.extend(spec.extra_ports.iter().map(String::as_str));
    for p in ports {
        s.push(b' ');
        s.extend_from_slice(&shell_quote(p.as_bytes()));
    }
    s.push(b'\n');
    if spec.stdin_port {
        s.extend_from_slice(format!("wait_connected {STDIN_PORT}\n").as_bytes());
    }
    s.extend_from_slice(
        format!(
            "exec 5>/dev/virtio-ports/{STDOUT_PORT} 6>/dev/virtio-ports/{STDERR_PORT}\n\
             cd /\nmark stage exec\n(\n"
        )
        .as_bytes(),
    );
    push_program(&mut s, spec);
    s.extend_from_slice(b"\n) <");
    let stdin = if spec.stdin_port {
        format!("/dev/virtio-ports/{STDIN_PORT}")
    } else {
        "/dev/null".to_string()
    };
    s.extend_from_slice(&shell_quote(stdin.as_bytes()));
    s.extend_from_slice(b" >&5 2>&6 5>&- 6>&-\n");
    s.extend_from_slice(INIT_TAIL);
    s
}

/// `insmod M || fail 'N did not load'`.
pub(crate) fn push_insmod(s: &mut Vec<u8>, m: &str) {
    let name = m
        .rsplit('/')
        .next()
        .unwrap_or(m)
        .trim_end_matches(".ko")
        .replace('-', "_");
    s.extend_from_slice(b"insmod ");
    s.extend_from_slice(&shell_quote(m.as_bytes()));
    s.extend_from_slice(b" || fail ");
    s.extend_from_slice(&shell_quote(format!("{name} did not load").as_bytes()));
    s.push(b'\n');
}

/// The program's environment and `exec` line, quoted.
pub(crate) fn push_program(s: &mut Vec<u8>, spec: &InitSpec) {
    for (k, v) in spec.env {
        s.extend_from_slice(b"  export ");
        s.extend_from_slice(k.as_bytes());
        s.push(b'=');
        s.extend_from_slice(&shell_quote(v.as_bytes()));
        s.push(b'\n');
    }
    s.extend_from_slice(b"  exec ");
    s.extend_from_slice(&shell_quote(spec.program.as_bytes()));
    for a in spec.args {
        s.extend_from_slice(b" \\\n    ");
        s.extend_from_slice(&shell_quote(a.as_bytes()));
    }
}

/// Mounts, the control channel and its helpers.
const INIT_HEAD: &[u8] = br#"#!/bin/busybox sh
# Generated by the lab crate (tools/lab/src/script.rs): one run of a program on a real /dev/kvm.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
ctl=/dev/ttyS1
[ -c $ctl ] || mknod $ctl c 4 65
stty -F $ctl raw -echo 2>/dev/null
mark() { echo "XV6LAB $*" > $ctl; }
off() { poweroff -f; reboot -f; sleep 5; echo o > /proc/sysrq-trigger; }
fail() {
  echo "lab: $*"
  dmesg | tail -n 15
  mark fail "$*"
  off
}
mark stage init
"#;

/// How the lab's Linux backs the inner VMM's guest RAM (both labs, before KVM loads).
///
/// Transparent huge pages are on (`always`), so KVM maps guest RAM with 2 MiB nested page
/// table entries, one nested page fault per 2 MiB. But a guest's first access to a 2 MiB
/// range is often a read, which THP answers with its shared huge zero page, and the first
/// write then splits it: the range ends up in 512 small pages, mapped by KVM one nested fault
/// at a time. Under TCG each such fault costs tens of microseconds, and `vmm run usertests`
/// took 71185 of them (KVM's `pf_taken`; 27648 4 KiB mappings), 3.4 of its 7.5 s in the guest.
/// Without the huge zero page a first read allocates the real huge page: 114 faults, all
/// 2 MiB mappings, 4.1 s. What the guest sees does not change (its RAM still reads as zero, and
/// `vmm run --stats` counted 57856 host-backed pages either way).
pub(crate) const MEMORY_TUNING: &[u8] =
    br#"echo 0 > /sys/kernel/mm/transparent_hugepage/use_zero_page 2>/dev/null
"#;

/// KVM's checks, and the virtio-serial ports by name.
const INIT_KVM_AND_PORTS: &[u8] =
    br#"[ -c /dev/kvm ] || mknod /dev/kvm c 10 232 || fail "/dev/kvm missing"
[ -e /sys/module/kvm_amd ] || fail "kvm_amd did not load"
( : < /dev/kvm ) 2>/dev/null || fail "/dev/kvm cannot be opened"
mark stage kvm
# /dev/virtio-ports/NAME -> the port's device, as udev links them.
link_ports() {
  mkdir -p /dev/virtio-ports
  for d in /sys/class/virtio-ports/vport*; do
    [ -r "$d/name" ] || continue
    read -r name < "$d/name"
    [ -n "$name" ] && ln -sfn "../${d##*/}" "/dev/virtio-ports/$name"
  done
}
# The port's debugfs file (host_connected, bytes_sent, ...), in $info (no subshell: each
# fork costs under TCG).
port_info() {
  for d in /sys/class/virtio-ports/vport*; do
    read -r pn < "$d/name"
    [ "$pn" = "$1" ] && info="/sys/kernel/debug/virtio-ports/${d##*/}" && return 0
  done
  info=/dev/null
}
# Waits (at most 10 s) until every named port is there.
wait_ports() {
  n=0
  while :; do
    missing=
    for p in "$@"; do [ -e "/dev/virtio-ports/$p" ] || missing="$missing $p"; done
    [ -z "$missing" ] && return 0
    link_ports
    n=$((n + 1))
    [ $n -ge 200 ] && fail "virtio-serial ports did not appear:$missing"
    sleep 0.05
  done
}
# Waits (at most 10 s) until the host side of a port is connected: a read before that
# would see end of input.
wait_connected() {
  n=0
  port_info "$1"
  until grep -q '^host_connected: 1' "$info"; do
    n=$((n + 1))
    [ $n -ge 200 ] && fail "the host side of port $1 never connected"
    sleep 0.05
  done
}
"#;

/// After the program: what the ports sent, results, the exit status; then the host stops us.
const INIT_TAIL: &[u8] = br#"status=$?
exec 5>&- 6>&-
# What a port sent, in $n (read by the shell itself: no fork).
sent() {
  port_info "$1"
  n=
  while read -r k v; do [ "$k" = bytes_sent: ] && n=$v; done < "$info"
}
sent lab.stdout; out=$n
sent lab.stderr; err=$n
# What the program left for the host (LabRequest::collect), on its own port.
col=
if [ -s /lab/collect ]; then
  [ -e /dev/virtio-ports/lab.collect ] || link_ports
  cat /lab/collect > /dev/virtio-ports/lab.collect && sent lab.collect && col=$n
fi
if [ -s /lab/result ]; then
  while IFS= read -r l; do mark result "$l"; done < /lab/result
fi
if [ -n "$out" ] && [ -n "$err" ]; then
  [ -n "$col" ] && mark collected "$col"
  mark sent "$out" "$err"
  mark exit $status
  # The host stops the machine once the output has arrived (QEMU may still hold some).
  sleep 86400
else
  mark exit $status
fi
off
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::process::Command;

    #[test]
    fn markers() {
        assert_eq!(parse_marker("XV6LAB exit 7\r\n"), Some(Marker::Exit(7)));
        assert_eq!(parse_marker("XV6LAB exit 255"), Some(Marker::Exit(255)));
        assert_eq!(
            parse_marker("XV6LAB stage kvm\r"),
            Some(Marker::Stage("kvm".into()))
        );
        assert_eq!(
            parse_marker("XV6LAB fail kvm_amd did not load"),
            Some(Marker::Fail("kvm_amd did not load".into()))
        );
        assert_eq!(parse_marker("XV6LAB exit x"), None);
        assert_eq!(parse_marker("XV6LABexit 1"), None);
        assert_eq!(parse_marker("noise XV6LAB exit 1"), None);
        assert_eq!(parse_marker(""), None);
        assert_eq!(
            parse_marker("XV6LAB sent 1048576 0\r"),
            Some(Marker::Sent {
                stdout: 1 << 20,
                stderr: 0
            })
        );
        assert_eq!(parse_marker("XV6LAB sent 1"), None);
        assert_eq!(
            parse_marker("XV6LAB collected 4096000\r"),
            Some(Marker::Collected(4_096_000))
        );
        assert_eq!(parse_marker("XV6LAB collected -1"), None);
        assert_eq!(parse_marker("XV6LAB sent 1 2 3"), None);
        assert_eq!(parse_marker("XV6LAB sent -1 2"), None);
        assert_eq!(
            parse_marker("XV6LAB result {\"a\": 1}\r\n"),
            Some(Marker::Result("{\"a\": 1}".into()))
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(b"abc"), b"'abc'");
        assert_eq!(shell_quote(b""), b"''");
        assert_eq!(shell_quote(b"it's"), b"'it'\\''s'");
        assert!(valid_env_name("RUST_LOG"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1x"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name(""));
    }

    /// The quoting round-trips through a real sh: every byte but NUL survives.
    #[test]
    fn quoting_round_trips_through_sh() {
        let nasty: Vec<Vec<u8>> = vec![
            b"plain".to_vec(),
            b"".to_vec(),
            b"it's \"q\" $HOME `id` \\ * ?".to_vec(),
            b"line1\nline2\r\n".to_vec(),
            (1u8..=255).collect(),
        ];
        let mut script = b"for a in".to_vec();
        for a in &nasty {
            script.push(b' ');
            script.extend(shell_quote(a));
        }
        script.extend_from_slice(b"; do printf '%s\\0' \"$a\"; done");
        let out = Command::new("sh")
            .arg("-c")
            .arg(OsString::from_vec(script))
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        assert_eq!(got.len(), nasty.len() + 1);
        for (g, want) in got.iter().zip(&nasty) {
            assert_eq!(g, want);
        }
    }

    #[test]
    fn init_mentions_everything() {
        let args = [OsStr::new("--flag"), OsStr::new("a b'c")];
        let modules = vec!["/lib/modules/lab/kvm.ko".to_string()];
        let env = vec![("RUST_LOG".to_string(), "debug".to_string())];
        let script = init_script(&InitSpec {
            modules: &modules,
            program: "/lab/bin/vmm",
            args: &args,
            env: &env,
            stdin_port: true,
            extra_ports: &["gdb".to_string()],
        });
        let text = String::from_utf8(script).unwrap();
        assert!(text.starts_with("#!/bin/busybox sh\n"));
        assert!(text.contains("insmod '/lib/modules/lab/kvm.ko' || fail 'kvm did not load'\n"));
        // The huge zero page is off before KVM loads (MEMORY_TUNING).
        let tuned = text.find("use_zero_page").expect("no memory tuning");
        assert!(tuned < text.find("insmod").unwrap());
        assert!(text.contains("  export RUST_LOG='debug'\n"));
        assert!(text.contains("exec '/lab/bin/vmm' \\\n    '--flag' \\\n    'a b'\\''c'\n"));
        assert!(text.contains("mark exit $status\n"));
        assert!(text.contains("wait_ports 'lab.stdout' 'lab.stderr' 'lab.stdin' 'gdb'\n"));
        assert!(text.contains("wait_connected lab.stdin\n"));
        assert!(text.contains("\n) <'/dev/virtio-ports/lab.stdin' >&5 2>&6 5>&- 6>&-\n"));
        let sh = Command::new("sh").arg("-n").arg("-c").arg(&text).status();
        assert!(sh.unwrap().success(), "generated init must parse");
    }

    #[test]
    fn the_agent_waits_then_runs_what_arrives() {
        let modules = vec!["/lib/modules/lab/kvm.ko".to_string()];
        let text = String::from_utf8(agent_script(&modules)).unwrap();
        assert!(text.contains("insmod '/lib/modules/lab/kvm.ko'"));
        let order = [
            "wait_ports lab.stdout lab.stderr lab.stdin lab.request lab.collect\n",
            "mark stage ready\n",
            "read -r go < $ctl\n",
            "mark stage restored\n",
            "cpio -i -d -m -u < /dev/virtio-ports/lab.request",
            ". /lab/run\n",
        ];
        let at: Vec<usize> = order.iter().map(|w| text.find(w).expect(w)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        let sh = Command::new("sh").arg("-n").arg("-c").arg(&text).status();
        assert!(sh.unwrap().success(), "the agent must parse");
        // A run script alone parses too (it is sourced by the agent).
        let args = [OsStr::new("x")];
        let run = run_script(&InitSpec {
            modules: &[],
            program: "/lab/bin/vmm",
            args: &args,
            env: &[],
            stdin_port: false,
            extra_ports: &[],
        });
        let run = String::from_utf8(run).unwrap();
        assert!(run.starts_with("wait_ports 'lab.stdout' 'lab.stderr'\n"));
        assert!(run.contains(") <'/dev/null' >&5"));
        assert!(!run.contains("insmod"));
        let sh = Command::new("sh").arg("-n").arg("-c").arg(&run).status();
        assert!(sh.unwrap().success(), "the run script must parse");
    }
}
