//! What the hub answers to an appliance's message, independent of the MQTT
//! transport: `job/get` and `job/update` produce exactly one reply each
//! (also for malformed input), `event/metrics/post` produces none (the
//! sample is stored).
//!
//! A reply to an update is built only after its transition is committed:
//! [`crate::store::Store::record_update`] returns after the commit.
//!
//! An update whose taskId is the appliance's own id answers a heartbeat
//! (topics.md 5.3): it must say SUCCEEDED with a `HeartbeatResult`
//! (else 400), is always accepted (no state, no expectedVersion), makes
//! the appliance ONLINE, records its version and clock, and is answered
//! 200 with SUCCEEDED and versionNumber 2.

use protocol::message::{
    decode_get, decode_metrics, decode_update, peek_request_id, GetReplyData, GetTarget,
    HeartbeatResult, Reply, UpdateParams, UpdateReplyData,
};
use protocol::{ExecutionStatus, MessageKind, ReplyCode, ReportedStatus, TaskId, Topic};
use serde::Serialize;

use crate::clock::SharedClock;
use crate::presence::HeartbeatPolicy;
use crate::store::{Store, StoreError, UpdateResult};

/// The versionNumber of every heartbeat reply: the heartbeat notify
/// carries 1, its one accepted update makes it 2 (topics.md 5.3).
pub const HEARTBEAT_REPLY_VERSION: u64 = 2;

/// A message for an appliance: topic and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to publish.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// Answers appliances' requests from the store.
#[derive(Clone)]
pub struct DeviceGateway {
    store: Store,
    clock: SharedClock,
    heartbeat: HeartbeatPolicy,
}

impl DeviceGateway {
    /// A gateway over `store`, reading time from `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            heartbeat: HeartbeatPolicy::default(),
        }
    }

    /// Judges heartbeat replies by `policy` (its clock skew limit).
    pub fn with_heartbeat(mut self, policy: HeartbeatPolicy) -> Self {
        self.heartbeat = policy;
        self
    }

    /// Handles one message published by an appliance on `topic`.
    pub async fn handle(&self, topic: &Topic, payload: &[u8]) -> Option<Outgoing> {
        match topic.kind {
            MessageKind::JobGet => Some(self.get(topic, payload).await),
            MessageKind::JobUpdate => Some(self.update(topic, payload).await),
            MessageKind::MetricsPost => {
                self.metrics(topic, payload).await;
                None
            }
            // Hub-to-device kinds are never subscribed to by the hub.
            MessageKind::JobNotify | MessageKind::JobGetReply | MessageKind::JobUpdateReply => None,
        }
    }

    /// Stores a metrics sample (the appliance's latest, and one more in its
    /// series); one that does not decode is dropped, as topics.md says.
    async fn metrics(&self, topic: &Topic, payload: &[u8]) {
        let appliance = topic.appliance_id;
        match decode_metrics(payload) {
            Ok(request) => {
                let now = self.clock.now();
                if let Err(err) = self
                    .store
                    .record_metrics(appliance, request.params, now)
                    .await
                {
                    tracing::warn!(%appliance, %err, "metrics not recorded");
                }
            }
            Err(err) => tracing::debug!(%appliance, %err, "metrics refused"),
        }
    }

    async fn get(&self, topic: &Topic, payload: &[u8]) -> Outgoing {
        let kind = MessageKind::JobGetReply;
        let request = match decode_get(payload) {
            Ok(request) => request,
            Err(err) => return bad_request::<GetReplyData>(topic, kind, payload, &err),
        };
        let appliance = topic.appliance_id;
        let id = request.id;
        let result = match request.params.task_id {
            GetTarget::Next => self.store.next_task(appliance).await.map(|task| {
                Some(GetReplyData::One {
                    task: task.map(Box::new),
                })
            }),
            GetTarget::List => self
                .store
                .list_tasks(appliance)
                .await
                .map(|tasks| Some(GetReplyData::List { tasks })),
            GetTarget::Task(task_id) => {
                self.store.get_task(appliance, &task_id).await.map(|task| {
                    task.map(|t| GetReplyData::One {
                        task: Some(Box::new(t)),
                    })
                })
            }
        };
        let reply = match result {
            Ok(Some(data)) => Reply::ok(id, kind, data),
            Ok(None) => Reply::new(id, kind, ReplyCode::NotFound, None, "unknown task"),
            Err(err) => store_failure(id, kind, &err),
        };
        encode(topic, kind, &reply)
    }

    async fn update(&self, topic: &Topic, payload: &[u8]) -> Outgoing {
        let kind = MessageKind::JobUpdateReply;
        let request = match decode_update(payload) {
            Ok(request) => request,
            Err(err) => return bad_request::<UpdateReplyData>(topic, kind, payload, &err),
        };
        let now = self.clock.now();
        let id = request.id;
        if request.params.task_id == TaskId::heartbeat(&topic.appliance_id) {
            let reply = self.heartbeat(topic, id, &request.params, now).await;
            return encode(topic, kind, &reply);
        }
        let reply = match self
            .store
            .record_update(topic.appliance_id, request.params, now)
            .await
        {
            Ok(UpdateResult::Accepted(data) | UpdateResult::Duplicate(data)) => {
                Reply::ok(id, kind, data)
            }
            Ok(UpdateResult::Rejected(rejection)) => Reply::new(
                id,
                kind,
                rejection.code(),
                Some(rejection.current.clone()),
                rejection.message(),
            ),
            Ok(UpdateResult::NotFound) => {
                Reply::new(id, kind, ReplyCode::NotFound, None, "unknown task")
            }
            Ok(UpdateResult::Invalid(message)) => {
                Reply::new(id, kind, ReplyCode::BadRequest, None, message)
            }
            Err(err) => store_failure(id, kind, &err),
        };
        encode(topic, kind, &reply)
    }
}

impl DeviceGateway {
    async fn heartbeat(
        &self,
        topic: &Topic,
        id: String,
        params: &UpdateParams,
        now: i64,
    ) -> Reply<UpdateReplyData> {
        let kind = MessageKind::JobUpdateReply;
        let result = match heartbeat_result(params) {
            Ok(result) => result,
            Err(message) => {
                tracing::debug!(appliance = %topic.appliance_id, message, "heartbeat refused");
                return Reply::new(id, kind, ReplyCode::BadRequest, None, message);
            }
        };
        let recorded = self
            .store
            .record_heartbeat_reply(topic.appliance_id, result, self.heartbeat, now)
            .await;
        match recorded {
            Ok(Some(check)) => {
                if check.skewed {
                    tracing::warn!(appliance = %topic.appliance_id, skew_ms = check.skew_ms,
                        "appliance clock skewed");
                }
                let data = UpdateReplyData {
                    task_id: params.task_id.clone(),
                    status: ExecutionStatus::Succeeded,
                    version_number: HEARTBEAT_REPLY_VERSION,
                };
                Reply::ok(id, kind, data)
            }
            Ok(None) => Reply::new(id, kind, ReplyCode::NotFound, None, "unknown task"),
            Err(err) => store_failure(id, kind, &err),
        }
    }
}

/// The `HeartbeatResult` of a heartbeat update, or why it is a 400.
fn heartbeat_result(params: &UpdateParams) -> Result<HeartbeatResult, String> {
    if params.status != ReportedStatus::Succeeded {
        return Err("heartbeat: status must be SUCCEEDED".into());
    }
    let result = params
        .result
        .clone()
        .ok_or_else(|| "heartbeat: result (a HeartbeatResult) is missing".to_owned())?;
    serde_json::from_value(serde_json::Value::Object(result))
        .map_err(|err| format!("heartbeat: result is not a HeartbeatResult: {err}"))
}

fn bad_request<D: Serialize>(
    topic: &Topic,
    kind: MessageKind,
    payload: &[u8],
    err: &protocol::ProtocolError,
) -> Outgoing {
    let id = peek_request_id(payload).unwrap_or_default();
    tracing::debug!(appliance = %topic.appliance_id, %err, "request refused");
    let reply: Reply<D> = Reply::new(id, kind, ReplyCode::BadRequest, None, err.to_string());
    encode(topic, kind, &reply)
}

fn store_failure<D>(id: String, kind: MessageKind, err: &StoreError) -> Reply<D> {
    match err {
        StoreError::Busy => Reply::new(
            id,
            kind,
            ReplyCode::Throttled,
            None,
            "throttled: retry later",
        ),
        other => {
            tracing::error!(error = %other, "store failure while answering an appliance");
            Reply::new(
                id,
                kind,
                ReplyCode::Internal,
                None,
                "internal error: retry later",
            )
        }
    }
}

fn encode<D: Serialize>(topic: &Topic, kind: MessageKind, reply: &Reply<D>) -> Outgoing {
    let reply_topic = Topic::new(topic.product_key.clone(), topic.appliance_id, kind);
    // Serializing plain data structures cannot fail; an empty payload would
    // still be a reply the appliance can time out on.
    let payload = serde_json::to_vec(reply).unwrap_or_default();
    Outgoing {
        topic: reply_topic.to_string(),
        payload,
    }
}
