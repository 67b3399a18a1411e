//! device-sim against the real hub: fleets of simulated appliances (the
//! `device-sim` library, as `device-sim run` drives it) register through
//! `/va/register/` or are provisioned by an operator, connect over TLS to
//! the device edge of a hub started in the test, and run what the hub
//! sends them. `tasks`: every task type completes and the hub's state shows
//! it; `faults`: each fault mode gives the outcome it should, as the seed
//! decides; `fleet` (behind `FLEETHUB_SLOW_TESTS=1`): a larger fleet;
//! `bench`: `device-sim bench job` with a rate-limited rollout and the REST
//! probe.

mod bench;
mod faults;
mod fleet;
mod tasks;

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use device_sim::appliance::Behaviour;
use device_sim::fault::FaultConfig;
use device_sim::fleet::{Fleet, FleetConfig};
use device_sim::hub_api::{http_client, HubApi};
use device_sim::identity::Identities;
use device_sim::launch::broker_target;
use device_sim::stats::Counter;
use protocol::ApplianceId;
use reqwest::Method;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tests::hub::{TestCustomer, ADMIN_TOKEN};
use tests::{wait_until, within, TestHub};

const GIB: u64 = 1 << 30;
/// The firmware the simulated appliances start on, and the upgrade's.
const OLD_VERSION: &str = "3.1.4";
const NEW_VERSION: &str = "3.2";

/// Quick appliances: little work, short reboots, replies awaited 3 s
/// before a repeat, metrics only when asked.
fn behaviour(faults: FaultConfig) -> Behaviour {
    Behaviour {
        work_ms: 20,
        reply_timeout_ms: 3_000,
        reboot_ms: 200,
        metrics_interval_ms: None,
        initial_version: OLD_VERSION.into(),
        faults,
        ..Behaviour::default()
    }
}

/// The simulator's client of `hub` (admin token), trusting `ca`.
fn hub_api(hub: &TestHub, ca: Option<&[u8]>) -> anyhow::Result<HubApi> {
    let tls = ca.map(device_sim::mqtt::tls_config).transpose()?;
    let http = http_client(tls.as_deref())?;
    HubApi::new(http, &hub.base, Some(ADMIN_TOKEN.into()))
}

/// A customer with `count` appliances the simulator registered with its
/// register token.
async fn registered(hub: &TestHub, count: usize) -> anyhow::Result<(TestCustomer, Identities)> {
    let customer = hub.customer("ACME").await?;
    let identities = hub_api(hub, None)?
        .register_fleet(&customer.registration_token, count, OLD_VERSION)
        .await?;
    assert_eq!(identities.iot_host.as_deref(), Some("localhost"));
    assert_eq!(
        identities.iot_port,
        hub.hub().mqtts_addr().map(|a| a.port())
    );
    assert!(identities.ca_cert.is_some(), "registration gives the CA");
    Ok((customer, identities))
}

/// Starts `identities` against the hub: where registration said to
/// connect, with the CA it gave (the operator's provisioning gives
/// neither: then the edge's address and the hub's CA file), until all are
/// subscribed.
async fn start(
    hub: &TestHub,
    identities: &Identities,
    behaviour: Behaviour,
    seed: u64,
) -> anyhow::Result<Fleet> {
    let edge = hub.hub().mqtts_addr().context("device edge")?;
    let (url, ca) = match &identities.ca_cert {
        Some(ca) => (None, ca.clone().into_bytes()),
        None => (
            Some(format!("mqtts://localhost:{}", edge.port())),
            hub.ca_pem()?,
        ),
    };
    let config = FleetConfig {
        broker: broker_target(identities, url.as_deref(), Some(&ca))?,
        hub: hub_api(hub, Some(&ca))?,
        behaviour,
        seed,
        connect_rate: 0,
    };
    let fleet = Fleet::start(config, identities.appliances.clone());
    let size = fleet.size() as u64;
    wait_until("the fleet subscribed", || async {
        Ok(fleet.stats().subscribed_now() == size)
    })
    .await?;
    assert_eq!(fleet.stats().get(Counter::ConnectErrors), 0);
    Ok(fleet)
}

fn ids(identities: &Identities) -> Vec<ApplianceId> {
    identities
        .appliances
        .iter()
        .map(|i| i.appliance_id)
        .collect()
}

/// Creates a job of `document` for `targets` through `/api/v1/jobs`.
async fn job(hub: &TestHub, document: Value, targets: &[ApplianceId]) -> anyhow::Result<String> {
    hub.create_job(document, targets).await
}

/// Waits until the job's executions are counted as in `want` (statuses
/// not named: none), and returns its summary.
async fn job_counts(hub: &TestHub, job_id: &str, want: &[(&str, u64)]) -> anyhow::Result<Value> {
    let want: serde_json::Map<String, Value> = want
        .iter()
        .map(|(s, n)| ((*s).to_owned(), json!(n)))
        .collect();
    let last = Mutex::new(Value::Null);
    let waited = wait_until("the job's counts", || async {
        let summary = hub.job(job_id).await?;
        let counts = summary["counts"].as_object().cloned().unwrap_or_default();
        let nonzero: serde_json::Map<String, Value> = counts
            .into_iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .collect();
        *lock(&last) = summary;
        Ok(nonzero == want)
    })
    .await;
    let last = lock(&last).clone();
    match waited {
        Ok(()) => Ok(last),
        Err(err) => bail!("{err}: want {want:?}, the job shows {last}"),
    }
}

/// The job's executions, by appliance.
async fn executions(
    hub: &TestHub,
    job_id: &str,
) -> anyhow::Result<std::collections::HashMap<String, Value>> {
    let (status, page) = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions?limit=1000"))
        .await?;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .into_iter()
        .map(|e| (e["applianceId"].as_str().unwrap_or_default().to_owned(), e))
        .collect())
}

/// A frontend call of `customer`.
async fn ui(
    hub: &TestHub,
    customer: &TestCustomer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    hub.call(method, path, Some(&customer.api_key), body.as_ref())
        .await
}

/// Asks for a task through the frontend (202) and waits until
/// `/ui/tasks/{id}/` shows it finished; returns that view.
async fn ui_task(
    hub: &TestHub,
    customer: &TestCustomer,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (status, answer) = ui(hub, customer, Method::POST, path, body).await?;
    if status != 202 {
        bail!("POST {path} answered {status}: {answer}");
    }
    let task = answer["taskId"].as_str().context("taskId")?.to_owned();
    finished(hub, customer, &task).await
}

/// Waits until `/ui/tasks/{task}/` shows a terminal status.
async fn finished(hub: &TestHub, customer: &TestCustomer, task: &str) -> anyhow::Result<Value> {
    let path = format!("/ui/tasks/{task}/");
    let view = Mutex::new(Value::Null);
    wait_until(&format!("task {task} finished"), || async {
        let shown = ui(hub, customer, Method::GET, &path, None).await?.1;
        let status = shown["status"].as_str().unwrap_or_default();
        let done = !matches!(status, "QUEUED" | "SENT" | "IN_PROGRESS" | "");
        *lock(&view) = shown;
        Ok(done)
    })
    .await?;
    let view = lock(&view).clone();
    Ok(view)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Publishes, as the hub does, on the internal broker, and listens to what
/// one appliance publishes: the test's way to send a heartbeat (this hub
/// sends none yet) and to read the appliance's answer.
struct Spy {
    client: AsyncClient,
    events: EventLoop,
    namespace: String,
}

impl Spy {
    async fn on(hub: &TestHub, appliance: ApplianceId) -> anyhow::Result<Self> {
        let addr = hub.hub().broker_addr().context("embedded broker")?;
        let creds = hub.hub().broker_credentials().context("credentials")?;
        let mut options = MqttOptions::new(format!("spy-{appliance}"), "127.0.0.1", addr.port());
        options
            .set_credentials(creds.username.clone(), creds.password.clone())
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 16);
        let namespace = format!("/sys/va/{appliance}/thing/");
        client
            .subscribe(format!("{namespace}job/update"), QoS::AtLeastOnce)
            .await?;
        within("the spy's SUBACK", async {
            loop {
                if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        })
        .await??;
        Ok(Self {
            client,
            events,
            namespace,
        })
    }

    async fn notify(&self, task: &protocol::message::Task) -> anyhow::Result<()> {
        let message = protocol::message::notify("n-test", task.clone());
        self.client
            .publish(
                format!("{}job/notify", self.namespace),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&message)?,
            )
            .await?;
        Ok(())
    }

    /// The next update the appliance publishes about `task`.
    async fn update(&mut self, task: &str) -> anyhow::Result<Value> {
        within("the appliance's update", async {
            loop {
                if let Event::Incoming(Packet::Publish(p)) = self.events.poll().await? {
                    let update: Value = serde_json::from_slice(&p.payload)?;
                    if update["params"]["taskId"] == task {
                        return Ok::<_, anyhow::Error>(update);
                    }
                }
            }
        })
        .await?
    }
}

/// A heartbeat as the hub sends it (topics.md 4.1), at `server_time`.
fn heartbeat(appliance: ApplianceId, server_time: i64) -> protocol::message::Task {
    protocol::message::Task {
        task_id: protocol::TaskId::heartbeat(&appliance),
        status: protocol::ExecutionStatus::Sent,
        execution_number: 1,
        version_number: 1,
        queued_at: server_time,
        progress: None,
        status_details: None,
        job_document: protocol::JobDocument::Heartbeat { server_time },
        job_file: None,
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Uploads `bytes` as firmware `version` (display `display`) and publishes
/// it; returns its sha256.
async fn publish_firmware(
    hub: &TestHub,
    version: &str,
    display: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<String> {
    let sha = hub
        .upload_artifact(&format!("va-{version}.img"), bytes)
        .await?;
    let body = json!({"version": version, "displayVersion": display,
        "firmwarePath": format!("fw/{version}.img"), "firmwareSha256": sha});
    let (status, answer) = hub.post("/api/v1/appliance-versions", &body).await?;
    assert_eq!(status, 201, "{answer}");
    Ok(sha)
}

/// `len` bytes that are not all alike.
fn image(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}
