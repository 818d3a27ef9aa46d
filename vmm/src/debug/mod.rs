//! Seeing into the guest: the [`gdb`] stub, page-table dumps ([`pgdump`], drawn by
//! [`pgdump_svg`]), crash and panic reports ([`crash`], [`panic_report`]) and the names they
//! print ([`symbols`], [`syscall_names`]).

pub mod crash;
pub mod gdb;
pub mod panic_report;
pub mod pgdump;
pub mod pgdump_svg;
pub mod symbols;
pub mod syscall_names;
