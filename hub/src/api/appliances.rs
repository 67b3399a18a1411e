//! `/api/v1/appliances`: operators provision appliance credentials (ids and
//! tokens) directly, for fleets set up without the registration flow and
//! for load tests. Tokens are shown once and stored hashed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use protocol::{ApplianceId, ProductKey};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson};
use super::AppState;
use crate::credentials::{generate_token, hash_token};
use crate::model::CustomerId;

/// Most appliances one provisioning request creates.
pub const MAX_PROVISION: u32 = 10_000;

/// How long a provisioned token is valid by default: 60 days
/// (`--token-lifetime-days`).
pub const TOKEN_LIFETIME_MS: i64 = crate::credentials::DEFAULT_TOKEN_LIFETIME_MS;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/appliances", post(provision))
}

/// `POST /api/v1/appliances` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionRequest {
    /// How many appliances (1-10,000).
    pub count: u32,
    /// The customer they belong to.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
}

/// `POST /api/v1/appliances` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionResponse {
    /// The namespace's product key.
    #[schema(value_type = String)]
    pub product_key: ProductKey,
    /// The new identities; the tokens are not retrievable later.
    pub appliances: Vec<ProvisionedAppliance>,
}

/// One provisioned identity.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedAppliance {
    /// MQTT client id and username.
    #[schema(value_type = String)]
    pub appliance_id: ApplianceId,
    /// MQTT password.
    pub appliance_token: String,
}

#[utoipa::path(post, path = "/api/v1/appliances", tag = "operators",
    request_body = ProvisionRequest, security(("admin" = [])),
    responses((status = 201, body = ProvisionResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn provision(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, ApiJson<ProvisionResponse>), ApiError> {
    if !(1..=MAX_PROVISION).contains(&request.count) {
        return Err(ApiError::bad_request("invalid count", "expected 1-10000"));
    }
    let lifetime = state.registration.appliance_token_lifetime_ms;
    let expires_at = state.clock.now().saturating_add(lifetime);
    let appliances: Vec<ProvisionedAppliance> = (0..request.count)
        .map(|_| ProvisionedAppliance {
            appliance_id: ApplianceId::new_random(),
            appliance_token: generate_token(),
        })
        .collect();
    let rows = appliances
        .iter()
        .map(|a| (a.appliance_id, hash_token(&a.appliance_token), expires_at))
        .collect();
    state
        .store
        .create_appliances(
            request.customer_id,
            state.product_key.clone(),
            rows,
            state.clock.now(),
        )
        .await
        .map_err(|err| match err {
            crate::store::StoreError::UnknownCustomer(_) => {
                ApiError::bad_request("unknown customer", "customerId")
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ProvisionResponse {
            product_key: state.product_key.clone(),
            appliances,
        }),
    ))
}
