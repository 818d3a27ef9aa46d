//! What a boot puts into guest memory: the kernel ELF ([`images`], [`loader`]), the user
//! programs and files of the program archive ([`programs`], [`dirs`] for `--dir` trees) and
//! the PVH boot parameters ([`params`]).

pub mod dirs;
pub mod images;
pub mod loader;
pub mod params;
pub mod programs;
