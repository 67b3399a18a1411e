//! The REST API: one `router()` per resource, merged by [`router`].
//! Handlers parse, call a service, and map the result; every error is an
//! [`error::ApiError`] with the body `{"status", "message", "cause"}`.
//! Paths work with and without a trailing slash.

pub mod appliances;
pub mod artifacts;
pub mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod jobs;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use protocol::ProductKey;

use crate::artifacts::logs::LogService;
use crate::artifacts::ArtifactService;
use crate::clock::SharedClock;
use crate::credentials::AdminToken;
use crate::jobs::JobService;
use crate::store::Store;

/// Largest request body accepted (a job to 100,000 appliance ids fits).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// Job operations.
    pub jobs: JobService,
    /// The operators' token.
    pub admin_token: AdminToken,
    /// Time.
    pub clock: SharedClock,
    /// Namespace of provisioned appliances.
    pub product_key: ProductKey,
    /// The artifact store and its signed links.
    pub artifacts: ArtifactService,
    /// Log collection.
    pub logs: LogService,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(jobs::router())
        .merge(appliances::router())
        .merge(artifacts::router())
        .merge(files::router())
        .fallback(|| async { error::ApiError::NotFound("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
