//! The live progress bar (indicatif) of a run: connected and subscribed
//! appliances against the fleet's size, and task outcomes so far. Hidden
//! for `--json` and when stderr is not a terminal.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stats::{Counter, Stats};

/// Refresh period of the bar.
const TICK: Duration = Duration::from_millis(200);

/// A bar redrawn from the statistics until [`Progress::finish`].
#[derive(Debug)]
pub struct Progress {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts the bar for a fleet of `size` (hidden when `hidden`).
    pub fn start(stats: Arc<Stats>, size: usize, hidden: bool) -> Self {
        let bar = if hidden {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(size as u64)
        };
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} subscribed  {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                bar.set_position(stats.subscribed_now());
                bar.set_message(message(&stats));
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
            bar.finish_and_clear();
        });
        Self { stop, task }
    }

    /// Clears the bar and waits for its task.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn message(stats: &Stats) -> String {
    format!(
        "tasks {}  ok {}  failed {}  rejected {}  retries {}  errors {}",
        stats.get(Counter::TasksStarted),
        stats.get(Counter::Succeeded),
        stats.get(Counter::Failed),
        stats.get(Counter::Rejected),
        stats.get(Counter::Retries),
        stats.get(Counter::ConnectErrors),
    )
}
