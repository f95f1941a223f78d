//! Progress of an image build: a spinner per long step on a terminal, one JSON event
//! per line for pipelines (`--json`), or nothing.
//!
//! JSON events (`vocc build --json`, on stderr so that stdout keeps the one summary):
//! ```text
//! {"event":"start","what":"layer demo/tiny"}
//! {"event":"done","what":"layer demo/tiny","cache":"built","seconds":1.9}
//! {"event":"done","what":"overlay demo-head","cache":"hit","seconds":0.0}
//! ```

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where progress goes.
pub enum Progress {
    Quiet,
    /// One JSON object per line.
    Json(Mutex<Box<dyn Write + Send>>),
    /// Spinners on the terminal (stderr).
    Bars(indicatif::MultiProgress),
}

impl Progress {
    /// JSON events on stderr.
    pub fn json_stderr() -> Progress {
        Progress::Json(Mutex::new(Box::new(std::io::stderr())))
    }

    /// Spinners when stderr is a terminal, else nothing.
    pub fn terminal() -> Progress {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Progress::Bars(indicatif::MultiProgress::new())
        } else {
            Progress::Quiet
        }
    }

    /// A step starts: long ones get a spinner.
    pub fn start(&self, what: &str) -> Task<'_> {
        let bar = match self {
            Progress::Quiet => None,
            Progress::Json(_) => {
                self.emit(&serde_json::json!({"event": "start", "what": what}));
                None
            }
            Progress::Bars(multi) => {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_message(what.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
        };
        Task {
            progress: self,
            what: what.to_owned(),
            started: Instant::now(),
            bar,
        }
    }

    /// A step that was a cache hit (no spinner, one event).
    pub fn hit(&self, what: &str) {
        if let Progress::Json(_) = self {
            self.emit(
                &serde_json::json!({"event": "done", "what": what, "cache": "hit", "seconds": 0.0}),
            );
        }
    }

    fn emit(&self, event: &serde_json::Value) {
        if let Progress::Json(w) = self {
            if let Ok(mut w) = w.lock() {
                let _ = writeln!(w, "{event}");
                let _ = w.flush();
            }
        }
    }
}

/// A running step.
pub struct Task<'a> {
    progress: &'a Progress,
    what: String,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Task<'_> {
    /// The step finished; returns its duration in seconds.
    pub fn done(self, ok: bool) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            if ok {
                bar.finish_with_message(format!("{} — built in {seconds:.1} s", self.what));
            } else {
                bar.abandon_with_message(format!("{} — failed", self.what));
            }
        }
        self.progress.emit(&serde_json::json!({
            "event": if ok { "done" } else { "failed" },
            "what": self.what,
            "cache": "built",
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }));
        seconds
    }
}
