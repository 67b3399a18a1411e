//! `/api/v1/jobs`: create a job, read its summary and its executions, and
//! cancel it.
//!
//! A job is created with its targets (`{"applianceIds": [...]}`,
//! `{"customerId": "..."}`; tags come with the tags API) and optionally a
//! policy: `rollout` (maxPerMinute, groups and successThresholdPercent,
//! startAt, window), `abort`, `timeouts`, `retry` and `continuous`
//! (`crate::rollout::policy` documents each field). The summary shows the
//! counts per status of the latest attempt of each appliance, and the
//! rollout's phase and progress.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use protocol::{ExecutionStatus, JobDocument};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery};
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
}

/// `POST /api/v1/jobs` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateJobRequest {
    /// One of the protocol's task types.
    pub task_type: String,
    /// The job document's fields (`taskType` may be repeated or omitted).
    #[serde(default)]
    pub document: Option<serde_json::Map<String, Value>>,
    /// Where to run it.
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
    /// Appliances the target gains later receive the task too.
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
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// Status, task type, counts per status.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Phase and progress of the rollout (absent for jobs created before
    /// rollouts existed).
    pub rollout: Option<RolloutView>,
}

/// `POST /api/v1/jobs` answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCreatedResponse {
    /// The new job.
    pub job_id: JobId,
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateJobRequest>,
) -> Result<(StatusCode, ApiJson<JobCreatedResponse>), ApiError> {
    let policy = request.policy();
    let document = parse_document(&request.task_type, request.document)?;
    let job_id = state
        .jobs
        .create_planned(PlannedJob {
            customer_id: None,
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
        err @ JobError::UnknownCustomer => ApiError::bad_request("unknown customer", err),
        err @ JobError::TagsNotSupported => ApiError::bad_request("invalid targets", err),
        JobError::InvalidPolicy(cause) => ApiError::bad_request("invalid job policy", cause),
        JobError::NotFound => ApiError::NotFound("unknown job"),
        JobError::Store(err) => err.into(),
    }
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid job id", "expected a UUID"))
}

/// The summary and rollout of a job.
async fn job_view(state: &AppState, job_id: JobId) -> Result<ApiJson<JobView>, ApiError> {
    let summary = state
        .store
        .job_summary(job_id)
        .await?
        .ok_or(ApiError::NotFound("unknown job"))?;
    let rollout = state.store.rollout_view(job_id).await?;
    Ok(ApiJson(JobView { summary, rollout }))
}

async fn summary(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<JobView>, ApiError> {
    job_view(&state, job_id(&id)?).await
}

/// Paging and filter of the executions list.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Serialize, Deserialize)]
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

async fn executions(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> Result<ApiJson<ExecutionsPage>, ApiError> {
    let job_id = job_id(&id)?;
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
    let (offset, limit_rows) = (query.offset as usize, limit as usize);
    let page = if all {
        state
            .store
            .list_attempts(job_id, status, offset, limit_rows)
            .await?
    } else {
        state
            .store
            .list_executions(job_id, status, offset, limit_rows)
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    /// Also end IN_PROGRESS executions.
    #[serde(default)]
    pub force: bool,
}

async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<ApiJson<JobView>, ApiError> {
    let job_id = job_id(&id)?;
    state
        .jobs
        .cancel(job_id, query.force)
        .await
        .map_err(job_error)?;
    job_view(&state, job_id).await
}
