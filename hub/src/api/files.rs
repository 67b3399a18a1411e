//! The public, link-signed routes (the signature is the authorization):
//! - `GET|HEAD /artifacts/{sha256}/{name}`: an artifact's bytes;
//! - `PUT /uploads/logs/{taskId}`: an appliance's log archive;
//! - `GET|HEAD /logs/{taskId}`: that archive, for the customer.
//!
//! Every link is checked first (403 with the error body when missing,
//! tampered with or expired), then the resource (404). Files are streamed
//! from a seeked file, never read whole; one `Range` is served per request
//! (see [`crate::artifacts::range`]), with `ETag` (the sha256),
//! `Accept-Ranges`, `Content-Length` and `Content-Range`.

use std::path::Path;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_RANGE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use protocol::TaskId;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::artifacts::logs::LogError;
use crate::artifacts::range::{self, ByteRange};
use crate::artifacts::signer::{artifact_path, log_download_path, log_upload_path};
use crate::artifacts::{ArtifactError, FileName, Sha256Digest, UrlSigner};

/// Bytes read from the file per chunk of a response body.
pub const CHUNK: usize = 128 * 1024;

/// Header an uploader may declare the body's sha256 in (64 hex digits).
pub const SHA256_HEADER: &str = "x-sha256";

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/artifacts/{sha256}/{name}", get(artifact))
        .route("/logs/{task}", get(log_archive))
        .route(
            "/uploads/logs/{task}",
            put(upload_log).layer(DefaultBodyLimit::disable()),
        )
}

/// A body of raw bytes, as the documentation shows it.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// The query of every signed link (documentation of what
/// [`UrlSigner::verify`] reads from the raw query).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedLink {
    /// When the link expires, epoch seconds.
    pub expires: u64,
    /// HMAC-SHA256 of the path and `expires`, lowercase hex.
    pub sig: String,
}

fn check_link(signer: &UrlSigner, path: &str, query: Option<&str>) -> Result<(), ApiError> {
    signer
        .verify(path, query)
        .map_err(|err| ApiError::Forbidden(err.to_string()))
}

#[utoipa::path(method(get, head), path = "/artifacts/{sha256}/{name}", tag = "files",
    params(("sha256" = String, Path, description = "the artifact's sha256"),
        ("name" = String, Path, description = "the name it is downloaded as"),
        SignedLink,
        ("Range" = Option<String>, Header, description = "one range: `bytes=<first>-[<last>]` \
            or `bytes=-<suffix length>`"),
        ("If-Range" = Option<String>, Header,
            description = "the ETag; any other value serves the whole file")),
    responses(
        (status = 200, body = Binary, content_type = "application/octet-stream",
            description = "the whole file (HEAD: its headers), with ETag (the quoted sha256), \
                Content-Length, Accept-Ranges and the artifact's Content-Type"),
        (status = 206, body = Binary, content_type = "application/octet-stream",
            description = "the range asked for, with Content-Range"),
        (status = 403, body = ErrorBody, description = "the link is unsigned, tampered with or \
            expired"),
        (status = 404, body = ErrorBody, description = "no such artifact in this hub's store"),
        (status = 416, body = ErrorBody, description = "the range cannot be served; \
            Content-Range: bytes */<size>")))]
async fn artifact(
    State(state): State<AppState>,
    ApiPath((sha256, name)): ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (Ok(digest), Ok(file_name)) = (sha256.parse::<Sha256Digest>(), name.parse::<FileName>())
    else {
        // Never signed: the hub signs only valid digests and names.
        return Err(ApiError::Forbidden(
            "the link's signature is invalid".into(),
        ));
    };
    let signer = state.artifacts.signer();
    check_link(
        signer,
        &artifact_path(&digest, &file_name),
        query.as_deref(),
    )?;
    let (artifact, path) = state
        .artifacts
        .local_file(&digest)
        .await
        .map_err(|err| match err {
            ArtifactError::NotFound => ApiError::NotFound("unknown artifact"),
            other => super::artifacts::artifact_error(other),
        })?;
    let file = ServedFile {
        path: &path,
        size: artifact.size,
        sha256: &artifact.sha256,
        content_type: &artifact.content_type,
        file_name: file_name.as_str(),
    };
    serve(file, &method, &headers).await
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Forbidden("the link's signature is invalid".into()))
}

#[utoipa::path(method(get, head), path = "/logs/{task}", tag = "files",
    params(("task" = String, Path, description = "the collectLog task"),
        SignedLink,
        ("Range" = Option<String>, Header, description = "one range: `bytes=<first>-[<last>]` \
            or `bytes=-<suffix length>`"),
        ("If-Range" = Option<String>, Header,
            description = "the ETag; any other value serves the whole file")),
    responses(
        (status = 200, body = Binary, content_type = "application/octet-stream",
            description = "the whole archive (HEAD: its headers), with ETag (the quoted sha256), \
                Content-Length and Accept-Ranges"),
        (status = 206, body = Binary, content_type = "application/octet-stream",
            description = "the range asked for, with Content-Range"),
        (status = 403, body = ErrorBody, description = "the link is unsigned, tampered with or \
            expired"),
        (status = 404, body = ErrorBody, description = "no archive uploaded for this task"),
        (status = 416, body = ErrorBody, description = "the range cannot be served; \
            Content-Range: bytes */<size>")))]
async fn log_archive(
    State(state): State<AppState>,
    ApiPath(task): ApiPath<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let task = task_id(&task)?;
    check_link(
        state.logs.signer(),
        &log_download_path(&task),
        query.as_deref(),
    )?;
    let (upload, path) = state.logs.archive(&task).await.map_err(log_error)?;
    let file_name = format!("log-{task}");
    let file = ServedFile {
        path: &path,
        size: upload.size,
        sha256: &upload.sha256,
        content_type: crate::artifacts::DEFAULT_CONTENT_TYPE,
        file_name: &file_name,
    };
    serve(file, &method, &headers).await
}

/// `PUT /uploads/logs/{taskId}` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogUploaded {
    /// The task.
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// sha256 of the archive received.
    #[schema(value_type = String)]
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
    /// When, epoch ms.
    pub uploaded_at: i64,
}

#[utoipa::path(put, path = "/uploads/logs/{task}", tag = "files",
    params(("task" = String, Path, description = "the collectLog task"),
        SignedLink,
        ("x-sha256" = Option<String>, Header, description = "the sha256 the body must have")),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "the log archive, streamed to disk; a second upload replaces the first"),
    responses(
        (status = 200, body = LogUploaded, description = "received"),
        (status = 400, body = ErrorBody, description = "a sha256 that does not match, or a \
            body that broke off; nothing kept"),
        (status = 403, body = ErrorBody, description = "the link is unsigned, tampered with or \
            expired"),
        (status = 404, body = ErrorBody, description = "no such collectLog task"),
        (status = 409, body = ErrorBody, description = "the task takes no upload (not released, \
            or canceled)"),
        (status = 413, body = ErrorBody, description = "over --max-log-size; nothing kept")))]
async fn upload_log(
    State(state): State<AppState>,
    ApiPath(task): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson<LogUploaded>, ApiError> {
    let task = task_id(&task)?;
    check_link(
        state.logs.signer(),
        &log_upload_path(&task),
        query.as_deref(),
    )?;
    if declared_length(&headers)? > state.logs.max_size() {
        return Err(ApiError::PayloadTooLarge);
    }
    let declared = declared_sha256(&headers, None)?;
    let upload = state
        .logs
        .receive(&task, declared, body.into_data_stream())
        .await
        .map_err(log_error)?;
    Ok(ApiJson(LogUploaded {
        task_id: task,
        sha256: upload.sha256,
        size: upload.size,
        uploaded_at: upload.uploaded_at,
    }))
}

/// The answer to a log service error (for the `/ui/` log endpoint too).
pub(crate) fn log_error(err: LogError) -> ApiError {
    match err {
        LogError::NotFound => ApiError::NotFound("unknown log task, or no archive uploaded"),
        err @ LogError::NotAccepting(_) => ApiError::Conflict(err.to_string()),
        err @ LogError::Sha256Mismatch { .. } => ApiError::bad_request("sha256 mismatch", err),
        LogError::TooLarge { .. } => ApiError::PayloadTooLarge,
        LogError::Body(cause) => ApiError::bad_request("the request body broke off", cause),
        LogError::Job(err) => super::jobs::job_error(err),
        LogError::Io(err) => ApiError::Internal(format!("log file: {err}")),
        LogError::Store(err) => err.into(),
    }
}

/// The `Content-Length` a request declares (0 when absent); a malformed
/// one is a bad request.
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<u64, ApiError> {
    let Some(value) = headers.get(CONTENT_LENGTH) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid Content-Length", "expected a number"))
}

/// The sha256 declared in the `x-sha256` header and/or `query`; both must
/// agree when both are given.
pub(crate) fn declared_sha256(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Sha256Digest>, ApiError> {
    let parse = |text: &str| {
        text.parse::<Sha256Digest>()
            .map_err(|err| ApiError::bad_request("invalid sha256", err))
    };
    let header = match headers.get(SHA256_HEADER) {
        None => None,
        Some(value) => Some(parse(value.to_str().unwrap_or_default())?),
    };
    let query = query.map(parse).transpose()?;
    match (header, query) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "invalid sha256",
            "the x-sha256 header and the sha256 parameter differ",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// A file and what its responses say about it.
struct ServedFile<'a> {
    path: &'a Path,
    size: u64,
    sha256: &'a Sha256Digest,
    content_type: &'a str,
    file_name: &'a str,
}

/// Answers GET or HEAD for a file: 200 whole, 206 one range, 416 when the
/// range cannot be served. `If-Range` other than the ETag serves it whole.
async fn serve(
    file: ServedFile<'_>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", file.sha256);
    let if_range_ok = headers
        .get(IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let requested = headers.get(RANGE).filter(|_| if_range_ok);
    let range = range::parse(requested.map(HeaderValue::as_bytes), file.size).map_err(|err| {
        ApiError::RangeNotSatisfiable {
            size: file.size,
            cause: err.to_string(),
        }
    })?;
    let (status, first, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.first, r.len()),
        None => (StatusCode::OK, 0, file.size),
    };
    let mut response = if *method == Method::HEAD {
        Body::empty().into_response()
    } else {
        open_stream(file.path, first, len).await?.into_response()
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut set = |name, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(CONTENT_LENGTH, len.to_string());
    set(ACCEPT_RANGES, "bytes".into());
    set(ETAG, etag);
    set(CONTENT_TYPE, file.content_type.to_owned());
    set(
        CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}\"", file.file_name),
    );
    if let Some(ByteRange { first, last }) = range {
        set(CONTENT_RANGE, format!("bytes {first}-{last}/{}", file.size));
    }
    Ok(response)
}

/// `len` bytes of the file from `first`, as a body that reads them in
/// [`CHUNK`]s as the client takes them.
async fn open_stream(path: &Path, first: u64, len: u64) -> Result<Body, ApiError> {
    let internal =
        |err: std::io::Error| ApiError::Internal(format!("reading {}: {err}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(internal)?;
    if first > 0 {
        file.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(internal)?;
    }
    let stream = ReaderStream::with_capacity(file.take(len), CHUNK);
    Ok(Body::from_stream(stream))
}
