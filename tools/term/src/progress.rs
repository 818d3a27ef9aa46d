//! Progress of slow stages (fetching the lab's assets, a bench): a spinner with the elapsed
//! time on a terminal (`indicatif`), one line when a stage starts and one when it ends
//! otherwise (a CI log, a file), so a first run never sits silent for a minute. Where stderr
//! is a terminal nobody watches (the inner `vmm` in the lab, whose stderr is a serial line)
//! there are only lines: whoever starts it there sets [`LINES_ONLY_ENV`].

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Set (to anything) in the environment: no spinners, only lines. The lab sets it for the
/// program it runs (its name says so).
pub const LINES_ONLY_ENV: &str = "XV6_VMM_IN_LAB";

/// Whether a spinner can be drawn: stderr is a terminal a person watches.
fn spinner_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os(LINES_ONLY_ENV).is_none()
}

/// One stage under way; [`Stage::done`] ends it (dropping it ends it too, without the line).
pub struct Stage {
    prefix: &'static str,
    what: String,
    start: Instant,
    spinner: Option<ProgressBar>,
}

impl Stage {
    /// Announces `what` (e.g. "fetching the lab's assets") on stderr, prefixed `lab: `.
    pub fn start(what: impl Into<String>) -> Stage {
        Stage::start_as("lab", what)
    }

    /// The same with another prefix (`bench: ...`).
    pub fn start_as(prefix: &'static str, what: impl Into<String>) -> Stage {
        let what = what.into();
        let spinner = spinner_wanted().then(|| {
            let s = ProgressBar::new_spinner();
            let template = format!("{{spinner}} {prefix}: {{msg}} ({{elapsed}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                s.set_style(style);
            }
            s.set_message(what.clone());
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
        if spinner.is_none() {
            eprintln!("{prefix}: {what} ...");
        }
        Stage {
            prefix,
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
            "{}: {}: done in {:.1} s",
            self.prefix,
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
