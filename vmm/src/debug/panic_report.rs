//! The kernel's panic report (xv6-abi `panic`): the message with its location and the
//! return addresses the kernel found on its frame-pointer chain, read from guest memory at
//! the address the kernel wrote to the panic port.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xv6_abi::panic as abi;

use crate::debug::symbols::Symbols;

/// What the kernel said about its panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicReport {
    /// `MESSAGE at FILE:LINE`.
    pub message: String,
    /// Return addresses, innermost first.
    pub frames: Vec<u32>,
}

impl PanicReport {
    /// Reads the report at guest-physical `pa`; None if it is not in RAM or is not a report.
    pub fn read(mem: &GuestMemoryMmap, pa: u32) -> Option<PanicReport> {
        let mut block = vec![0u8; abi::SIZE];
        mem.read_slice(&mut block, GuestAddress(u64::from(pa)))
            .ok()?;
        PanicReport::parse(&block)
    }

    /// Parses a report block (xv6-abi `panic`); None without the magic.
    pub fn parse(block: &[u8]) -> Option<PanicReport> {
        let word = |off: usize| {
            let b = block.get(off..off + 4)?;
            Some(u32::from_le_bytes(b.try_into().ok()?))
        };
        if word(0)? != abi::MAGIC {
            return None;
        }
        let len = (word(abi::OFF_MSG_LEN)? as usize).min(abi::MAX_MSG);
        let n = (word(abi::OFF_NFRAMES)? as usize).min(abi::MAX_FRAMES);
        let frames = (0..n)
            .map(|i| word(abi::OFF_FRAMES + 4 * i))
            .collect::<Option<Vec<u32>>>()?;
        let msg = block.get(abi::OFF_MSG..abi::OFF_MSG + len)?;
        Some(PanicReport {
            message: String::from_utf8_lossy(msg).into_owned(),
            frames,
        })
    }

    /// `vmm: crash: backtrace:` and one `vmm: crash:   #N 0x… symbol+0x…` line per frame.
    pub fn backtrace(&self, syms: &Symbols) -> String {
        let mut out = String::from("vmm: crash: backtrace (frame pointers, innermost first):");
        if self.frames.is_empty() {
            out.push_str(" none found");
        }
        for (i, ret) in self.frames.iter().enumerate() {
            // A return address points after the call: name the call's own instruction.
            let at = ret.wrapping_sub(1);
            out.push_str(&format!(
                "\nvmm: crash:   #{i} {ret:#010x} {}",
                syms.describe(at)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(msg: &[u8], frames: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; abi::SIZE];
        b[0..4].copy_from_slice(&abi::MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(msg.len() as u32).to_le_bytes());
        b[8..12].copy_from_slice(&(frames.len() as u32).to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            let o = abi::OFF_FRAMES + 4 * i;
            b[o..o + 4].copy_from_slice(&f.to_le_bytes());
        }
        b[abi::OFF_MSG..abi::OFF_MSG + msg.len()].copy_from_slice(msg);
        b
    }

    #[test]
    fn parses_message_and_frames() {
        let r = PanicReport::parse(&block(b"boom at src/a.rs:3", &[0x8010_0005, 0x8010_0100]));
        let r = r.unwrap();
        assert_eq!(r.message, "boom at src/a.rs:3");
        assert_eq!(r.frames, vec![0x8010_0005, 0x8010_0100]);
    }

    #[test]
    fn rejects_a_block_without_magic_and_bounds_counts() {
        let mut b = block(b"x", &[]);
        b[0] ^= 1;
        assert_eq!(PanicReport::parse(&b), None);
        let mut b = block(b"x", &[]);
        b[8..12].copy_from_slice(&1000u32.to_le_bytes());
        b[4..8].copy_from_slice(&100_000u32.to_le_bytes());
        let r = PanicReport::parse(&b).unwrap();
        assert_eq!(r.frames.len(), abi::MAX_FRAMES);
        assert_eq!(r.message.len(), abi::MAX_MSG);
    }

    #[test]
    fn backtrace_lines_name_the_calls() {
        let r = PanicReport::parse(&block(b"m", &[0x1234])).unwrap();
        let s = r.backtrace(&Symbols::default());
        assert!(s.ends_with("#0 0x00001234 ?"), "{s}");
    }
}
