//! `/va/{id}/...`: what an appliance calls over REST with its appliance
//! token: the fallback for task results when MQTT is not available
//! (success | failed | ignored, mapped onto SUCCEEDED | FAILED | REJECTED
//! and decided by the same state machine), a health check, its audit log
//! and its services' metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use protocol::message::{UpdateParams, UpdateReplyData};
use protocol::{ReportedStatus, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Appliance;
use super::catalog::service_code;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{AuditEntry, UpdateResult};

/// Most audit entries in one upload.
pub const MAX_AUDIT_UPLOAD: usize = 1000;
/// Largest text of an audit entry field.
const MAX_AUDIT_TEXT: usize = 4096;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/va/{id}/tasks", post(task_result))
        .route("/va/{id}/healthz", get(healthz))
        .route("/va/{id}/log", post(audit_log))
        .route("/va/{id}/{service}/metrics", post(service_metrics))
}

/// The outcome an appliance reports over REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    /// Done: SUCCEEDED.
    Success,
    /// Tried and failed: FAILED.
    Failed,
    /// Not executed (duplicate, not applicable): REJECTED.
    Ignored,
}

/// `POST /va/{id}/tasks/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskResultRequest {
    /// The task reported on.
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// success | failed | ignored.
    pub status: TaskOutcome,
    /// The task's result.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Map<String, Value>>,
    /// Why it failed or was ignored.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Idempotency key, as on MQTT.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// The task's state after the report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskResultResponse {
    /// The task.
    pub task_id: String,
    /// Its status now.
    pub status: String,
    /// Its version now.
    pub version_number: u64,
}

impl From<UpdateReplyData> for TaskResultResponse {
    fn from(data: UpdateReplyData) -> Self {
        Self {
            task_id: data.task_id.as_str().to_owned(),
            status: data.status.as_str().to_owned(),
            version_number: data.version_number,
        }
    }
}

#[utoipa::path(post, path = "/va/{id}/tasks", tag = "appliances",
    params(("id" = String, Path, description = "appliance id")),
    request_body = TaskResultRequest, security(("applianceToken" = [])),
    responses((status = 200, body = TaskResultResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn task_result(
    Appliance(appliance): Appliance,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TaskResultRequest>,
) -> Result<ApiJson<TaskResultResponse>, ApiError> {
    if request
        .error_message
        .as_ref()
        .is_some_and(|m| m.len() > MAX_AUDIT_TEXT)
    {
        return Err(ApiError::bad_request("invalid errorMessage", "too long"));
    }
    if request
        .client_token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > 64)
    {
        return Err(ApiError::bad_request(
            "invalid clientToken",
            "expected 1-64 characters",
        ));
    }
    let params = UpdateParams {
        task_id: request.task_id,
        status: match request.status {
            TaskOutcome::Success => ReportedStatus::Succeeded,
            TaskOutcome::Failed => ReportedStatus::Failed,
            TaskOutcome::Ignored => ReportedStatus::Rejected,
        },
        progress: None,
        status_details: None,
        result: request.result,
        error_message: request.error_message,
        expected_version: None,
        client_token: request.client_token,
    };
    let now = state.clock.now();
    match state.store.record_update(appliance, params, now).await? {
        UpdateResult::Accepted(data) | UpdateResult::Duplicate(data) => Ok(ApiJson(data.into())),
        UpdateResult::Rejected(rejection) => Err(ApiError::Conflict(rejection.to_string())),
        UpdateResult::NotFound => Err(ApiError::NotFound("unknown task")),
        UpdateResult::Invalid(message) => Err(ApiError::bad_request(message, "result.version")),
    }
}

/// `GET /va/{id}/healthz/` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceHealth {
    /// Always `ok`.
    pub status: String,
    /// The hub's clock, epoch ms (for the appliance's skew check).
    pub server_time: i64,
}

#[utoipa::path(get, path = "/va/{id}/healthz", tag = "appliances",
    params(("id" = String, Path, description = "appliance id")),
    security(("applianceToken" = [])),
    responses((status = 200, body = ApplianceHealth), (status = 401, body = ErrorBody)))]
async fn healthz(
    Appliance(_): Appliance,
    State(state): State<AppState>,
) -> ApiJson<ApplianceHealth> {
    ApiJson(ApplianceHealth {
        status: "ok".into(),
        server_time: state.clock.now(),
    })
}

/// `POST /va/{id}/log/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditUpload {
    /// 1-1000 entries.
    pub entries: Vec<AuditEntry>,
}

/// How many entries were recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recorded {
    /// Entries (or samples) recorded.
    pub recorded: usize,
}

#[utoipa::path(post, path = "/va/{id}/log", tag = "appliances",
    params(("id" = String, Path, description = "appliance id")),
    request_body = AuditUpload, security(("applianceToken" = [])),
    responses((status = 201, body = Recorded), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn audit_log(
    Appliance(appliance): Appliance,
    State(state): State<AppState>,
    ApiJson(upload): ApiJson<AuditUpload>,
) -> Result<(StatusCode, ApiJson<Recorded>), ApiError> {
    if upload.entries.is_empty() || upload.entries.len() > MAX_AUDIT_UPLOAD {
        return Err(ApiError::bad_request(
            "invalid entries",
            "expected 1-1000 entries",
        ));
    }
    let too_long = |t: &Option<String>| t.as_ref().is_some_and(|t| t.len() > MAX_AUDIT_TEXT);
    for entry in &upload.entries {
        if entry.action.is_empty() || entry.action.len() > MAX_AUDIT_TEXT {
            return Err(ApiError::bad_request(
                "invalid action",
                "expected 1-4096 bytes",
            ));
        }
        if too_long(&entry.actor) || too_long(&entry.detail) {
            return Err(ApiError::bad_request(
                "invalid entry",
                "fields of at most 4096 bytes",
            ));
        }
    }
    let recorded = upload.entries.len();
    let now = state.clock.now();
    if !state
        .store
        .append_audit_log(appliance, upload.entries, now)
        .await?
    {
        return Err(ApiError::NotFound("unknown appliance"));
    }
    Ok((StatusCode::CREATED, ApiJson(Recorded { recorded })))
}

#[utoipa::path(post, path = "/va/{id}/{service}/metrics", tag = "appliances",
    params(("id" = String, Path, description = "appliance id"),
        ("service" = String, Path, description = "service code")),
    request_body(content = Object, description = "the service's figures, a JSON object"),
    security(("applianceToken" = [])),
    responses((status = 201, body = Recorded), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn service_metrics(
    Appliance(appliance): Appliance,
    State(state): State<AppState>,
    ApiPath((_, service)): ApiPath<(String, String)>,
    ApiJson(sample): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, ApiJson<Recorded>), ApiError> {
    service_code(&service)?;
    let size = serde_json::to_vec(&sample)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > 64 * 1024 {
        return Err(ApiError::bad_request(
            "invalid metrics",
            "at most 64 KiB of JSON",
        ));
    }
    let now = state.clock.now();
    if !state
        .store
        .record_service_metrics(appliance, service, sample, now)
        .await?
    {
        return Err(ApiError::NotFound("unknown appliance"));
    }
    Ok((StatusCode::CREATED, ApiJson(Recorded { recorded: 1 })))
}
