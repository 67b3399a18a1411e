//! Envelopes and payloads of every message, and their decoders.
//!
//! Device -> hub: [`Request`] `{id, version, params}`.
//! Hub -> device: [`Reply`] `{id, code, method, version, data, message}`
//! on `get_reply` / `update_reply`, and a [`Request`] with `method` set for
//! `notify`. The `decode_*` functions check a payload field by field and
//! return the first [`ProtocolError`] found; they never panic.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{
    ExecutionStatus, JobDocument, JobFile, MessageKind, ProtocolError, ReportedStatus, TaskId,
    TaskType, PROTOCOL_VERSION,
};

/// Upper bound of `progress`.
pub const MAX_PROGRESS: u8 = 100;
/// Longest request id, client token or status detail key.
pub const MAX_TOKEN_LEN: usize = 64;
/// Longest `errorMessage` and status detail value.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Most entries in `statusDetails`.
pub const MAX_STATUS_DETAILS: usize = 32;

/// A message with `params`: every device -> hub request, and `notify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<P> {
    /// Chosen by the sender; echoed in the reply. 1-64 characters.
    pub id: String,
    /// Always [`PROTOCOL_VERSION`].
    pub version: String,
    /// Set on notify (`thing.job.notify`); absent on device requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The payload.
    pub params: P,
}

impl<P> Request<P> {
    /// A request of the current protocol version.
    pub fn new(id: impl Into<String>, params: P) -> Self {
        Self {
            id: id.into(),
            version: PROTOCOL_VERSION.to_owned(),
            method: None,
            params,
        }
    }
}

/// The hub's answer on `get_reply` and `update_reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<D> {
    /// The request's id (empty when the request had none readable).
    pub id: String,
    /// Outcome.
    pub code: ReplyCode,
    /// `thing.job.get` or `thing.job.update`.
    pub method: String,
    /// Always [`PROTOCOL_VERSION`].
    pub version: String,
    /// Result on success; the current state on 409; absent otherwise.
    pub data: Option<D>,
    /// `success`, or what was wrong.
    pub message: String,
}

impl<D> Reply<D> {
    /// A 200 reply.
    pub fn ok(id: impl Into<String>, kind: MessageKind, data: D) -> Self {
        Self::new(id, kind, ReplyCode::Ok, Some(data), "success")
    }

    /// Any reply.
    pub fn new(
        id: impl Into<String>,
        kind: MessageKind,
        code: ReplyCode,
        data: Option<D>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            code,
            method: kind.method().to_owned(),
            version: PROTOCOL_VERSION.to_owned(),
            data,
            message: message.into(),
        }
    }
}

/// Reply codes, carried as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    /// 200: accepted / found.
    Ok,
    /// 400: invalid JSON or request.
    BadRequest,
    /// 404: unknown task (or another appliance's).
    NotFound,
    /// 409: invalid transition, version mismatch or terminal state.
    Conflict,
    /// 429: the appliance sends too fast.
    Throttled,
    /// 500: the hub could not process it; retry later.
    Internal,
}

impl ReplyCode {
    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Throttled => 429,
            Self::Internal => 500,
        }
    }

    /// The code for a number, if it is one of the protocol's.
    pub const fn from_u16(code: u16) -> Option<Self> {
        match code {
            200 => Some(Self::Ok),
            400 => Some(Self::BadRequest),
            404 => Some(Self::NotFound),
            409 => Some(Self::Conflict),
            429 => Some(Self::Throttled),
            500 => Some(Self::Internal),
            _ => None,
        }
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

impl Serialize for ReplyCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.as_u16())
    }
}

impl<'de> Deserialize<'de> for ReplyCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        Self::from_u16(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reply code {code}")))
    }
}

/// One task as the appliance sees it, in notify and get_reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// This attempt's id; an appliance never runs the same id twice.
    pub task_id: TaskId,
    /// Current state.
    pub status: ExecutionStatus,
    /// Attempt number of the execution, from 1; a retry sends a new taskId
    /// with the next number.
    pub execution_number: u32,
    /// Bumped by every accepted update; `expectedVersion` is checked against it.
    pub version_number: u64,
    /// When the execution was created, epoch milliseconds.
    pub queued_at: i64,
    /// Last reported progress, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Last reported status details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<BTreeMap<String, String>>,
    /// What to do.
    pub job_document: JobDocument,
    /// What to download, for tasks that download something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_file: Option<JobFile>,
}

/// `notify.params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyParams {
    /// The task released (status SENT) or canceled (status CANCELED).
    pub task: Task,
}

/// A whole notify message.
pub type Notify = Request<NotifyParams>;

/// Builds a notify for a task.
pub fn notify(id: impl Into<String>, task: Task) -> Notify {
    let mut request = Request::new(id, NotifyParams { task });
    request.method = Some(MessageKind::JobNotify.method().to_owned());
    request
}

/// What `job/get` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetTarget {
    /// `$next`: the oldest SENT or IN_PROGRESS execution.
    Next,
    /// `$list`: summaries of every non-terminal execution.
    List,
    /// One task by id.
    Task(TaskId),
}

impl Serialize for GetTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Next => serializer.serialize_str("$next"),
            Self::List => serializer.serialize_str("$list"),
            Self::Task(id) => id.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GetTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        match raw.as_ref() {
            "$next" => Ok(Self::Next),
            "$list" => Ok(Self::List),
            other => other
                .parse()
                .map(Self::Task)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `job/get` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetParams {
    /// `$next`, `$list` or a task id.
    pub task_id: GetTarget,
}

/// One line of a `$list` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    /// The task.
    pub task_id: TaskId,
    /// Its type.
    pub task_type: TaskType,
    /// Its state.
    pub status: ExecutionStatus,
    /// Attempt number.
    pub execution_number: u32,
    /// Current version.
    pub version_number: u64,
    /// Creation time, epoch milliseconds.
    pub queued_at: i64,
}

/// `get_reply.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GetReplyData {
    /// Answer to `$list`.
    List {
        /// Every non-terminal execution, oldest first.
        tasks: Vec<TaskSummary>,
    },
    /// Answer to `$next` (task null when there is none) or to a task id.
    One {
        /// The task.
        task: Option<Box<Task>>,
    },
}

/// `job/update` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateParams {
    /// The task reported on.
    pub task_id: TaskId,
    /// The new status.
    pub status: ReportedStatus,
    /// 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Free-form step information, strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<BTreeMap<String, String>>,
    /// The task's result (for example a heartbeat's version and clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Map<String, Value>>,
    /// Why it failed or was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Refuse the update (409) unless the execution is at this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    /// Idempotency key: a repeat with the same token gets the same reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `update_reply.data`, and the current state carried by a 409.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateReplyData {
    /// The task.
    pub task_id: TaskId,
    /// Its state after the update (or now, on 409).
    pub status: ExecutionStatus,
    /// Its version after the update (or now, on 409).
    pub version_number: u64,
}

/// `event/metrics/post` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsParams {
    /// When the sample was taken, epoch milliseconds.
    pub time: i64,
    /// Processor.
    pub cpu: CpuMetrics,
    /// Memory.
    pub memory: MemoryMetrics,
    /// One entry per volume.
    pub storage: Vec<VolumeMetrics>,
}

/// Processor figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CpuMetrics {
    /// Cores available.
    pub cores: u32,
    /// Busy share over the sample interval, 0-100.
    pub usage_percent: f64,
}

/// Memory figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryMetrics {
    /// Installed bytes.
    pub total_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
}

/// One volume's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMetrics {
    /// Which volume.
    pub volume: crate::document::Volume,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
}

/// The `result` of a heartbeat update (taskId = applianceId).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResult {
    /// Firmware display version running now.
    pub version: String,
    /// The appliance's clock when it answered, epoch milliseconds.
    pub clock: i64,
    /// Installed services and their health.
    #[serde(default)]
    pub services: Vec<ServiceHealth>,
}

/// One installed service in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    /// The service.
    pub service_code: String,
    /// Installed version.
    pub version: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// `healthy` or `unhealthy`.
    pub health: String,
}

/// Decodes a `job/get` request.
pub fn decode_get(payload: &[u8]) -> Result<Request<GetParams>, ProtocolError> {
    decode(payload, |_| Ok(()))
}

/// Decodes a `job/update` request, with typed errors for an unknown status
/// and a progress outside 0-100.
pub fn decode_update(payload: &[u8]) -> Result<Request<UpdateParams>, ProtocolError> {
    let request: Request<UpdateParams> = decode(payload, |params| {
        let status = field(params, "status")?
            .as_str()
            .ok_or_else(|| ProtocolError::invalid("status", "expected a string"))?;
        status.parse::<ReportedStatus>()?;
        if let Some(progress) = params.get("progress").filter(|p| !p.is_null()) {
            let value = progress
                .as_i64()
                .ok_or_else(|| ProtocolError::invalid("progress", "expected an integer"))?;
            if !(0..=i64::from(MAX_PROGRESS)).contains(&value) {
                return Err(ProtocolError::ProgressOutOfRange(value));
            }
        }
        Ok(())
    })?;
    validate_update(&request.params)?;
    Ok(request)
}

/// Decodes an `event/metrics/post` request.
pub fn decode_metrics(payload: &[u8]) -> Result<Request<MetricsParams>, ProtocolError> {
    decode(payload, |_| Ok(()))
}

/// Decodes a `notify` (appliance side).
pub fn decode_notify(payload: &[u8]) -> Result<Notify, ProtocolError> {
    let notify: Notify = decode(payload, |params| {
        let task = field(params, "task")?;
        if let Some(status) = task.get("status").and_then(Value::as_str) {
            status.parse::<ExecutionStatus>()?;
        }
        if let Some(document) = task.get("jobDocument") {
            if let Some(task_type) = document.get("taskType").and_then(Value::as_str) {
                task_type.parse::<TaskType>()?;
            }
        }
        Ok(())
    })?;
    notify.params.task.job_document.validate()?;
    if let Some(file) = &notify.params.task.job_file {
        file.validate()?;
    }
    Ok(notify)
}

/// Decodes a `get_reply` (appliance side), validating the documents of the
/// tasks it carries as [`decode_notify`] does.
pub fn decode_get_reply(payload: &[u8]) -> Result<Reply<GetReplyData>, ProtocolError> {
    let reply: Reply<GetReplyData> = serde_json::from_slice(payload)?;
    check_reply_version(&reply.version)?;
    if let Some(GetReplyData::One { task: Some(task) }) = &reply.data {
        task.job_document.validate()?;
        if let Some(file) = &task.job_file {
            file.validate()?;
        }
    }
    Ok(reply)
}

/// Decodes an `update_reply` (appliance side).
pub fn decode_update_reply(payload: &[u8]) -> Result<Reply<UpdateReplyData>, ProtocolError> {
    let reply: Reply<UpdateReplyData> = serde_json::from_slice(payload)?;
    check_reply_version(&reply.version)?;
    Ok(reply)
}

fn check_reply_version(version: &str) -> Result<(), ProtocolError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedVersion(
            version.chars().take(16).collect(),
        ))
    }
}

/// The `id` of a request whose payload could not be decoded, when it can
/// still be read, so that the 400 reply can echo it.
pub fn peek_request_id(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_slice::<IdOnly>(payload)
        .ok()
        .map(|r| r.id)
        .filter(|id| valid_token(id))
}

fn decode<T: DeserializeOwned>(
    payload: &[u8],
    check_params: impl FnOnce(&Value) -> Result<(), ProtocolError>,
) -> Result<T, ProtocolError> {
    let value: Value = serde_json::from_slice(payload)?;
    let id = field(&value, "id")?
        .as_str()
        .ok_or_else(|| ProtocolError::invalid("id", "expected a string"))?;
    if !valid_token(id) {
        return Err(ProtocolError::invalid("id", "expected 1-64 characters"));
    }
    let version = field(&value, "version")?
        .as_str()
        .ok_or_else(|| ProtocolError::invalid("version", "expected a string"))?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion(
            version.chars().take(16).collect(),
        ));
    }
    let params = field(&value, "params")?;
    if !params.is_object() {
        return Err(ProtocolError::invalid("params", "expected an object"));
    }
    check_params(params)?;
    Ok(serde_json::from_value(value)?)
}

fn field<'v>(value: &'v Value, name: &'static str) -> Result<&'v Value, ProtocolError> {
    match value.get(name) {
        Some(Value::Null) | None => Err(ProtocolError::MissingField(name)),
        Some(v) => Ok(v),
    }
}

fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len()) && !token.chars().any(char::is_control)
}

fn validate_update(params: &UpdateParams) -> Result<(), ProtocolError> {
    if let Some(token) = &params.client_token {
        if !valid_token(token) {
            return Err(ProtocolError::invalid(
                "clientToken",
                "expected 1-64 characters without control characters",
            ));
        }
    }
    if let Some(message) = &params.error_message {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(ProtocolError::invalid(
                "errorMessage",
                "longer than 4096 bytes",
            ));
        }
    }
    if let Some(details) = &params.status_details {
        if details.len() > MAX_STATUS_DETAILS
            || details
                .iter()
                .any(|(k, v)| !valid_token(k) || v.len() > MAX_MESSAGE_LEN)
        {
            return Err(ProtocolError::invalid(
                "statusDetails",
                "at most 32 entries, keys of 1-64 characters, values of at most 4096 bytes",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(params: &str) -> Result<Request<UpdateParams>, ProtocolError> {
        decode_update(format!(r#"{{"id":"1","version":"1.0","params":{params}}}"#).as_bytes())
    }

    #[test]
    fn update_typed_errors() {
        assert!(update(r#"{"taskId":"t1","status":"IN_PROGRESS","progress":50}"#).is_ok());
        assert_eq!(
            update(r#"{"taskId":"t1","status":"IN_PROGRESS","progress":101}"#),
            Err(ProtocolError::ProgressOutOfRange(101))
        );
        assert_eq!(
            update(r#"{"taskId":"t1","status":"IN_PROGRESS","progress":-1}"#),
            Err(ProtocolError::ProgressOutOfRange(-1))
        );
        assert_eq!(
            update(r#"{"taskId":"t1","status":"DONE"}"#),
            Err(ProtocolError::UnknownStatus("DONE".into()))
        );
        assert_eq!(
            update(r#"{"taskId":"t1","status":"CANCELED"}"#),
            Err(ProtocolError::UnknownStatus("CANCELED".into()))
        );
        assert_eq!(
            update(r#"{"taskId":"t1"}"#),
            Err(ProtocolError::MissingField("status"))
        );
        assert!(matches!(
            update(r#"{"taskId":"t1","status":"FAILED","progress":"x"}"#),
            Err(ProtocolError::InvalidField {
                field: "progress",
                ..
            })
        ));
        assert!(matches!(
            update(r#"{"taskId":7,"status":"FAILED"}"#),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(
            update(r#"{"taskId":"t1","status":"FAILED","clientToken":""}"#),
            Err(ProtocolError::InvalidField {
                field: "clientToken",
                ..
            })
        ));
        assert!(matches!(
            update(r#"{"taskId":"t1","status":"FAILED","surprise":1}"#),
            Err(ProtocolError::Json(_))
        ));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            decode_get(b"not json"),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(decode_get(b""), Err(ProtocolError::Json(_))));
        assert_eq!(
            decode_get(br#"{"version":"1.0","params":{"taskId":"$next"}}"#),
            Err(ProtocolError::MissingField("id"))
        );
        assert_eq!(
            decode_get(br#"{"id":"1","version":"2.0","params":{"taskId":"$next"}}"#),
            Err(ProtocolError::UnsupportedVersion("2.0".into()))
        );
        assert!(matches!(
            decode_get(br#"{"id":"1","version":"1.0","params":[]}"#),
            Err(ProtocolError::InvalidField {
                field: "params",
                ..
            })
        ));
        assert!(matches!(
            decode_get(br#"{"id":"1","version":"1.0","params":{"taskId":"$nope"}}"#),
            Err(ProtocolError::Json(_))
        ));
        assert_eq!(
            peek_request_id(br#"{"id":"abc","params":5}"#),
            Some("abc".into())
        );
        assert_eq!(peek_request_id(b"{"), None);
    }

    #[test]
    fn get_targets() {
        for (text, target) in [
            ("$next", GetTarget::Next),
            ("$list", GetTarget::List),
            ("abc", GetTarget::Task("abc".parse().expect("valid"))),
        ] {
            let payload = format!(r#"{{"id":"1","version":"1.0","params":{{"taskId":"{text}"}}}}"#);
            let request = decode_get(payload.as_bytes()).expect("valid get");
            assert_eq!(request.params.task_id, target);
        }
    }

    #[test]
    fn reply_code_numbers() {
        for code in [200u16, 400, 404, 409, 429, 500] {
            assert_eq!(ReplyCode::from_u16(code).map(ReplyCode::as_u16), Some(code));
        }
        assert!(serde_json::from_str::<ReplyCode>("201").is_err());
    }
}
