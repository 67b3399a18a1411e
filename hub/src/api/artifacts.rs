//! `/api/v1/artifacts`: operators upload artifacts (streamed to the
//! artifact store), register external ones, and list and read the
//! catalogue. Appliances download through [`super::files`].
//!
//! `POST /api/v1/artifacts?name=<file name>[&sha256=<hex>]` takes the raw
//! bytes as the body (any `Content-Type`, kept and served back); the
//! sha256 may also be declared in the `x-sha256` header. Answers 201 with
//! the artifact, or 200 with the existing entry when the same bytes are
//! catalogued already; 400 when the declared sha256 differs, 413 beyond
//! `--max-artifact-size`. A refused upload leaves no file and no row.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use super::files::{declared_length, declared_sha256, Binary};
use super::AppState;
use crate::artifacts::{
    ArtifactError, ExternalInfo, FileName, Sha256Digest, UploadInfo, DEFAULT_CONTENT_TYPE,
};
use crate::store::{Artifact, ArtifactQuery, ArtifactSort};

/// Most artifacts one page lists.
pub const MAX_PAGE: u32 = 1000;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/artifacts",
            post(upload).layer(DefaultBodyLimit::disable()).get(list),
        )
        .route("/api/v1/artifacts/external", post(register_external))
        .route("/api/v1/artifacts/{sha256}", get(one))
}

/// An artifact with a freshly signed download link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactView {
    /// The catalogue entry.
    #[serde(flatten)]
    pub artifact: Artifact,
    /// Signed link valid for the link lifetime (the external URL itself
    /// for an external artifact).
    pub download_url: String,
}

fn view(state: &AppState, artifact: Artifact) -> ArtifactView {
    ArtifactView {
        download_url: state.artifacts.download_url(&artifact),
        artifact,
    }
}

pub(crate) fn artifact_error(err: ArtifactError) -> ApiError {
    match err {
        err @ ArtifactError::Sha256Mismatch { .. } => ApiError::bad_request("sha256 mismatch", err),
        ArtifactError::TooLarge { .. } => ApiError::PayloadTooLarge,
        ArtifactError::Invalid(cause) => ApiError::bad_request("invalid artifact", cause),
        ArtifactError::Body(cause) => ApiError::bad_request("the request body broke off", cause),
        ArtifactError::NotFound => ApiError::NotFound("unknown artifact"),
        ArtifactError::Conflict(cause) => ApiError::Conflict(cause),
        ArtifactError::Io(err) => ApiError::Internal(format!("artifact file: {err}")),
        ArtifactError::Store(err) => err.into(),
    }
}

/// `POST /api/v1/artifacts` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The name it is downloaded as.
    pub name: String,
    /// The sha256 the body must have (64 hex digits; or the `x-sha256`
    /// header).
    pub sha256: Option<String>,
}

fn created(was_created: bool) -> StatusCode {
    if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn file_name(raw: &str) -> Result<FileName, ApiError> {
    raw.parse()
        .map_err(|err| ApiError::bad_request("invalid name", err))
}

#[utoipa::path(post, path = "/api/v1/artifacts", tag = "operators",
    params(UploadQuery,
        ("x-sha256" = Option<String>, Header, description = "the sha256 the body must have")),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "the artifact's bytes, streamed to disk; any Content-Type, kept and \
            served back with downloads"),
    security(("admin" = [])),
    responses(
        (status = 201, body = ArtifactView, description = "catalogued"),
        (status = 200, body = ArtifactView, description = "the same bytes were catalogued already"),
        (status = 400, body = ErrorBody, description = "bad name, or a sha256 that does not match"),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "over --max-artifact-size")))]
async fn upload(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, ApiJson<ArtifactView>), ApiError> {
    let name = file_name(&query.name)?;
    let sha256 = declared_sha256(&headers, query.sha256.as_deref())?;
    if declared_length(&headers)? > state.artifacts.max_size() {
        return Err(ApiError::PayloadTooLarge);
    }
    let content_type = match headers.get(CONTENT_TYPE) {
        None => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(value) => value
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid Content-Type", "expected ASCII"))?
            .to_owned(),
    };
    let info = UploadInfo {
        name,
        sha256,
        content_type,
    };
    let (artifact, was_created) = state
        .artifacts
        .upload(info, body.into_data_stream())
        .await
        .map_err(artifact_error)?;
    Ok((created(was_created), ApiJson(view(&state, artifact))))
}

/// `POST /api/v1/artifacts/external` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRequest {
    /// The name it is known by.
    pub name: String,
    /// Where appliances download it (http or https).
    pub url: String,
    /// Its sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its `Content-Type` [default: application/octet-stream].
    #[serde(default)]
    pub content_type: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/artifacts/external", tag = "operators",
    request_body = ExternalRequest, security(("admin" = [])),
    responses(
        (status = 201, body = ArtifactView, description = "catalogued"),
        (status = 200, body = ArtifactView, description = "registered already, as given"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the sha256 is catalogued otherwise")))]
async fn register_external(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ExternalRequest>,
) -> Result<(StatusCode, ApiJson<ArtifactView>), ApiError> {
    let info = ExternalInfo {
        name: file_name(&request.name)?,
        url: request.url,
        sha256: request
            .sha256
            .parse()
            .map_err(|err| ApiError::bad_request("invalid sha256", err))?,
        size: request.size,
        content_type: request
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
    };
    let (artifact, was_created) = state
        .artifacts
        .register_external(info)
        .await
        .map_err(artifact_error)?;
    Ok((created(was_created), ApiJson(view(&state, artifact))))
}

/// Paging of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Rows to skip.
    #[serde(default)]
    pub offset: u32,
    /// Rows to return (1-1000, default 100).
    pub limit: Option<u32>,
    /// `createdAt` (default), `name` or `size`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub sortby: ArtifactSort,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub order: Order,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Smallest / oldest first.
    #[default]
    Asc,
    /// Largest / newest first.
    Desc,
}

/// One page of the catalogue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsPage {
    /// Artifacts in the catalogue.
    pub total: u64,
    /// As requested.
    pub offset: u32,
    /// As applied.
    pub limit: u32,
    /// This page.
    pub items: Vec<ArtifactView>,
}

#[utoipa::path(get, path = "/api/v1/artifacts", tag = "operators",
    params(ListQuery), security(("admin" = [])),
    responses((status = 200, body = ArtifactsPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<ArtifactsPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid limit", "expected 1-1000"));
    }
    let page = state
        .artifacts
        .list(ArtifactQuery {
            offset: query.offset as usize,
            limit: limit as usize,
            sort: query.sortby,
            descending: query.order == Order::Desc,
        })
        .await
        .map_err(artifact_error)?;
    Ok(ApiJson(ArtifactsPage {
        total: page.total,
        offset: query.offset,
        limit,
        items: page.items.into_iter().map(|a| view(&state, a)).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{sha256}", tag = "operators",
    params(("sha256" = String, Path, description = "the artifact's sha256, 64 hex digits")),
    security(("admin" = [])),
    responses((status = 200, body = ArtifactView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn one(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(sha256): ApiPath<String>,
) -> Result<ApiJson<ArtifactView>, ApiError> {
    let sha256: Sha256Digest = sha256
        .parse()
        .map_err(|err| ApiError::bad_request("invalid sha256", err))?;
    let artifact = state.artifacts.get(&sha256).await.map_err(artifact_error)?;
    Ok(ApiJson(view(&state, artifact)))
}
