//! `/ui/appliances/{id}/log`: a customer asks one of its appliances for
//! its logs, then follows the request until the archive can be downloaded.
//!
//! - `POST` (body `{"start", "end"}` in epoch ms, both optional: the last
//!   24 hours up to the hub's clock) creates a collectLog task and answers
//!   202 `{"taskId", "jobId"}`; while the appliance's latest collectLog task
//!   is still open without an archive, it answers 200 with that task
//!   instead, as the original backend did.
//! - `GET` answers the appliance's latest collectLog task: its state until
//!   the archive is in, then a signed `downloadUrl`.
//!
//! Another customer's appliance is a 404, like everywhere under `/ui/`.
//! The work is [`crate::artifacts::logs::LogService`]'s.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use protocol::TaskId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Customer;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::files::log_error;
use super::ui_appliances::{owned, owned_live};
use super::AppState;
use crate::artifacts::logs::{LogRequest, LogTaskView};
use crate::model::JobId;

/// The window a request without `start` covers: 24 hours before `end`.
pub const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/ui/appliances/{id}/log", get(latest).post(request))
}

/// `POST /ui/appliances/{id}/log/` body. The whole body is optional: none
/// at all (or `{}`) asks for the last 24 hours. It is read as JSON whatever
/// its `Content-Type`.
#[derive(Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogWindow {
    /// First moment wanted, epoch ms [default: `end` minus 24 hours].
    pub start: Option<i64>,
    /// Last moment wanted, epoch ms [default: the hub's now].
    pub end: Option<i64>,
}

impl LogWindow {
    /// The window a body asks for: an empty (or blank) body is the
    /// default one; anything else must be the JSON object.
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(|err| ApiError::bad_request("invalid JSON body", err))
    }

    /// `(start, end)` with the defaults filled in at `now`; 400 when start
    /// is after end.
    fn resolve(self, now: i64) -> Result<(i64, i64), ApiError> {
        let end = self.end.unwrap_or(now);
        let start = self
            .start
            .unwrap_or_else(|| end.saturating_sub(DEFAULT_WINDOW_MS));
        if start > end {
            return Err(ApiError::bad_request(
                "invalid log window",
                "start must not be after end",
            ));
        }
        Ok((start, end))
    }
}

/// `POST /ui/appliances/{id}/log/` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogTaskAccepted {
    /// The collectLog task (`GET /ui/tasks/{taskId}/` follows it too).
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// Its job.
    #[schema(value_type = String)]
    pub job_id: JobId,
}

#[utoipa::path(post, path = "/ui/appliances/{id}/log", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")),
    request_body(content = Option<LogWindow>, description = "optional; no body asks for the \
        last 24 hours"),
    security(("apiKey" = [])),
    responses(
        (status = 202, body = LogTaskAccepted, description = "a collectLog task was created"),
        (status = 200, body = LogTaskAccepted,
            description = "the appliance's open log task, still waiting for its archive"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn request(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, ApiJson<LogTaskAccepted>), ApiError> {
    let (start, end) = LogWindow::parse(&body?)?.resolve(state.clock.now())?;
    let record = owned_live(&state, &customer, &id).await?;
    let requested = state
        .logs
        .request_unless_open(record.appliance_id, Some(customer.0), start, end)
        .await
        .map_err(log_error)?;
    Ok(match requested {
        LogRequest::Created(created) => (
            StatusCode::ACCEPTED,
            ApiJson(LogTaskAccepted {
                task_id: created.task_id,
                job_id: created.job_id,
            }),
        ),
        LogRequest::Open(open) => (
            StatusCode::OK,
            ApiJson(LogTaskAccepted {
                task_id: open.task_id,
                job_id: open.job_id,
            }),
        ),
    })
}

#[utoipa::path(get, path = "/ui/appliances/{id}/log", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses(
        (status = 200, body = LogTaskView, description = "the latest log task: its state, and \
            `downloadUrl` once the archive is in"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown appliance, or no log requested")))]
async fn latest(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<LogTaskView>, ApiError> {
    let record = owned(&state, &customer, &id).await?;
    let view = state
        .logs
        .latest(record.appliance_id)
        .await
        .map_err(log_error)?
        .ok_or(ApiError::NotFound(
            "no log was requested from this appliance",
        ))?;
    Ok(ApiJson(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(body: &str) -> Result<(i64, i64), ApiError> {
        LogWindow::parse(body.as_bytes())?.resolve(100 * DEFAULT_WINDOW_MS)
    }

    #[test]
    fn the_window_defaults_to_the_last_day_and_refuses_start_after_end() {
        let now = 100 * DEFAULT_WINDOW_MS;
        for empty in ["", " \n", "{}"] {
            assert_eq!(window(empty).ok(), Some((now - DEFAULT_WINDOW_MS, now)));
        }
        assert_eq!(window(r#"{"start": 5, "end": 9}"#).ok(), Some((5, 9)));
        assert_eq!(window(r#"{"start": 5}"#).ok(), Some((5, now)));
        assert_eq!(
            window(r#"{"end": 9}"#).ok(),
            Some((9 - DEFAULT_WINDOW_MS, 9))
        );
        assert_eq!(
            window(&format!(r#"{{"end": {}}}"#, i64::MIN)).ok(),
            Some((i64::MIN, i64::MIN))
        );
        for bad in [
            r#"{"start": 9, "end": 5}"#,
            r#"{"start": "yesterday"}"#,
            r#"{"start": 1, "colour": 2}"#,
            "null",
            "[]",
            "{not json",
        ] {
            assert!(window(bad).is_err(), "{bad}");
        }
    }
}
