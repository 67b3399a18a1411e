//! Registration as a real appliance does it: `POST /va/register/` with the
//! customer's register token and the machine's facts, answered with the
//! appliance's id and token, where to connect (`iotHost`, `iotPort`) and
//! the CA certificate to trust (`caCert`). A fleet registers its appliances
//! a few at a time and keeps what the answers say in one [`Identities`].

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use protocol::{ApplianceId, ProductKey};
use serde::{Deserialize, Serialize};

use crate::hub_api::{checked, HubApi};
use crate::identity::{Identities, Identity};

/// Registrations in flight at once.
pub const CONCURRENCY: usize = 32;

const GIB: u64 = 1 << 30;

/// What an appliance tells the hub about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// Sent back by an appliance that registered before (keeps its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appliance_id: Option<ApplianceId>,
    /// Host name.
    pub hostname: String,
    /// IPv4 address.
    pub ipv4_address: String,
    /// Firmware display version.
    pub version: String,
    /// Cores.
    pub total_cpu: f64,
    /// Bytes of memory.
    pub total_memory: u64,
    /// Bytes of storage.
    pub total_storage: u64,
}

impl Facts {
    /// The facts of simulated appliance `index` running `version`: a host
    /// name and an address of its own, the simulated machine's sizes.
    pub fn simulated(index: usize, version: &str) -> Self {
        let n = index as u32;
        Self {
            appliance_id: None,
            hostname: format!("sim-{index}"),
            ipv4_address: format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
            version: version.to_owned(),
            total_cpu: 4.0,
            total_memory: 8 * GIB,
            total_storage: 150 * GIB,
        }
    }
}

/// The hub's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// MQTT client id and username.
    pub appliance_id: ApplianceId,
    /// MQTT password.
    pub appliance_token: String,
    /// Host of the MQTT over TLS listener.
    pub iot_host: String,
    /// Its port.
    pub iot_port: u16,
    /// First level of the appliance's topics.
    #[serde(default)]
    pub product_key: ProductKey,
    /// CA certificate (PEM) to trust, when the hub has one.
    #[serde(default)]
    pub ca_cert: Option<String>,
}

impl HubApi {
    /// Registers one appliance with the register token `token`.
    pub async fn register(&self, token: &str, facts: &Facts) -> anyhow::Result<Registered> {
        let response = self
            .http()
            .post(self.resolve("/va/register/")?)
            .bearer_auth(token)
            .json(facts)
            .send()
            .await
            .context("POST /va/register/")?;
        Ok(checked(response).await?.json().await?)
    }

    /// Registers `count` appliances running `version`, [`CONCURRENCY`] at a
    /// time. The set carries the endpoint and CA of the first answer (every
    /// answer of one hub gives the same).
    pub async fn register_fleet(
        &self,
        token: &str,
        count: usize,
        version: &str,
    ) -> anyhow::Result<Identities> {
        let answers: Vec<Registered> = futures::stream::iter(0..count)
            .map(|index| async move {
                let facts = Facts::simulated(index, version);
                self.register(token, &facts)
                    .await
                    .with_context(|| format!("registering appliance {index}"))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let Some(first) = answers.first() else {
            bail!("registering zero appliances");
        };
        let mut identities = Identities::new(first.product_key.clone(), Vec::new());
        identities.iot_host = Some(first.iot_host.clone());
        identities.iot_port = Some(first.iot_port);
        identities.ca_cert.clone_from(&first.ca_cert);
        identities.appliances = answers
            .into_iter()
            .map(|answer| Identity {
                appliance_id: answer.appliance_id,
                token: answer.appliance_token,
                product_key: answer.product_key,
            })
            .collect();
        Ok(identities)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn facts_are_distinct_and_answers_decode() -> anyhow::Result<()> {
        let facts = serde_json::to_value(Facts::simulated(70_000, "1.0.0"))?;
        assert_eq!(
            facts,
            json!({"hostname": "sim-70000", "ipv4Address": "10.1.17.112", "version": "1.0.0",
                "totalCpu": 4.0, "totalMemory": 8 * GIB, "totalStorage": 150 * GIB})
        );
        let answer: Registered = serde_json::from_value(json!({
            "applianceId": "0f8fad5b-d9cb-469f-a165-70867728950e", "applianceToken": "t",
            "iotHost": "localhost", "iotPort": 8883, "productKey": "va", "caCert": "PEM"}))?;
        assert_eq!(
            (answer.iot_host.as_str(), answer.iot_port),
            ("localhost", 8883)
        );
        assert_eq!(answer.ca_cert.as_deref(), Some("PEM"));
        Ok(())
    }
}
