//! The kernel's backtrace: the chain of saved frame pointers (the kernel is built with
//! `-C force-frame-pointers=yes`: each frame starts `push ebp; mov ebp, esp`, so `[ebp]` is
//! the caller's EBP and `[ebp + 4]` the return address). The walk is pure — it reads words
//! through a closure and stops at anything implausible — so it is tested on the host.

/// Where a frame pointer may point: the kernel half, below this bound (RAM's P2V).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The lowest valid stack address (KERNBASE).
    pub stack_lo: u32,
    /// One past the highest valid stack address.
    pub stack_hi: u32,
    /// Kernel text: return addresses must lie in `[text_lo, text_hi)`.
    pub text_lo: u32,
    pub text_hi: u32,
}

/// The largest frame the walk believes (a kernel stack is one page).
const MAX_FRAME: u32 = xv6_abi::mmu::PGSIZE;

/// Follows the frame-pointer chain from `ebp`, writing return addresses (innermost first)
/// into `out`; returns how many. Stops at EBP 0 (the entry code clears it), a misaligned or
/// out-of-bounds EBP, a chain that does not move up the stack, or a return address outside
/// kernel text.
pub fn walk(mut ebp: u32, b: &Bounds, read: impl Fn(u32) -> u32, out: &mut [u32]) -> usize {
    let mut n = 0;
    while n < out.len() && plausible_frame(ebp, b) {
        let ret = read(ebp + 4);
        if !(b.text_lo..b.text_hi).contains(&ret) {
            break;
        }
        out[n] = ret;
        n += 1;
        let next = read(ebp);
        if next <= ebp || next - ebp > MAX_FRAME {
            break;
        }
        ebp = next;
    }
    n
}

fn plausible_frame(ebp: u32, b: &Bounds) -> bool {
    ebp != 0 && ebp.is_multiple_of(4) && ebp >= b.stack_lo && ebp.saturating_add(8) <= b.stack_hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const B: Bounds = Bounds {
        stack_lo: 0x8000_0000,
        stack_hi: 0x8e00_0000,
        text_lo: 0x8010_0000,
        text_hi: 0x8011_0000,
    };

    fn mem(words: &[(u32, u32)]) -> impl Fn(u32) -> u32 {
        let m: HashMap<u32, u32> = words.iter().copied().collect();
        move |a| *m.get(&a).unwrap_or(&0)
    }

    #[test]
    fn follows_the_chain_to_ebp_zero() {
        let m = mem(&[
            (0x8020_0f00, 0x8020_0f40),
            (0x8020_0f04, 0x8010_0123),
            (0x8020_0f40, 0),
            (0x8020_0f44, 0x8010_0456),
        ]);
        let mut out = [0; 8];
        let n = walk(0x8020_0f00, &B, m, &mut out);
        assert_eq!(&out[..n], &[0x8010_0123, 0x8010_0456]);
    }

    #[test]
    fn stops_at_garbage() {
        // A return address outside text, a chain going down, a misaligned EBP.
        let mut out = [0; 8];
        let m = mem(&[(0x8020_0f04, 0x1234)]);
        assert_eq!(walk(0x8020_0f00, &B, m, &mut out), 0);
        let m = mem(&[(0x8020_0f00, 0x8020_0e00), (0x8020_0f04, 0x8010_0001)]);
        assert_eq!(walk(0x8020_0f00, &B, m, &mut out), 1);
        assert_eq!(walk(0x8020_0f02, &B, mem(&[]), &mut out), 0);
        assert_eq!(walk(0x1000, &B, mem(&[]), &mut out), 0);
    }

    #[test]
    fn an_endless_chain_is_bounded_by_the_buffer() {
        let m = |a: u32| if a % 8 == 0 { a + 16 } else { 0x8010_0001 };
        let mut out = [0; 3];
        assert_eq!(walk(0x8020_0f00, &B, m, &mut out), 3);
    }
}
