//! exec (xv6 exec.c): builds a complete new user address space for a program from the archive
//! — its ELF segments, a guard page and one stack page holding the arguments — and hands it
//! back as an `Image`. The caller's address space is never touched: a failed exec leaves
//! nothing behind, and a successful one is swapped in by the caller.
//!
//! The image, from address 0 up (xv6's layout, `sz` growing as exec goes):
//!
//! ```text
//!   segments at their p_vaddr   text (read-only unless the segment is writable), data, bss
//!   PGROUNDUP(end of segments)  guard page: present, PTE_U cleared (clearpteu)
//!   + PGSIZE                    the stack page: argument strings at the top, then the
//!                               ustack words; esp points at the fake return PC
//!   sz = + 2 * PGSIZE           the heap (sbrk) grows from here
//! ```
//!
//! Differences from xv6, for programs as standard linkers make them: a segment's p_vaddr
//! need not be page aligned (`ld -N`, the default layout's data segment); only the pages
//! segments cover are mapped, so a program linked at 0x08048000 gets no 128 MiB of zeroes
//! below it (the hole stays unmapped, and touching it faults); pages that only non-writable
//! segments occupy lose PTE_W (writing text faults); and every check on the file is made
//! before any memory is allocated (elf.rs), so once building starts only running out of
//! memory can fail it.

use core::fmt;

use crate::archive;
use crate::elf::{Elf, ElfError};
use crate::memlayout::{UVAddr, KERNBASE};
use crate::mmu::{PGROUNDDOWN, PGROUNDUP, PGSIZE};
use crate::vm::{allocuvm, clearpteu, clearptew, copyout, freevm, loaduvm_from, setupkvm, PageDir};

/// The most arguments exec passes (xv6 param.h).
pub const MAXARG: usize = xv6_abi::exec::MAXARG;
/// The fake return PC at the bottom of the user stack.
pub const FAKE_RETURN_PC: u32 = 0xffff_ffff;

/// A new address space, ready to run.
#[derive(Debug)]
#[must_use = "the caller must install the image or freevm its page directory"]
pub struct Image {
    /// The page directory: kernel half from setupkvm, the program in the user half.
    pub pgdir: PageDir,
    /// The process size: the top of the stack page.
    pub sz: u32,
    /// Where to start: the ELF entry point (the trap frame's eip).
    pub entry: UVAddr,
    /// The initial user stack pointer (the trap frame's esp), at the fake return PC.
    pub sp: UVAddr,
}

/// Why exec failed. The caller's address space is untouched whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecError {
    /// No such program in the archive.
    NotFound,
    /// The file is not a runnable static ELF32 i386 executable: why.
    NotExecutable(NotExec),
    /// More than MAXARG arguments, or more than fit on the stack page.
    TooManyArgs,
    /// Physical memory ran out while building the address space.
    OutOfMemory,
    /// A user address was bad (sys_exec's argument fetching; exec itself never reports it
    /// unless the stack it built were unwritable).
    BadAddr,
}

/// Why a file cannot run, for the one line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotExec {
    /// Its ELF header or program headers are wrong (the parser says which).
    Elf(ElfError),
    /// Its image leaves no room below KERNBASE for the guard and stack pages.
    NoStackRoom,
    /// A directory or a device.
    NotRegular,
}

/// What exec reads a program from: the archive's bytes, or a file of the file system
/// (sysfile's `FileProgram`).
pub trait ProgramFile {
    /// The file's size in bytes.
    fn size(&self) -> usize;
    /// The file's first bytes: all of it, or at least its first page.
    fn head(&self) -> &[u8];
    /// Fills `dst` with the file's bytes `[off, off + dst.len())`, which lie in the file.
    fn read_at(&self, off: usize, dst: &mut [u8]);
}

impl ProgramFile for [u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn head(&self) -> &[u8] {
        self
    }

    fn read_at(&self, off: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self[off..off + dst.len()]);
    }
}

impl ExecError {
    /// The VM's exit status when the *first* process cannot be started (docs/abi.md): 127
    /// for a program that is not in the archive, 126 for one that cannot run.
    #[must_use]
    pub fn first_exec_status(self) -> u8 {
        match self {
            ExecError::NotFound => xv6_abi::status::NOT_FOUND,
            _ => xv6_abi::status::NOT_EXECUTABLE,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecError::NotFound => "no such program",
            ExecError::NotExecutable(NotExec::Elf(e)) => {
                return write!(f, "not a runnable ELF32 i386 executable: {e}");
            }
            ExecError::NotExecutable(NotExec::NoStackRoom) => {
                "not runnable: its image leaves no room below KERNBASE for the stack"
            }
            ExecError::NotExecutable(NotExec::NotRegular) => "not runnable: not a regular file",
            ExecError::TooManyArgs => "argument list too long",
            ExecError::OutOfMemory => "out of memory",
            ExecError::BadAddr => "bad address",
        })
    }
}

impl From<crate::uaccess::BadAddr> for ExecError {
    fn from(_: crate::uaccess::BadAddr) -> ExecError {
        ExecError::BadAddr
    }
}

impl From<crate::vm::OutOfMemory> for ExecError {
    fn from(_: crate::vm::OutOfMemory) -> ExecError {
        ExecError::OutOfMemory
    }
}

/// Runs the program `path` from the boot archive with arguments `argv` (argv[0] is by
/// convention the program's name): builds its address space and returns it.
///
/// The caller (sys_exec, or boot for the first process) then, on success: puts `pgdir` and
/// `sz` in the process, sets its trap frame's eip = `entry` and esp = `sp`, names it
/// `progname(path)`, loads the new page directory (switchuvm) and only then frees the old
/// one with freevm. On failure it has nothing to undo. The `argv` slices must be kernel
/// memory (fetchstr them first); exec copies them onto the new stack.
pub fn exec(path: &[u8], argv: &[&[u8]]) -> Result<Image, ExecError> {
    exec_from(crate::bootmods::archive(), path, argv)
}

/// exec with the program looked up in `archive`.
pub fn exec_from(archive: &[u8], path: &[u8], argv: &[&[u8]]) -> Result<Image, ExecError> {
    let file = archive::find(archive, path).map_err(|_| ExecError::NotFound)?;
    exec_file(file, argv)
}

/// exec of the program in `file` (sys_exec finds it through the file system).
pub fn exec_file(file: &(impl ProgramFile + ?Sized), argv: &[&[u8]]) -> Result<Image, ExecError> {
    let elf = Elf::parse_head(file.head(), file.size())
        .map_err(|e| ExecError::NotExecutable(NotExec::Elf(e)))?;
    // The stack's two pages above the image must stay below KERNBASE (allocuvm's limit).
    let sz = PGROUNDUP(elf.image_end())
        .and_then(|base| base.checked_add(2 * PGSIZE))
        .filter(|&sz| sz < KERNBASE)
        .ok_or(ExecError::NotExecutable(NotExec::NoStackRoom))?;
    let args = ustack(argv, sz)?;

    let mut pgdir = setupkvm().ok_or(ExecError::OutOfMemory)?;
    match build(&mut pgdir, &elf, file, sz, argv, &args) {
        Ok(()) => Ok(Image {
            pgdir,
            sz,
            entry: UVAddr(elf.entry()),
            sp: UVAddr(args.sp),
        }),
        Err(e) => {
            freevm(pgdir);
            Err(e)
        }
    }
}

/// Fills the fresh `pgdir`: the program, the guard page, the stack page with the arguments.
fn build(
    pgdir: &mut PageDir,
    elf: &Elf<'_>,
    file: &(impl ProgramFile + ?Sized),
    sz: u32,
    argv: &[&[u8]],
    args: &UStack,
) -> Result<(), ExecError> {
    let end = loadsegs(pgdir, elf, file)?;
    protect_text(pgdir, elf);
    let base = PGROUNDUP(end).expect("checked by exec_from");
    allocuvm(pgdir, base, sz)?;
    clearpteu(pgdir, UVAddr(sz - 2 * PGSIZE)).ignore("exec's new image is not in use");
    for (arg, &at) in argv.iter().zip(&args.ustack[3..]) {
        copyout(pgdir, UVAddr(at), arg)?;
        copyout(pgdir, UVAddr(at + arg.len() as u32), &[0])?;
    }
    let mut words = [0u8; 4 * USTACK_WORDS];
    for (w, b) in args.ustack.iter().zip(words.chunks_exact_mut(4)) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    copyout(pgdir, UVAddr(args.sp), &words[..4 * args.nwords()])?;
    Ok(())
}

/// Maps and loads every segment, in ascending order, growing the image segment by segment
/// (only the pages each segment covers are mapped; two segments may share a page). Returns
/// the end of the last segment.
fn loadsegs(
    pgdir: &mut PageDir,
    elf: &Elf<'_>,
    file: &(impl ProgramFile + ?Sized),
) -> Result<u32, ExecError> {
    let mut sz = 0;
    for ph in elf.segments() {
        // Continue from sz inside the page where the previous segment ended; else start at
        // the segment's own page, leaving the gap unmapped.
        let from = sz.max(PGROUNDDOWN(ph.vaddr));
        sz = allocuvm(pgdir, from, ph.end())?;
        let off = ph.off as usize;
        loaduvm_from(pgdir, UVAddr(ph.vaddr), ph.filesz as usize, |at, dst| {
            file.read_at(off + at, dst);
        });
    }
    Ok(sz)
}

/// Makes the pages that only non-writable segments occupy read-only.
fn protect_text(pgdir: &mut PageDir, elf: &Elf<'_>) {
    for ph in elf.segments().filter(|ph| !ph.writable()) {
        let mut page = PGROUNDDOWN(ph.vaddr);
        while page < ph.end() {
            let shared = elf
                .segments()
                .any(|w| w.writable() && w.vaddr < page + PGSIZE && w.end() > page);
            if !shared {
                clearptew(pgdir, UVAddr(page)).ignore("exec's new image is not in use");
            }
            page += PGSIZE;
        }
    }
}

/// Words of xv6's `ustack`: fake return PC, argc, argv, MAXARG pointers and the 0.
const USTACK_WORDS: usize = xv6_abi::exec::USTACK_BYTES / 4;

/// Where exec puts the arguments on the stack page below `sz` (xv6 exec.c's `ustack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UStack {
    /// The words pushed last, from the final esp up: 0xffffffff, argc, the address of
    /// argv[0]'s slot, then the user addresses of the argc strings, then 0.
    pub ustack: [u32; USTACK_WORDS],
    /// argc.
    pub argc: usize,
    /// The initial esp: where `ustack[0]` goes.
    pub sp: u32,
}

impl UStack {
    /// How many of `ustack`'s words are used: 3 + argc + 1.
    #[must_use]
    pub fn nwords(&self) -> usize {
        3 + self.argc + 1
    }
}

/// Lays out `argv` on the stack page `[sz - PGSIZE, sz)`, as xv6 does: each string (with its
/// NUL) below the previous one, starting from the top, its start aligned down to 4 bytes;
/// below the last string the ustack words. TooManyArgs for more than MAXARG arguments or if
/// they do not fit in the page.
pub fn ustack(argv: &[&[u8]], sz: u32) -> Result<UStack, ExecError> {
    if argv.len() > MAXARG {
        return Err(ExecError::TooManyArgs);
    }
    let bottom = sz - PGSIZE;
    let mut u = UStack {
        ustack: [0; USTACK_WORDS],
        argc: argv.len(),
        sp: sz,
    };
    let below = |sp: u32, n: usize| -> Result<u32, ExecError> {
        u32::try_from(n)
            .ok()
            .and_then(|n| sp.checked_sub(n))
            .filter(|&a| a >= bottom)
            .ok_or(ExecError::TooManyArgs)
    };
    for (i, arg) in argv.iter().enumerate() {
        u.sp = below(u.sp, arg.len().saturating_add(1))? & !3;
        if u.sp < bottom {
            return Err(ExecError::TooManyArgs);
        }
        u.ustack[3 + i] = u.sp;
    }
    u.ustack[3 + u.argc] = 0;
    u.ustack[0] = FAKE_RETURN_PC;
    u.ustack[1] = u.argc as u32;
    u.ustack[2] = u.sp - (u.argc as u32 + 1) * 4; // argv pointer
    u.sp = below(u.sp, 4 * u.nwords())?;
    Ok(u)
}

/// The last component of `path` (xv6 names the process after it): "/bin/echo" → "echo".
#[must_use]
pub fn progname(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&c| c == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::build::archive;
    use crate::elf::build::{default_layout, elf, load, omagic};
    use crate::kalloc::{kalloc, kfree, KMEM};
    use crate::mmu::{PteFlags, PTE_P, PTE_U, PTE_W};
    use crate::uaccess::{copyin, fetchint, fetchstr, UserMem};
    use crate::vm::{getpte, testmem};

    #[test]
    fn ustack_layout_is_xv6s() {
        let u = ustack(&[b"echo", b"a", b"b"], 0x4000).unwrap();
        // "echo\0" at 0x3ff8 (0x3ffb aligned down), "a\0" at 0x3ff4, "b\0" at 0x3ff0.
        assert_eq!(
            &u.ustack[..u.nwords()],
            &[FAKE_RETURN_PC, 3, 0x3fe0, 0x3ff8, 0x3ff4, 0x3ff0, 0]
        );
        assert_eq!(u.sp, 0x3ff0 - 7 * 4);
        assert_eq!(u.ustack[2], u.sp + 12, "argv right above argc");
        let none = ustack(&[], 0x4000).unwrap();
        assert_eq!(&none.ustack[..4], &[FAKE_RETURN_PC, 0, 0x3ffc, 0]);
        assert_eq!(none.sp, 0x4000 - 16);
    }

    #[test]
    fn ustack_limits() {
        let many: Vec<&[u8]> = vec![b"x"; MAXARG];
        assert_eq!(ustack(&many, 0x4000).unwrap().argc, MAXARG);
        let too_many: Vec<&[u8]> = vec![b"x"; MAXARG + 1];
        assert_eq!(ustack(&too_many, 0x4000), Err(ExecError::TooManyArgs));
        // One string: it and the 5 words (20 bytes) must fit in the page.
        let fits = vec![b'a'; 4075];
        let u = ustack(&[&fits], 0x4000).unwrap();
        assert_eq!(u.sp, 0x3000, "exactly the whole page");
        let overflows = vec![b'a'; 4076];
        assert_eq!(ustack(&[&overflows], 0x4000), Err(ExecError::TooManyArgs));
        let huge = vec![b'a'; 0x2_0000];
        assert_eq!(ustack(&[&huge], 0x4000), Err(ExecError::TooManyArgs));
        // Several strings that only overflow together.
        let half = vec![b'a'; 2040];
        assert_eq!(ustack(&[&half, &half], 0x4000), Err(ExecError::TooManyArgs));
        assert!(ustack(&[&half, &half[..2000]], 0x4000).is_ok());
    }

    #[test]
    fn prognames() {
        assert_eq!(progname(b"/bin/echo"), b"echo");
        assert_eq!(progname(b"echo"), b"echo");
        assert_eq!(progname(b"/echo"), b"echo");
        assert_eq!(progname(b"dir/"), b"");
    }

    /// Reads user memory of an image through its page directory.
    fn user(img: &mut Image, va: u32, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        copyin(&mut mem(img), UVAddr(va), &mut b).unwrap();
        b
    }

    /// An image's memory as uaccess reaches it (eager: no lazy pages).
    fn mem(img: &mut Image) -> UserMem<'_> {
        UserMem {
            pgdir: &mut img.pgdir,
            sz: img.sz,
            lazy_from: None,
        }
    }

    /// The flags of the present page at `va`, if any.
    fn flags(img: &Image, va: u32) -> Option<PteFlags> {
        getpte(&img.pgdir, UVAddr(va))
            .filter(|p| p.present())
            .map(|p| p.flags() & (PTE_P | PTE_W | PTE_U))
    }

    const RW: Option<PteFlags> = Some(PTE_P.union(PTE_W).union(PTE_U));
    const RO: Option<PteFlags> = Some(PTE_P.union(PTE_U));
    const GUARD: Option<PteFlags> = Some(PTE_P.union(PTE_W));

    /// The argv the new program sees, read back from its stack as it would.
    fn argv_of(img: &mut Image) -> Vec<Vec<u8>> {
        let sp = img.sp.0;
        let pd = &mut mem(img);
        assert_eq!(fetchint(pd, UVAddr(sp)), Ok(FAKE_RETURN_PC));
        let argc = fetchint(pd, UVAddr(sp + 4)).unwrap();
        let argv = fetchint(pd, UVAddr(sp + 8)).unwrap();
        assert_eq!(argv, sp + 12);
        assert_eq!(fetchint(pd, UVAddr(argv + 4 * argc)), Ok(0));
        (0..argc)
            .map(|i| {
                let p = fetchint(pd, UVAddr(argv + 4 * i)).unwrap();
                assert_eq!(p % 4, 0);
                let mut buf = [0u8; 256];
                fetchstr(pd, UVAddr(p), &mut buf).unwrap().to_vec()
            })
            .collect()
    }

    #[test]
    fn execs_an_omagic_image() {
        let _g = testmem::lock();
        let before = testmem::free();
        let a = archive(&[(b"echo", &omagic())]);
        let mut img = exec_from(&a, b"/echo", &[b"echo", b"hello", b"world"]).unwrap();
        // One RWX segment at 0: 0x300 bytes from file offset 0x74, bss up to 0x1400.
        assert_eq!((img.entry, img.sz), (UVAddr(0), 0x4000));
        let text = user(&mut img, 0, 0x1400);
        assert!(text[..0x300]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (0x74 + i) as u8));
        assert!(text[0x300..].iter().all(|&b| b == 0), "bss is zeroed");
        assert_eq!((flags(&img, 0), flags(&img, 0x1000)), (RW, RW));
        // Guard page at 0x2000, stack page at 0x3000; nothing above.
        assert_eq!(flags(&img, 0x2000), GUARD);
        assert_eq!(flags(&img, 0x3000), RW);
        assert_eq!(flags(&img, 0x4000), None);
        assert_eq!(argv_of(&mut img), [&b"echo"[..], b"hello", b"world"]);
        // "echo\0" at 0x3ff8, "hello\0" at 0x3ff0, "world\0" at 0x3fe8, then 7 words.
        assert_eq!(img.sp, UVAddr(0x3fe8 - 7 * 4));
        freevm(img.pgdir);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn execs_the_default_layout() {
        let _g = testmem::lock();
        let before = testmem::free();
        let a = archive(&[(b"x", b"junk"), (b"prog", &default_layout())]);
        let mut img = exec_from(&a, b"prog", &[b"prog"]).unwrap();
        assert_eq!(img.entry, UVAddr(0x1100));
        // Nothing below the first segment; text read-only; no page for the gap between
        // the text (ends 0x2234) and the data (0x3f0c..0x408c, with its bss); the
        // bss-only segment at 0x6000..0x8010 after another gap.
        assert_eq!(flags(&img, 0), None);
        assert_eq!((flags(&img, 0x1000), flags(&img, 0x2000)), (RO, RO));
        assert_eq!((flags(&img, 0x3000), flags(&img, 0x4000)), (RW, RW));
        assert_eq!(flags(&img, 0x5000), None);
        for va in [0x6000, 0x7000, 0x8000] {
            assert_eq!(flags(&img, va), RW);
        }
        assert_eq!(
            user(&mut img, 0x1000, 2),
            [0x00, 0x01],
            "text from file offset 0x1000"
        );
        assert_eq!(
            user(&mut img, 0x3f0c, 1),
            [0x0c],
            "data from file offset 0x2f0c"
        );
        assert!(user(&mut img, 0x400c, 0x80).iter().all(|&b| b == 0));
        assert!(user(&mut img, 0x6000, 0x2010).iter().all(|&b| b == 0));
        assert_eq!(user(&mut img, 0x3000, 0xf0c), vec![0; 0xf0c]);
        // Image end 0x8010 → guard at 0x9000, stack at 0xa000, sz 0xb000.
        assert_eq!(img.sz, 0xb000);
        assert_eq!((flags(&img, 0x9000), flags(&img, 0xa000)), (GUARD, RW));
        assert_eq!(argv_of(&mut img), [&b"prog"[..]]);
        freevm(img.pgdir);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn segments_sharing_a_page_and_high_addresses() {
        let _g = testmem::lock();
        let before = testmem::free();
        // Text and data in one page (unaligned p_vaddr): the page stays writable; the text
        // page below it becomes read-only. Linked at 0x08048000: nothing mapped below.
        let base = 0x0804_8000;
        let f = elf(
            base + 0x100,
            &[
                load(0x100, base + 0x100, 0x1000, 0x1000, 5),
                load(0x1100, base + 0x1100, 0x10, 0x20, 6),
            ],
            0x1200,
        );
        let a = archive(&[(b"p", &f)]);
        let mut img = exec_from(&a, b"p", &[]).unwrap();
        assert_eq!(flags(&img, base), RO);
        assert_eq!(flags(&img, base + 0x1000), RW);
        assert_eq!(flags(&img, base - 0x1000), None);
        assert_eq!(img.sz, base + 0x4000);
        assert_eq!(argv_of(&mut img), Vec::<Vec<u8>>::new());
        let used = before - testmem::free();
        // setupkvm (the directory: the kernel half is shared) + one page table + 2 image
        // pages + guard + stack.
        assert_eq!(used, 1 + 1 + 4);
        freevm(img.pgdir);
        assert_eq!(testmem::free(), before);
    }

    #[test]
    fn rejections_leave_nothing_behind() {
        let _g = testmem::lock();
        let before = testmem::free();
        let mut bad_magic = omagic();
        bad_magic[0] = 0;
        let near_top = elf(
            0x7fff_d000,
            &[load(0x74, 0x7fff_d000, 0x10, 0x10, 7)],
            0x100,
        );
        let a = archive(&[
            (b"echo", &omagic()),
            (b"bad", &bad_magic),
            (b"short", &omagic()[..0x100]),
            (b"text", b"#!/bin/sh\necho hi\n"),
            (b"top", &near_top),
        ]);
        let e = |path: &[u8], argv: &[&[u8]]| exec_from(&a, path, argv).map(|i| i.sz);
        assert_eq!(e(b"nope", &[]), Err(ExecError::NotFound));
        assert_eq!(e(b"", &[]), Err(ExecError::NotFound));
        let ok = exec_from(&a, b"echo", &[]).unwrap();
        freevm(ok.pgdir);
        assert_eq!(testmem::free(), before);
        let why = |p: &[u8]| match e(p, &[]) {
            Err(ExecError::NotExecutable(w)) => w,
            other => panic!("{other:?}"),
        };
        assert!(matches!(why(b"bad"), NotExec::Elf(_)));
        assert!(matches!(why(b"short"), NotExec::Elf(_)));
        assert!(matches!(why(b"text"), NotExec::Elf(_)));
        // Each ELF error is named, not one generic line.
        let (a, b) = (why(b"bad"), why(b"text"));
        assert_ne!(
            ExecError::NotExecutable(a).to_string(),
            ExecError::NotExecutable(b).to_string()
        );
        // No room for guard and stack pages below KERNBASE.
        assert_eq!(why(b"top"), NotExec::NoStackRoom);
        let many: Vec<&[u8]> = vec![b"x"; MAXARG + 1];
        assert_eq!(e(b"echo", &many), Err(ExecError::TooManyArgs));
        let big = vec![b'a'; 4096];
        assert_eq!(e(b"echo", &[&big]), Err(ExecError::TooManyArgs));
        assert_eq!(testmem::free(), before);
        assert_eq!(ExecError::NotFound.first_exec_status(), 127);
        assert_eq!(
            ExecError::NotExecutable(NotExec::NoStackRoom).first_exec_status(),
            126
        );
    }

    #[test]
    fn out_of_memory_at_every_step_leaves_nothing_behind() {
        let _g = testmem::lock();
        let before = testmem::free();
        let a = archive(&[(b"prog", &default_layout())]);
        let img = exec_from(&a, b"prog", &[b"prog", b"arg"]).unwrap();
        let need = before - testmem::free();
        freevm(img.pgdir);
        for left in 0..need {
            let mut held = Vec::new();
            while KMEM.countfree() > left {
                held.push(kalloc().unwrap());
            }
            let r = exec_from(&a, b"prog", &[b"prog", b"arg"]);
            assert_eq!(
                r.map(|i| i.sz).unwrap_err(),
                ExecError::OutOfMemory,
                "{left}"
            );
            assert_eq!(KMEM.countfree(), left);
            for p in held {
                // SAFETY: pages taken from kalloc above.
                unsafe { kfree(p) };
            }
        }
        assert_eq!(testmem::free(), before);
    }
}
