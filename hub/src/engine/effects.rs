//! Domain effects of finished tasks: what a task that SUCCEEDED changes in
//! the hub's picture of its appliance (installed services, settings,
//! storage, registration).
//!
//! Pure: [`decide`] maps the job document, the status the execution
//! reached and the result the appliance reported to a list of [`Effect`]s.
//! The store applies them in the transaction of the transition itself, so
//! the picture never disagrees with the task's outcome. Only SUCCEEDED
//! changes anything: a FAILED, REJECTED, TIMED_OUT or CANCELED task left
//! the appliance as it was, except an upgradeAppliance that rolled back
//! (FAILED on another version than its target, [`super::upgrade`]): the
//! appliance is marked rolled back and runs the version it reported.

use protocol::document::{ToggleAction, VolumeExtension};
use protocol::message::VolumeMetrics;
use protocol::{ExecutionStatus, JobDocument, ReportedStatus};
use serde_json::{Map, Value};

use super::upgrade::{self, UpgradeVerdict};

use crate::model::ServiceStatus;

/// The keys of updateApplianceConfig's body that are appliance settings
/// (recorded when the task succeeds); any other key is not recorded.
pub const APPLIANCE_SETTINGS: [&str; 5] = [
    "scheduleUpdateDay",
    "scheduleUpdateTime",
    "timeZone",
    "hostname",
    "certificate",
];

/// One change to apply to the appliance of a finished task.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// installService or upgradeService: the service runs this version.
    ServiceInstalled {
        /// The service.
        service_code: String,
        /// The version now installed.
        version: String,
        /// A fresh install starts enabled; an upgrade keeps the status.
        fresh: bool,
    },
    /// uninstallService: the service is gone.
    ServiceRemoved {
        /// The service.
        service_code: String,
    },
    /// toggleService: the service is enabled or disabled.
    ServiceToggled {
        /// The service.
        service_code: String,
        /// Its status now.
        status: ServiceStatus,
    },
    /// configureService: the service runs these settings (kept only when
    /// newer than the ones recorded).
    ServiceConfigured {
        /// The service.
        service_code: String,
        /// The settings, whole.
        settings: Map<String, Value>,
        /// Their version.
        setting_version: u64,
    },
    /// extendStorage: volumes grew. When the appliance reported its
    /// volumes' figures they are taken as they are; otherwise the sizes
    /// are added to the last known totals.
    StorageExtended {
        /// What was asked.
        extend: Vec<VolumeExtension>,
        /// What the appliance reported in `result.storage`, if anything.
        reported: Option<Vec<VolumeMetrics>>,
    },
    /// updateApplianceConfig: these settings apply now (merged, key by
    /// key, over the ones recorded).
    ApplianceConfigured {
        /// The settings sent.
        body: Map<String, Value>,
    },
    /// unregister: the appliance forgot its identity; it is REMOVED.
    Unregistered,
    /// upgradeAppliance: the appliance runs this firmware version (its
    /// target) and is no longer marked rolled back.
    FirmwareVersion {
        /// The display version it reported.
        version: String,
    },
    /// upgradeAppliance: the appliance came back on `version`, not on the
    /// target; it is marked rolled back (auto-upgrade skips it).
    RolledBack {
        /// The display version it reported.
        version: String,
    },
}

/// The effects of an execution that reached `status` with `result`.
pub fn decide(
    document: &JobDocument,
    status: ExecutionStatus,
    result: Option<&Map<String, Value>>,
) -> Vec<Effect> {
    if let JobDocument::UpgradeAppliance { target_version, .. } = document {
        return upgrade(target_version, status, result);
    }
    if status != ExecutionStatus::Succeeded {
        return Vec::new();
    }
    let effect = match document {
        JobDocument::InstallService(package) | JobDocument::UpgradeService(package) => {
            Effect::ServiceInstalled {
                service_code: package.service_code.clone(),
                version: package.target_version.clone(),
                fresh: matches!(document, JobDocument::InstallService(_)),
            }
        }
        JobDocument::UninstallService { service_code } => Effect::ServiceRemoved {
            service_code: service_code.clone(),
        },
        JobDocument::ToggleService {
            service_code,
            action,
        } => Effect::ServiceToggled {
            service_code: service_code.clone(),
            status: match action {
                ToggleAction::Enable => ServiceStatus::Enabled,
                ToggleAction::Disable => ServiceStatus::Disabled,
            },
        },
        JobDocument::ConfigureService {
            service_code,
            settings,
            setting_version,
        } => Effect::ServiceConfigured {
            service_code: service_code.clone(),
            settings: settings.clone(),
            setting_version: *setting_version,
        },
        JobDocument::ExtendStorage { storage } => Effect::StorageExtended {
            extend: storage.extend.clone(),
            reported: result
                .and_then(|r| r.get("storage"))
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        },
        JobDocument::UpdateApplianceConfig { body } => {
            // Only the appliance settings are recorded: the same task type
            // also carries secrets (a renewed applianceToken), which must
            // never land in the settings in clear.
            let body: Map<String, Value> = body
                .iter()
                .filter(|(key, _)| APPLIANCE_SETTINGS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            if body.is_empty() {
                return Vec::new();
            }
            Effect::ApplianceConfigured { body }
        }
        JobDocument::Unregister {} => Effect::Unregistered,
        JobDocument::Heartbeat { .. }
        | JobDocument::CollectLog { .. }
        | JobDocument::CollectMetrics {}
        | JobDocument::UpgradeAppliance { .. } => return Vec::new(),
    };
    vec![effect]
}

/// The effects of an upgradeAppliance attempt that ended as `status`: the
/// judgement of [`super::upgrade::judge`] on what it recorded.
fn upgrade(
    target: &str,
    status: ExecutionStatus,
    result: Option<&Map<String, Value>>,
) -> Vec<Effect> {
    let reported = match status {
        ExecutionStatus::Succeeded => ReportedStatus::Succeeded,
        ExecutionStatus::Failed => ReportedStatus::Failed,
        _ => return Vec::new(),
    };
    match upgrade::judge(target, reported, result) {
        UpgradeVerdict::Succeeded => vec![Effect::FirmwareVersion {
            version: target.to_owned(),
        }],
        UpgradeVerdict::RolledBack { version } => vec![Effect::RolledBack { version }],
        UpgradeVerdict::AsReported | UpgradeVerdict::Failed | UpgradeVerdict::MissingVersion => {
            Vec::new()
        }
    }
}

/// Whether tasks of this document's type can have effects at all (saves
/// reading the document for the others).
pub fn has_effects(task_type: protocol::TaskType) -> bool {
    use protocol::TaskType as T;
    match task_type {
        T::InstallService
        | T::UpgradeService
        | T::UninstallService
        | T::ToggleService
        | T::ConfigureService
        | T::ExtendStorage
        | T::UpdateApplianceConfig
        | T::Unregister
        | T::UpgradeAppliance => true,
        T::Heartbeat | T::CollectLog | T::CollectMetrics => false,
    }
}

#[cfg(test)]
mod tests {
    use protocol::document::{ServicePackage, StorageExtension, Volume};
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn package(code: &str, version: &str) -> ServicePackage {
        ServicePackage {
            service_code: code.into(),
            target_version: version.into(),
            branch: "stable".into(),
            image_path: "p".into(),
            image_sha256: "0".repeat(64),
        }
    }

    #[test]
    fn only_success_has_effects() {
        let document = JobDocument::Unregister {};
        for status in ExecutionStatus::ALL {
            let effects = decide(&document, status, None);
            assert_eq!(
                effects.is_empty(),
                status != ExecutionStatus::Succeeded,
                "{status}"
            );
        }
    }

    #[test]
    fn install_and_upgrade_record_the_version() {
        let ok = ExecutionStatus::Succeeded;
        assert_eq!(
            decide(
                &JobDocument::InstallService(package("dns", "1.2")),
                ok,
                None
            ),
            vec![Effect::ServiceInstalled {
                service_code: "dns".into(),
                version: "1.2".into(),
                fresh: true
            }]
        );
        assert_eq!(
            decide(
                &JobDocument::UpgradeService(package("dns", "1.3")),
                ok,
                None
            ),
            vec![Effect::ServiceInstalled {
                service_code: "dns".into(),
                version: "1.3".into(),
                fresh: false
            }]
        );
        let uninstall = JobDocument::UninstallService {
            service_code: "dns".into(),
        };
        assert_eq!(
            decide(&uninstall, ok, None),
            vec![Effect::ServiceRemoved {
                service_code: "dns".into()
            }]
        );
    }

    #[test]
    fn toggle_configure_and_appliance_settings() {
        let ok = ExecutionStatus::Succeeded;
        let toggle = JobDocument::ToggleService {
            service_code: "ntp".into(),
            action: ToggleAction::Disable,
        };
        assert_eq!(
            decide(&toggle, ok, None),
            vec![Effect::ServiceToggled {
                service_code: "ntp".into(),
                status: ServiceStatus::Disabled
            }]
        );
        let settings = object(json!({"cacheSizeMb": 256}));
        let configure = JobDocument::ConfigureService {
            service_code: "dns".into(),
            settings: settings.clone(),
            setting_version: 7,
        };
        assert_eq!(
            decide(&configure, ok, None),
            vec![Effect::ServiceConfigured {
                service_code: "dns".into(),
                settings,
                setting_version: 7
            }]
        );
        let body = object(json!({"timeZone": "UTC"}));
        let config = JobDocument::UpdateApplianceConfig {
            body: object(json!({"timeZone": "UTC", "applianceToken": "secret"})),
        };
        assert_eq!(
            decide(&config, ok, None),
            vec![Effect::ApplianceConfigured { body }]
        );
        let only_secret = JobDocument::UpdateApplianceConfig {
            body: object(json!({"applianceToken": "secret"})),
        };
        assert!(decide(&only_secret, ok, None).is_empty());
    }

    #[test]
    fn storage_takes_reported_figures_when_they_decode() {
        let extend = vec![VolumeExtension {
            target_volume: Volume::Data,
            size: 10,
        }];
        let document = JobDocument::ExtendStorage {
            storage: StorageExtension {
                extend: extend.clone(),
            },
        };
        let ok = ExecutionStatus::Succeeded;
        let reported = object(json!({"storage": [
            {"volume": "data", "totalBytes": 110, "usedBytes": 5}
        ]}));
        match &decide(&document, ok, Some(&reported))[..] {
            [Effect::StorageExtended {
                reported: Some(volumes),
                ..
            }] => assert_eq!(volumes[0].total_bytes, 110),
            other => panic!("unexpected {other:?}"),
        }
        let garbage = object(json!({"storage": "lots"}));
        assert_eq!(
            decide(&document, ok, Some(&garbage)),
            vec![Effect::StorageExtended {
                extend,
                reported: None
            }]
        );
    }

    #[test]
    fn upgrades_record_the_version_or_the_rollback() {
        let document = JobDocument::UpgradeAppliance {
            target_version: "3.2.0".into(),
            firmware_path: "f".into(),
            firmware_sha256: "0".repeat(64),
        };
        let on = |v: &str| object(json!({ "version": v }));
        let firmware = |v: &str| vec![Effect::FirmwareVersion { version: v.into() }];
        let rolled = |v: &str| vec![Effect::RolledBack { version: v.into() }];
        let (ok, failed) = (ExecutionStatus::Succeeded, ExecutionStatus::Failed);
        type Case = (ExecutionStatus, Option<Map<String, Value>>, Vec<Effect>);
        let cases: [Case; 6] = [
            (ok, Some(on("3.2.0")), firmware("3.2.0")),
            (failed, Some(on("3.1.4")), rolled("3.1.4")),
            (failed, Some(on("3.2.0")), vec![]),
            (failed, None, vec![]),
            (ExecutionStatus::TimedOut, Some(on("3.1.4")), vec![]),
            (ExecutionStatus::Canceled, None, vec![]),
        ];
        for (status, result, expect) in cases {
            assert_eq!(
                decide(&document, status, result.as_ref()),
                expect,
                "{status}"
            );
        }
    }

    #[test]
    fn tasks_without_effects_are_known_in_advance() {
        for task_type in protocol::TaskType::ALL {
            if !has_effects(task_type) {
                let document = match task_type {
                    protocol::TaskType::CollectMetrics => JobDocument::CollectMetrics {},
                    protocol::TaskType::Heartbeat => JobDocument::Heartbeat { server_time: 0 },
                    _ => JobDocument::CollectLog {
                        start: 0,
                        end: 0,
                        upload_path: "u".into(),
                    },
                };
                assert!(decide(&document, ExecutionStatus::Succeeded, None).is_empty());
            }
        }
        assert_eq!(
            decide(
                &JobDocument::Unregister {},
                ExecutionStatus::Succeeded,
                None
            ),
            vec![Effect::Unregistered]
        );
    }
}
