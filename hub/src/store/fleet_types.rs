//! The values the REST surface's store methods take and return: customers,
//! registration, catalogs (appliance versions, services, tags), the
//! appliances as their customer sees them, and paging.

use protocol::message::MetricsParams;
use protocol::{ApplianceId, ExecutionStatus, JobDocument, ProductKey, TaskId, TaskType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::model::{CustomerId, JobId, ServiceStatus, TagId};

/// Which page of a list, in which order. `sort` is an SQL expression
/// taken from a list's whitelist, never from the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Items to skip.
    pub offset: u64,
    /// Items to return.
    pub limit: u32,
    /// Descending order.
    pub descending: bool,
    /// The column (from a whitelist) to order by.
    pub sort: &'static str,
}

impl Paging {
    /// `ORDER BY ... LIMIT n OFFSET m` with `tiebreak` as a last key so
    /// that pages are stable. A sort of several columns (`a|b`) orders
    /// each of them in the chosen direction.
    pub(crate) fn clause(&self, tiebreak: &str) -> String {
        let direction = if self.descending { "DESC" } else { "ASC" };
        let keys: Vec<String> = self
            .sort
            .split('|')
            .chain(std::iter::once(tiebreak))
            .map(|column| format!("{} {direction}", column.trim()))
            .collect();
        format!(
            "ORDER BY {keys} LIMIT {limit} OFFSET {offset}",
            keys = keys.join(", "),
            limit = self.limit,
            offset = self.offset.min(i64::MAX as u64),
        )
    }
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    /// Its id.
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    /// Its name.
    pub name: String,
    /// Creation time, epoch ms.
    pub created_at: i64,
    /// Its appliances that are not removed.
    pub appliances: u64,
}

/// A customer to create, with its first credentials.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// Chosen by the caller (the register token names it).
    pub customer_id: CustomerId,
    /// Its name.
    pub name: String,
    /// sha256 hex of its api key.
    pub api_key_hash: String,
    /// Its register token and when it expires.
    pub register_token: (String, i64),
    /// Creation time.
    pub now: i64,
}

/// What an appliance that registers gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Cores.
    pub total_cpu: f64,
    /// Bytes of memory.
    pub total_memory: u64,
    /// Bytes of storage.
    pub total_storage: u64,
}

/// A registration to record.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    /// The customer of the register token.
    pub customer_id: CustomerId,
    /// The id the appliance sent back, when it registered before.
    pub known_id: Option<ApplianceId>,
    /// The id to use when it is new.
    pub fresh_id: ApplianceId,
    /// Namespace.
    pub product_key: ProductKey,
    /// Facts.
    pub hostname: String,
    /// Facts.
    pub ipv4_address: String,
    /// Firmware display version.
    pub version: String,
    /// Capacity.
    pub capacity: Capacity,
    /// sha256 hex of the new appliance token.
    pub token_hash: String,
    /// Its expiry.
    pub token_expires_at: i64,
    /// Now.
    pub now: i64,
}

/// What registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new appliance.
    Created(ApplianceId),
    /// A known appliance of this customer: its token was rotated.
    Rotated(ApplianceId),
}

impl Registered {
    /// The appliance's id.
    pub fn id(&self) -> ApplianceId {
        match self {
            Self::Created(id) | Self::Rotated(id) => *id,
        }
    }
}

/// A firmware version operators publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceVersionView {
    /// `major.minor.revision.build`.
    pub version: String,
    /// What appliances report once they run it.
    pub display_version: String,
    /// The firmware artifact (path in the artifact store or URL).
    pub firmware_path: String,
    /// sha256 of the firmware image.
    pub firmware_sha256: String,
    /// Whether appliances may be upgraded to it.
    pub enabled: bool,
    /// When it was published, epoch ms.
    pub published_at: i64,
}

/// One service package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceVersionView {
    /// The service.
    pub service_code: String,
    /// Its name.
    pub service_name: String,
    /// Dotted numeric version (1-4 parts).
    pub version: String,
    /// Release branch.
    pub branch: String,
    /// The image (path in the artifact store or URL).
    pub image_path: String,
    /// sha256 of the image.
    pub image_sha256: String,
    /// Cores it needs.
    pub request_cpu: f64,
    /// Bytes of memory it needs.
    pub request_memory: u64,
    /// Whether it may be installed.
    pub enabled: bool,
    /// Publication time, epoch ms.
    pub created_at: i64,
}

/// A tag and how many appliances carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    /// Its id.
    #[schema(value_type = String)]
    pub tag_id: TagId,
    /// Its name.
    pub name: String,
    /// Appliances carrying it.
    pub appliances: u64,
    /// Creation time, epoch ms.
    pub created_at: i64,
}

/// A service installed on an appliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledService {
    /// The service.
    pub service_code: String,
    /// Installed version.
    pub version: String,
    /// enabled | disabled.
    #[schema(value_type = String)]
    pub status: ServiceStatus,
    /// healthy | unhealthy, when reported.
    pub health: Option<String>,
    /// Cores reserved.
    pub request_cpu: f64,
    /// Bytes of memory reserved.
    pub request_memory: u64,
    /// Current settings.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    /// Version of the settings.
    pub setting_version: u64,
}

/// An appliance as its customer sees it (rows, before presentation).
#[derive(Debug, Clone, PartialEq)]
pub struct ApplianceRecord {
    /// Its id.
    pub appliance_id: ApplianceId,
    /// Owner.
    pub customer_id: Option<CustomerId>,
    /// Facts from registration.
    pub hostname: Option<String>,
    /// Facts from registration.
    pub ipv4_address: Option<String>,
    /// ONLINE | OFFLINE | REMOVED.
    pub status: crate::model::ApplianceStatus,
    /// Firmware version.
    pub version: Option<String>,
    /// Registration (or provisioning) time.
    pub registered_at: i64,
    /// Last connection.
    pub connected_at: Option<i64>,
    /// Last sign of life.
    pub last_seen: Option<i64>,
    /// Marked rolled back by a failed upgrade.
    pub rolled_back: bool,
    /// Set when its customer deleted it.
    pub unregistered_at: Option<i64>,
    /// Capacity from registration.
    pub capacity: Option<Capacity>,
    /// Settings applied.
    pub settings: Option<Map<String, Value>>,
    /// Latest metrics sample.
    pub metrics: Option<MetricsParams>,
    /// When it was received.
    pub metrics_at: Option<i64>,
    /// Installed services.
    pub services: Vec<InstalledService>,
    /// Open (not terminal) tasks, oldest first.
    pub open_tasks: Vec<OpenTask>,
}

/// Filters of a customer's appliance list.
#[derive(Debug, Clone, Default)]
pub struct ApplianceFilter {
    /// Only appliances registered at or after this time.
    pub registered_since: Option<i64>,
    /// Only this appliance.
    pub appliance_id: Option<ApplianceId>,
}

/// A task to create for one appliance of a customer, with the checks and
/// side changes that must happen in the same transaction.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// Owner.
    pub customer_id: CustomerId,
    /// Target.
    pub appliance_id: ApplianceId,
    /// What to do.
    pub document: JobDocument,
    /// Refuse (conflict) while a task of one of these types is open on the
    /// appliance.
    pub unless_open: Vec<TaskType>,
    /// Mark the appliance unregistered (DELETE).
    pub unregister: bool,
    /// Now.
    pub now: i64,
}

/// A created task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCreated {
    /// Its job.
    pub job_id: JobId,
    /// The execution's task id.
    pub task_id: TaskId,
}

/// A task as its customer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Released to the appliance (no longer QUEUED).
    pub delivered: bool,
    /// Execution status.
    #[schema(value_type = String)]
    pub status: ExecutionStatus,
    /// What the appliance reported.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Map<String, Value>>,
    /// Why it failed, if it did.
    pub error_message: Option<String>,
}

/// An open (not terminal) task of an appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTask {
    /// Its type.
    pub task_type: TaskType,
    /// Its task id.
    pub task_id: TaskId,
}

/// One audit log entry an appliance uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEntry {
    /// When it happened, epoch ms.
    pub time: i64,
    /// Who did it (a user, a service).
    #[serde(default)]
    pub actor: Option<String>,
    /// What was done.
    pub action: String,
    /// Details.
    #[serde(default)]
    pub detail: Option<String>,
}
