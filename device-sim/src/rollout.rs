//! A rate-limited rollout as the appliances saw it (`bench job
//! --max-per-minute N`): from the instants the fleet received its tasks,
//! in milliseconds since the job's creation, the count in each 60 s window
//! from creation, the most in any 60 s window, the mean of the complete
//! windows and its deviation from N.
//!
//! The hub's limiter (`hub/src/rollout/rate.rs`) is a sliding window, not
//! a budget per calendar minute: at most N releases in any 60 s, released
//! in batches a second apart of `ceil(N / 60)` each (at 1,000 a minute: 17
//! a second for 59 seconds, then nothing until the minute's first batch
//! slides out of the window). So each window from creation should hold N,
//! and no 60 s window more than N, on the hub's clock.
//!
//! The limiter works at the 60 s boundary exactly: the first batch of a
//! minute goes 60.000 s after the first batch of the minute before, as the
//! hub's decisions are timed. The receipts carry the jitter of everything
//! after the decision (the write, the publish, TLS, the simulator's own
//! scheduling): the hub's first batch of a job arrives a few milliseconds
//! later after its decision than the others, so the batch 60 s after it
//! arrives a little less than 60 s after it, and some 60 s window of
//! receipts holds one batch more than N. Hence a second maximum, over
//! windows shortened by [`JITTER_ALLOWANCE_MS`]: with delivery jitter
//! below that allowance, it is at most N exactly when the hub kept its
//! limit, and a batch too many (batches are a second apart) still shows.
//! `bench job` also measures the same [`Pace`] on the hub's own release
//! instants (each execution's `sentAt`, read back over REST), where the
//! plain 60 s maximum applies with no allowance.

use serde::Serialize;

/// The limiter's window, milliseconds.
pub const WINDOW_MS: u64 = 60_000;
/// The delivery jitter allowed for in [`Pace::max_in_shortened_window`],
/// milliseconds: well above the few milliseconds seen on one machine,
/// well below the second between the limiter's batches.
pub const JITTER_ALLOWANCE_MS: u64 = 250;

/// The pace of a rollout as received.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pace {
    /// The job's `maxPerMinute`.
    pub max_per_minute: u32,
    /// Tasks received.
    pub received: u64,
    /// The first receipt, milliseconds after the job's creation.
    pub first_ms: Option<u64>,
    /// The last receipt, milliseconds after the job's creation.
    pub last_ms: Option<u64>,
    /// Tasks received in each 60 s window from the job's creation:
    /// `[0, 60 s)`, `[60 s, 120 s)`, ...
    pub per_window: Vec<u64>,
    /// The most tasks received in any 60 s (sliding) window.
    pub max_in_any_window: u64,
    /// The most received in any window of 60 s less the jitter allowance.
    pub max_in_shortened_window: u64,
    /// That allowance, milliseconds.
    pub jitter_allowance_ms: u64,
    /// The mean of the complete windows (every window before the one
    /// holding the last receipt); None when every task came in the first.
    pub per_minute: Option<f64>,
    /// `per_minute` against `max_per_minute`, percent (negative: slower).
    pub deviation_percent: Option<f64>,
}

impl Pace {
    /// The pace of `received` (milliseconds after creation, any order)
    /// under a limit of `max_per_minute`.
    pub fn measure(max_per_minute: u32, mut received: Vec<u64>) -> Self {
        received.sort_unstable();
        let per_window = per_window(&received, WINDOW_MS);
        let per_minute = per_window
            .split_last()
            .filter(|(_, complete)| !complete.is_empty())
            .map(|(_, complete)| complete.iter().sum::<u64>() as f64 / complete.len() as f64);
        Self {
            max_per_minute,
            received: received.len() as u64,
            first_ms: received.first().copied(),
            last_ms: received.last().copied(),
            max_in_any_window: max_in_any_window(&received, WINDOW_MS),
            max_in_shortened_window: max_in_any_window(&received, WINDOW_MS - JITTER_ALLOWANCE_MS),
            jitter_allowance_ms: JITTER_ALLOWANCE_MS,
            per_minute: per_minute.map(round2),
            deviation_percent: per_minute
                .map(|rate| round2(deviation_percent(rate, f64::from(max_per_minute)))),
            per_window,
        }
    }
}

/// How many of `sorted` fall in each window of `window` from 0.
pub fn per_window(sorted: &[u64], window: u64) -> Vec<u64> {
    let Some(last) = sorted.last() else {
        return Vec::new();
    };
    let mut counts = vec![0; (last / window) as usize + 1];
    for at in sorted {
        counts[(at / window) as usize] += 1;
    }
    counts
}

/// The most of `sorted` in any half-open window `[t, t + window)`. A
/// window holding the most can always start at one of the instants, so
/// those are the only starts tried (two pointers, linear).
pub fn max_in_any_window(sorted: &[u64], window: u64) -> u64 {
    let mut most = 0;
    let mut end = 0;
    for (start, at) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < at + window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most as u64
}

/// How far `measured` is from `target`, in percent of `target`.
pub fn deviation_percent(measured: f64, target: f64) -> f64 {
    (measured - target) / target * 100.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Receipts as the hub's limiter releases `total` at `limit` a
    /// minute (batches a second apart, a new minute 60 s after the last
    /// one began), each batch received `delay(batch)` ms late.
    fn released(limit: u64, total: u64, delay: impl Fn(u64) -> u64) -> Vec<u64> {
        let per_batch = limit.div_ceil(60);
        let (mut out, mut batch) = (Vec::new(), 0);
        while (out.len() as u64) < total {
            let minute = out.len() as u64 / limit;
            let in_minute = out.len() as u64 % limit;
            let step = in_minute / per_batch;
            let n = per_batch
                .min(limit - in_minute)
                .min(total - out.len() as u64);
            let at = minute * WINDOW_MS + step * 1000 + delay(batch);
            out.extend(std::iter::repeat_n(at, n as usize));
            batch += 1;
        }
        out
    }

    #[test]
    fn windows_count_from_creation_half_open() {
        assert_eq!(
            per_window(&[0, 59_999, 60_000, 130_000], WINDOW_MS),
            [2, 1, 1]
        );
        assert_eq!(per_window(&[], WINDOW_MS), Vec::<u64>::new());
    }

    #[test]
    fn the_sliding_maximum_finds_the_busiest_minute_anywhere() {
        assert_eq!(max_in_any_window(&[], WINDOW_MS), 0);
        // Calendar windows hold 2 and 2; [30 s, 90 s) holds 4.
        let times = [0, 30_000, 59_000, 61_000, 89_999, 150_000];
        assert_eq!(per_window(&times, WINDOW_MS), [3, 2, 1]);
        assert_eq!(max_in_any_window(&times, WINDOW_MS), 4);
        // Exactly 60 s apart: never in one window.
        assert_eq!(max_in_any_window(&[0, 60_000, 120_000], WINDOW_MS), 1);
    }

    #[test]
    fn the_limiter_at_a_thousand_a_minute_shows_as_a_thousand() {
        let times = released(1000, 3000, |_| 40);
        let pace = Pace::measure(1000, times);
        assert_eq!(pace.per_window, [1000, 1000, 1000]);
        assert_eq!(pace.max_in_any_window, 1000);
        assert_eq!(pace.max_in_shortened_window, 1000);
        assert_eq!(pace.per_minute, Some(1000.0));
        assert_eq!(pace.deviation_percent, Some(0.0));
        assert_eq!((pace.first_ms, pace.last_ms), (Some(40), Some(178_040)));
    }

    #[test]
    fn delivery_jitter_shows_in_60_s_windows_not_in_shortened_ones() {
        // The job's first batch arrives 5 ms later than the others (as
        // seen: 20 ms after creation, the next minute's at 60,015 ms).
        let times = released(1000, 2000, |batch| if batch == 0 { 45 } else { 40 });
        let pace = Pace::measure(1000, times);
        assert_eq!(pace.per_window, [1000, 1000]);
        assert_eq!(pace.max_in_any_window, 1017);
        assert_eq!(pace.max_in_shortened_window, 1000);
        // A batch too many, a second early, still shows.
        let mut burst = released(1000, 2000, |_| 40);
        burst.extend([59_040; 17]);
        assert_eq!(Pace::measure(1000, burst).max_in_shortened_window, 1017);
    }

    #[test]
    fn the_mean_leaves_out_the_last_window_and_gives_the_deviation() {
        let mut times = released(600, 1200, |_| 0);
        times.truncate(1000);
        times.retain(|t| *t >= 6_000 || *t < 5_000);
        let pace = Pace::measure(600, times);
        assert_eq!(pace.per_window, [590, 400]);
        assert_eq!(pace.per_minute, Some(590.0));
        assert_eq!(pace.deviation_percent, Some(-1.67));
        let one = Pace::measure(600, vec![10, 20]);
        assert_eq!((one.per_minute, one.deviation_percent), (None, None));
        assert_eq!(deviation_percent(1010.0, 1000.0), 1.0);
    }
}
