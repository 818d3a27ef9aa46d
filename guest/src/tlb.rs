//! TLB flush tokens (not in xv6, whose callers remember to reload CR3): every function that
//! takes a mapping away or lowers its permissions in a page directory that may be live
//! returns a `TlbFlush`, which is `#[must_use]` — dropping one without `.flush()` or
//! `.ignore(why)` is an error, as lib.rs denies `unused_must_use` — so a forgotten flush does
//! not compile (must_use_tests.rs checks that it does not). (Like the x86_64 crate's
//! `MapperFlush`.)
//!
//! Adding a mapping where none was (not present → present) needs no token: the TLB never
//! caches not-present entries.
//!
//! `flush()` always acts on the page directory in CR3: `invlpg` for one page, a CR3 reload
//! for more. Flushing when the changed directory is not the one loaded is harmless (it only
//! drops entries the CPU may cache again), so when in doubt, flush; `ignore` is for
//! directories that are provably not in use (exec's new image, a fork child), and says why.

use crate::memlayout::UVAddr;

/// What a flush must cover.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Nothing,
    Page(UVAddr),
    All,
}

/// A pending TLB flush for mappings changed in a page directory.
#[derive(PartialEq, Eq, Debug)]
#[must_use = "a mapping changed: call .flush() (or .ignore(why) if the page directory is not in use)"]
pub struct TlbFlush(Scope);

impl TlbFlush {
    /// Nothing changed that the TLB could hold.
    pub const fn nothing() -> TlbFlush {
        TlbFlush(Scope::Nothing)
    }

    /// The mapping of the page holding `va` changed.
    pub const fn page(va: UVAddr) -> TlbFlush {
        TlbFlush(Scope::Page(va.page()))
    }

    /// Many mappings changed: reload CR3.
    pub const fn all() -> TlbFlush {
        TlbFlush(Scope::All)
    }

    /// One token covering both (two pages become a full flush).
    pub fn and(self, other: TlbFlush) -> TlbFlush {
        let (TlbFlush(a), TlbFlush(b)) = (self, other);
        TlbFlush(match (a, b) {
            (Scope::Nothing, s) | (s, Scope::Nothing) => s,
            (Scope::Page(x), Scope::Page(y)) if x == y => Scope::Page(x),
            _ => Scope::All,
        })
    }

    /// Whether anything needs flushing.
    #[must_use]
    pub fn is_needed(&self) -> bool {
        self.0 != Scope::Nothing
    }

    /// Whether this is a full flush (CR3 reload).
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.0 == Scope::All
    }

    /// Flushes the TLB of the current address space: `invlpg` for one page, CR3 reload for
    /// more.
    pub fn flush(self) {
        #[cfg(all(target_arch = "x86", not(test)))]
        match self.0 {
            Scope::Nothing => {}
            Scope::Page(va) => crate::x86::invlpg(va.0),
            Scope::All => crate::x86::flush_tlb(),
        }
    }

    /// Drops the token without flushing. `why` says why none is needed (the page directory
    /// is not loaded anywhere); it exists to be read in the source.
    pub fn ignore(self, why: &'static str) {
        let _ = why;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_combine() {
        let p = |v| TlbFlush::page(UVAddr(v));
        assert_eq!(p(0x1234).and(p(0x1ff0)), p(0x1000));
        assert!(p(0x1000).and(p(0x2000)).is_all());
        assert_eq!(TlbFlush::nothing().and(p(0x3000)), p(0x3000));
        assert!(!TlbFlush::nothing().and(TlbFlush::nothing()).is_needed());
        assert!(TlbFlush::all().and(TlbFlush::nothing()).is_all());
        for t in [p(0), TlbFlush::all(), TlbFlush::nothing()] {
            t.ignore("host test: no TLB");
        }
    }
}
