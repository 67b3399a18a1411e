//! The values the store's public methods take and return.

use std::collections::BTreeMap;

use protocol::message::UpdateReplyData;
use protocol::{
    ApplianceId, ExecutionStatus, JobDocument, MessageKind, ProductKey, TaskId, TaskType, Topic,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::Rejection;
use crate::model::{ApplianceStatus, CustomerId, JobId, JobStatus, StatusCounts};

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Chosen by the caller (so a retried request can reuse it).
    pub job_id: JobId,
    /// The owner; None for an operator's job (any appliance may be a target).
    pub customer_id: Option<CustomerId>,
    /// What every target must do.
    pub document: JobDocument,
    /// The appliances; duplicates are ignored.
    pub targets: Vec<ApplianceId>,
    /// Creation time.
    pub now: i64,
}

/// A created job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCreated {
    /// Its id.
    pub job_id: JobId,
    /// Executions created (one per distinct target).
    pub executions: usize,
}

/// A message of the outbox: published by the caller, then acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Outbox row id, for [`super::Store::ack_outbox`]; never reused.
    pub id: i64,
    /// The recipient.
    pub appliance_id: ApplianceId,
    /// The recipient's product key (first level of its topics).
    pub product_key: ProductKey,
    /// The JSON payload (a notify).
    pub payload: Vec<u8>,
}

impl OutboxMessage {
    /// Every outbox message is a `job/notify`.
    pub const KIND: MessageKind = MessageKind::JobNotify;

    /// The topic to publish on.
    pub fn topic(&self) -> Topic {
        Topic::new(self.product_key.clone(), self.appliance_id, Self::KIND)
    }
}

/// What became of a device's update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    /// Applied and committed: reply 200 with this.
    Accepted(UpdateReplyData),
    /// The client token was seen before: reply 200 with the first reply.
    Duplicate(UpdateReplyData),
    /// Refused (409), nothing written.
    Rejected(Rejection),
    /// Invalid for this task (400), nothing written: an upgradeAppliance
    /// SUCCEEDED without `result.version`. The reply's message.
    Invalid(&'static str),
    /// No such task for this appliance (404): unknown, or another
    /// appliance's; the two are not told apart.
    NotFound,
}

/// What authenticating an appliance needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceCredentials {
    /// Hash of the appliance token.
    pub token_hash: String,
    /// When the token expires, epoch ms.
    pub expires_at: i64,
    /// Connection state (REMOVED ones must be refused).
    pub status: ApplianceStatus,
    /// Its product key.
    pub product_key: ProductKey,
    /// Hash of the token sent in a renewal not yet confirmed, accepted
    /// too while it is unexpired.
    pub next_token_hash: Option<String>,
    /// When that token expires.
    pub next_token_expires_at: Option<i64>,
}

/// A job and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// Its id.
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Its owner, if a customer's.
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
    /// The document's task type.
    #[schema(value_type = String)]
    pub task_type: TaskType,
    /// Where it stands.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// Executions per status (kept incrementally, never counted).
    #[schema(value_type = Object)]
    pub counts: StatusCounts,
    /// Creation time.
    pub created_at: i64,
    /// Last change of status or counters.
    pub updated_at: i64,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// Items matching the query, all pages together.
    pub total: u64,
    /// This page.
    pub items: Vec<T>,
}

/// One execution as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// This attempt's task id.
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// Its job.
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Its appliance.
    #[schema(value_type = String)]
    pub appliance_id: ApplianceId,
    /// Current status.
    #[schema(value_type = String)]
    pub status: ExecutionStatus,
    /// Attempt number.
    pub execution_number: u32,
    /// Current version.
    pub version_number: u64,
    /// Last progress.
    pub progress: Option<u8>,
    /// Last status details.
    #[schema(value_type = Option<Object>)]
    pub status_details: Option<BTreeMap<String, String>>,
    /// Reported result.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Map<String, Value>>,
    /// Reported error.
    pub error_message: Option<String>,
    /// Created.
    pub queued_at: i64,
    /// Released.
    pub sent_at: Option<i64>,
    /// First IN_PROGRESS.
    pub started_at: Option<i64>,
    /// Terminal.
    pub finished_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

/// Writer counters since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Commands the writer ran (each in its own savepoint).
    pub commands: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Transactions that failed to commit (every command in them failed).
    pub failed_transactions: u64,
}
