//! The heap: a global allocator (the `talc` crate) that gets its memory from `sbrk`, so
//! programs can use `alloc` (`Vec`, `String`, `format!`) — xv6's umalloc.c in spirit.
//!
//! Why talc: it is no_std, maintained, and its `Source` trait is an "out of memory: ask the
//! OS for more" hook, which is exactly what `sbrk` answers (linked_list_allocator would need
//! the hook written around it). Memory is never given back with a negative sbrk, as in xv6.
//!
//! Programs run one thread per address space (fork copies the address space, there are no
//! signals), so the allocator needs no lock: `TalcSyncCell`.

use core::alloc::Layout;
use core::ptr::NonNull;
use talc::base::binning::Binning;
use talc::base::{Talc, CHUNK_UNIT};
use talc::cell::{TalcCell, TalcSyncCell};
use talc::source::Source;
use talc::DefaultBinning;

use crate::PGSIZE;

/// The least the heap grows by at a time, so small allocations do not cost a system call
/// each.
const GROW_MIN: usize = 4 * PGSIZE;

/// A talc `Source` over `sbrk`: on out-of-memory, grows the process and extends the heap
/// when the new memory follows it, or starts a new heap when the program moved the break
/// itself meanwhile.
#[derive(Debug)]
pub struct Sbrk {
    /// talc's end of the heap last grown, if any.
    heap_end: Option<NonNull<u8>>,
    /// The break right after that growth.
    brk: usize,
}

impl Sbrk {
    const fn new() -> Self {
        Sbrk {
            heap_end: None,
            brk: 0,
        }
    }
}

/// Bytes to ask sbrk for to fit `layout` in a new or extended heap (generous: heap
/// metadata, chunk overhead and alignment), in whole pages.
fn grow_size<B: Binning>(layout: Layout) -> Option<usize> {
    let need = layout
        .size()
        .checked_add(layout.align())?
        .checked_add(talc::min_first_heap_size::<B>() + 4 * CHUNK_UNIT)?;
    let pages = need.checked_add(PGSIZE - 1)? & !(PGSIZE - 1);
    Some(pages.max(GROW_MIN))
}

// SAFETY: `acquire` never allocates (sbrk is a bare system call), and hands talc only memory
// that sbrk just mapped for this process and nothing else uses.
unsafe impl Source for Sbrk {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let bytes = grow_size::<B>(layout).ok_or(())?;
        let old = crate::syscall::sbrk(i32::try_from(bytes).map_err(|_| ())?);
        if old == -1 {
            return Err(());
        }
        let base = old as usize;
        let base_ptr: *mut u8 = core::ptr::with_exposed_provenance_mut(base);
        let new_end = base_ptr.wrapping_add(bytes);
        let grown = match talc.source.heap_end {
            // SAFETY: [heap_end, new_end) is the tail of the last heap plus the pages sbrk
            // just mapped right after it (the break did not move in between).
            Some(end) if talc.source.brk == base => Some(unsafe { talc.extend(end, new_end) }),
            // SAFETY: [base, base + bytes) was just mapped by sbrk, for the heap alone.
            _ => unsafe { talc.claim(base_ptr, bytes) },
        };
        talc.source.brk = base + bytes;
        match grown {
            Some(end) => {
                talc.source.heap_end = Some(end);
                Ok(())
            }
            None => Err(()),
        }
    }
}

#[global_allocator]
// SAFETY: a user process has one thread and no signal handlers, so the allocator is never
// entered twice at once.
static HEAP: TalcSyncCell<Sbrk, DefaultBinning> =
    unsafe { TalcSyncCell::new(TalcCell::new(Sbrk::new())) };
