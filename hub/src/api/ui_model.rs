//! What the `/ui/` endpoints share: the appliance as the frontend shows it
//! (status, version, services, connection times, storage, cpu, memory,
//! upgrade status), appliance settings and their validation, and creating
//! a task for one of the caller's appliances.

use protocol::message::VolumeMetrics;
use protocol::{ApplianceId, JobDocument, TaskType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Customer;
use super::catalog::version_parts;
use super::error::ApiError;
use super::register::hostname;
use super::AppState;
use crate::jobs::JobError;
use crate::store::{ApplianceRecord, ApplianceVersionView, StoreError, TaskRequest};

/// Parses an appliance id of a path or query (400 when malformed).
pub(crate) fn parse_appliance(raw: &str) -> Result<ApplianceId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid appliance id", "expected a UUID"))
}

/// A service as the appliance list shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceItem {
    /// The service.
    pub service_code: String,
    /// Installed version.
    pub version: String,
    /// enabled | disabled.
    pub status: String,
    /// healthy | unhealthy, when reported.
    pub health: Option<String>,
}

/// Cpu figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuItem {
    /// Cores (registration, else the latest sample).
    pub total: Option<f64>,
    /// Cores reserved by installed services.
    pub requested: f64,
    /// Busy share of the latest sample, 0-100.
    pub usage_percent: Option<f64>,
}

/// Memory figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryItem {
    /// Bytes (registration, else the latest sample).
    pub total_bytes: Option<u64>,
    /// Bytes reserved by installed services.
    pub requested_bytes: u64,
    /// Used bytes of the latest sample.
    pub used_bytes: Option<u64>,
}

/// Where the appliance stands against the newest firmware.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The newest enabled firmware's display version.
    pub latest_version: Option<String>,
    /// It runs something else than the newest.
    pub upgradable: bool,
    /// An upgradeAppliance task is open.
    pub upgrading: bool,
    /// Its last upgrade rolled back.
    pub rolled_back: bool,
}

/// One appliance in the frontend's list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceItem {
    /// Its id.
    pub appliance_id: String,
    /// From registration or settings.
    pub hostname: Option<String>,
    /// From registration.
    pub ipv4_address: Option<String>,
    /// ONLINE | OFFLINE | UNREGISTERING.
    pub status: String,
    /// Firmware display version.
    pub version: Option<String>,
    /// Registration time, epoch ms.
    pub registered_at: i64,
    /// Last connection, epoch ms.
    pub last_connected_time: Option<i64>,
    /// Last sign of life, epoch ms.
    pub last_seen: Option<i64>,
    /// Installed services.
    pub services: Vec<ServiceItem>,
    /// Volumes, from the latest metrics.
    #[schema(value_type = Vec<Object>)]
    pub storage: Vec<VolumeMetrics>,
    /// Cpu.
    pub cpu: CpuItem,
    /// Memory.
    pub memory: MemoryItem,
    /// Upgrade status.
    pub upgrade_status: UpgradeStatus,
}

/// Whether `current` is older than (or just not) `latest`.
fn upgradable(current: Option<&str>, latest: &str) -> bool {
    let Some(current) = current else {
        return true;
    };
    match (version_parts(current, false), version_parts(latest, false)) {
        (Some(current), Some(latest)) => current < latest,
        _ => current != latest,
    }
}

/// The list item of an appliance.
pub(crate) fn appliance_item(
    record: ApplianceRecord,
    latest: Option<&ApplianceVersionView>,
) -> ApplianceItem {
    let status = if record.unregistered_at.is_some() {
        "UNREGISTERING".to_owned()
    } else {
        record.status.as_str().to_owned()
    };
    let requested_cpu = record.services.iter().map(|s| s.request_cpu).sum();
    let requested_bytes = record.services.iter().map(|s| s.request_memory).sum();
    let metrics = record.metrics.as_ref();
    let latest_version = latest.map(|v| v.display_version.clone());
    ApplianceItem {
        appliance_id: record.appliance_id.to_string(),
        hostname: record.hostname,
        ipv4_address: record.ipv4_address,
        status,
        registered_at: record.registered_at,
        last_connected_time: record.connected_at,
        last_seen: record.last_seen,
        services: record
            .services
            .iter()
            .map(|s| ServiceItem {
                service_code: s.service_code.clone(),
                version: s.version.clone(),
                status: s.status.as_str().to_owned(),
                health: s.health.clone(),
            })
            .collect(),
        storage: metrics.map(|m| m.storage.clone()).unwrap_or_default(),
        cpu: CpuItem {
            total: record
                .capacity
                .as_ref()
                .map(|c| c.total_cpu)
                .or(metrics.map(|m| f64::from(m.cpu.cores))),
            requested: requested_cpu,
            usage_percent: metrics.map(|m| m.cpu.usage_percent),
        },
        memory: MemoryItem {
            total_bytes: record
                .capacity
                .as_ref()
                .map(|c| c.total_memory)
                .or(metrics.map(|m| m.memory.total_bytes)),
            requested_bytes,
            used_bytes: metrics.map(|m| m.memory.used_bytes),
        },
        upgrade_status: UpgradeStatus {
            upgradable: latest_version
                .as_deref()
                .is_some_and(|l| upgradable(record.version.as_deref(), l)),
            latest_version,
            upgrading: record
                .open_tasks
                .iter()
                .any(|t| t.task_type == TaskType::UpgradeAppliance),
            rolled_back: record.rolled_back,
        },
        version: record.version,
    }
}

/// An appliance's settings; every field optional (a POST changes the
/// fields it gives).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplianceSettings {
    /// Day of automatic updates: monday-sunday, or daily.
    pub schedule_update_day: Option<String>,
    /// Time of automatic updates, `HH:MM` (24 h) in the appliance's zone.
    pub schedule_update_time: Option<String>,
    /// IANA time zone name (`Europe/Berlin`, `UTC`).
    pub time_zone: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// TLS certificate (PEM) the appliance serves.
    pub certificate: Option<String>,
}

const DAYS: [&str; 8] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "daily",
];

fn hh_mm(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return false;
    }
    let number = |s: &str| {
        s.parse::<u8>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!((number(&value[..2]), number(&value[3..])), (Some(h), Some(m)) if h < 24 && m < 60)
}

fn time_zone(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        && !value.starts_with('/')
}

impl ApplianceSettings {
    /// The fields given, checked, as the updateApplianceConfig body.
    pub fn validated_body(self) -> Result<Map<String, Value>, ApiError> {
        let bad = |field: &str, expected: &str| {
            ApiError::bad_request(format!("invalid {field}"), expected.to_owned())
        };
        let mut body = Map::new();
        if let Some(day) = self.schedule_update_day {
            if !DAYS.contains(&day.as_str()) {
                return Err(bad("scheduleUpdateDay", "expected monday-sunday or daily"));
            }
            body.insert("scheduleUpdateDay".into(), Value::String(day));
        }
        if let Some(time) = self.schedule_update_time {
            if !hh_mm(&time) {
                return Err(bad("scheduleUpdateTime", "expected HH:MM, 24 h"));
            }
            body.insert("scheduleUpdateTime".into(), Value::String(time));
        }
        if let Some(zone) = self.time_zone {
            if !time_zone(&zone) {
                return Err(bad("timeZone", "expected an IANA time zone name"));
            }
            body.insert("timeZone".into(), Value::String(zone));
        }
        if let Some(name) = self.hostname {
            hostname(&name)?;
            body.insert("hostname".into(), Value::String(name));
        }
        if let Some(pem) = self.certificate {
            if !pem.starts_with("-----BEGIN CERTIFICATE-----") || pem.len() > 16 * 1024 {
                return Err(bad(
                    "certificate",
                    "expected a PEM certificate of at most 16 KiB",
                ));
            }
            body.insert("certificate".into(), Value::String(pem));
        }
        if body.is_empty() {
            return Err(bad("settings", "expected at least one setting"));
        }
        Ok(body)
    }
}

/// The settings applied to an appliance, as recorded.
pub(crate) fn settings_of(record: &ApplianceRecord) -> ApplianceSettings {
    let settings = record.settings.clone().unwrap_or_default();
    let text = |key: &str| settings.get(key).and_then(Value::as_str).map(str::to_owned);
    ApplianceSettings {
        schedule_update_day: text("scheduleUpdateDay"),
        schedule_update_time: text("scheduleUpdateTime"),
        time_zone: text("timeZone"),
        hostname: text("hostname").or_else(|| record.hostname.clone()),
        certificate: text("certificate"),
    }
}

/// The answer of every `/ui/` call that creates a task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskAccepted {
    /// The task to follow with `GET /ui/tasks/{taskId}/`; null when
    /// nothing had to be done.
    pub task_id: Option<String>,
    /// What happened.
    pub message: String,
}

impl TaskAccepted {
    /// Nothing to do.
    pub fn nothing(message: impl Into<String>) -> Self {
        Self {
            task_id: None,
            message: message.into(),
        }
    }
}

/// A task about to be created for one of the caller's appliances.
pub(crate) struct TaskBuilder<'a> {
    state: &'a AppState,
    request: TaskRequest,
}

/// Starts a task for `appliance` of `customer`.
pub(crate) fn create_task<'a>(
    state: &'a AppState,
    customer: &Customer,
    appliance: ApplianceId,
    document: JobDocument,
) -> TaskBuilder<'a> {
    TaskBuilder {
        state,
        request: TaskRequest {
            customer_id: customer.0,
            appliance_id: appliance,
            document,
            unless_open: Vec::new(),
            unregister: false,
            now: state.clock.now(),
        },
    }
}

impl TaskBuilder<'_> {
    /// Refuse while a task of this type is open on the appliance (checked
    /// in the transaction that creates the task, so two requests at once
    /// cannot both pass).
    pub fn unless_open(mut self, task_type: TaskType) -> Self {
        self.request.unless_open.push(task_type);
        self
    }

    /// Mark the appliance unregistered in the same transaction.
    pub fn unregister(mut self) -> Self {
        self.request.unregister = true;
        self
    }

    /// Creates it.
    pub async fn send(self) -> Result<TaskAccepted, ApiError> {
        let task_type = self.request.document.task_type();
        let created = self
            .state
            .jobs
            .create_task(self.request)
            .await
            .map_err(|err| match err {
                JobError::UnknownAppliances(_) => ApiError::NotFound("unknown appliance"),
                JobError::InvalidDocument(cause) => ApiError::bad_request("invalid task", cause),
                JobError::Store(StoreError::Conflict(cause)) => ApiError::Conflict(cause),
                other => super::jobs::job_error(other),
            })?;
        Ok(TaskAccepted {
            task_id: Some(created.task_id.as_str().to_owned()),
            message: format!("{task_type} task created"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_field_by_field() {
        let good = ApplianceSettings {
            schedule_update_day: Some("sunday".into()),
            schedule_update_time: Some("02:30".into()),
            time_zone: Some("Europe/Berlin".into()),
            hostname: Some("va-1.example.com".into()),
            certificate: None,
        };
        let body = good.validated_body().expect("valid");
        assert_eq!(body.len(), 4);
        for bad in [
            ApplianceSettings::default(),
            ApplianceSettings {
                schedule_update_day: Some("someday".into()),
                ..ApplianceSettings::default()
            },
            ApplianceSettings {
                schedule_update_time: Some("24:00".into()),
                ..ApplianceSettings::default()
            },
            ApplianceSettings {
                schedule_update_time: Some("2:30".into()),
                ..ApplianceSettings::default()
            },
            ApplianceSettings {
                time_zone: Some("../etc/passwd".into()),
                ..ApplianceSettings::default()
            },
            ApplianceSettings {
                hostname: Some("-bad-.example".into()),
                ..ApplianceSettings::default()
            },
            ApplianceSettings {
                certificate: Some("not a pem".into()),
                ..ApplianceSettings::default()
            },
        ] {
            assert!(bad.validated_body().is_err());
        }
    }

    #[test]
    fn upgradable_compares_numbers() {
        assert!(upgradable(Some("3.1.9"), "3.2.0"));
        assert!(!upgradable(Some("3.10.0"), "3.9.0"));
        assert!(!upgradable(Some("3.2.0"), "3.2.0"));
        assert!(upgradable(Some("beta"), "3.2.0"));
        assert!(upgradable(None, "3.2.0"));
    }
}
