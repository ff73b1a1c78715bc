//! Progress reporting on stderr: spinners and bars (indicatif) when stderr is a terminal, one plain line per
//! step when it is not (batch logs stay clean), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Lines,
    Bars,
}

/// Progress reporter for one command run.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: Mode,
}

/// A running step; [`Step::finish`] reports its duration.
#[derive(Debug)]
pub struct Step {
    name: String,
    start: Instant,
    bar: Option<ProgressBar>,
    mode: Mode,
}

impl Progress {
    /// Bars on a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode }
    }

    /// Starts a step without a known length.
    pub fn step(&self, name: &str) -> Step {
        let bar = (self.mode == Mode::Bars).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
            b.set_message(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if self.mode == Mode::Lines {
            eprintln!("psmeval: {name} …");
        }
        Step { name: name.to_string(), start: Instant::now(), bar, mode: self.mode }
    }

    /// Starts a step of `len` units.
    pub fn bar(&self, name: &str, len: u64) -> Step {
        let bar = (self.mode == Mode::Bars).then(|| {
            let b = ProgressBar::new(len);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_message(name.to_string());
            b
        });
        if self.mode == Mode::Lines {
            eprintln!("psmeval: {name} ({len}) …");
        }
        Step { name: name.to_string(), start: Instant::now(), bar, mode: self.mode }
    }

    /// A one-off message (not shown with `--quiet`).
    pub fn message(&self, text: &str) {
        if self.mode != Mode::Quiet {
            eprintln!("psmeval: {text}");
        }
    }
}

impl Step {
    /// Advances a bar.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Ends the step, reporting its duration.
    pub fn finish(self) {
        let secs = self.start.elapsed().as_secs_f64();
        match (&self.bar, self.mode) {
            (Some(b), _) => b.finish_with_message(format!("{} done in {secs:.1} s", self.name)),
            (None, Mode::Lines) => eprintln!("psmeval: {} done in {secs:.1} s", self.name),
            _ => {}
        }
    }
}

/// Shows a library's progress events ([`psmeval_evaluation::Progress`]) as steps and bars.
#[derive(Debug)]
pub struct Observer<'a> {
    progress: &'a Progress,
    current: std::sync::Mutex<Option<Step>>,
}

impl Progress {
    /// An observer of library progress events, shown by this reporter.
    pub fn observer(&self) -> Observer<'_> {
        Observer { progress: self, current: std::sync::Mutex::new(None) }
    }
}

impl Observer<'_> {
    /// Shows one event (called from any thread).
    pub fn observe(&self, event: psmeval_evaluation::Progress) {
        use psmeval_evaluation::Progress as P;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            P::Started { stage, total } => {
                if let Some(step) = current.take() {
                    step.finish();
                }
                *current = Some(match total {
                    Some(n) => self.progress.bar(stage, n),
                    None => self.progress.step(stage),
                });
            }
            P::Advanced => {
                if let Some(step) = current.as_ref() {
                    step.inc(1);
                }
            }
            P::Finished => {
                if let Some(step) = current.take() {
                    step.finish();
                }
            }
        }
    }
}
