//! The REST API: one `router()` per resource, merged by [`router`].
//! Handlers parse, call a service, and map the result; every error is an
//! [`error::ApiError`] with the body `{"status", "message", "cause"}`.
//! Paths work with and without a trailing slash.

pub mod appliances;
pub mod artifacts;
pub mod auth;
pub mod catalog;
pub mod customers;
pub mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod jobs;
pub mod liveness;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod register;
pub mod tags;
pub mod ui_appliances;
pub mod ui_logs;
pub mod ui_model;
pub mod ui_services;
pub mod va;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
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
    /// Register tokens, and what registration hands out.
    pub registration: Arc<register::RegistrationSettings>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(jobs::router())
        .merge(appliances::router())
        .merge(artifacts::router())
        .merge(files::router())
        .merge(customers::router())
        .merge(catalog::router())
        .merge(tags::router())
        .merge(register::router())
        .merge(va::router())
        .merge(ui_appliances::router())
        .merge(ui_logs::router())
        .merge(ui_services::router())
        .merge(metrics::router())
        .merge(liveness::router())
        .fallback(|| async { error::ApiError::NotFound("no such endpoint") })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .merge(openapi::router())
}

/// Removes a trailing slash from the path (`/ui/appliances/` is
/// `/ui/appliances`), except under the interactive docs, whose pages are
/// served from `/docs/` and would otherwise redirect forever.
pub fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    let docs = path == "/docs/" || path.starts_with("/docs/");
    if docs || path.len() <= 1 || !path.ends_with('/') {
        return request;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let rebuilt = match request.uri().query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_owned(),
    };
    if let Ok(uri) = rebuilt.parse() {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn path_after(uri: &str) -> String {
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        trim_trailing_slash(request).uri().to_string()
    }

    #[test]
    fn trailing_slashes_are_trimmed_except_under_the_docs() {
        assert_eq!(path_after("/ui/appliances/"), "/ui/appliances");
        assert_eq!(
            path_after("/ui/appliances//?limit=5"),
            "/ui/appliances?limit=5"
        );
        assert_eq!(path_after("/ui/appliances"), "/ui/appliances");
        assert_eq!(path_after("/"), "/");
        assert_eq!(path_after("/docs/"), "/docs/");
        assert_eq!(path_after("/docs/index.css"), "/docs/index.css");
        assert_eq!(path_after("/docs"), "/docs");
    }
}
