//! The simulated machine an appliance runs on: firmware version, services,
//! volumes, settings and clock. Tasks change it through the methods here;
//! heartbeats and metrics read it. Pure data, no I/O.

use protocol::document::{ServicePackage, ToggleAction, Volume, VolumeExtension};
use protocol::message::{
    CpuMetrics, HeartbeatResult, MemoryMetrics, MetricsParams, ServiceHealth, VolumeMetrics,
};
use serde_json::{json, Map, Value};

/// Most services one simulated appliance keeps (bounds its memory).
pub const MAX_SERVICES: usize = 16;
/// Most top-level appliance settings kept.
pub const MAX_SETTINGS: usize = 32;

const GIB: u64 = 1 << 30;
/// Bytes used on the data volume, whatever its size.
const DATA_USED: u64 = 25 * GIB;

/// One installed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its code.
    pub code: String,
    /// Installed version.
    pub version: String,
    /// Enabled (running) or disabled.
    pub enabled: bool,
    /// Version of the settings last applied.
    pub setting_version: u64,
}

/// A machine's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Firmware display version running now.
    pub version: String,
    /// Installed services.
    pub services: Vec<Service>,
    /// Size of the data volume in bytes.
    pub data_bytes: u64,
    /// Size of the image volume in bytes.
    pub image_bytes: u64,
    /// Appliance settings applied by updateApplianceConfig.
    pub settings: Map<String, Value>,
    /// Offset of this appliance's clock from the true one, milliseconds.
    pub clock_skew_ms: i64,
}

/// What applying a task to the machine gave.
pub type Applied = Result<Map<String, Value>, String>;

impl Machine {
    /// A fresh machine running `version`.
    pub fn new(version: impl Into<String>, clock_skew_ms: i64) -> Self {
        Self {
            version: version.into(),
            services: Vec::new(),
            data_bytes: 100 * GIB,
            image_bytes: 50 * GIB,
            settings: Map::new(),
            clock_skew_ms,
        }
    }

    /// This appliance's (possibly skewed) clock, given the true wall clock.
    pub fn clock(&self, wall_ms: i64) -> i64 {
        wall_ms.saturating_add(self.clock_skew_ms)
    }

    fn service_mut(&mut self, code: &str) -> Option<&mut Service> {
        self.services.iter_mut().find(|s| s.code == code)
    }

    /// installService: idempotent, an install over another version replaces it.
    pub fn install(&mut self, package: &ServicePackage) -> Applied {
        let full = self.services.len() >= MAX_SERVICES;
        let changed = match self.service_mut(&package.service_code) {
            Some(service) if service.version == package.target_version => false,
            Some(service) => {
                service.version.clone_from(&package.target_version);
                true
            }
            None if full => return Err(format!("no room for more than {MAX_SERVICES} services")),
            None => {
                self.services.push(Service {
                    code: package.service_code.clone(),
                    version: package.target_version.clone(),
                    enabled: true,
                    setting_version: 0,
                });
                true
            }
        };
        Ok(service_result(&package.target_version, changed))
    }

    /// upgradeService: the service must be installed.
    pub fn upgrade(&mut self, package: &ServicePackage) -> Applied {
        let service = self
            .service_mut(&package.service_code)
            .ok_or_else(|| format!("service {} is not installed", package.service_code))?;
        let changed = service.version != package.target_version;
        service.version.clone_from(&package.target_version);
        Ok(service_result(&package.target_version, changed))
    }

    /// uninstallService: removing an absent service succeeds unchanged.
    pub fn uninstall(&mut self, code: &str) -> Applied {
        let before = self.services.len();
        self.services.retain(|s| s.code != code);
        Ok(changed_result(before != self.services.len()))
    }

    /// toggleService: the service must be installed.
    pub fn toggle(&mut self, code: &str, action: ToggleAction) -> Applied {
        let service = self
            .service_mut(code)
            .ok_or_else(|| format!("service {code} is not installed"))?;
        let enabled = action == ToggleAction::Enable;
        let changed = service.enabled != enabled;
        service.enabled = enabled;
        Ok(changed_result(changed))
    }

    /// configureService: settings older than those applied are ignored.
    pub fn configure(&mut self, code: &str, setting_version: u64) -> Applied {
        let service = self
            .service_mut(code)
            .ok_or_else(|| format!("service {code} is not installed"))?;
        if setting_version < service.setting_version {
            let mut result = changed_result(false);
            result.insert("ignored".into(), json!("older settingVersion"));
            return Ok(result);
        }
        let changed = setting_version != service.setting_version;
        service.setting_version = setting_version;
        Ok(changed_result(changed))
    }

    /// updateApplianceConfig: merges `body` into the settings and returns the
    /// new appliance token when the body carries one (it is not kept in the
    /// settings).
    pub fn update_config(&mut self, body: &Map<String, Value>) -> (Applied, Option<String>) {
        let token = body
            .get("applianceToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut applied = Vec::new();
        for (key, value) in body.iter().filter(|(k, _)| *k != "applianceToken") {
            if !self.settings.contains_key(key) && self.settings.len() >= MAX_SETTINGS {
                return (Err(format!("more than {MAX_SETTINGS} settings")), None);
            }
            self.settings.insert(key.clone(), value.clone());
            applied.push(Value::String(key.clone()));
        }
        let mut result = Map::new();
        result.insert("applied".into(), Value::Array(applied));
        result.insert("tokenRotated".into(), json!(token.is_some()));
        (Ok(result), token)
    }

    /// extendStorage: grows every volume named.
    pub fn extend_storage(&mut self, extend: &[VolumeExtension]) -> Applied {
        for volume in extend {
            let size = match volume.target_volume {
                Volume::Data => &mut self.data_bytes,
                Volume::Image => &mut self.image_bytes,
            };
            *size = size.saturating_add(volume.size);
        }
        // The volumes' figures now, which the hub takes as they are
        // (`result.storage`, as in a metrics post).
        let mut result = Map::new();
        result.insert("storage".into(), json!(self.volumes()));
        Ok(result)
    }

    /// Every volume's size and use.
    fn volumes(&self) -> Vec<VolumeMetrics> {
        vec![
            VolumeMetrics {
                volume: Volume::Data,
                total_bytes: self.data_bytes,
                used_bytes: DATA_USED.min(self.data_bytes),
            },
            VolumeMetrics {
                volume: Volume::Image,
                total_bytes: self.image_bytes,
                used_bytes: self.image_used().min(self.image_bytes),
            },
        ]
    }

    /// Free bytes on the image volume, where firmware and packages land.
    pub fn image_free(&self) -> u64 {
        self.image_bytes - self.image_used()
    }

    fn image_used(&self) -> u64 {
        (self.services.len() as u64 + 1) * GIB
    }

    /// The result of a heartbeat.
    pub fn heartbeat(&self, wall_ms: i64) -> HeartbeatResult {
        HeartbeatResult {
            version: self.version.clone(),
            clock: self.clock(wall_ms),
            services: self
                .services
                .iter()
                .map(|s| ServiceHealth {
                    service_code: s.code.clone(),
                    version: s.version.clone(),
                    status: if s.enabled { "enabled" } else { "disabled" }.into(),
                    health: "healthy".into(),
                })
                .collect(),
        }
    }

    /// A metrics sample. `wobble` (any number) varies the cpu figure so that
    /// samples are not all alike.
    pub fn metrics(&self, wall_ms: i64, wobble: u64) -> MetricsParams {
        let enabled = self.services.iter().filter(|s| s.enabled).count() as u64;
        MetricsParams {
            time: self.clock(wall_ms),
            cpu: CpuMetrics {
                cores: 4,
                usage_percent: (5 + enabled * 7 + wobble % 20).min(100) as f64,
            },
            memory: MemoryMetrics {
                total_bytes: 8 * GIB,
                used_bytes: (1 + enabled) * GIB / 2,
            },
            storage: self.volumes(),
        }
    }
}

fn changed_result(changed: bool) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("changed".into(), Value::Bool(changed));
    result
}

fn service_result(version: &str, changed: bool) -> Map<String, Value> {
    let mut result = changed_result(changed);
    result.insert("version".into(), json!(version));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(code: &str, version: &str) -> ServicePackage {
        ServicePackage {
            service_code: code.into(),
            target_version: version.into(),
            branch: "stable".into(),
            image_path: "/x".into(),
            image_sha256: "0".repeat(64),
        }
    }

    #[test]
    fn services_change_idempotently() -> Result<(), String> {
        let mut m = Machine::new("1.0.0", 0);
        assert_eq!(m.install(&package("dns", "1"))?["changed"], json!(true));
        assert_eq!(m.install(&package("dns", "1"))?["changed"], json!(false));
        assert_eq!(m.upgrade(&package("dns", "2"))?["version"], json!("2"));
        assert!(m.upgrade(&package("web", "2")).is_err());
        assert_eq!(
            m.toggle("dns", ToggleAction::Disable)?["changed"],
            json!(true)
        );
        assert!(!m.services[0].enabled);
        assert!(m.toggle("web", ToggleAction::Enable).is_err());
        assert_eq!(m.configure("dns", 5)?["changed"], json!(true));
        assert_eq!(
            m.configure("dns", 4)?["ignored"],
            json!("older settingVersion")
        );
        assert_eq!(m.services[0].setting_version, 5);
        let health = m.heartbeat(1000);
        assert_eq!(health.services[0].status, "disabled");
        assert_eq!(m.uninstall("dns")?["changed"], json!(true));
        assert_eq!(m.uninstall("dns")?["changed"], json!(false));
        Ok(())
    }

    #[test]
    fn config_token_and_storage() {
        let mut m = Machine::new("1.0.0", -250);
        let body = json!({"timezone": "UTC", "applianceToken": "new-secret"});
        let (applied, token) = m.update_config(body.as_object().expect("object"));
        assert_eq!(token.as_deref(), Some("new-secret"));
        assert_eq!(applied.expect("applied")["applied"], json!(["timezone"]));
        assert!(!m.settings.contains_key("applianceToken"));
        let grow = [VolumeExtension {
            target_volume: Volume::Data,
            size: GIB,
        }];
        assert_eq!(
            m.extend_storage(&grow).expect("grown")["storage"],
            json!([{"volume": "data", "totalBytes": 101 * GIB, "usedBytes": 25 * GIB},
                {"volume": "image", "totalBytes": 50 * GIB, "usedBytes": GIB}])
        );
        assert_eq!(m.heartbeat(10_000).clock, 9_750);
        assert_eq!(m.metrics(10_000, 3).time, 9_750);
    }
}
