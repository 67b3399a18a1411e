//! `GET /api/v1/appliances/{id}/liveness`: what the hub knows of an
//! appliance's liveness: status (ONLINE after a connection or a heartbeat
//! reply, OFFLINE after a disconnection or two missed heartbeats), edge
//! connection, heartbeats unanswered, last seen, version and clock check
//! from its last heartbeat, and its token's expiry and renewal.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use protocol::ApplianceId;

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiPath};
use super::AppState;
use crate::store::ApplianceLiveness;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/appliances/{id}/liveness", get(liveness))
}

#[utoipa::path(get, path = "/api/v1/appliances/{id}/liveness", tag = "operators",
    params(("id" = String, Path)), security(("admin" = [])),
    responses((status = 200, body = ApplianceLiveness), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn liveness(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<ApplianceLiveness>, ApiError> {
    let id: ApplianceId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid appliance id", "expected a UUID"))?;
    state
        .store
        .appliance_liveness(id)
        .await?
        .map(ApiJson)
        .ok_or(ApiError::NotFound("unknown appliance"))
}
