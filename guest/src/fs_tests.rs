//! Host tests of fs.rs.

use super::*;
use crate::vm::testmem;

fn fresh() -> Box<Fs> {
    let mut fs = Box::new(Fs::new());
    fs.init().unwrap();
    fs
}

#[test]
fn paths_split_as_skipelem_does() {
    assert_eq!(skipelem(b"a/bb/c"), Some((&b"a"[..], &b"bb/c"[..])));
    assert_eq!(skipelem(b"///a//bb"), Some((&b"a"[..], &b"bb"[..])));
    assert_eq!(skipelem(b"a"), Some((&b"a"[..], &b""[..])));
    assert_eq!(skipelem(b""), None);
    assert_eq!(skipelem(b"///"), None);
    assert_eq!(name_of(b"123456789012345"), *b"12345678901234");
}

#[test]
fn stat_has_xv6_layout() {
    let s = Stat {
        typ: T_FILE,
        dev: 1,
        ino: 7,
        nlink: 2,
        size: 0x1234,
    };
    let b = s.to_bytes();
    assert_eq!(&b[0..2], &[2, 0]);
    assert_eq!(&b[4..8], &[1, 0, 0, 0]);
    assert_eq!(&b[8..12], &[7, 0, 0, 0]);
    assert_eq!(&b[12..14], &[2, 0]);
    assert_eq!(&b[16..20], &[0x34, 0x12, 0, 0]);
}

#[test]
fn directories_links_and_dots() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut fs = fresh();
    let d = fs.create(ROOTINO, b"/dd", T_DIR, 0, 0).unwrap();
    assert_eq!(fs.inode(ROOTINO).nlink, 2);
    assert_eq!(fs.namei(ROOTINO, b"dd/."), Ok(d));
    assert_eq!(fs.namei(ROOTINO, b"dd/.."), Ok(ROOTINO));
    assert_eq!(fs.namei(d, b"../dd/../.."), Ok(ROOTINO));
    assert_eq!(fs.namei(d, b""), Ok(d));
    let f = fs.create(d, b"ff", T_FILE, 0, 0).unwrap();
    assert_eq!(fs.create(ROOTINO, b"dd/ff", T_FILE, 0, 0), Ok(f));
    assert_eq!(
        fs.create(ROOTINO, b"dd/ff", T_DIR, 0, 0),
        Err(FsError::Exists)
    );
    assert_eq!(
        fs.create(ROOTINO, b"dd/ff/x", T_FILE, 0, 0),
        Err(FsError::NotDir)
    );
    assert_eq!(
        fs.create(ROOTINO, b"", T_FILE, 0, 0),
        Err(FsError::NotFound)
    );
    fs.link(ROOTINO, b"dd/ff", b"/ln").unwrap();
    assert_eq!(fs.inode(f).nlink, 2);
    assert_eq!(fs.link(ROOTINO, b"dd", b"x"), Err(FsError::IsDir));
    assert_eq!(fs.link(ROOTINO, b"nope", b"x"), Err(FsError::NotFound));
    // Non-empty directories and dots stay.
    assert_eq!(fs.unlink(ROOTINO, b"dd"), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOTINO, b"dd/."), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOTINO, b"dd/.."), Err(FsError::IsDir));
    // Names are cut to DIRSIZ.
    fs.create(ROOTINO, b"12345678901234", T_DIR, 0, 0).unwrap();
    let g = fs
        .create(ROOTINO, b"123456789012345/abcdefghijklmnopq", T_FILE, 0, 0)
        .unwrap();
    assert_eq!(fs.namei(ROOTINO, b"12345678901234/abcdefghijklmn"), Ok(g));
    fs.unlink(ROOTINO, b"12345678901234/abcdefghijklmnxyz")
        .unwrap();
    fs.unlink(ROOTINO, b"12345678901234").unwrap();
    // An open file survives its last unlink until the reference goes.
    assert_eq!(fs.writei(f, 0, b"hello").unwrap(), 5);
    fs.idup(f);
    fs.unlink(ROOTINO, b"dd/ff").unwrap();
    fs.unlink(ROOTINO, b"ln").unwrap();
    assert_eq!(fs.inode(f).nlink, 0);
    let mut b = [0u8; 8];
    assert_eq!(fs.readi(f, 0, &mut b), 5);
    assert_eq!(&b[..5], b"hello");
    let used = fs.used();
    fs.iput(f);
    assert_eq!(fs.used(), used - 1);
    fs.unlink(ROOTINO, b"dd").unwrap();
    assert_eq!(fs.inode(ROOTINO).nlink, 1);
    assert_eq!(fs.namei(ROOTINO, b"dd"), Err(FsError::NotFound));
    // The directory's freed slots read as inum 0 and are reused.
    let mut de = [0u8; DIRENT_SIZE];
    fs.readi(ROOTINO, 2 * DIRENT_SIZE as u32, &mut de);
    assert_eq!(&de[..2], &[0, 0]);
    drop(fs);
    assert_eq!(testmem::free(), before);
}

#[test]
fn file_data_in_pages_and_archive_files_copied_on_write() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut fs = fresh();
    let root_pages = before - testmem::free();
    let f = fs.create(ROOTINO, b"big", T_FILE, 0, 0).unwrap();
    let chunk: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut off = 0;
    for _ in 0..20 {
        assert_eq!(fs.writei(f, off, &chunk), Ok(chunk.len()));
        off += chunk.len() as u32;
    }
    assert_eq!(fs.inode(f).size, 100_000);
    // 25 data pages (12 direct + 13 through the indirect page) and the indirect page.
    assert_eq!(before - testmem::free(), root_pages + 26);
    let mut back = vec![0u8; 5000];
    assert_eq!(fs.readi(f, 95_000, &mut back), 5000);
    assert_eq!(back, chunk);
    assert_eq!(fs.readi(f, 99_999, &mut back), 1);
    assert_eq!(fs.readi(f, 100_000, &mut back), 0);
    assert_eq!(fs.writei(f, 100_001, b"x"), Err(FsError::BadOffset));
    assert_eq!(fs.writei(f, MAXFILE, b""), Err(FsError::BadOffset));
    fs.unlink(ROOTINO, b"big").unwrap();
    assert_eq!(before - testmem::free(), root_pages);

    static PROG: &[u8] = b"\x7fELF and the rest";
    let a = fs.add_archive_file(b"prog", PROG).unwrap();
    assert_eq!(fs.add_archive_file(b"prog", PROG), Err(FsError::Exists));
    assert_eq!(fs.namei(ROOTINO, b"/prog"), Ok(a));
    assert_eq!(fs.archive_bytes(a), Some(PROG));
    assert_eq!(before - testmem::free(), root_pages);
    assert_eq!(fs.writei(a, 4, b"!"), Ok(1));
    assert_eq!(fs.archive_bytes(a), None);
    let mut b = [0u8; 32];
    let n = fs.readi(a, 0, &mut b);
    assert_eq!(&b[..n], b"\x7fELF!and the rest");
    assert_eq!(before - testmem::free(), root_pages + 1);
    drop(fs);
    assert_eq!(testmem::free(), before);
}

#[test]
fn out_of_inodes_and_memory_fail_cleanly() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut fs = fresh();
    let f = fs.create(ROOTINO, b"f", T_FILE, 0, 0).unwrap();
    let mut held = Vec::new();
    while let Some(p) = KPage::new() {
        held.push(p);
    }
    assert_eq!(fs.writei(f, 0, b"x"), Err(FsError::NoSpace));
    assert_eq!(fs.inode(f).size, 0);
    drop(held.pop());
    // One page: the first page of data fits, the next does not: a short write.
    let two = vec![7u8; 2 * PAGE];
    assert_eq!(fs.writei(f, 0, &two), Ok(PAGE));
    drop(held);
    let mut n = 0;
    while fs
        .create(ROOTINO, format!("f{n}").as_bytes(), T_FILE, 0, 0)
        .is_ok()
    {
        n += 1;
    }
    assert_eq!(fs.used(), NINODE);
    assert!(n > 100, "{n}");
    drop(fs);
    assert_eq!(testmem::free(), before);
}

#[test]
fn an_unlinked_working_directory_has_no_dotdot_and_takes_no_files() {
    let _g = testmem::lock();
    let before = testmem::free();
    let mut fs = fresh();
    let used0 = fs.used();
    // mkdir /a; mkdir /a/b; chdir /a/b (a reference); unlink /a/b; unlink /a.
    let a = fs.create(ROOTINO, b"/a", T_DIR, 0, 0).unwrap();
    let b = fs.create(ROOTINO, b"/a/b", T_DIR, 0, 0).unwrap();
    fs.idup(b);
    assert_eq!(fs.inode(a).nlink, 2);
    fs.unlink(ROOTINO, b"/a/b").unwrap();
    assert_eq!(fs.inode(a).nlink, 1);
    assert_eq!(fs.inode(b).typ, T_DIR, "b lives on: a cwd holds it");
    fs.unlink(ROOTINO, b"/a").unwrap();
    assert_eq!(fs.inode(a).typ, 0, "a is free");
    // `..` of b is gone: lookup fails instead of handing out the free inode.
    assert_eq!(fs.namei(b, b"../"), Err(FsError::NotFound));
    assert_eq!(fs.namei(b, b".."), Err(FsError::NotFound));
    assert_eq!(fs.namei(b, b""), Ok(b));
    assert_eq!(fs.namei(b, b"."), Ok(b));
    // Nothing is created in it: no file, no directory, no device, no link.
    assert_eq!(fs.create(b, b"f", T_FILE, 0, 0), Err(FsError::Removed));
    assert_eq!(fs.create(b, b"d", T_DIR, 0, 0), Err(FsError::Removed));
    assert_eq!(fs.create(b, b"c", T_DEV, 1, 1), Err(FsError::Removed));
    let f = fs.create(ROOTINO, b"/f", T_FILE, 0, 0).unwrap();
    assert_eq!(fs.link(b, b"/f", b"g"), Err(FsError::Removed));
    fs.unlink(ROOTINO, b"/f").unwrap();
    assert_eq!(fs.inode(f).typ, 0);
    // The last reference frees b; every inode and page comes back.
    fs.iput(b);
    assert_eq!(fs.inode(b).typ, 0);
    assert_eq!(fs.used(), used0);
    drop(fs);
    assert_eq!(testmem::free(), before);
}

#[test]
fn a_held_inode_is_never_reallocated_and_entries_never_name_free_ones() {
    let _g = testmem::lock();
    let mut fs = fresh();
    let f = fs.create(ROOTINO, b"f", T_FILE, 0, 0).unwrap();
    // A free inode with a reference (as the old bug left one) is not handed out.
    fs.unlink(ROOTINO, b"f").unwrap();
    fs.inode_mut(f).refs = 1;
    let g = fs.create(ROOTINO, b"g", T_FILE, 0, 0).unwrap();
    assert_ne!(g, f);
    fs.inode_mut(f).refs = 0;
    // A directory entry naming a free inode (or none at all) reads as absent.
    fs.dirlink(ROOTINO, b"stale", f).unwrap();
    fs.dirlink(ROOTINO, b"wild", NINODE as u16 + 5).unwrap();
    assert_eq!(fs.namei(ROOTINO, b"stale"), Err(FsError::NotFound));
    assert_eq!(fs.namei(ROOTINO, b"wild"), Err(FsError::NotFound));
    assert_eq!(fs.link(ROOTINO, b"stale", b"x"), Err(FsError::NotFound));
}

#[test]
fn link_counts_stop_at_maxlink() {
    let _g = testmem::lock();
    let mut fs = fresh();
    let f = fs.create(ROOTINO, b"f", T_FILE, 0, 0).unwrap();
    fs.inode_mut(f).nlink = MAXLINK - 1;
    fs.link(ROOTINO, b"f", b"g").unwrap();
    assert_eq!(fs.inode(f).nlink, MAXLINK);
    assert_eq!(fs.link(ROOTINO, b"f", b"h"), Err(FsError::TooManyLinks));
    assert_eq!(fs.inode(f).nlink, MAXLINK);
    assert_eq!(fs.namei(ROOTINO, b"h"), Err(FsError::NotFound));
    // A directory with MAXLINK links takes no subdirectory (its `..` would wrap the count).
    let d = fs.create(ROOTINO, b"d", T_DIR, 0, 0).unwrap();
    fs.inode_mut(d).nlink = MAXLINK;
    assert_eq!(
        fs.create(ROOTINO, b"d/sub", T_DIR, 0, 0),
        Err(FsError::TooManyLinks)
    );
    assert!(fs.create(ROOTINO, b"d/file", T_FILE, 0, 0).is_ok());
}

#[test]
fn an_archive_file_beyond_maxfile_reads_but_takes_no_write() {
    let _g = testmem::lock();
    let before = testmem::free();
    static BIG: [u8; 5 << 20] = [7; 5 << 20];
    let mut fs = fresh();
    let used = before - testmem::free();
    let a = fs.add_archive_file(b"big", &BIG).unwrap();
    let mut b = [0u8; 4];
    assert_eq!(fs.readi(a, (5 << 20) - 4, &mut b), 4);
    assert_eq!(b, [7; 4]);
    assert_eq!(fs.writei(a, 0, b"x"), Err(FsError::NoSpace));
    // Nothing kept of the pages the failed copy took; the bytes are as they were.
    assert_eq!(before - testmem::free(), used);
    assert_eq!(fs.archive_bytes(a), Some(&BIG[..]));
    fs.itrunc(a);
    assert_eq!(fs.inode(a).size, 0);
    drop(fs);
    assert_eq!(testmem::free(), before);
}
