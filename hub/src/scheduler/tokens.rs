//! The token renewal duty, once a minute: settle the renewals under way
//! (a confirmed one makes the new token the token), then start one for
//! every appliance whose token is due: a fresh token, its hash kept as the
//! next token, and an updateApplianceConfig job carrying it.

use super::{Due, Duties};
use crate::clock::Millis;
use crate::credentials::{generate_token, hash_token};

/// How often renewals are checked.
pub const CHECK_INTERVAL_MS: Millis = 60_000;
/// Most renewals started per check.
const MAX_PER_CHECK: usize = 1000;

pub(crate) async fn run(duties: &Duties, now: Millis) -> Due {
    let store = &duties.store;
    let due = match super::claim(duties, "tokens", now, CHECK_INTERVAL_MS).await {
        Ok(due) => due,
        Err(due) => return due,
    };
    match store.settle_token_renewals(now).await {
        Ok(settled) if settled.confirmed + settled.failed > 0 => {
            tracing::info!(
                confirmed = settled.confirmed,
                failed = settled.failed,
                "token renewals settled"
            );
        }
        Ok(_) => {}
        Err(err) => tracing::error!(%err, "settling token renewals failed"),
    }
    let policy = duties.config.tokens;
    let appliances = match store.token_renewals_due(policy, now, MAX_PER_CHECK).await {
        Ok(appliances) => appliances,
        Err(err) => {
            tracing::error!(%err, "finding tokens to renew failed");
            Vec::new()
        }
    };
    for appliance in appliances {
        let token = generate_token();
        let hash = hash_token(&token);
        match store
            .start_token_renewal(appliance, token, hash, policy, now)
            .await
        {
            Ok(Some((job, _))) => tracing::info!(%appliance, %job, "token renewal sent"),
            Ok(None) => {}
            Err(err) => tracing::error!(%err, %appliance, "starting a token renewal failed"),
        }
    }
    due
}
