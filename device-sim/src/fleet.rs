//! A fleet: many appliances in one process, started at a configurable
//! connection rate, sharing one [`Stats`], stopped together.
//!
//! Every task spawned here is tracked and awaited by [`Fleet::stop`]: the
//! ramp-up task and one runner per appliance, nothing else.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::appliance::{Appliance, Behaviour};
use crate::fault::Dice;
use crate::hub_api::HubApi;
use crate::identity::Identity;
use crate::mqtt::BrokerTarget;
use crate::runner::{self, Shared};
use crate::stats::Stats;

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Where the appliances connect.
    pub broker: BrokerTarget,
    /// The hub's REST API.
    pub hub: HubApi,
    /// How the appliances behave, faults included.
    pub behaviour: Behaviour,
    /// Seed of every fault decision.
    pub seed: u64,
    /// Appliances started per second; 0 starts them all at once.
    pub connect_rate: u32,
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    started: Instant,
    size: usize,
}

impl Fleet {
    /// Starts one appliance per identity, `connect_rate` per second.
    /// Appliance `i` of the list gets the fault generator `(seed, i)`.
    pub fn start(config: FleetConfig, identities: Vec<Identity>) -> Self {
        let stats = Arc::new(Stats::new());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let shared = Arc::new(Shared {
            broker: config.broker,
            hub: config.hub,
            stats: stats.clone(),
            epoch: Instant::now(),
            epoch_wall_ms: i64::try_from(wall).unwrap_or(i64::MAX),
            shutdown: shutdown.clone(),
        });
        let size = identities.len();
        let behaviour = Arc::new(config.behaviour);
        let ramp = ramp_up(
            shared,
            behaviour,
            config.seed,
            config.connect_rate,
            identities,
            tracker.clone(),
        );
        tracker.spawn(ramp);
        Self {
            stats,
            shutdown,
            tracker,
            started: Instant::now(),
            size,
        }
    }

    /// The fleet's statistics, live.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Appliances in the fleet.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Time since the fleet started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A token cancelled when the fleet stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every appliance (graceful DISCONNECT) and waits for all tasks.
    pub async fn stop(self) -> Arc<Stats> {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.stats
    }
}

async fn ramp_up(
    shared: Arc<Shared>,
    behaviour: Arc<Behaviour>,
    seed: u64,
    rate: u32,
    identities: Vec<Identity>,
    tracker: TaskTracker,
) {
    let nonce_base = (shared.epoch_wall_ms.max(0) as u64).wrapping_mul(100_000);
    let start = Instant::now();
    for (index, identity) in identities.into_iter().enumerate() {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(index as f64 / f64::from(rate));
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
        } else if shared.shutdown.is_cancelled() {
            return;
        }
        let dice = Dice::new(seed, index as u64);
        let nonce = nonce_base.wrapping_add(index as u64);
        let app = Appliance::new(identity, behaviour.clone(), dice, nonce);
        tracker.spawn(runner::run(shared.clone(), index, app));
        if index % 256 == 255 {
            // Let the runners already spawned make progress on 2 cores.
            tokio::task::yield_now().await;
        }
    }
}
