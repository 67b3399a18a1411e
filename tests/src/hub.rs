//! A hub in-process, on port 0, in a data directory the test owns; with
//! the system clock, or with a manual clock that the test moves
//! ([`TestHub::advance`]) instead of sleeping.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use hub::app::Hub;
use hub::clock::{ManualClock, SharedClock, SystemClock};
use hub::config::{Config, ServeArgs};
use protocol::ApplianceId;
use serde_json::{json, Value};

use crate::appliance::{Identity, TestAppliance};

/// The admin token of every test hub.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// How [`TestHub::start_with`] differs from [`TestHub::start`].
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Settings over the test defaults (port 0, the test's data directory).
    pub args: ServeArgs,
    /// A clock the test moves; the system clock when None.
    pub clock: Option<ManualClock>,
    /// `--trust-gateway`.
    pub trust_gateway: bool,
}

/// A customer created through the operators' API.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestCustomer {
    /// Its id.
    pub customer_id: String,
    /// Its api key.
    pub api_key: String,
    /// Its register token.
    pub registration_token: String,
}

/// A running hub and a REST client for it.
pub struct TestHub {
    hub: Hub,
    clock: Option<ManualClock>,
    certs_dir: std::path::PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    http: reqwest::Client,
}

impl TestHub {
    /// Starts a hub whose data lives in `data_dir`.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, HubOptions::default()).await
    }

    /// Starts a hub whose clock shows `start` (epoch ms) until the test
    /// moves it.
    pub async fn start_manual(data_dir: &Path, start: i64) -> anyhow::Result<Self> {
        let options = HubOptions {
            clock: Some(ManualClock::new(start)),
            ..HubOptions::default()
        };
        Self::start_with(data_dir, options).await
    }

    /// Starts a hub whose data lives in `data_dir`, with settings of
    /// `options.args` over the test defaults, and the clock of `options`.
    pub async fn start_with(data_dir: &Path, options: HubOptions) -> anyhow::Result<Self> {
        crate::init_logging();
        let defaults = ServeArgs {
            http_addr: Some("127.0.0.1:0".parse()?),
            mqtts_addr: Some("127.0.0.1:0".parse()?),
            data_dir: Some(data_dir.to_owned()),
            certs_dir: Some(data_dir.join("certs")),
            trust_gateway: Some(options.trust_gateway),
            ..ServeArgs::default()
        };
        let config = Config::merge(options.args, defaults, Some(ADMIN_TOKEN.into()))?;
        let clock: SharedClock = match options.clock.clone() {
            Some(clock) => Arc::new(clock),
            None => Arc::new(SystemClock),
        };
        let hub = Hub::start(config, clock).await?;
        let base = format!("http://{}", hub.http_addr());
        Ok(Self {
            hub,
            clock: options.clock,
            certs_dir: data_dir.join("certs"),
            base,
            http: reqwest::Client::new(),
        })
    }

    /// A plain HTTP client (no token), for public routes.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The running hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The manual clock, when the hub runs on one.
    pub fn clock(&self) -> Option<&ManualClock> {
        self.clock.as_ref()
    }

    /// Moves the manual clock forward by `ms` and wakes the scheduler, so
    /// that whatever became due runs now. Fails on a system-clock hub.
    pub fn advance(&self, ms: i64) -> anyhow::Result<()> {
        let clock = self
            .clock
            .as_ref()
            .context("the hub runs on the system clock")?;
        clock.advance(ms);
        self.hub.scheduler().wake();
        Ok(())
    }

    /// Wakes the scheduler (after a change it cannot see coming, such as
    /// an appliance's result that opens a stage gate).
    pub fn wake(&self) {
        self.hub.scheduler().wake();
    }

    /// Stops the hub (gracefully).
    pub async fn stop(self) {
        self.hub.shutdown().await;
    }

    /// A request with the admin token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// POST JSON as admin; returns status and body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// GET as admin; returns status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.request(reqwest::Method::GET, path).send().await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// A request with `token` as bearer (none when None).
    pub fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `method path` with `token` and an optional JSON body; returns
    /// the status and the body (JSON, or a string when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.request_as(method, path, token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// Creates a customer.
    pub async fn customer(&self, name: &str) -> anyhow::Result<TestCustomer> {
        let (status, body) = self
            .post("/api/v1/customers", &json!({"name": name}))
            .await?;
        if status != 201 {
            bail!("customer creation answered {status}: {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    /// Uploads `bytes` to the artifact store as `name` (as an operator);
    /// returns its sha256, what versions and download tasks reference.
    pub async fn upload_artifact(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/artifacts?name={name}"),
            )
            .body(bytes)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        if status != 201 && status != 200 {
            bail!("artifact upload answered {status}: {body}");
        }
        body["sha256"]
            .as_str()
            .map(str::to_owned)
            .context("sha256 in the answer")
    }

    /// A digest of the whole database, to check that a refused request
    /// changed nothing.
    pub async fn fingerprint(&self) -> anyhow::Result<String> {
        Ok(self.hub.store().fingerprint().await?)
    }

    /// Provisions `count` appliance identities.
    pub async fn provision(&self, count: usize) -> anyhow::Result<Vec<Identity>> {
        let (status, body) = self
            .post("/api/v1/appliances", &json!({"count": count}))
            .await?;
        if status != 201 {
            bail!("provisioning answered {status}: {body}");
        }
        Ok(serde_json::from_value(body["appliances"].clone())?)
    }

    /// Creates a job for `targets`; returns its id.
    pub async fn create_job(
        &self,
        document: Value,
        targets: &[ApplianceId],
    ) -> anyhow::Result<String> {
        let task_type = document["taskType"].clone();
        let body = json!({"taskType": task_type, "document": document, "targets": {"applianceIds": targets}});
        let (status, body) = self.post("/api/v1/jobs", &body).await?;
        if status != 201 {
            bail!("job creation answered {status}: {body}");
        }
        body["jobId"]
            .as_str()
            .map(str::to_owned)
            .context("jobId in the answer")
    }

    /// Creates a job from a whole request body; returns its id.
    pub async fn create_job_body(&self, body: &Value) -> anyhow::Result<String> {
        let (status, body) = self.post("/api/v1/jobs", body).await?;
        if status != 201 {
            bail!("job creation answered {status}: {body}");
        }
        body["jobId"]
            .as_str()
            .map(str::to_owned)
            .context("jobId in the answer")
    }

    /// An appliance's liveness (`GET /api/v1/appliances/{id}/liveness`).
    pub async fn liveness(&self, id: ApplianceId) -> anyhow::Result<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/appliances/{id}/liveness"))
            .await?;
        if status != 200 {
            bail!("liveness answered {status}: {body}");
        }
        Ok(body)
    }

    /// Provisions `count` appliance identities for `customer`.
    pub async fn provision_for(
        &self,
        customer: hub::model::CustomerId,
        count: usize,
    ) -> anyhow::Result<Vec<Identity>> {
        let body = json!({"count": count, "customerId": customer});
        let (status, body) = self.post("/api/v1/appliances", &body).await?;
        if status != 201 {
            bail!("provisioning answered {status}: {body}");
        }
        Ok(serde_json::from_value(body["appliances"].clone())?)
    }

    /// A job's summary.
    pub async fn job(&self, job_id: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(&format!("/api/v1/jobs/{job_id}")).await?;
        if status != 200 {
            bail!("job summary answered {status}: {body}");
        }
        Ok(body)
    }

    /// The dev CA the hub created, which appliances trust.
    pub fn ca_pem(&self) -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read(self.certs_dir.join("ca.pem"))?)
    }

    /// Connects an appliance over TLS through the device edge.
    pub async fn connect_tls(&self, identity: &Identity) -> anyhow::Result<TestAppliance> {
        let addr = self.hub.mqtts_addr().context("device edge")?;
        TestAppliance::connect_tls(identity, addr, &self.ca_pem()?).await
    }

    /// Connects an appliance through the embedded broker with the hub's
    /// internal credentials (the tests of the device edge connect through
    /// the edge instead).
    pub async fn connect_internal(&self, id: ApplianceId) -> anyhow::Result<TestAppliance> {
        let addr = self.hub.broker_addr().context("embedded broker")?;
        let creds = self.hub.broker_credentials().context("embedded broker")?;
        TestAppliance::connect_plain(id, addr, &creds.username, &creds.password).await
    }
}
