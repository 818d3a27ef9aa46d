//! Addresses to names: the function and object symbols of an ELF (the kernel's kernel.elf, a
//! user program with symbols), sorted for lookup, names demangled (`rustc-demangle`) and
//! without Rust's hash suffix. Crash reports use it for EIP, the panic backtrace and the last
//! VM exits.

use std::collections::HashMap;

use goblin::elf::{sym, Elf};

/// One symbol: `[addr, addr + size)`; size 0 means "up to the next symbol".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    addr: u32,
    size: u32,
    name: String,
}

/// The symbols of one ELF, sorted by address.
#[derive(Debug, Default)]
pub struct Symbols {
    syms: Vec<Symbol>,
}

impl Symbols {
    /// The function and object symbols of `elf` (none if it is not an ELF or has no symbol
    /// table: a stripped program).
    pub fn from_elf(bytes: &[u8]) -> Symbols {
        let Ok(elf) = Elf::parse(bytes) else {
            return Symbols::default();
        };
        let syms = elf
            .syms
            .iter()
            .filter(|s| matches!(s.st_type(), sym::STT_FUNC | sym::STT_OBJECT) && s.st_value != 0)
            .filter_map(|s| {
                let name = elf.strtab.get_at(s.st_name)?;
                Some(Symbol {
                    addr: s.st_value as u32,
                    size: s.st_size as u32,
                    name: demangle(name),
                })
            })
            .collect();
        Symbols::from_list(syms)
    }

    fn from_list(mut syms: Vec<Symbol>) -> Symbols {
        syms.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));
        syms.dedup_by_key(|s| s.addr);
        Symbols { syms }
    }

    /// Whether there are any symbols.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The symbol containing `addr` and the offset into it: the last symbol at or below
    /// `addr` whose size covers it (a size-0 symbol covers up to the next one).
    pub fn lookup(&self, addr: u32) -> Option<(&str, u32)> {
        let i = self
            .syms
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let s = &self.syms[i];
        let off = addr - s.addr;
        let inside = if s.size == 0 {
            self.syms.get(i + 1).is_none_or(|n| addr < n.addr)
        } else {
            off < s.size
        };
        inside.then_some((s.name.as_str(), off))
    }

    /// `name+0xOFF` (or `name`), or `?` when no symbol covers `addr`.
    pub fn describe(&self, addr: u32) -> String {
        match self.lookup(addr) {
            Some((name, 0)) => name.to_string(),
            Some((name, off)) => format!("{name}+{off:#x}"),
            None => "?".to_string(),
        }
    }

    /// The address of the symbol called `name` (demangled, e.g. `xv6::kalloc::Kmem::kinit2`
    /// or a plain `kmain`).
    pub fn address_of(&self, name: &str) -> Option<u32> {
        self.syms.iter().find(|s| s.name == name).map(|s| s.addr)
    }
}

/// The symbols of the run's user programs by archive name, each ELF parsed when first asked
/// about: the kernel asks for a user fault's EIP (`xv6_abi::usersym`), now and then.
#[derive(Debug, Default)]
pub struct UserSymbols {
    images: Vec<(String, Vec<u8>)>,
    parsed: HashMap<String, Symbols>,
}

impl UserSymbols {
    /// The programs (name, ELF image) the run's archive holds.
    pub fn new(images: Vec<(String, Vec<u8>)>) -> UserSymbols {
        UserSymbols {
            images,
            parsed: HashMap::new(),
        }
    }

    /// `symbol+0xOFF` (or `symbol`) at `eip` in the program called `name`; None if there is
    /// no such program, it has no symbols, or none covers `eip`.
    pub fn describe(&mut self, name: &str, eip: u32) -> Option<String> {
        if !self.parsed.contains_key(name) {
            let (_, image) = self.images.iter().find(|(n, _)| n == name)?;
            self.parsed
                .insert(name.to_string(), Symbols::from_elf(image));
        }
        let (sym, off) = self.parsed[name].lookup(eip)?;
        Some(match off {
            0 => sym.to_string(),
            off => format!("{sym}+{off:#x}"),
        })
    }
}

/// A symbol's readable name: demangled, without the hash (`xv6::kmain::kmain`).
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Symbols {
        let s = |addr, size, name: &str| Symbol {
            addr,
            size,
            name: name.into(),
        };
        Symbols::from_list(vec![
            s(0x8010_0100, 0x20, "b"),
            s(0x8010_0000, 0x10, "a"),
            s(0x8010_0200, 0, "c"),
            s(0x8010_0300, 4, "d"),
        ])
    }

    #[test]
    fn finds_the_containing_symbol() {
        let t = table();
        assert_eq!(t.lookup(0x8010_0000), Some(("a", 0)));
        assert_eq!(t.lookup(0x8010_000f), Some(("a", 0xf)));
        assert_eq!(t.lookup(0x8010_0010), None, "past a's size");
        assert_eq!(t.describe(0x8010_0105), "b+0x5");
        assert_eq!(t.lookup(0x8010_02ff), Some(("c", 0xff)), "unsized: up to d");
        assert_eq!(t.lookup(0x8010_0304), None);
        assert_eq!(t.lookup(0x1000), None);
        assert_eq!(t.describe(0x1000), "?");
    }

    #[test]
    fn demangles_without_the_hash() {
        assert_eq!(
            demangle("_ZN3xv66kalloc4Kmem6kinit217he0a090a56b9d5676E"),
            "xv6::kalloc::Kmem::kinit2"
        );
        assert_eq!(demangle("kmain"), "kmain");
    }

    #[test]
    fn the_built_kernel_has_its_functions() {
        let t = Symbols::from_elf(crate::boot::images::KERNEL);
        let kmain = t.address_of("kmain").expect("kmain");
        assert_eq!(t.describe(kmain + 1), "kmain+0x1");
        assert!(t.address_of("xv6::kalloc::Kmem::kinit2").is_some());
        assert!(Symbols::from_elf(b"not an elf").is_empty());
    }
}
