//! Progress on stderr for the command line: indicatif bars and spinners for model load,
//! long-form generation and long encodes, drawn only when stderr is a terminal (so logs, pipes
//! and CI see none of them), and the per-run summary lines; `--quiet` turns both off (and the
//! download bars, through `HF_HUB_DISABLE_PROGRESS_BARS`, which weights/hub.rs reads).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Display;
use std::io::IsTerminal;
use std::time::Duration;

/// `--quiet`, shared by the subcommands that report progress.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct QuietArg {
    /// Print nothing on stderr but errors and warnings: no progress bars, no summary lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Where a run reports: bars (terminal only) and summary lines, both off under `--quiet`.
#[derive(Clone, Copy, Debug)]
pub struct Reporter {
    quiet: bool,
    draw: bool,
}

impl Reporter {
    pub fn new(q: QuietArg) -> Self {
        if q.quiet {
            // Set before any engine or download thread starts, so nothing reads the
            // environment concurrently.
            std::env::set_var("HF_HUB_DISABLE_PROGRESS_BARS", "1");
        }
        Reporter {
            quiet: q.quiet,
            draw: !q.quiet && std::io::stderr().is_terminal(),
        }
    }

    /// A summary line (loaded in.., wrote..), unless quiet.
    pub fn line(&self, msg: impl Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.draw {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A ticking spinner with elapsed time, for work without a known size (model load, one
    /// long encode); `finish_and_clear` it when done.
    pub fn spinner(&self, msg: impl Into<String>) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(msg.into());
        if self.draw {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    /// A counter of generated frames against the request's frame budget (the bar's length),
    /// with audio seconds and the real-time factor in its message.
    pub fn frames(&self, budget: u64) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(budget.max(1)), self.target());
        if let Ok(style) =
            ProgressStyle::with_template("generating [{bar:30}] {pos} frames, {msg} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }
}
