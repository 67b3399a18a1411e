//! The job document of every task type, and the file a task downloads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ProtocolError;

/// The task types of the original VA backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    /// Periodic liveness check (not queued; taskId = applianceId).
    Heartbeat,
    /// Full-image A/B firmware upgrade.
    UpgradeAppliance,
    /// Install a service.
    InstallService,
    /// Upgrade an installed service.
    UpgradeService,
    /// Remove a service.
    UninstallService,
    /// Enable or disable a service.
    ToggleService,
    /// Apply a service's settings.
    ConfigureService,
    /// Apply appliance settings (schedule, time zone, hostname, token...).
    UpdateApplianceConfig,
    /// Collect logs and upload them.
    CollectLog,
    /// Post a metrics sample now.
    CollectMetrics,
    /// Grow a volume.
    ExtendStorage,
    /// Forget the appliance's identity.
    Unregister,
}

impl TaskType {
    /// Every task type.
    pub const ALL: [TaskType; 12] = [
        Self::Heartbeat,
        Self::UpgradeAppliance,
        Self::InstallService,
        Self::UpgradeService,
        Self::UninstallService,
        Self::ToggleService,
        Self::ConfigureService,
        Self::UpdateApplianceConfig,
        Self::CollectLog,
        Self::CollectMetrics,
        Self::ExtendStorage,
        Self::Unregister,
    ];

    /// The wire and database spelling (`taskType`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::UpgradeAppliance => "upgradeAppliance",
            Self::InstallService => "installService",
            Self::UpgradeService => "upgradeService",
            Self::UninstallService => "uninstallService",
            Self::ToggleService => "toggleService",
            Self::ConfigureService => "configureService",
            Self::UpdateApplianceConfig => "updateApplianceConfig",
            Self::CollectLog => "collectLog",
            Self::CollectMetrics => "collectMetrics",
            Self::ExtendStorage => "extendStorage",
            Self::Unregister => "unregister",
        }
    }
}

impl FromStr for TaskType {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ProtocolError::UnknownTaskType(s.chars().take(64).collect()))
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What a task asks the appliance to do, tagged by `taskType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "taskType", rename_all = "camelCase", deny_unknown_fields)]
pub enum JobDocument {
    /// `heartbeat {serverTime}`.
    #[serde(rename_all = "camelCase")]
    Heartbeat {
        /// The hub's clock, epoch milliseconds.
        server_time: i64,
    },
    /// `upgradeAppliance {targetVersion, firmwarePath, firmwareSha256}`.
    #[serde(rename_all = "camelCase")]
    UpgradeAppliance {
        /// Display version the appliance must report after its reboot.
        target_version: String,
        /// Where the image is (a path of the hub's artifact store or a URL).
        firmware_path: String,
        /// Lowercase hex sha256 of the image.
        firmware_sha256: String,
    },
    /// `installService {serviceCode, targetVersion, branch, imagePath, imageSha256}`.
    InstallService(ServicePackage),
    /// `upgradeService {...}`, same fields as install.
    UpgradeService(ServicePackage),
    /// `uninstallService {serviceCode}`.
    #[serde(rename_all = "camelCase")]
    UninstallService {
        /// The service.
        service_code: String,
    },
    /// `toggleService {serviceCode, action}`.
    #[serde(rename_all = "camelCase")]
    ToggleService {
        /// The service.
        service_code: String,
        /// Enable or disable.
        action: ToggleAction,
    },
    /// `configureService {serviceCode, settings, settingVersion}`.
    #[serde(rename_all = "camelCase")]
    ConfigureService {
        /// The service.
        service_code: String,
        /// The service's settings, an object.
        settings: Map<String, Value>,
        /// Increases with every change; the appliance ignores older ones.
        setting_version: u64,
    },
    /// `updateApplianceConfig {body}`.
    UpdateApplianceConfig {
        /// The settings to apply, an object.
        body: Map<String, Value>,
    },
    /// `collectLog {start, end, uploadPath}`.
    #[serde(rename_all = "camelCase")]
    CollectLog {
        /// First instant to collect, epoch milliseconds.
        start: i64,
        /// Last instant to collect, epoch milliseconds.
        end: i64,
        /// Where to upload the archive (a signed URL).
        upload_path: String,
    },
    /// `collectMetrics {}`.
    CollectMetrics {},
    /// `extendStorage {storage: {extend: [...]}}`.
    ExtendStorage {
        /// The volumes to grow.
        storage: StorageExtension,
    },
    /// `unregister {}`.
    Unregister {},
}

/// The package fields shared by install and upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePackage {
    /// The service.
    pub service_code: String,
    /// The version to install.
    pub target_version: String,
    /// Release branch of the package.
    pub branch: String,
    /// Where the image is.
    pub image_path: String,
    /// Lowercase hex sha256 of the image.
    pub image_sha256: String,
}

/// `toggleService` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToggleAction {
    /// Start the service and keep it running.
    Enable,
    /// Stop the service.
    Disable,
}

/// `extendStorage.storage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageExtension {
    /// One entry per volume to grow.
    pub extend: Vec<VolumeExtension>,
}

/// One volume to grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeExtension {
    /// Which volume.
    pub target_volume: Volume,
    /// Bytes to add.
    pub size: u64,
}

/// The appliance's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Volume {
    /// User data.
    Data,
    /// Service images.
    Image,
}

/// The file a task downloads, checked by the appliance before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobFile {
    /// Always `SHA256`.
    pub sign_method: SignMethod,
    /// Lowercase hex digest of the file.
    pub sign: String,
    /// A signed, expiring download URL (supports Range requests).
    pub file_url: String,
    /// Size in bytes.
    pub file_size: u64,
}

/// How a [`JobFile`] is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignMethod {
    /// sha256 of the whole file.
    #[serde(rename = "SHA256")]
    Sha256,
}

const MAX_TEXT: usize = 1024;

impl JobDocument {
    /// The document's task type.
    pub fn task_type(&self) -> TaskType {
        match self {
            Self::Heartbeat { .. } => TaskType::Heartbeat,
            Self::UpgradeAppliance { .. } => TaskType::UpgradeAppliance,
            Self::InstallService(_) => TaskType::InstallService,
            Self::UpgradeService(_) => TaskType::UpgradeService,
            Self::UninstallService { .. } => TaskType::UninstallService,
            Self::ToggleService { .. } => TaskType::ToggleService,
            Self::ConfigureService { .. } => TaskType::ConfigureService,
            Self::UpdateApplianceConfig { .. } => TaskType::UpdateApplianceConfig,
            Self::CollectLog { .. } => TaskType::CollectLog,
            Self::CollectMetrics {} => TaskType::CollectMetrics,
            Self::ExtendStorage { .. } => TaskType::ExtendStorage,
            Self::Unregister {} => TaskType::Unregister,
        }
    }

    /// Parses and validates a document given as JSON, with typed errors:
    /// [`ProtocolError::UnknownTaskType`] for a task type that does not
    /// exist, [`ProtocolError::InvalidField`] for values out of range.
    pub fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let task_type = value
            .get("taskType")
            .ok_or(ProtocolError::MissingField("taskType"))?
            .as_str()
            .ok_or_else(|| ProtocolError::invalid("taskType", "expected a string"))?;
        task_type.parse::<TaskType>()?;
        let document: Self = serde_json::from_value(value)?;
        document.validate()?;
        Ok(document)
    }

    /// Checks the values a type cannot express: digests are 64 lowercase
    /// hex digits, service codes and versions are short non-empty text,
    /// collectLog's range is ordered, extendStorage grows something.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Self::Heartbeat { .. } | Self::CollectMetrics {} | Self::Unregister {} => Ok(()),
            Self::UpgradeAppliance {
                target_version,
                firmware_path,
                firmware_sha256,
            } => {
                text("targetVersion", target_version)?;
                text("firmwarePath", firmware_path)?;
                sha256("firmwareSha256", firmware_sha256)
            }
            Self::InstallService(package) | Self::UpgradeService(package) => {
                service_code(&package.service_code)?;
                text("targetVersion", &package.target_version)?;
                text("branch", &package.branch)?;
                text("imagePath", &package.image_path)?;
                sha256("imageSha256", &package.image_sha256)
            }
            Self::UninstallService { service_code: code }
            | Self::ToggleService {
                service_code: code, ..
            }
            | Self::ConfigureService {
                service_code: code, ..
            } => service_code(code),
            Self::UpdateApplianceConfig { .. } => Ok(()),
            Self::CollectLog {
                start,
                end,
                upload_path,
            } => {
                if start > end {
                    return Err(ProtocolError::invalid("end", "must not be before start"));
                }
                text("uploadPath", upload_path)
            }
            Self::ExtendStorage { storage } => {
                if storage.extend.is_empty() {
                    return Err(ProtocolError::invalid("extend", "must not be empty"));
                }
                if storage.extend.iter().any(|v| v.size == 0) {
                    return Err(ProtocolError::invalid("size", "must be greater than 0"));
                }
                Ok(())
            }
        }
    }
}

impl JobFile {
    /// Checks the digest's form.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        sha256("sign", &self.sign)?;
        text("fileUrl", &self.file_url)
    }
}

fn text(field: &'static str, value: &str) -> Result<(), ProtocolError> {
    if value.is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ProtocolError::invalid(
            field,
            "expected 1-1024 characters without control characters",
        ));
    }
    Ok(())
}

/// What a valid service code is, in words (topics.md).
pub const SERVICE_CODE_RULE: &str = "expected 1-64 characters of A-Z, a-z, 0-9, '-', '_' and '.'";

/// Whether `code` is a service code as topics.md defines it
/// ([`SERVICE_CODE_RULE`]).
pub fn is_service_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn service_code(code: &str) -> Result<(), ProtocolError> {
    if is_service_code(code) {
        Ok(())
    } else {
        Err(ProtocolError::invalid("serviceCode", SERVICE_CODE_RULE))
    }
}

fn sha256(field: &'static str, digest: &str) -> Result<(), ProtocolError> {
    let ok = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::invalid(
            field,
            "expected 64 lowercase hex digits",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_type_spelling_matches_serde_tag() {
        let docs = [
            json!({"taskType": "heartbeat", "serverTime": 1}),
            json!({"taskType": "collectMetrics"}),
            json!({"taskType": "unregister"}),
            json!({"taskType": "uninstallService", "serviceCode": "dns"}),
        ];
        for doc in docs {
            let tag = doc["taskType"].as_str().map(str::to_owned);
            let parsed = JobDocument::from_value(doc).expect("valid document");
            assert_eq!(Some(parsed.task_type().as_str().to_owned()), tag);
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            JobDocument::from_value(json!({"taskType": "reboot"})),
            Err(ProtocolError::UnknownTaskType("reboot".into()))
        );
        assert_eq!(
            JobDocument::from_value(json!({"serverTime": 1})),
            Err(ProtocolError::MissingField("taskType"))
        );
        assert!(matches!(
            JobDocument::from_value(json!({"taskType": "heartbeat", "serverTime": "x"})),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(
            JobDocument::from_value(json!({"taskType": "upgradeAppliance",
                "targetVersion": "2.0", "firmwarePath": "f", "firmwareSha256": "ABC"})),
            Err(ProtocolError::InvalidField {
                field: "firmwareSha256",
                ..
            })
        ));
        assert!(matches!(
            JobDocument::from_value(json!({"taskType": "extendStorage",
                "storage": {"extend": []}})),
            Err(ProtocolError::InvalidField {
                field: "extend",
                ..
            })
        ));
        assert!(matches!(
            JobDocument::from_value(json!({"taskType": "uninstallService", "serviceCode": "a/b"})),
            Err(ProtocolError::InvalidField {
                field: "serviceCode",
                ..
            })
        ));
    }
}
