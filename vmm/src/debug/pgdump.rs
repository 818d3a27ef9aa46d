//! Seeing the guest's page tables from outside: a walk of the 2-level x86 tables from a CR3
//! through guest memory, the runs it finds, and the format `--pgdump` prints.
//!
//! The walk is pure (it reads guest-physical words through a closure) so it is tested on the
//! host; `vcpu.rs` cross-checks every page it finds with KVM_TRANSLATE, i.e. with the MMU.

use xv6_abi::mmu::PGSIZE;
/// PTE/PDE bits (xv6's mmu.h names), as the kernel sets them (xv6-abi).
pub use xv6_abi::mmu::{PTE_P, PTE_PS, PTE_U, PTE_W};

/// One mapped 4 KiB page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub va: u32,
    pub pa: u32,
    pub writable: bool,
    pub user: bool,
}

/// A maximal run of pages whose VA and PA both advance by 4096, with equal flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first_va: u32,
    pub last_va: u32,
    pub pa: u32,
    pub writable: bool,
    pub user: bool,
}

/// Walks the page directory at `cr3`. `read(pa)` returns the 32-bit word at a guest-physical
/// address, or `None` if it is not RAM (such a table is skipped and reported in `bad_tables`).
/// `pse` says whether CR4.PSE is on (then PDEs with PS map 4 MiB pages, reported as 4 KiB ones).
/// Effective W and U are the AND of the PDE's and the PTE's, as the MMU computes them.
pub fn walk(cr3: u32, pse: bool, read: impl Fn(u32) -> Option<u32>) -> (Vec<Mapping>, usize) {
    let pgdir = cr3 & !0xfff;
    let mut maps = Vec::new();
    let mut bad_tables = 0;
    for pdx in 0..1024u32 {
        let Some(pde) = read(pgdir + 4 * pdx) else {
            bad_tables += 1;
            continue;
        };
        if pde & PTE_P == 0 {
            continue;
        }
        let base_va = pdx << 22;
        if pse && pde & PTE_PS != 0 {
            for i in 0..1024u32 {
                maps.push(mapping(
                    base_va + i * PGSIZE,
                    (pde & 0xffc0_0000) + i * PGSIZE,
                    pde,
                    pde,
                ));
            }
            continue;
        }
        let table = pde & !0xfff;
        for ptx in 0..1024u32 {
            let Some(pte) = read(table + 4 * ptx) else {
                bad_tables += 1;
                break;
            };
            if pte & PTE_P != 0 {
                maps.push(mapping(base_va + ptx * PGSIZE, pte & !0xfff, pde, pte));
            }
        }
    }
    (maps, bad_tables)
}

/// The guest-physical address `va` maps to through the page directory at `cr3` (as the MMU
/// would translate it, without access checks), or None if it is not mapped.
pub fn translate(cr3: u32, pse: bool, va: u32, read: impl Fn(u32) -> Option<u32>) -> Option<u32> {
    let pde = read((cr3 & !0xfff) + 4 * (va >> 22))?;
    if pde & PTE_P == 0 {
        return None;
    }
    if pse && pde & PTE_PS != 0 {
        return Some((pde & 0xffc0_0000) | (va & 0x3f_ffff));
    }
    let pte = read((pde & !0xfff) + 4 * ((va >> 12) & 0x3ff))?;
    (pte & PTE_P != 0).then_some((pte & !0xfff) | (va & 0xfff))
}

fn mapping(va: u32, pa: u32, pde: u32, pte: u32) -> Mapping {
    Mapping {
        va,
        pa,
        writable: pde & pte & PTE_W != 0,
        user: pde & pte & PTE_U != 0,
    }
}

/// Groups pages (in VA order) into maximal runs.
pub fn runs(maps: &[Mapping]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for m in maps {
        if let Some(r) = out.last_mut() {
            let continues = r.last_va.checked_add(PGSIZE) == Some(m.va)
                && r.pa.wrapping_add(m.va - r.first_va) == m.pa
                && (r.writable, r.user) == (m.writable, m.user);
            if continues {
                r.last_va = m.va;
                continue;
            }
        }
        out.push(Run {
            first_va: m.va,
            last_va: m.va,
            pa: m.pa,
            writable: m.writable,
            user: m.user,
        });
    }
    out
}

/// `0x80000000-0x800fffff -> 0x00000000 rwk`: first VA, last byte of the run, first PA, flags.
pub fn format_run(r: &Run) -> String {
    format!(
        "0x{:08x}-0x{:08x} -> 0x{:08x} r{}{}",
        r.first_va,
        r.last_va + (PGSIZE - 1),
        r.pa,
        if r.writable { 'w' } else { '-' },
        if r.user { 'u' } else { 'k' }
    )
}

/// One `--pgdump` dump read back from its text: the CR3 it walked and its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub cr3: u32,
    pub runs: Vec<Run>,
}

/// Reads back the dumps in `text` (the `--pgdump` format: a `pgdump cr3=` line, run lines,
/// a `pgdump end:` line); other lines are skipped, so a whole stderr can be given. A dump
/// without its end line (a run cut short) is dropped.
pub fn parse_dumps(text: &str) -> Vec<Dump> {
    let mut out = Vec::new();
    let mut current: Option<Dump> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(cr3) = line.strip_prefix("pgdump cr3=0x") {
            current = u32::from_str_radix(cr3, 16).ok().map(|cr3| Dump {
                cr3,
                runs: Vec::new(),
            });
        } else if line.starts_with("pgdump end:") {
            out.extend(current.take());
        } else if let (Some(d), Some(r)) = (current.as_mut(), parse_run(line)) {
            d.runs.push(r);
        }
    }
    out
}

/// One run line, the inverse of [`format_run`].
pub fn parse_run(line: &str) -> Option<Run> {
    let hex = |s: &str| u32::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let (range, rest) = line.split_once(" -> ")?;
    let (first, last) = range.split_once('-')?;
    let (pa, flags) = rest.split_once(' ')?;
    let (first_va, last_byte, pa) = (hex(first)?, hex(last)?, hex(pa)?);
    let flags = flags.as_bytes();
    if flags.len() != 3 || flags[0] != b'r' || first_va % PGSIZE != 0 || last_byte < first_va {
        return None;
    }
    Some(Run {
        first_va,
        last_va: last_byte & !(PGSIZE - 1),
        pa,
        writable: match flags[1] {
            b'w' => true,
            b'-' => false,
            _ => return None,
        },
        user: match flags[2] {
            b'u' => true,
            b'k' => false,
            _ => return None,
        },
    })
}

impl Run {
    /// Pages in the run.
    pub fn pages(&self) -> u32 {
        (self.last_va - self.first_va) / PGSIZE + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A tiny guest-physical memory of words.
    fn mem(words: &[(u32, u32)]) -> impl Fn(u32) -> Option<u32> {
        let m: HashMap<u32, u32> = words.iter().copied().collect();
        move |pa| Some(*m.get(&pa).unwrap_or(&0))
    }

    #[test]
    fn walks_two_levels_and_coalesces() {
        let pd = 0x1000;
        let pt = 0x2000;
        // PDE[0x200] (VA 0x80000000) -> table at 0x2000; 3 pages: two contiguous rw, one r-.
        let m = mem(&[
            (pd + 4 * 0x200, pt | PTE_P | PTE_W | PTE_U),
            (pt, PTE_P | PTE_W),
            (pt + 4, 0x1000 | PTE_P | PTE_W),
            (pt + 8, 0x5000 | PTE_P),
        ]);
        let (maps, bad) = walk(pd, true, m);
        assert_eq!(bad, 0);
        assert_eq!(maps.len(), 3);
        let r = runs(&maps);
        assert_eq!(r.len(), 2);
        assert_eq!(format_run(&r[0]), "0x80000000-0x80001fff -> 0x00000000 rwk");
        assert_eq!(format_run(&r[1]), "0x80002000-0x80002fff -> 0x00005000 r-k");
    }

    #[test]
    fn translate_follows_both_levels_and_big_pages() {
        let pd = 0x1000;
        let m = mem(&[
            (pd + 4 * 0x200, 0x2000 | PTE_P | PTE_W),
            (0x2000 + 4 * 3, 0x7000 | PTE_P),
            (pd + 4 * 0x201, 0x0040_0000 | PTE_P | PTE_PS),
        ]);
        assert_eq!(translate(pd, true, 0x8000_3abc, &m), Some(0x7abc));
        assert_eq!(
            translate(pd, true, 0x8000_4000, &m),
            None,
            "PTE not present"
        );
        assert_eq!(translate(pd, true, 0x8040_1234, &m), Some(0x0040_1234));
        assert_eq!(translate(pd, true, 0x1000, &m), None, "PDE not present");
        assert_eq!(translate(pd, true, 0x8000_3abc, |_| None), None, "not RAM");
    }

    #[test]
    fn user_and_write_need_both_levels() {
        let pd = 0x1000;
        let m = mem(&[
            (pd, 0x2000 | PTE_P | PTE_U),
            (0x2000, 0x7000 | PTE_P | PTE_W | PTE_U),
        ]);
        let (maps, _) = walk(pd, false, m);
        assert_eq!(
            maps,
            vec![Mapping {
                va: 0,
                pa: 0x7000,
                writable: false,
                user: true
            }]
        );
    }

    #[test]
    fn pse_pages_only_with_cr4_pse() {
        let pd = 0x1000;
        let m = mem(&[(pd + 4 * 0x200, PTE_P | PTE_W | PTE_PS)]);
        let (maps, _) = walk(pd, true, &m);
        assert_eq!(maps.len(), 1024);
        assert_eq!(
            format_run(&runs(&maps)[0]),
            "0x80000000-0x803fffff -> 0x00000000 rwk"
        );
        // Without PSE the entry points at a page table (PA 0, all zero here): nothing mapped.
        assert!(walk(pd, false, &m).0.is_empty());
    }

    #[test]
    fn run_ending_at_4gib_does_not_wrap() {
        let maps: Vec<_> = (0..2u32)
            .map(|i| Mapping {
                va: 0xffffe000 + i * PGSIZE,
                pa: 0xffffe000 + i * PGSIZE,
                writable: true,
                user: false,
            })
            .collect();
        assert_eq!(
            format_run(&runs(&maps)[0]),
            "0xffffe000-0xffffffff -> 0xffffe000 rwk"
        );
    }

    #[test]
    fn unreadable_tables_are_counted() {
        let (maps, bad) = walk(0x1000, false, |pa| {
            if pa < 0x2000 {
                Some(0x9000_0000 | PTE_P)
            } else {
                None
            }
        });
        assert!(maps.is_empty());
        assert_eq!(bad, 1024);
    }
    #[test]
    fn dumps_read_back_from_text() {
        let text = "noise\npgdump cr3=0x00174000\n0x00000000-0x00000fff -> 0x00175000 r-u\n\
            0x00005000-0x00005fff -> 0x0017b000 rwk\nxv6: interleaved\n\
            0xfe000000-0xffffffff -> 0xfe000000 rwk\npgdump end: 3 pages, 0 translate mismatches\n\
            pgdump cr3=0x00001000\n0x00000000-0x00000fff -> 0x00175000 r-u\n";
        let d = parse_dumps(text);
        assert_eq!(d.len(), 1, "the cut-short second dump is dropped");
        assert_eq!(d[0].cr3, 0x174000);
        let lines: Vec<String> = d[0].runs.iter().map(format_run).collect();
        assert_eq!(
            lines,
            [
                "0x00000000-0x00000fff -> 0x00175000 r-u",
                "0x00005000-0x00005fff -> 0x0017b000 rwk",
                "0xfe000000-0xffffffff -> 0xfe000000 rwk"
            ]
        );
        assert_eq!(d[0].runs[2].pages(), 8192);
        assert_eq!(parse_run("0x00000000-0x00000fff -> 0x00175000 rxu"), None);
        assert_eq!(parse_run("0x00000100-0x00000fff -> 0x00175000 r-u"), None);
    }
}
