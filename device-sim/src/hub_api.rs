//! The hub's REST API as the simulator uses it: provisioning identities
//! (admin token), creating a job and reading its counts, and resolving the
//! relative URLs of downloads and uploads against the hub's address.
//! Registration with a register token is in [`crate::registration`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use protocol::{ApplianceId, JobDocument};
use reqwest::{Client, Response, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::identity::Identities;

/// Largest count one provisioning request may ask for.
pub const MAX_PROVISION_BATCH: usize = 10_000;

/// A job as `GET /api/v1/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// Its id.
    pub job_id: String,
    /// Its status (the hub's words).
    #[serde(default)]
    pub status: String,
    /// Executions per status (`SUCCEEDED`, `FAILED`, ...).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Creation time, epoch milliseconds on the hub's clock.
    #[serde(default)]
    pub created_at: Option<i64>,
}

impl JobSummary {
    /// Executions in `status`.
    pub fn count(&self, status: protocol::ExecutionStatus) -> u64 {
        self.counts.get(status.as_str()).copied().unwrap_or(0)
    }

    /// Executions in a terminal status.
    pub fn terminal(&self) -> u64 {
        protocol::ExecutionStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(|s| self.count(s))
            .sum()
    }
}

/// HTTP access to one hub.
#[derive(Clone, Debug)]
pub struct HubApi {
    http: Client,
    base: Url,
    admin_token: Option<String>,
}

/// The HTTP client every part of the simulator shares (rustls with ring,
/// no proxy lookup, bounded idle pool).
pub fn http_client(tls: Option<&rustls::ClientConfig>) -> anyhow::Result<Client> {
    let mut builder = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64);
    let tls = match tls {
        Some(config) => config.clone(),
        None => {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    builder = builder.use_preconfigured_tls(tls);
    builder.build().context("building the HTTP client")
}

impl HubApi {
    /// A client of the hub at `base` (`http://127.0.0.1:8080`).
    pub fn new(http: Client, base: &str, admin_token: Option<String>) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("invalid hub URL {base}"))?;
        Ok(Self {
            http,
            base,
            admin_token,
        })
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// An absolute URL as is; a path (`/files/...`) joined to the hub's address.
    pub fn resolve(&self, url: &str) -> anyhow::Result<Url> {
        match Url::parse(url) {
            Ok(absolute) => Ok(absolute),
            Err(_) => self
                .base
                .join(url)
                .with_context(|| format!("invalid URL {url}")),
        }
    }

    fn admin(&self) -> anyhow::Result<&str> {
        self.admin_token
            .as_deref()
            .context("this needs the hub's admin token (--admin-token)")
    }

    /// Provisions `count` appliances, in batches the hub accepts, for
    /// `customer` when given.
    pub async fn provision(
        &self,
        count: usize,
        customer: Option<&str>,
    ) -> anyhow::Result<Identities> {
        let mut all: Option<Identities> = None;
        let mut left = count;
        while left > 0 {
            let batch = left.min(MAX_PROVISION_BATCH);
            let response = self
                .http
                .post(self.resolve("/api/v1/appliances")?)
                .bearer_auth(self.admin()?)
                .json(&json!({ "count": batch, "customerId": customer }))
                .send()
                .await
                .context("POST /api/v1/appliances")?;
            let got: Identities = checked(response).await?.json().await?;
            if got.appliances.len() != batch {
                bail!("asked for {batch} appliances, got {}", got.appliances.len());
            }
            let got = got.normalized();
            match all.as_mut() {
                Some(all) => all.appliances.extend(got.appliances),
                None => all = Some(got),
            }
            left -= batch;
        }
        all.context("provisioning zero appliances")
    }

    /// Creates a job of `document` for `targets`, released at most
    /// `max_per_minute` a minute when given; returns its id.
    pub async fn create_job(
        &self,
        document: &JobDocument,
        targets: &[ApplianceId],
        max_per_minute: Option<u32>,
    ) -> anyhow::Result<String> {
        let mut body = json!({
            "taskType": document.task_type().as_str(),
            "document": document,
            "targets": { "applianceIds": targets },
        });
        if let Some(limit) = max_per_minute {
            body["rollout"] = json!({ "maxPerMinute": limit });
        }
        let response = self
            .http
            .post(self.resolve("/api/v1/jobs")?)
            .bearer_auth(self.admin()?)
            .json(&body)
            .send()
            .await
            .context("POST /api/v1/jobs")?;
        let created: Value = checked(response).await?.json().await?;
        created["jobId"]
            .as_str()
            .map(str::to_owned)
            .context("the hub's answer has no jobId")
    }

    /// Reads a job's summary.
    pub async fn job(&self, job_id: &str) -> anyhow::Result<JobSummary> {
        let response = self
            .http
            .get(self.resolve(&format!("/api/v1/jobs/{job_id}"))?)
            .bearer_auth(self.admin()?)
            .send()
            .await
            .with_context(|| format!("GET /api/v1/jobs/{job_id}"))?;
        Ok(checked(response).await?.json().await?)
    }
}

/// Most executions one page of `GET /api/v1/jobs/{id}/executions` lists.
const EXECUTIONS_PAGE: usize = 1000;

impl HubApi {
    /// When the hub released each of the job's executions (`sentAt`,
    /// epoch milliseconds on the hub's clock; every attempt), read page by
    /// page; executions never released are left out.
    pub async fn release_instants(&self, job_id: &str) -> anyhow::Result<Vec<i64>> {
        let mut instants = Vec::new();
        let mut offset = 0;
        loop {
            let path = format!(
                "/api/v1/jobs/{job_id}/executions?attempts=all&offset={offset}&limit={EXECUTIONS_PAGE}"
            );
            let response = self
                .http
                .get(self.resolve(&path)?)
                .bearer_auth(self.admin()?)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            let page: Value = checked(response).await?.json().await?;
            let items = page["items"]
                .as_array()
                .with_context(|| format!("GET {path}: no items"))?;
            instants.extend(items.iter().filter_map(|e| e["sentAt"].as_i64()));
            offset += items.len();
            let total = page["total"].as_u64().unwrap_or(0);
            if items.is_empty() || offset as u64 >= total {
                return Ok(instants);
            }
        }
    }
}

/// The response if its status is a success, else an error with the hub's
/// `{status, message, cause}` body.
pub(crate) async fn checked(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().path().to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or("no message");
    let cause = body["cause"].as_str().unwrap_or("");
    bail!("{url}: HTTP {status}: {message} {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_absolute_urls() -> anyhow::Result<()> {
        let api = HubApi::new(http_client(None)?, "http://127.0.0.1:8080", None)?;
        assert_eq!(
            api.resolve("/files/a.img?sig=1")?.as_str(),
            "http://127.0.0.1:8080/files/a.img?sig=1"
        );
        assert_eq!(
            api.resolve("https://cdn.example/x")?.as_str(),
            "https://cdn.example/x"
        );
        Ok(())
    }

    #[test]
    fn job_counts() -> anyhow::Result<()> {
        let summary: JobSummary = serde_json::from_value(json!({
            "jobId": "j1", "taskType": "collectMetrics", "status": "IN_PROGRESS",
            "counts": {"SUCCEEDED": 3, "FAILED": 1, "SENT": 2}
        }))?;
        assert_eq!(summary.count(protocol::ExecutionStatus::Succeeded), 3);
        assert_eq!(summary.terminal(), 4);
        Ok(())
    }
}
