//! Per-appliance rate limit on device messages: a token bucket per
//! appliance, so one appliance that floods the hub gets 429 replies while
//! the others are served as usual.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use protocol::ApplianceId;

/// Buckets unused for this long are forgotten.
const IDLE_SECS: f64 = 120.0;

/// A token bucket per appliance.
#[derive(Debug)]
pub struct Throttle {
    burst: f64,
    per_second: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<ApplianceId, Bucket>,
    last_prune: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// Each appliance may send `burst` messages at once and `per_second`
    /// messages per second on average.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// True when `appliance` may send one more message now.
    pub fn admit(&self, appliance: ApplianceId) -> bool {
        self.admit_at(appliance, Instant::now())
    }

    fn admit_at(&self, appliance: ApplianceId, now: Instant) -> bool {
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        buckets.prune(now);
        let bucket = buckets.map.entry(appliance).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Buckets {
    fn prune(&mut self, now: Instant) {
        let due = self
            .last_prune
            .is_none_or(|at| now.saturating_duration_since(at).as_secs_f64() > IDLE_SECS);
        if due {
            self.map
                .retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < IDLE_SECS);
            self.last_prune = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_flooding_appliance_does_not_limit_another() {
        let throttle = Throttle::new(3, 1);
        let (a, b) = (ApplianceId::new_random(), ApplianceId::new_random());
        let t0 = Instant::now();
        assert!((0..3).all(|_| throttle.admit_at(a, t0)));
        assert!(!throttle.admit_at(a, t0));
        assert!(throttle.admit_at(b, t0));
        assert!(throttle.admit_at(a, t0 + Duration::from_millis(1100)));
        assert!(!throttle.admit_at(a, t0 + Duration::from_millis(1100)));
    }
}
