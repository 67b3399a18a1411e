//! Faults, decided deterministically from the run's seed.
//!
//! Every appliance owns two [`FaultRng`]s derived from `(seed, index)` (its
//! [`Dice`]): one draws the fate of each task it starts, in order, and
//! nothing else; the other draws everything that depends on time and
//! connections (clock skew first, then churn, metrics timing). So the same
//! seed gives the same fates to the same appliance's first, second, ...
//! task in every run, however often it reconnects and whatever the other
//! appliances do, and [`task_fates`] / [`clock_skew_ms`] tell a test in
//! advance what an appliance will do. The generator
//! is SplitMix64, written out here rather than borrowed from `rand`: it holds
//! 8 bytes per appliance and its sequence can never change under us with a
//! dependency upgrade, so a seed printed in an old report still replays.

use std::time::Duration;

/// Fault rates and magnitudes for the whole fleet. Rates are probabilities
/// in `0.0..=1.0`, drawn once per task (or per appliance for skew).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// A task ends FAILED instead of SUCCEEDED.
    pub fail_rate: f64,
    /// A task is REJECTED without being run.
    pub reject_rate: f64,
    /// A task is never answered at all (to exercise the hub's timeouts).
    pub never_answer_rate: f64,
    /// An upgrade crashes the appliance in the middle of its download; it
    /// comes back and resumes the download where it stopped.
    pub crash_rate: f64,
    /// An upgrade boots back into the old version (rollback).
    pub rollback_rate: f64,
    /// Offline churn: expected disconnections per appliance per minute.
    pub churn_per_minute: f64,
    /// Longest time a churned appliance stays offline.
    pub churn_max_offline: Duration,
    /// A download is throttled to `slow_download_bytes_per_sec`.
    pub slow_download_rate: f64,
    /// Throughput of a slow download.
    pub slow_download_bytes_per_sec: u64,
    /// Each appliance's clock is off by up to this much, either way.
    pub max_clock_skew: Duration,
}

impl FaultConfig {
    /// Checks that every rate is a probability.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("fail rate", self.fail_rate),
            ("reject rate", self.reject_rate),
            ("never-answer rate", self.never_answer_rate),
            ("crash rate", self.crash_rate),
            ("rollback rate", self.rollback_rate),
            ("slow download rate", self.slow_download_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} {rate} is outside 0..=1"));
            }
        }
        if self.fail_rate + self.reject_rate + self.never_answer_rate > 1.0 {
            return Err("fail + reject + never-answer rates exceed 1".into());
        }
        if !(0.0..=600.0).contains(&self.churn_per_minute) {
            return Err("churn per minute must be within 0..=600".into());
        }
        Ok(())
    }
}

/// How a task is going to end, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Runs and reports SUCCEEDED (unless the task itself fails).
    Succeed,
    /// Runs and reports FAILED at the end.
    Fail,
    /// Reports REJECTED without running.
    Reject,
    /// Never reports anything.
    NeverAnswer,
}

/// Everything the faults decide about one task. The same number of values
/// is drawn for every task whatever the rates, so changing one rate does not
/// shift the decisions of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFate {
    /// How the task ends.
    pub outcome: Outcome,
    /// For downloads: crash when this share (percent) has been received.
    pub crash_at_percent: Option<u8>,
    /// For upgrades: boot back into the old version.
    pub rollback: bool,
    /// For downloads: throttle to this many bytes per second.
    pub throttle: Option<u64>,
}

/// The generators of one appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dice {
    /// Time- and connection-dependent draws: the clock skew (first draw),
    /// churn, metrics timing.
    pub appliance: FaultRng,
    /// One [`FaultRng::task_fate`] per task started, nothing else.
    pub tasks: FaultRng,
}

impl Dice {
    /// The generators of appliance `index` in a run seeded with `seed`.
    pub fn new(seed: u64, index: u64) -> Self {
        Self {
            appliance: FaultRng::for_appliance(seed, index),
            tasks: FaultRng::for_tasks(seed, index),
        }
    }
}

/// The fates of appliance `index`'s tasks, in the order it starts them.
pub fn task_fates(seed: u64, index: u64, faults: &FaultConfig) -> impl Iterator<Item = TaskFate> {
    let mut rng = FaultRng::for_tasks(seed, index);
    let faults = faults.clone();
    std::iter::repeat_with(move || rng.task_fate(&faults))
}

/// The clock skew of appliance `index` (milliseconds, added to true time).
pub fn clock_skew_ms(seed: u64, index: u64, max: Duration) -> i64 {
    FaultRng::for_appliance(seed, index).skew_ms(max)
}

/// SplitMix64: 8 bytes of state, a fixed, documented sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRng(u64);

impl FaultRng {
    /// The generator of appliance `index` in a run seeded with `seed`.
    pub fn for_appliance(seed: u64, index: u64) -> Self {
        let mut mixer = Self(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let start = mixer.next_u64();
        Self(start)
    }

    /// The task-fate generator of appliance `index`: another stream than
    /// [`FaultRng::for_appliance`]'s.
    pub fn for_tasks(seed: u64, index: u64) -> Self {
        Self::for_appliance(seed ^ 0x7A5C_F00D_5EED_0001, index)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits, the precision of an f64 mantissa.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `rate`.
    pub fn chance(&mut self, rate: f64) -> bool {
        self.unit() < rate
    }

    /// A value in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            self.next_u64();
            return 0;
        }
        self.next_u64() % bound
    }

    /// A signed offset in `-max..=max` milliseconds.
    pub fn skew_ms(&mut self, max: Duration) -> i64 {
        let max = i64::try_from(max.as_millis()).unwrap_or(i64::MAX / 4);
        let span = u64::try_from(max.saturating_mul(2).saturating_add(1)).unwrap_or(u64::MAX);
        i64::try_from(self.below(span)).unwrap_or(0) - max
    }

    /// Decides the fate of the next task.
    pub fn task_fate(&mut self, faults: &FaultConfig) -> TaskFate {
        let roll = self.unit();
        let crash = self.chance(faults.crash_rate);
        let crash_percent = 10 + self.below(80) as u8;
        let rollback = self.chance(faults.rollback_rate);
        let slow = self.chance(faults.slow_download_rate);
        let outcome = if roll < faults.reject_rate {
            Outcome::Reject
        } else if roll < faults.reject_rate + faults.never_answer_rate {
            Outcome::NeverAnswer
        } else if roll < faults.reject_rate + faults.never_answer_rate + faults.fail_rate {
            Outcome::Fail
        } else {
            Outcome::Succeed
        };
        TaskFate {
            outcome,
            crash_at_percent: crash.then_some(crash_percent),
            rollback,
            throttle: slow.then_some(faults.slow_download_bytes_per_sec.max(1)),
        }
    }

    /// Milliseconds until the next churn disconnection, or `None` when churn
    /// is off. Uniform in `0..2/rate` minutes, so `rate` per minute on average.
    pub fn next_churn_in(&mut self, faults: &FaultConfig) -> Option<u64> {
        let draw = self.unit();
        (faults.churn_per_minute > 0.0).then(|| (draw * 120_000.0 / faults.churn_per_minute) as u64)
    }

    /// How long a churned appliance stays offline, at least one second.
    pub fn churn_offline_ms(&mut self, faults: &FaultConfig) -> u64 {
        let max = u64::try_from(faults.churn_max_offline.as_millis()).unwrap_or(u64::MAX);
        1000 + self.below(max.saturating_sub(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> FaultConfig {
        FaultConfig {
            fail_rate: 0.2,
            reject_rate: 0.1,
            never_answer_rate: 0.1,
            crash_rate: 0.3,
            rollback_rate: 0.3,
            slow_download_rate: 0.5,
            slow_download_bytes_per_sec: 1000,
            ..FaultConfig::default()
        }
    }

    #[test]
    fn same_seed_and_index_same_fates() {
        let run = |seed, index| {
            let mut rng = FaultRng::for_appliance(seed, index);
            (0..50)
                .map(|_| rng.task_fate(&faults()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7, 3), run(7, 3));
        assert_ne!(run(7, 3), run(7, 4));
        assert_ne!(run(7, 3), run(8, 3));
    }

    #[test]
    fn task_fates_do_not_depend_on_other_draws() {
        let planned: Vec<_> = task_fates(7, 3, &faults()).take(20).collect();
        let mut dice = Dice::new(7, 3);
        let mut drawn = Vec::new();
        for _ in 0..20 {
            dice.appliance.next_churn_in(&faults());
            dice.appliance.below(1000);
            drawn.push(dice.tasks.task_fate(&faults()));
        }
        assert_eq!(planned, drawn);
        let skew = Duration::from_secs(60);
        assert_eq!(
            clock_skew_ms(7, 3, skew),
            Dice::new(7, 3).appliance.skew_ms(skew)
        );
    }

    #[test]
    fn sequence_is_pinned() {
        // SplitMix64's published first output for state 0 after one step.
        let mut rng = FaultRng(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let mut rng = FaultRng::for_appliance(1, 1);
        let n = 20_000;
        let fates: Vec<_> = (0..n).map(|_| rng.task_fate(&faults())).collect();
        let share = |o| fates.iter().filter(|f| f.outcome == o).count() as f64 / n as f64;
        assert!((share(Outcome::Fail) - 0.2).abs() < 0.02);
        assert!((share(Outcome::Reject) - 0.1).abs() < 0.02);
        assert!((share(Outcome::NeverAnswer) - 0.1).abs() < 0.02);
        assert!(fates
            .iter()
            .filter_map(|f| f.crash_at_percent)
            .all(|p| (10..90).contains(&p)));
    }

    #[test]
    fn zero_rates_never_fault_and_skew_stays_in_range() {
        let mut rng = FaultRng::for_appliance(9, 0);
        for _ in 0..1000 {
            let fate = rng.task_fate(&FaultConfig::default());
            assert_eq!(fate.outcome, Outcome::Succeed);
            assert_eq!(
                (fate.crash_at_percent, fate.rollback, fate.throttle),
                (None, false, None)
            );
            let skew = rng.skew_ms(Duration::from_millis(500));
            assert!((-500..=500).contains(&skew));
        }
        assert_eq!(rng.next_churn_in(&FaultConfig::default()), None);
    }

    #[test]
    fn validation() {
        assert!(faults().validate().is_ok());
        let bad = FaultConfig {
            fail_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(bad.validate().is_err());
        let sum = FaultConfig {
            fail_rate: 0.6,
            reject_rate: 0.6,
            ..FaultConfig::default()
        };
        assert!(sum.validate().is_err());
    }
}
