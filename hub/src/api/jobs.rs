//! `/api/v1/jobs`: create a job, read its summary and its executions,
//! resume it past a stage gate, and cancel it. Operators (admin token) act on any appliance; a customer
//! (its api key) on its own appliances and jobs only.
//!
//! A job is created with its targets (`{"applianceIds": [...]}`,
//! `{"customerId": "..."}` or `{"tag": "<id or name>"}`) and optionally a
//! policy: `rollout` (maxPerMinute, groups and successThresholdPercent,
//! startAt, window), `abort`, `timeouts`, `retry` and `continuous`
//! (`crate::rollout` documents each field). The summary shows the counts
//! per status of the latest attempt of each appliance, and the rollout's
//! phase and progress.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use protocol::{ExecutionStatus, JobDocument, TaskType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::jobs::{JobError, PlannedJob};
use crate::model::JobId;
use crate::rollout::{AbortCriterion, JobPolicy, Retry, Rollout, Targets, Timeouts};
use crate::store::{ExecutionView, JobSummary, RolloutView};

/// Most executions one page lists.
pub const MAX_PAGE: u32 = 1000;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", post(create))
        .route("/api/v1/jobs/{id}", get(summary))
        .route("/api/v1/jobs/{id}/executions", get(executions))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/resume", post(resume))
}

/// `POST /api/v1/jobs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateJobRequest {
    /// One of the protocol's task types.
    pub task_type: String,
    /// The job document's fields (`taskType` may be repeated or omitted).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub document: Option<serde_json::Map<String, Value>>,
    /// Where to run it: exactly one of `{"applianceIds": [...]}`,
    /// `{"customerId": "..."}` or `{"tag": "<tag id or name>"}` (the live
    /// appliances carrying it; with `continuous`, those tagged later too).
    #[schema(value_type = Object)]
    pub targets: Targets,
    /// Pace, groups, start time and window of the releases.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Criteria that abort the job.
    #[serde(default)]
    pub abort: Option<Vec<AbortCriterion>>,
    /// In-progress and step timeouts.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
    /// Retries of FAILED and TIMED_OUT executions.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Appliances the target (a customer) gains later receive the task too.
    #[serde(default)]
    pub continuous: bool,
}

impl CreateJobRequest {
    fn policy(&self) -> JobPolicy {
        JobPolicy {
            rollout: self.rollout.clone().unwrap_or_default(),
            abort: self.abort.clone().unwrap_or_default(),
            timeouts: self.timeouts.unwrap_or_default(),
            retry: self.retry,
            continuous: self.continuous,
        }
    }
}

/// A job as `GET /api/v1/jobs/{id}` shows it: its summary and its rollout.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// Status, task type, counts per status.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Phase and progress of the rollout.
    pub rollout: Option<RolloutView>,
}

/// `POST /api/v1/jobs` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCreatedResponse {
    /// The new job.
    #[schema(value_type = String)]
    pub job_id: JobId,
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "operators",
    request_body = CreateJobRequest, security(("admin" = []), ("apiKey" = [])),
    responses((status = 201, body = JobCreatedResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateJobRequest>,
) -> Result<(StatusCode, ApiJson<JobCreatedResponse>), ApiError> {
    let policy = request.policy();
    let document = parse_document(&request.task_type, request.document)?;
    let job_id = state
        .jobs
        .create_planned(PlannedJob {
            customer_id: caller.customer(),
            document,
            targets: request.targets,
            policy,
        })
        .await
        .map_err(job_error)?;
    Ok((StatusCode::CREATED, ApiJson(JobCreatedResponse { job_id })))
}

/// Builds the typed document from `taskType` and the document's fields.
fn parse_document(
    task_type: &str,
    fields: Option<serde_json::Map<String, Value>>,
) -> Result<JobDocument, ApiError> {
    let mut fields = fields.unwrap_or_default();
    match fields.get("taskType") {
        Some(Value::String(inner)) if inner == task_type => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid job document",
                "document.taskType differs from taskType",
            ))
        }
        None => {
            fields.insert("taskType".into(), Value::String(task_type.to_owned()));
        }
    }
    if task_type == TaskType::CollectLog.as_str() && !fields.contains_key("uploadPath") {
        // The hub gives each task its own signed upload link.
        fields.insert(
            "uploadPath".into(),
            Value::String(crate::store::UPLOAD_PATH_PLACEHOLDER.to_owned()),
        );
    }
    JobDocument::from_value(Value::Object(fields))
        .map_err(|err| ApiError::bad_request("invalid job document", err))
}

pub(crate) fn job_error(err: JobError) -> ApiError {
    match err {
        JobError::InvalidDocument(cause) => ApiError::bad_request("invalid job document", cause),
        err @ (JobError::HeartbeatNotQueueable
        | JobError::NoTargets
        | JobError::TooManyTargets(_)) => ApiError::bad_request("invalid targets or task", err),
        err @ JobError::UnknownAppliances(_) => ApiError::bad_request("unknown appliances", err),
        err @ JobError::UnknownArtifact(_) => ApiError::bad_request("unknown artifact", err),
        err @ JobError::UnknownCustomer => ApiError::bad_request("unknown customer", err),
        err @ JobError::UnknownTag(_) => ApiError::bad_request("unknown tag", err),
        JobError::InvalidPolicy(cause) => ApiError::bad_request("invalid job policy", cause),
        JobError::NotFound => ApiError::NotFound("unknown job"),
        err @ JobError::NotGated(_) => ApiError::Conflict(err.to_string()),
        JobError::Store(err) => err.into(),
    }
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid job id", "expected a UUID"))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "operators",
    params(("id" = String, Path)), security(("admin" = []), ("apiKey" = [])),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn summary(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<JobView>, ApiError> {
    let job_id = job_id(&id)?;
    let summary = visible(&state, &caller, job_id).await?;
    job_view(&state, summary).await
}

/// The summary with the job's rollout.
async fn job_view(state: &AppState, summary: JobSummary) -> Result<ApiJson<JobView>, ApiError> {
    let rollout = state.store.rollout_view(summary.job_id).await?;
    Ok(ApiJson(JobView { summary, rollout }))
}

/// The job's summary, when the caller may see it (a customer sees its own
/// jobs only; another's is a 404).
async fn visible(state: &AppState, caller: &Caller, job_id: JobId) -> Result<JobSummary, ApiError> {
    state
        .store
        .job_summary(job_id)
        .await?
        .filter(|summary| caller.may_see(summary.customer_id))
        .ok_or(ApiError::NotFound("unknown job"))
}

/// Paging and filter of the executions list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExecutionsQuery {
    /// Rows to skip.
    #[serde(default)]
    pub offset: u32,
    /// Rows to return (1-1000, default 100).
    pub limit: Option<u32>,
    /// Only executions in this status.
    pub status: Option<String>,
    /// `latest` (default): the latest attempt of each appliance; `all`:
    /// every attempt, retries included.
    pub attempts: Option<String>,
}

/// One page of executions.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionsPage {
    /// Executions matching the filter, in all pages.
    pub total: u64,
    /// As requested.
    pub offset: u32,
    /// As applied.
    pub limit: u32,
    /// This page.
    pub items: Vec<ExecutionView>,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/executions", tag = "operators",
    params(("id" = String, Path), ExecutionsQuery), security(("admin" = []), ("apiKey" = [])),
    responses((status = 200, body = ExecutionsPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn executions(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> Result<ApiJson<ExecutionsPage>, ApiError> {
    let job_id = job_id(&id)?;
    visible(&state, &caller, job_id).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid limit", "expected 1-1000"));
    }
    let status = query
        .status
        .map(|s| s.parse::<ExecutionStatus>())
        .transpose()
        .map_err(|err| ApiError::bad_request("invalid status filter", err))?;
    let all = match query.attempts.as_deref() {
        None | Some("latest") => false,
        Some("all") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid attempts",
                "expected latest or all",
            ))
        }
    };
    let (offset, rows) = (query.offset as usize, limit as usize);
    let page = if all {
        state
            .store
            .list_attempts(job_id, status, offset, rows)
            .await?
    } else {
        state
            .store
            .list_executions(job_id, status, offset, rows)
            .await?
    };
    let page = page.ok_or(ApiError::NotFound("unknown job"))?;
    Ok(ApiJson(ExecutionsPage {
        total: page.total,
        offset: query.offset,
        limit,
        items: page.items,
    }))
}

/// Cancel options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    /// Also end IN_PROGRESS executions.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "operators",
    params(("id" = String, Path), CancelQuery), security(("admin" = []), ("apiKey" = [])),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<ApiJson<JobView>, ApiError> {
    let job_id = job_id(&id)?;
    visible(&state, &caller, job_id).await?;
    state
        .jobs
        .cancel(job_id, query.force)
        .await
        .map_err(job_error)?;
    let summary = visible(&state, &caller, job_id).await?;
    job_view(&state, summary).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", tag = "operators",
    params(("id" = String, Path)), security(("admin" = []), ("apiKey" = [])),
    description = "Opens the next staged group of a job waiting at its stage gate \
        (`rollout.phase` STAGE_GATED), whatever the success of the groups released so far; \
        it is released at the job's rate and within its window. 409 when the job is not \
        waiting at a gate.",
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn resume(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<JobView>, ApiError> {
    let job_id = job_id(&id)?;
    visible(&state, &caller, job_id).await?;
    state
        .jobs
        .open_next_group(job_id)
        .await
        .map_err(job_error)?;
    let summary = visible(&state, &caller, job_id).await?;
    job_view(&state, summary).await
}
