//! Appliance identities: who an appliance is on the wire, and the
//! identities file that saves them between runs (the shape of the hub's
//! provisioning answer, plus where registration said to connect and the CA
//! it gave).

use std::path::Path;

use anyhow::Context;
use protocol::{ApplianceId, ProductKey};
use serde::{Deserialize, Serialize};

/// One appliance's identity.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Its id: MQTT client id and username.
    pub appliance_id: ApplianceId,
    /// Its secret: MQTT password.
    #[serde(rename = "applianceToken")]
    pub token: String,
    /// Its namespace's first level.
    #[serde(skip, default)]
    pub product_key: ProductKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("appliance_id", &self.appliance_id)
            .field("token", &"<redacted>")
            .field("product_key", &self.product_key)
            .finish()
    }
}

/// A set of identities of one product: the identities file, and the body
/// of the hub's answer to `POST /api/v1/appliances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identities {
    /// Their product key.
    pub product_key: ProductKey,
    /// The appliances.
    pub appliances: Vec<Identity>,
    /// The MQTT host registration gave (`iotHost`), if registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_host: Option<String>,
    /// The MQTT over TLS port registration gave (`iotPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_port: Option<u16>,
    /// The CA certificate (PEM) registration gave (`caCert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// How an appliance's identity changed while it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChange {
    /// updateApplianceConfig gave it a new token.
    Token(String),
    /// unregister: it forgot its identity.
    Forgotten,
}

impl Identities {
    /// Sets every identity's product key from the set's.
    pub fn normalized(mut self) -> Self {
        for identity in &mut self.appliances {
            identity.product_key = self.product_key.clone();
        }
        self
    }

    /// A set of `appliances` with nothing else known.
    pub fn new(product_key: ProductKey, appliances: Vec<Identity>) -> Self {
        Self {
            product_key,
            appliances,
            iot_host: None,
            iot_port: None,
            ca_cert: None,
        }
    }

    /// The set after a run: rotated tokens applied, forgotten identities
    /// left out. `changes` are keyed by the index in `appliances`.
    pub fn with_changes(
        &self,
        changes: &std::collections::BTreeMap<usize, IdentityChange>,
    ) -> Self {
        let mut next = self.clone();
        next.appliances.clear();
        for (index, identity) in self.appliances.iter().enumerate() {
            match changes.get(&index) {
                Some(IdentityChange::Forgotten) => {}
                Some(IdentityChange::Token(token)) => next.appliances.push(Identity {
                    token: token.clone(),
                    ..identity.clone()
                }),
                None => next.appliances.push(identity.clone()),
            }
        }
        next
    }

    /// Reads an identities file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading identities from {}", path.display()))?;
        let identities: Identities = serde_json::from_slice(&text)
            .with_context(|| format!("parsing identities in {}", path.display()))?;
        Ok(identities.normalized())
    }

    /// Writes an identities file (readable by the owner only: it holds tokens).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        write_private(path, &text)
            .with_context(|| format!("writing identities to {}", path.display()))
    }

    /// `count` identities with random ids sharing one username/password,
    /// for brokers that authenticate with fixed credentials.
    pub fn random(count: usize, token: &str) -> Self {
        let appliances = (0..count)
            .map(|_| Identity {
                appliance_id: ApplianceId::new_random(),
                token: token.to_owned(),
                product_key: ProductKey::default(),
            })
            .collect();
        Self::new(ProductKey::default(), appliances)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_sets_product_key_and_redacts() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("device-sim-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("ids.json");
        let text = r#"{"productKey": "pk1", "appliances": [
            {"applianceId": "0f8fad5b-d9cb-469f-a165-70867728950e", "applianceToken": "s3cret"}]}"#;
        std::fs::write(&path, text)?;
        let ids = Identities::load(&path)?;
        assert_eq!(ids.appliances[0].product_key.as_str(), "pk1");
        assert!(!format!("{:?}", ids.appliances[0]).contains("s3cret"));
        assert_eq!(ids.iot_host, None);
        ids.save(&path)?;
        assert_eq!(Identities::load(&path)?, ids);
        let registered = Identities {
            iot_host: Some("hub.example".into()),
            iot_port: Some(8883),
            ca_cert: Some("-----BEGIN CERTIFICATE-----".into()),
            ..ids.clone()
        };
        registered.save(&path)?;
        assert_eq!(Identities::load(&path)?, registered);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn changes_rotate_tokens_and_drop_forgotten() -> anyhow::Result<()> {
        let ids = Identities::random(3, "old");
        let changes = std::collections::BTreeMap::from([
            (0, IdentityChange::Forgotten),
            (2, IdentityChange::Token("new".into())),
        ]);
        let after = ids.with_changes(&changes);
        let tokens: Vec<_> = after.appliances.iter().map(|i| i.token.as_str()).collect();
        assert_eq!(tokens, ["old", "new"]);
        assert_eq!(
            after.appliances[0].appliance_id,
            ids.appliances[1].appliance_id
        );
        Ok(())
    }
}
