//! Who calls: customers (their api key, or `x-customer-id` behind a
//! trusted gateway) and appliances (their appliance token).
//!
//! A customer is identified by the sha256 of its key, looked up in the
//! store. An appliance's token is checked against the hash stored for the
//! appliance named in the path, in constant time; an unknown appliance, a
//! wrong or expired token and a removed appliance are all the same 401.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use protocol::ApplianceId;

use super::error::ApiError;
use super::extract::bearer;
use super::AppState;
use crate::credentials::{hash_token, verify_token};
use crate::model::{ApplianceStatus, CustomerId};

/// The header a trusted gateway sets to the caller's customer id.
pub const CUSTOMER_HEADER: &str = "x-customer-id";

/// The calling customer.
#[derive(Debug, Clone, Copy)]
pub struct Customer(pub CustomerId);

impl FromRequestParts<AppState> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.registration.trust_gateway {
            if let Some(value) = parts.headers.get(CUSTOMER_HEADER) {
                let id: CustomerId = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(ApiError::Unauthorized("invalid x-customer-id"))?;
                return if state.store.customer_exists(id).await? {
                    Ok(Customer(id))
                } else {
                    Err(ApiError::Unauthorized("unknown customer"))
                };
            }
        }
        let key = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer api key"))?;
        match state.store.customer_by_api_key(hash_token(key)).await? {
            Some(id) => Ok(Customer(id)),
            None => Err(ApiError::Unauthorized("invalid api key")),
        }
    }
}

/// An operator (admin token) or a customer (api key, or `x-customer-id`
/// behind a trusted gateway): who may use `/api/v1/jobs`. A customer acts
/// on its own appliances and jobs only.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A customer.
    Customer(CustomerId),
}

impl Caller {
    /// The customer, when the caller is one.
    pub fn customer(&self) -> Option<CustomerId> {
        match self {
            Self::Admin => None,
            Self::Customer(id) => Some(*id),
        }
    }

    /// Whether the caller may see a job owned by `owner`.
    pub fn may_see(&self, owner: Option<CustomerId>) -> bool {
        match self {
            Self::Admin => true,
            Self::Customer(id) => owner == Some(*id),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(parts).is_some_and(|token| state.admin_token.verify(token)) {
            return Ok(Self::Admin);
        }
        let Customer(id) = Customer::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Unauthorized("invalid token"))?;
        Ok(Self::Customer(id))
    }
}

/// The calling appliance: the `{id}` of the path, proven by its appliance
/// token (`Authorization: Bearer <applianceToken>`).
#[derive(Debug, Clone, Copy)]
pub struct Appliance(pub ApplianceId);

impl FromRequestParts<AppState> for Appliance {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        let id: ApplianceId = params
            .iter()
            .find(|(name, _)| name == "id")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid appliance id", "expected a UUID"))?;
        let token =
            bearer(parts).ok_or(ApiError::Unauthorized("missing bearer appliance token"))?;
        let credentials = state.store.appliance_credentials(id).await?;
        let valid = credentials.is_some_and(|c| {
            verify_token(token, &c.token_hash)
                && c.expires_at > state.clock.now()
                && c.status != ApplianceStatus::Removed
        });
        if valid {
            Ok(Appliance(id))
        } else {
            Err(ApiError::Unauthorized("invalid appliance token"))
        }
    }
}
