//! The one error type of the REST API. Every error answers with its HTTP
//! status and the body `{"status": <code>, "message": "...", "cause": "..."}`;
//! one `match` chooses the status. Internal failures are logged and never
//! leak their details.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::header::CONTENT_RANGE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::StoreError;

/// Everything a handler can answer instead of success.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed or invalid.
    BadRequest {
        /// What was wrong, for a person.
        message: String,
        /// The detail (a field, a parser's words).
        cause: String,
    },
    /// 401: no or wrong credentials.
    Unauthorized(&'static str),
    /// 403: a signed link that is missing, tampered with or expired.
    Forbidden(String),
    /// 404: no such resource (or not the caller's).
    NotFound(&'static str),
    /// 405: the path exists, not with this method.
    MethodNotAllowed,
    /// 409: the resource's state forbids it.
    Conflict(String),
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 416: the `Range` cannot be served; answered with
    /// `Content-Range: bytes */<size>`.
    RangeNotSatisfiable {
        /// Size of the whole file.
        size: u64,
        /// Why.
        cause: String,
    },
    /// 503: the hub is overloaded or shutting down; retry later.
    Unavailable,
    /// 500: a failure of the hub itself; details go to the log only.
    Internal(String),
}

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// The detail: a field, a parser's words, the state that forbids it.
    pub cause: String,
}

impl ApiError {
    /// A 400 with a message and its cause.
    pub fn bad_request(message: impl Into<String>, cause: impl ToString) -> Self {
        Self::BadRequest {
            message: message.into(),
            cause: cause.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, cause) = match &self {
            Self::BadRequest { message, cause } => {
                (StatusCode::BAD_REQUEST, message.as_str(), cause.as_str())
            }
            Self::Unauthorized(cause) => (StatusCode::UNAUTHORIZED, "unauthorized", *cause),
            Self::Forbidden(cause) => (StatusCode::FORBIDDEN, "forbidden", cause.as_str()),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, "not found", *what),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "see /openapi.json for the methods of this path",
            ),
            Self::Conflict(cause) => (StatusCode::CONFLICT, "conflict", cause.as_str()),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload too large",
                "the request body exceeds the limit",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                "expected Content-Type: application/json",
            ),
            Self::RangeNotSatisfiable { cause, .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable",
                cause.as_str(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the hub is busy; retry later",
            ),
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a REST request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    "see the hub's log",
                )
            }
        };
        let body = ErrorBody {
            status: status.as_u16(),
            message: message.to_owned(),
            cause: cause.to_owned(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::RangeNotSatisfiable { size, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Busy | StoreError::Closed | StoreError::Overloaded => Self::Unavailable,
            StoreError::Conflict(cause) => Self::Conflict(cause),
            StoreError::UnknownCustomer(_) => Self::NotFound("unknown customer"),
            StoreError::UnknownTag(_) => Self::NotFound("unknown tag"),
            StoreError::UnknownAppliances(_) => Self::NotFound("unknown appliance"),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(_) => Self::PayloadTooLarge,
            other => Self::bad_request("invalid JSON body", other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::bad_request("the request body could not be read", rejection.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid path parameter", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid query parameter", rejection.body_text())
    }
}
