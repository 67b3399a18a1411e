//! The auto-upgrade duty, every 10 minutes: the ONLINE appliances whose
//! scheduled update comes within the next hour (in their own time zone),
//! that are neither on the latest enabled version nor on a newer one, not
//! marked rolled back, not upgrading already and whose upgrade to that
//! version has not failed before, get upgraded: one upgradeAppliance job per
//! customer, half of them first and the rest once that half succeeded. The
//! rollout duty of the same pass releases the first half.

use std::collections::BTreeMap;

use super::{Due, Duties};
use crate::clock::Millis;
use crate::rollout::auto_upgrade::{due_within, UpdateSchedule, HORIZON_MS};

/// How often schedules are checked.
pub const CHECK_INTERVAL_MS: Millis = 10 * 60_000;

pub(crate) async fn run(duties: &Duties, now: Millis) -> Due {
    let store = &duties.store;
    let due = match super::claim(duties, "auto_upgrade", now, CHECK_INTERVAL_MS).await {
        Ok(due) => due,
        Err(due) => return due,
    };
    let (version, candidates) = match store.auto_upgrade_candidates().await {
        Ok(Some(found)) => found,
        Ok(None) => return due,
        Err(err) => {
            tracing::error!(%err, "finding auto-upgrade candidates failed");
            return due;
        }
    };
    let mut by_customer = BTreeMap::<_, Vec<_>>::new();
    for candidate in candidates {
        let schedule = UpdateSchedule::from_settings(
            candidate.day.as_deref(),
            candidate.time.as_deref(),
            candidate.zone.as_deref(),
        );
        if due_within(schedule.as_ref(), now, HORIZON_MS) {
            by_customer
                .entry(candidate.customer)
                .or_default()
                .push(candidate.appliance);
        }
    }
    for (customer, appliances) in by_customer {
        let count = appliances.len();
        match store
            .create_auto_upgrade(customer, appliances, version.clone(), now)
            .await
        {
            Ok(Some(created)) => tracing::info!(
                job = %created.job_id,
                ?customer,
                count,
                version = %version.display_version,
                "auto-upgrade started"
            ),
            Ok(None) => {}
            Err(err) => tracing::error!(%err, ?customer, "starting an auto-upgrade failed"),
        }
    }
    due
}
