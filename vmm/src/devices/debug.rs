//! The boot protocol's debug ports: exit with a status, report a kernel panic, ask for a
//! page-table dump (and read its mismatch count back), export bulk data, mark a measured
//! window. Ending the run, the dump and the mark are the run loop's to do: the device only
//! says so ([`Request`]).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::ports;
use crate::debug::panic_report::PanicReport;
use crate::debug::symbols::UserSymbols;
use crate::devices::bus::{fill_le, le_value, PortDevice};
use crate::outcome::{Outcome, Request};

/// The most a run may export (a bound on what a guest can make the VMM hold).
pub const EXPORT_MAX: usize = 64 << 20;
/// The most the write-back stream may carry (`--dir …:rw`; writeback.rs bounds it again).
pub const DIROUT_MAX: usize = 64 << 20;

/// The debug ports' state.
#[derive(Debug)]
pub struct DebugPorts {
    /// The last page-table walk's mismatches (what an `in` of PGDUMP reads; u32::MAX: none).
    pub last_mismatches: u32,
    /// Bytes the guest exported (ports EXPORT/EXPORT_LEN).
    pub exported: Vec<u8>,
    export_len: u32,
    /// An export was refused (over EXPORT_MAX): warned once.
    refused: bool,
    /// The run's user programs' symbols (port USER_SYMBOL).
    pub user_symbols: UserSymbols,
    /// The write-back stream (ports DIROUT/DIROUT_LEN), and whether the guest sent more
    /// than DIROUT_MAX (then it holds nothing: the write-back is refused).
    pub dirout: Vec<u8>,
    pub dirout_overflow: bool,
    dirout_len: u32,
}

impl Default for DebugPorts {
    fn default() -> Self {
        DebugPorts {
            last_mismatches: u32::MAX,
            exported: Vec::new(),
            export_len: 0,
            refused: false,
            user_symbols: UserSymbols::default(),
            dirout: Vec::new(),
            dirout_overflow: false,
            dirout_len: 0,
        }
    }
}

impl DebugPorts {
    /// The debug ports, naming user-program symbols from `user_symbols`.
    pub fn new(user_symbols: UserSymbols) -> Self {
        DebugPorts {
            user_symbols,
            ..DebugPorts::default()
        }
    }

    /// Appends `export_len` bytes at guest-physical `pa` to the export stream.
    fn export(&mut self, pa: u32, mem: &GuestMemoryMmap) {
        let len = self.export_len as usize;
        if self.exported.len() + len > EXPORT_MAX {
            // The kernel asks for the room first; only a guest that does not gets here.
            if !self.refused {
                log::warn!("export refused: over the {EXPORT_MAX}-byte bound (said once)");
                self.refused = true;
            }
            return;
        }
        let mut buf = vec![0u8; len];
        match mem.read_slice(&mut buf, GuestAddress(u64::from(pa))) {
            Ok(()) => self.exported.extend_from_slice(&buf),
            Err(e) => log::warn!("export of {len} bytes at {pa:#x} failed: {e}"),
        }
    }
}

impl DebugPorts {
    /// Appends `dirout_len` bytes at guest-physical `pa` to the write-back stream.
    fn dirout(&mut self, pa: u32, mem: &GuestMemoryMmap) {
        let len = self.dirout_len as usize;
        if self.dirout_overflow || self.dirout.len() + len > DIROUT_MAX {
            self.dirout_overflow = true;
            self.dirout = Vec::new();
            return;
        }
        let at = self.dirout.len();
        self.dirout.resize(at + len, 0);
        if let Err(e) = mem.read_slice(&mut self.dirout[at..], GuestAddress(u64::from(pa))) {
            // A stream with a hole would be misread: refuse it as a whole.
            log::warn!("write-back stream: {len} bytes at {pa:#x} unreadable: {e}");
            self.dirout_overflow = true;
            self.dirout = Vec::new();
        }
    }
}

/// Answers a user-symbol request at guest-physical `pa` (`xv6_abi::usersym`): reads the EIP
/// and process name, writes the symbol text (empty if none). A request outside RAM is
/// ignored: the kernel then prints the line without a symbol.
fn answer_user_symbol(symbols: &mut UserSymbols, pa: u32, mem: &GuestMemoryMmap) {
    use xv6_abi::usersym::{NAME_LEN, OFF_EIP, OFF_NAME, OFF_TEXT, TEXT_LEN};
    let base = u64::from(pa);
    let mut name = [0u8; NAME_LEN];
    let (Ok(eip), Ok(())) = (
        mem.read_obj::<u32>(GuestAddress(base + OFF_EIP as u64)),
        mem.read_slice(&mut name, GuestAddress(base + OFF_NAME as u64)),
    ) else {
        return;
    };
    let len = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    let text = std::str::from_utf8(&name[..len])
        .ok()
        .and_then(|n| symbols.describe(n, eip))
        .unwrap_or_default();
    let mut out = [0u8; TEXT_LEN];
    // Cut to the room (on a character boundary), the NUL after it.
    let mut n = text.len().min(TEXT_LEN - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    let _ = mem.write_slice(&out, GuestAddress(base + OFF_TEXT as u64));
}

impl PortDevice for DebugPorts {
    fn owns(&self, port: u16) -> bool {
        matches!(
            port,
            ports::EXIT
                | ports::PANIC
                | ports::PGDUMP
                | ports::EXPORT
                | ports::EXPORT_LEN
                | ports::MARK
                | ports::USER_SYMBOL
                | ports::DIROUT
                | ports::DIROUT_LEN
        )
    }

    fn read(&mut self, port: u16, data: &mut [u8], _mem: &GuestMemoryMmap) {
        match port {
            ports::PGDUMP => fill_le(data, self.last_mismatches),
            ports::EXPORT_LEN => fill_le(data, (EXPORT_MAX - self.exported.len()) as u32),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, port: u16, data: &[u8], mem: &GuestMemoryMmap) -> Request {
        let value = le_value(data);
        match port {
            ports::EXIT => return Request::End(Outcome::Exited(value)),
            ports::PANIC => {
                // A 32-bit `out` carries the report's address; any other is a bare panic.
                let report = (data.len() == 4)
                    .then(|| PanicReport::read(mem, value))
                    .flatten();
                return Request::End(Outcome::Panicked(report));
            }
            ports::PGDUMP => return Request::Pgdump,
            ports::MARK => return Request::Mark(value),
            ports::EXPORT_LEN => self.export_len = value,
            ports::EXPORT => self.export(value, mem),
            ports::USER_SYMBOL => answer_user_symbol(&mut self.user_symbols, value, mem),
            ports::DIROUT_LEN => self.dirout_len = value,
            ports::DIROUT => self.dirout(value, mem),
            _ => {}
        }
        Request::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_symbol_request_names_eip_in_the_programs_own_symbols() {
        let (_, image) = crate::boot::images::USER_PROGRAMS
            .iter()
            .find(|(n, _)| *n == "exitcode")
            .unwrap();
        let main = crate::debug::symbols::Symbols::from_elf(image)
            .address_of("main")
            .expect("the built-in programs keep their symbols");
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let mut d = DebugPorts {
            user_symbols: UserSymbols::new(vec![("exitcode".into(), image.to_vec())]),
            ..DebugPorts::default()
        };
        let ask = |d: &mut DebugPorts, name: &[u8], eip: u32| {
            mem.write_obj(eip, GuestAddress(0x1000)).unwrap();
            let mut n = [0u8; xv6_abi::usersym::NAME_LEN];
            n[..name.len()].copy_from_slice(name);
            mem.write_slice(&n, GuestAddress(0x1004)).unwrap();
            mem.write_slice(&[0xaa; 64], GuestAddress(0x1014)).unwrap();
            d.write(ports::USER_SYMBOL, &0x1000u32.to_le_bytes(), &mem);
            let mut text = [0u8; xv6_abi::usersym::TEXT_LEN];
            mem.read_slice(&mut text, GuestAddress(0x1014)).unwrap();
            let len = text.iter().position(|&b| b == 0).expect("NUL-terminated");
            String::from_utf8(text[..len].to_vec()).unwrap()
        };
        assert_eq!(ask(&mut d, b"exitcode", main + 2), "main+0x2");
        assert_eq!(ask(&mut d, b"exitcode", main), "main");
        // Not a program of the archive, or an address no symbol covers: empty.
        assert_eq!(ask(&mut d, b"nosuch", main), "");
        assert_eq!(ask(&mut d, b"exitcode", 0x7fff_0000), "");
        // Outside RAM: ignored, no panic.
        d.write(ports::USER_SYMBOL, &0xfff_0000u32.to_le_bytes(), &mem);
    }

    #[test]
    fn the_export_stream_reports_its_room_and_refuses_past_it() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        mem.write_slice(b"abcd", GuestAddress(0x1000)).unwrap();
        let mut d = DebugPorts::default();
        let room = |d: &mut DebugPorts| {
            let mut b = [0u8; 4];
            d.read(ports::EXPORT_LEN, &mut b, &mem);
            u32::from_le_bytes(b) as usize
        };
        assert_eq!(room(&mut d), EXPORT_MAX);
        d.write(ports::EXPORT_LEN, &4u32.to_le_bytes(), &mem);
        d.write(ports::EXPORT, &0x1000u32.to_le_bytes(), &mem);
        assert_eq!(d.exported, b"abcd");
        assert_eq!(room(&mut d), EXPORT_MAX - 4);
        // Past the bound: refused whole, nothing appended.
        d.write(ports::EXPORT_LEN, &(EXPORT_MAX as u32).to_le_bytes(), &mem);
        d.write(ports::EXPORT, &0x1000u32.to_le_bytes(), &mem);
        assert_eq!(d.exported.len(), 4);
        assert!(d.refused);
    }
}
