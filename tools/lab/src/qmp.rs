//! A small QMP client (QEMU's JSON monitor protocol) on an inherited socket: enough to save a
//! running lab machine's state to a file ([`crate::warm`]). Every read is bounded.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one answer may take.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// A QMP connection, past its greeting and capabilities negotiation.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Takes our end of the socket QEMU serves QMP on, reads its greeting and enters command
    /// mode.
    pub fn connect(fd: OwnedFd) -> Result<Qmp, String> {
        let stream = UnixStream::from(fd);
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.next_message(Instant::now() + ANSWER_LIMIT)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// The next message QEMU sends (an answer or an event), by `deadline`.
    fn next_message(&mut self, deadline: Instant) -> Result<Value, String> {
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err("QEMU closed its monitor".into()),
                Ok(_) if line.ends_with('\n') => {
                    return serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
            if Instant::now() >= deadline {
                return Err("QEMU's monitor did not answer in time".into());
            }
        }
    }

    /// Runs `command` with `arguments` and returns its `return` value (events are skipped).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| e.to_string())?;
        let deadline = Instant::now() + ANSWER_LIMIT;
        loop {
            let m = self.next_message(deadline)?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(format!(
                    "{command}: {}",
                    e["desc"].as_str().unwrap_or("error")
                ));
            }
            log::debug!("lab: QMP event {m}");
        }
    }

    /// Saves the machine's whole state to `path` (a migration to a file; the machine stays
    /// stopped), waiting at most `limit`.
    pub fn save_to(&mut self, path: &std::path::Path, limit: Duration) -> Result<(), String> {
        let uri = format!("file:{}", path.display());
        self.execute("migrate", json!({ "uri": uri }))?;
        let deadline = Instant::now() + limit;
        loop {
            let st = self.execute("query-migrate", json!({}))?;
            match st["status"].as_str() {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    let why = st["error-desc"].as_str().unwrap_or("no reason given");
                    return Err(format!("saving the machine failed: {why}"));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("saving the machine took more than {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fake peer speaking QMP's framing (the real QEMU is exercised by the lab's tests).
    #[test]
    fn greeting_capabilities_events_and_errors() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut theirs = theirs;
            theirs
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            theirs.write_all(b"{\"return\": {}}\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("query-status"), "{line}");
            theirs
                .write_all(b"{\"event\": \"STOP\"}\n{\"return\": {\"status\": \"paused\"}}\n")
                .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            theirs
                .write_all(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n")
                .unwrap();
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        });
        let mut q = Qmp::connect(OwnedFd::from(ours)).unwrap();
        let st = q.execute("query-status", json!({})).unwrap();
        assert_eq!(st["status"], "paused");
        let e = q.execute("bogus", json!({})).unwrap_err();
        assert_eq!(e, "bogus: no");
        drop(q);
        peer.join().unwrap();
    }
}
