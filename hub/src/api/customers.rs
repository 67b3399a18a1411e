//! `/api/v1/customers`: operators create customers, each with an api key
//! (shown once, stored hashed) and a register token for its appliances.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiQuery};
use super::paging::{PageBody, PageQuery, SortKeys};
use super::AppState;
use crate::credentials::{generate_token, hash_token};
use crate::model::CustomerId;
use crate::store::{CustomerView, NewCustomer};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/customers", post(create).get(list))
}

/// `POST /api/v1/customers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    /// 1-128 characters, no control characters.
    pub name: String,
}

/// `POST /api/v1/customers` answer. The api key is not retrievable later.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerCreated {
    /// The new customer.
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    /// `Authorization: Bearer <apiKey>` for the `/ui/` endpoints.
    pub api_key: String,
    /// `Authorization: Bearer <registrationToken>` for `POST /va/register/`.
    pub registration_token: String,
}

/// Checks a short human text (a name).
pub(crate) fn short_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let value_ok = !value.trim().is_empty()
        && value.chars().count() <= max
        && !value.chars().any(char::is_control);
    if value_ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            format!("invalid {field}"),
            format!("expected 1-{max} characters without control characters"),
        ))
    }
}

#[utoipa::path(post, path = "/api/v1/customers", tag = "operators",
    request_body = CreateCustomerRequest,
    security(("admin" = [])),
    responses((status = 201, body = CustomerCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateCustomerRequest>,
) -> Result<(StatusCode, ApiJson<CustomerCreated>), ApiError> {
    short_text("name", &request.name, 128)?;
    let customer_id = CustomerId::new_random();
    let now = state.clock.now();
    let api_key = generate_token();
    let (registration_token, expires_at) = state.registration.tokens.issue(customer_id, now);
    state
        .store
        .create_customer_with_credentials(NewCustomer {
            customer_id,
            name: request.name,
            api_key_hash: hash_token(&api_key),
            register_token: (registration_token.clone(), expires_at),
            now,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CustomerCreated {
            customer_id,
            api_key,
            registration_token,
        }),
    ))
}

const SORT: SortKeys = &[("createdAt", "c.created_at"), ("name", "c.name")];

#[utoipa::path(get, path = "/api/v1/customers", tag = "operators",
    params(PageQuery), security(("admin" = [])),
    responses((status = 200, body = PageBody<CustomerView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<PageBody<CustomerView>>, ApiError> {
    let paging = query.paging(SORT)?;
    let page = state.store.list_customers(paging).await?;
    Ok(ApiJson(PageBody::new(page, &paging)))
}
