//! Building the lab's initramfs as cpio "newc" archives.
//!
//! Linux unpacks concatenated newc archives in order, later entries replacing earlier ones, so
//! the lab uses two: a cached *base* (busybox and the KVM modules, built once by
//! [`crate::assets::ensure_assets`]) and a small per-run part (the generated `/init`, the program, its
//! shared libraries and the caller's files), appended to a copy of the base for each run.
//!
//! [`Cpio`] writes entries with the parent directories they need (the kernel does not create
//! missing parents), each directory once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use cpio::newc::{trailer, Builder};

/// Mode bits of a directory entry.
const S_IFDIR: u32 = 0o040000;
/// Mode bits of a regular file entry.
const S_IFREG: u32 = 0o100000;
/// Mode bits of a character device entry.
const S_IFCHR: u32 = 0o020000;

/// A newc archive being written to `W`.
pub struct Cpio<W: Write> {
    out: Option<W>,
    dirs: BTreeSet<String>,
    ino: u32,
}

/// Normalises an absolute in-archive path to the relative form cpio uses ("a/b"), rejecting
/// anything that is not a plain absolute path.
pub fn archive_name(path: &str) -> io::Result<String> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("lab path {path:?}: {why}"),
        )
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("must be absolute"))?;
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("must not contain ..")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad("names no file"));
    }
    Ok(parts.join("/"))
}

impl<W: Write> Cpio<W> {
    /// Starts an archive. `known_dirs` are directories already present (in an earlier archive)
    /// that need no entry of their own.
    pub fn new(out: W, known_dirs: &[&str]) -> Self {
        Cpio {
            out: Some(out),
            dirs: known_dirs.iter().map(|d| d.to_string()).collect(),
            ino: 1,
        }
    }

    fn next_ino(&mut self) -> u32 {
        self.ino += 1;
        self.ino
    }

    fn header(&mut self, name: &str, mode: u32) -> Builder {
        let ino = self.next_ino();
        Builder::new(name)
            .ino(ino)
            .mode(mode)
            .nlink(1)
            .uid(0)
            .gid(0)
    }

    fn raw(&mut self, builder: Builder, data: &mut dyn Read, size: u64) -> io::Result<()> {
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "file too big for cpio (4 GiB)")
        })?;
        let out = self.out.take().expect("cpio writer used after finish");
        let mut w = builder.write(out, size32);
        let copied = io::copy(&mut data.take(size), &mut w)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while archiving",
            ));
        }
        self.out = Some(w.finish()?);
        Ok(())
    }

    /// Adds the directories leading to `name` (relative archive name) that are not there yet.
    fn parents(&mut self, name: &str) -> io::Result<()> {
        let mut prefix = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if self.dirs.insert(prefix.clone()) {
                let b = self.header(&prefix.clone(), S_IFDIR | 0o755);
                self.raw(b, &mut io::empty(), 0)?;
            }
        }
        Ok(())
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let name = archive_name(path)?;
        self.parents(&name)?;
        if self.dirs.insert(name.clone()) {
            let b = self.header(&name, S_IFDIR | 0o755);
            self.raw(b, &mut io::empty(), 0)?;
        }
        Ok(())
    }

    /// Adds a regular file with the given contents and permission bits.
    pub fn bytes(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let name = archive_name(path)?;
        self.parents(&name)?;
        let b = self.header(&name, S_IFREG | (perm & 0o7777));
        self.raw(b, &mut &data[..], data.len() as u64)
    }

    /// Adds a copy of a host file (following symlinks), keeping its permission bits.
    pub fn host_file(&mut self, path: &str, host: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let name = archive_name(path)?;
        self.parents(&name)?;
        let mut f = File::open(host)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", host.display()),
            ));
        }
        let b = self.header(&name, S_IFREG | (meta.permissions().mode() & 0o7777));
        self.raw(b, &mut f, meta.len())
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        let name = archive_name(path)?;
        self.parents(&name)?;
        let b = self
            .header(&name, S_IFCHR | 0o600)
            .rdev_major(major)
            .rdev_minor(minor);
        self.raw(b, &mut io::empty(), 0)
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        trailer(self.out.take().expect("cpio writer used after finish"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::NewcReader;

    /// Lists (name, mode, size, contents) of every entry of a newc archive.
    fn list(mut data: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut r = NewcReader::new(data).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let name = r.entry().name().to_string();
            let mode = r.entry().mode();
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            out.push((name, mode, buf));
            data = r.finish().unwrap();
        }
        out
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(archive_name("/lab/bin/vmm").unwrap(), "lab/bin/vmm");
        assert_eq!(archive_name("//a/./b/").unwrap(), "a/b");
        assert!(archive_name("relative").is_err());
        assert!(archive_name("/a/../etc").is_err());
        assert!(archive_name("/").is_err());
    }

    #[test]
    fn layout_has_parents_first_once() {
        let mut c = Cpio::new(Vec::new(), &["lib"]);
        c.bytes("/init", 0o755, b"#!/bin/sh\n").unwrap();
        c.bytes("/lab/bin/prog", 0o755, b"ELF").unwrap();
        c.bytes("/lab/files/x", 0o644, b"hello").unwrap();
        c.bytes("/lib/ld.so", 0o755, b"ld").unwrap();
        c.char_dev("/dev/console", 5, 1).unwrap();
        let data = c.finish().unwrap();
        let entries = list(&data);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "init",
                "lab",
                "lab/bin",
                "lab/bin/prog",
                "lab/files",
                "lab/files/x",
                "lib/ld.so",
                "dev",
                "dev/console"
            ]
        );
        assert_eq!(entries[0].1, 0o100755);
        assert_eq!(entries[1].1, 0o040755);
        assert_eq!(entries[5].2, b"hello");
        assert_eq!(entries[8].1 & 0o170000, S_IFCHR);
        assert_eq!(
            data.len() % 4,
            0,
            "archives must concatenate on 4-byte boundaries"
        );
    }
}
