//! `POST /va/register/`: an appliance presents its customer's register
//! token and its facts, and gets its identity, a fresh appliance token
//! (stored hashed, 60 days) and where to connect: the MQTT host and port
//! of the device edge and the CA certificate to trust. An expired or
//! forged token is a 401 and creates nothing; a known appliance of the
//! same customer that sends its id back keeps it and gets a new token.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use protocol::{ApplianceId, ProductKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::customers::short_text;
use super::error::{ApiError, ErrorBody};
use super::extract::{bearer, ApiJson};
use super::AppState;
use crate::credentials::{generate_token, hash_token};
use crate::register_token::{RegisterTokens, TokenError};
use crate::store::{Capacity, NewRegistration, Registered};

/// How long an appliance token is valid: 60 days, as a provisioned one.
pub const APPLIANCE_TOKEN_LIFETIME_MS: i64 = super::appliances::TOKEN_LIFETIME_MS;

/// What registration hands out besides the identity.
#[derive(Debug, Clone)]
pub struct RegistrationSettings {
    /// Signs and checks register tokens.
    pub tokens: RegisterTokens,
    /// Host name appliances connect to.
    pub iot_host: String,
    /// The port the device edge's TLS listener bound.
    pub iot_port: u16,
    /// The CA certificate (PEM) appliances trust, when the hub has one.
    pub ca_cert: Option<String>,
    /// Whether `x-customer-id` from a trusted gateway is honoured.
    pub trust_gateway: bool,
    /// Lifetime of the appliance tokens registration and provisioning
    /// hand out (`--token-lifetime-days`).
    pub appliance_token_lifetime_ms: i64,
}

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/va/register", post(register))
}

/// `POST /va/register/` body: the appliance's facts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Sent back by an appliance that registered before.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub appliance_id: Option<ApplianceId>,
    /// Its host name.
    pub hostname: String,
    /// Its IPv4 address.
    #[schema(value_type = String)]
    pub ipv4_address: std::net::Ipv4Addr,
    /// Firmware display version.
    pub version: String,
    /// Cores (> 0).
    pub total_cpu: f64,
    /// Bytes of memory (> 0).
    pub total_memory: u64,
    /// Bytes of storage (> 0).
    pub total_storage: u64,
}

/// `POST /va/register/` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// MQTT client id and username.
    #[schema(value_type = String)]
    pub appliance_id: ApplianceId,
    /// MQTT password; not retrievable later.
    pub appliance_token: String,
    /// Host of the MQTT over TLS listener.
    pub iot_host: String,
    /// Its port.
    pub iot_port: u16,
    /// First level of the appliance's topics.
    #[schema(value_type = String)]
    pub product_key: ProductKey,
    /// The CA certificate (PEM) to trust for MQTT over TLS.
    pub ca_cert: Option<String>,
}

/// Checks a host name: dot-separated labels of letters, digits and `-`.
pub(crate) fn hostname(value: &str) -> Result<(), ApiError> {
    let ok = (1..=253).contains(&value.len())
        && value.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid hostname",
            "expected dot-separated labels of letters, digits and '-'",
        ))
    }
}

fn capacity(request: &RegisterRequest) -> Result<Capacity, ApiError> {
    let cpu_ok = request.total_cpu.is_finite() && request.total_cpu > 0.0;
    if !cpu_ok || request.total_cpu > 4096.0 {
        return Err(ApiError::bad_request(
            "invalid totalCpu",
            "expected 0-4096 cores",
        ));
    }
    let positive = |field: &str, v: u64| {
        if v == 0 || i64::try_from(v).is_err() {
            Err(ApiError::bad_request(
                format!("invalid {field}"),
                "expected a positive size",
            ))
        } else {
            Ok(v)
        }
    };
    Ok(Capacity {
        total_cpu: request.total_cpu,
        total_memory: positive("totalMemory", request.total_memory)?,
        total_storage: positive("totalStorage", request.total_storage)?,
    })
}

/// The bearer register token, checked first so that a bad token is a 401
/// whatever the body holds.
#[derive(Debug)]
pub struct RegisterCaller(crate::model::CustomerId);

impl axum::extract::FromRequestParts<AppState> for RegisterCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer register token"))?;
        let customer = state
            .registration
            .tokens
            .verify(token, state.clock.now())
            .map_err(|err| match err {
                TokenError::Expired => ApiError::Unauthorized("expired register token"),
                TokenError::Invalid => ApiError::Unauthorized("invalid register token"),
            })?;
        if !state.store.customer_exists(customer).await? {
            return Err(ApiError::Unauthorized("unknown customer"));
        }
        Ok(Self(customer))
    }
}

#[utoipa::path(post, path = "/va/register", tag = "appliances",
    request_body = RegisterRequest, security(("registerToken" = [])),
    responses((status = 201, description = "a new appliance", body = RegisterResponse),
        (status = 200, description = "a known appliance: token rotated", body = RegisterResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn register(
    RegisterCaller(customer_id): RegisterCaller,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, ApiJson<RegisterResponse>), ApiError> {
    hostname(&request.hostname)?;
    short_text("version", &request.version, 64)?;
    let capacity = capacity(&request)?;
    let now = state.clock.now();
    let token = generate_token();
    let registered = state
        .store
        .register_appliance(NewRegistration {
            customer_id,
            known_id: request.appliance_id,
            fresh_id: ApplianceId::new_random(),
            product_key: state.product_key.clone(),
            hostname: request.hostname,
            ipv4_address: request.ipv4_address.to_string(),
            version: request.version,
            capacity,
            token_hash: hash_token(&token),
            token_expires_at: now.saturating_add(state.registration.appliance_token_lifetime_ms),
            now,
        })
        .await?;
    let status = match registered {
        Registered::Created(_) => StatusCode::CREATED,
        Registered::Rotated(_) => StatusCode::OK,
    };
    let settings = &state.registration;
    Ok((
        status,
        ApiJson(RegisterResponse {
            appliance_id: registered.id(),
            appliance_token: token,
            iot_host: settings.iot_host.clone(),
            iot_port: settings.iot_port,
            product_key: state.product_key.clone(),
            ca_cert: settings.ca_cert.clone(),
        }),
    ))
}
