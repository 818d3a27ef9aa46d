//! `term`: what the `vmm` command and the lab share about running on a terminal and waiting
//! on slow things: [`interrupt`] (SIGINT, SIGTERM and SIGHUP recorded, not fatal, so waiting
//! loops can clean up) and [`progress`] (a spinner on a terminal, lines elsewhere).

pub mod interrupt;
pub mod progress;
