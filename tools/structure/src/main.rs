//! `structure DIR...`: checks each crate source directory (the one holding `lib.rs` or
//! `main.rs`) for import circles between its files and for functions over the line limit; see
//! the library's docs for the rules. Prints one line per finding; exit status 0 when there is
//! none, 1 when there are findings, 2 on a usage or I/O error.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        eprintln!("usage: structure DIR... (crate source directories, e.g. vmm/src)");
        return ExitCode::from(2);
    }
    let mut findings = 0;
    for dir in &dirs {
        match structure::check_dir(dir, structure::MAX_FN_LINES) {
            Ok(report) => {
                for line in report.lines() {
                    println!("{line}");
                }
                findings += report.len();
            }
            Err(e) => {
                eprintln!("structure: {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
    }
    if findings == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
