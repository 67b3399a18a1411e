//! `GET /healthz`: answers 200 while the hub can read its database.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the hub reads its database",
        body = Object, example = json!({"status": "ok"})),
        (status = 503, body = super::error::ErrorBody)))]
async fn healthz(State(state): State<AppState>) -> Result<ApiJson<Value>, ApiError> {
    // A real read: proves the database answers.
    state
        .store
        .appliance_exists(protocol::ApplianceId::from_uuid(uuid::Uuid::nil()))
        .await?;
    Ok(ApiJson(json!({"status": "ok"})))
}
