//! `/api/v1/tags`: operators create tags, put them on appliances, and list
//! them with how many appliances carry each.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use protocol::ApplianceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::customers::short_text;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use super::paging::{PageBody, PageQuery, SortKeys};
use super::AppState;
use crate::model::TagId;
use crate::store::{StoreError, TagView};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tags", post(create_tag).get(list_tags))
        .route("/api/v1/tags/{id}/appliances", post(assign_tag))
}

/// `POST /api/v1/tags` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagRequest {
    /// 1-64 characters, unique.
    pub name: String,
}

/// A created tag.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagCreated {
    /// Its id.
    #[schema(value_type = String)]
    pub tag_id: TagId,
    /// Its name.
    pub name: String,
}

#[utoipa::path(post, path = "/api/v1/tags", tag = "operators",
    request_body = CreateTagRequest, security(("admin" = [])),
    responses((status = 201, body = TagCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_tag(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateTagRequest>,
) -> Result<(StatusCode, ApiJson<TagCreated>), ApiError> {
    short_text("name", &request.name, 64)?;
    let tag_id = state
        .store
        .create_tag(request.name.clone(), state.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(TagCreated {
            tag_id,
            name: request.name,
        }),
    ))
}

/// `POST /api/v1/tags/{id}/appliances` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignTagRequest {
    /// The appliances to tag (1-10,000).
    #[schema(value_type = Vec<String>)]
    pub appliance_ids: Vec<ApplianceId>,
}

/// How many appliances got the tag now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagAssigned {
    /// Appliances newly tagged (already tagged ones are not counted).
    pub added: usize,
}

#[utoipa::path(post, path = "/api/v1/tags/{id}/appliances", tag = "operators",
    params(("id" = String, Path)), request_body = AssignTagRequest,
    security(("admin" = [])),
    responses((status = 200, body = TagAssigned), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn assign_tag(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<AssignTagRequest>,
) -> Result<ApiJson<TagAssigned>, ApiError> {
    let tag: TagId = id
        .parse()
        .map_err(|_| ApiError::bad_request("invalid tag id", "expected a UUID"))?;
    if request.appliance_ids.is_empty() || request.appliance_ids.len() > 10_000 {
        return Err(ApiError::bad_request(
            "invalid applianceIds",
            "expected 1-10000 ids",
        ));
    }
    let added = state
        .store
        .assign_tag(tag, request.appliance_ids, state.clock.now())
        .await
        .map_err(|err| match err {
            err @ StoreError::UnknownAppliances(_) => {
                ApiError::bad_request("unknown appliances", err)
            }
            other => other.into(),
        })?
        .ok_or(ApiError::NotFound("unknown tag"))?;
    Ok(ApiJson(TagAssigned { added }))
}

const TAG_SORT: SortKeys = &[
    ("name", "t.name"),
    ("createdAt", "t.created_at"),
    ("appliances", "appliances"),
];

#[utoipa::path(get, path = "/api/v1/tags", tag = "operators",
    params(PageQuery), security(("admin" = [])),
    responses((status = 200, body = PageBody<TagView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list_tags(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<PageBody<TagView>>, ApiError> {
    let paging = query.paging(TAG_SORT)?;
    let page = state.store.list_tags(paging).await?;
    Ok(ApiJson(PageBody::new(page, &paging)))
}
