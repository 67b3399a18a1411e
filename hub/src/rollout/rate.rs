//! The releases-per-minute limiter of a rollout.
//!
//! Two rules, both over the batches of releases the job made (kept in the
//! database with the job's progress, so a restarted hub goes on where it
//! stopped):
//! - **Any 60 s hold at most `limit` releases** (a sliding window, not
//!   calendar minutes, so a restart or a minute boundary never allows a
//!   double burst).
//! - **Releases are spread over the minute**: batches at least one *step*
//!   apart (1 s, or `60 s / limit` when the limit is below 60 a minute),
//!   each of at most `limit * step / 60 s` (rounded up). At 120 a minute
//!   that is 2 every second; at 5 a minute, 1 every 12 s.

use super::{Millis, MINUTE_MS};

/// The shortest time between two release batches of one job.
pub const MIN_STEP_MS: Millis = 1000;

/// One batch of releases: when, and how many.
pub type Batch = (Millis, u32);

/// What the limiter allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Releases allowed now.
    pub now: u64,
    /// When more may be allowed, if `now` does not exhaust the demand.
    pub next_at: Millis,
}

fn step_ms(limit: u32) -> Millis {
    let spread = MINUTE_MS.div_euclid(i64::from(limit.max(1)));
    spread.max(MIN_STEP_MS)
}

fn per_step(limit: u32) -> u64 {
    let step = u64::try_from(step_ms(limit)).unwrap_or(1);
    (u64::from(limit.max(1)) * step).div_ceil(60_000).max(1)
}

/// The batches still inside the window at `now` (younger than a minute).
pub fn prune(recent: &[Batch], now: Millis) -> Vec<Batch> {
    recent
        .iter()
        .copied()
        .filter(|(at, _)| *at > now - MINUTE_MS)
        .collect()
}

/// How many releases `limit` a minute allows at `now`, given the batches
/// of the last minute.
pub fn allowance(limit: u32, recent: &[Batch], now: Millis) -> Allowance {
    let step = step_ms(limit);
    let live = prune(recent, now);
    let last = live.iter().map(|(at, _)| *at).max();
    if let Some(last) = last.filter(|last| now < last + step) {
        return Allowance {
            now: 0,
            next_at: last + step,
        };
    }
    let in_window: u64 = live.iter().map(|(_, n)| u64::from(*n)).sum();
    let left = u64::from(limit).saturating_sub(in_window);
    if left == 0 {
        // Wait until enough of the window has slid past.
        let oldest = live.iter().map(|(at, _)| *at).min().unwrap_or(now);
        return Allowance {
            now: 0,
            next_at: (oldest + MINUTE_MS).max(now + 1),
        };
    }
    Allowance {
        now: left.min(per_step(limit)),
        next_at: now + step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_000_000_000;

    /// Runs the limiter with a release loop that asks for `demand` in
    /// total, waking exactly when told; returns the batch times.
    fn simulate(limit: u32, demand: u64, start: Millis) -> Vec<Batch> {
        let (mut log, mut recent, mut now, mut left) = (Vec::new(), Vec::new(), start, demand);
        while left > 0 {
            let a = allowance(limit, &recent, now);
            let n = a.now.min(left);
            if n > 0 {
                let batch = (now, u32::try_from(n).expect("small"));
                recent.push(batch);
                log.push(batch);
                left -= n;
            }
            recent = prune(&recent, now);
            assert!(a.next_at > now, "the limiter always names a later time");
            now = a.next_at;
        }
        log
    }

    fn max_in_any_minute(log: &[Batch]) -> u64 {
        log.iter()
            .map(|(start, _)| {
                log.iter()
                    .filter(|(at, _)| *at >= *start && *at < start + MINUTE_MS)
                    .map(|(_, n)| u64::from(*n))
                    .sum()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn one_hundred_twenty_a_minute_is_two_a_second() {
        let log = simulate(120, 200, T0);
        assert_eq!(log[0], (T0, 2));
        assert_eq!(log[1], (T0 + 1000, 2));
        assert_eq!(log.len(), 100);
        assert_eq!(log.last().map(|b| b.0), Some(T0 + 99_000));
        assert!(max_in_any_minute(&log) <= 120);
    }

    #[test]
    fn slow_rates_are_spread_and_fast_ones_capped_per_minute() {
        let slow = simulate(5, 10, T0);
        assert_eq!(slow.len(), 10);
        assert!(
            slow.windows(2).all(|w| w[1].0 - w[0].0 == 12_000),
            "{slow:?}"
        );
        let fast = simulate(1000, 5000, T0);
        assert_eq!(max_in_any_minute(&fast), 1000);
        assert_eq!(fast.iter().map(|(_, n)| u64::from(*n)).sum::<u64>(), 5000);
        let odd = simulate(7, 30, T0);
        assert!(max_in_any_minute(&odd) <= 7);
    }

    #[test]
    fn a_full_window_waits_for_its_oldest_batch_to_slide_out() {
        let recent = vec![(T0, 100), (T0 + 1000, 20)];
        let a = allowance(120, &recent, T0 + 2000);
        assert_eq!(
            a,
            Allowance {
                now: 0,
                next_at: T0 + MINUTE_MS
            }
        );
        let later = allowance(120, &recent, T0 + MINUTE_MS);
        assert_eq!(later.now, 2);
    }

    #[test]
    fn the_limit_holds_across_a_restart_with_the_saved_batches() {
        // 30 s of releases, then a "restart" that resumes from the saved
        // batches 10 s later: the minute still holds at most 120.
        let mut log = simulate(120, 60, T0);
        let saved = prune(&log, T0 + 40_000);
        let resumed_at = T0 + 40_000;
        let a = allowance(120, &saved, resumed_at);
        assert_eq!(a.now, 2);
        log.push((resumed_at, 2));
        assert!(max_in_any_minute(&log) <= 120);
    }
}
