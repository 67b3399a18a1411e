//! Whether an appliance is alive, decided from its heartbeats: pure rules,
//! no clock and no I/O (the scheduler's heartbeat duty and the heartbeat
//! reply path apply them).
//!
//! The hub sends a heartbeat notify to every connected appliance once per
//! interval (5 minutes by default). An appliance that left
//! [`HeartbeatPolicy::missed_limit`] heartbeats in a row unanswered becomes
//! OFFLINE (so does one whose edge connection closes); its next heartbeat
//! reply makes it ONLINE again. A reply whose clock differs from the hub's
//! by more than [`HeartbeatPolicy::skew_limit_ms`] flags the appliance's
//! clock as skewed.

/// Epoch milliseconds.
pub type Millis = i64;

/// The default heartbeat interval: 5 minutes.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: Millis = 5 * 60 * 1000;
/// Heartbeats left unanswered in a row before an appliance is OFFLINE.
pub const MISSED_LIMIT: u32 = 2;
/// Clock difference beyond which an appliance's clock is flagged.
pub const SKEW_LIMIT_MS: Millis = 5 * 60 * 1000;

/// The heartbeat rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPolicy {
    /// Time between two rounds of heartbeats.
    pub interval_ms: Millis,
    /// Unanswered heartbeats in a row that make an appliance OFFLINE.
    pub missed_limit: u32,
    /// Largest clock difference not flagged.
    pub skew_limit_ms: Millis,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        Self {
            interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            missed_limit: MISSED_LIMIT,
            skew_limit_ms: SKEW_LIMIT_MS,
        }
    }
}

/// What a heartbeat round does to one connected appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundStep {
    /// Mark it OFFLINE: it left too many heartbeats unanswered.
    pub lost: bool,
    /// Unanswered heartbeats after this round's one is sent.
    pub unanswered: u32,
}

/// The clock check of one heartbeat reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockCheck {
    /// Appliance clock minus hub clock, in ms.
    pub skew_ms: Millis,
    /// Beyond the limit.
    pub skewed: bool,
}

impl HeartbeatPolicy {
    /// When the round after one at `now` is due.
    pub fn next_round(&self, now: Millis) -> Millis {
        now.saturating_add(self.interval_ms.max(1))
    }

    /// One round for an appliance that left `unanswered` heartbeats
    /// unanswered so far: it is sent one more either way (it is still
    /// connected, and its next reply brings it back).
    pub fn round(&self, unanswered: u32) -> RoundStep {
        RoundStep {
            lost: unanswered >= self.missed_limit,
            unanswered: unanswered.saturating_add(1),
        }
    }

    /// Compares the appliance's clock with the hub's when its reply came.
    pub fn check_clock(&self, appliance_clock: Millis, now: Millis) -> ClockCheck {
        let skew_ms = appliance_clock.saturating_sub(now);
        ClockCheck {
            skew_ms,
            skewed: skew_ms.unsigned_abs() > self.skew_limit_ms.unsigned_abs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_missed_heartbeats_lose_an_appliance() {
        let policy = HeartbeatPolicy::default();
        let first = policy.round(0);
        assert_eq!(
            first,
            RoundStep {
                lost: false,
                unanswered: 1
            }
        );
        let second = policy.round(first.unanswered);
        assert!(!second.lost, "one heartbeat unanswered is not yet lost");
        let third = policy.round(second.unanswered);
        assert!(third.lost, "two unanswered heartbeats: OFFLINE");
        assert_eq!(
            policy.next_round(1000),
            1000 + DEFAULT_HEARTBEAT_INTERVAL_MS
        );
    }

    #[test]
    fn a_clock_more_than_five_minutes_off_is_flagged() {
        let policy = HeartbeatPolicy::default();
        let now = 1_000_000_000;
        assert!(!policy.check_clock(now + SKEW_LIMIT_MS, now).skewed);
        assert!(policy.check_clock(now + SKEW_LIMIT_MS + 1, now).skewed);
        let behind = policy.check_clock(now - 10 * 60 * 1000, now);
        assert_eq!(
            behind,
            ClockCheck {
                skew_ms: -600_000,
                skewed: true
            }
        );
    }
}
