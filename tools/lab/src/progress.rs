//! Progress of the lab's slow stages (fetching its assets): a spinner with the elapsed time on
//! a terminal (`indicatif`), one line when a stage starts and one when it ends otherwise (a CI
//! log, a file), so a first run never sits silent for a minute.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One stage under way; [`Stage::done`] ends it (dropping it ends it too, without the line).
pub struct Stage {
    what: String,
    start: Instant,
    spinner: Option<ProgressBar>,
}

impl Stage {
    /// Announces `what` (e.g. "fetching the lab's assets") on stderr.
    pub fn start(what: impl Into<String>) -> Stage {
        let what = what.into();
        let spinner = std::io::stderr().is_terminal().then(|| {
            let s = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} lab: {msg} ({elapsed})") {
                s.set_style(style);
            }
            s.set_message(what.clone());
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
        if spinner.is_none() {
            eprintln!("lab: {what} ...");
        }
        Stage {
            what,
            start: Instant::now(),
            spinner,
        }
    }

    /// Ends the stage with one line saying how long it took.
    pub fn done(self) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
        eprintln!(
            "lab: {}: done in {:.1} s",
            self.what,
            self.start.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
    }
}
