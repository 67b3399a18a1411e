//! The original backend's REST surface end to end: a customer registers an
//! appliance with its register token, the appliance connects over TLS with
//! the token and CA it was given, the frontend installs a service (the task
//! links the uploaded package) and the finished task shows in the `/ui/`
//! list; then the rest of the appliance's lifecycle (toggle, settings,
//! storage, metrics, delete), and upgrades.

use std::net::SocketAddr;

use anyhow::Context;
use hub::artifacts::Sha256Digest;
use protocol::message::Task;
use protocol::{JobDocument, MessageKind, ReplyCode, TaskType};
use reqwest::Method;
use serde_json::{json, Value};
use tests::appliance::Identity;
use tests::hub::TestCustomer;
use tests::{wait_until, TestAppliance, TestHub};

const GIB: u64 = 1 << 30;

/// The bytes of a file of `what` (a package, a firmware image).
fn file_of(what: &str) -> Vec<u8> {
    format!("{what}\n").repeat(4096).into_bytes()
}

/// Uploads and publishes `dns` 1.4.2 (1 core, 1 GiB) and 1.5.0 (2 cores,
/// 2 GiB), their packages being `file_of("dns <version>")`.
async fn publish_dns(hub: &TestHub) -> anyhow::Result<()> {
    for (version, cpu, memory) in [("1.4.2", 1.0, GIB), ("1.5.0", 2.0, 2 * GIB)] {
        let package = file_of(&format!("dns {version}"));
        let sha = hub
            .upload_artifact(&format!("dns-{version}.tar"), package)
            .await?;
        let body = json!({"serviceCode": "dns", "serviceName": "DNS", "version": version,
            "branch": "stable", "imagePath": format!("services/dns/{version}.tar"),
            "imageSha256": sha, "requestCpu": cpu, "requestMemory": memory});
        let (status, answer) = hub.post("/api/v1/service-versions", &body).await?;
        assert_eq!(status, 201, "{answer}");
    }
    Ok(())
}

/// Registers an appliance of `customer` (4 cores, 8 GiB) and returns the
/// whole answer.
pub async fn register(hub: &TestHub, customer: &TestCustomer) -> anyhow::Result<Value> {
    let facts = json!({"hostname": "va-1", "ipv4Address": "192.0.2.10", "version": "3.1.4",
        "totalCpu": 4, "totalMemory": 8 * GIB, "totalStorage": 100 * GIB});
    let (status, answer) = hub
        .call(
            Method::POST,
            "/va/register/",
            Some(&customer.registration_token),
            Some(&facts),
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    Ok(answer)
}

/// Connects the registered appliance over TLS with what registration gave.
pub async fn connect(hub: &TestHub, registered: &Value) -> anyhow::Result<TestAppliance> {
    let identity: Identity = serde_json::from_value(registered.clone())?;
    let port = registered["iotPort"].as_u64().unwrap_or_default();
    assert_eq!(
        Some(port),
        hub.hub().mqtts_addr().map(|a| u64::from(a.port()))
    );
    let ca = registered["caCert"].as_str().unwrap_or_default().as_bytes();
    let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?));
    TestAppliance::connect_tls(&identity, addr, ca).await
}

/// Receives the notify of `task_id` and reports SUCCEEDED with `result`.
async fn complete(
    appliance: &mut TestAppliance,
    task_id: &str,
    result: Value,
) -> anyhow::Result<TaskType> {
    let task = appliance.notify().await?.params.task;
    assert_eq!(task.task_id.as_str(), task_id);
    succeed(appliance, task_id, result).await?;
    Ok(task.job_document.task_type())
}

/// Reports `task_id` SUCCEEDED with `result`.
async fn succeed(
    appliance: &mut TestAppliance,
    task_id: &str,
    result: Value,
) -> anyhow::Result<()> {
    let reply = appliance
        .update(json!({"taskId": task_id, "status": "SUCCEEDED", "result": result}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    Ok(())
}

/// Checks that `task` links `file` (its jobFile signed with its sha256)
/// and that the link downloads exactly its bytes.
async fn downloads(hub: &TestHub, task: &Task, file: &[u8]) -> anyhow::Result<()> {
    let job_file = task
        .job_file
        .clone()
        .context("the task carries a jobFile")?;
    let sha = Sha256Digest::of(file).to_string();
    assert_eq!(
        (job_file.sign.as_str(), job_file.file_size),
        (sha.as_str(), u64::try_from(file.len())?)
    );
    let response = hub.http().get(&job_file.file_url).send().await?;
    assert_eq!(response.status().as_u16(), 200, "{}", job_file.file_url);
    assert!(
        response.bytes().await?.as_ref() == file,
        "the bytes downloaded"
    );
    Ok(())
}

/// The frontend of a customer with one appliance, registered and connected
/// over TLS: `/ui/` requests with the customer's API key.
struct Frontend<'a> {
    hub: &'a TestHub,
    customer: TestCustomer,
    /// The answer of the registration.
    registered: Value,
    /// The appliance's id.
    id: String,
    appliance: TestAppliance,
}

impl<'a> Frontend<'a> {
    /// Creates the customer ACME and registers and connects its appliance.
    async fn start(hub: &'a TestHub) -> anyhow::Result<Self> {
        let customer = hub.customer("ACME").await?;
        let registered = register(hub, &customer).await?;
        let id = registered["applianceId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let appliance = connect(hub, &registered).await?;
        Ok(Self {
            hub,
            customer,
            registered,
            id,
            appliance,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let key = Some(self.customer.api_key.as_str());
        self.hub.call(method, path, key, body).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Posts once every notify is published, and checks that the database
    /// is unchanged after it (refused, or nothing to do).
    async fn post_changing_nothing(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        settled(self.hub).await?;
        let before = self.hub.fingerprint().await?;
        let answer = self.post(path, body).await?;
        let after = self.hub.fingerprint().await?;
        assert_eq!(after, before, "POST {path} changed the database");
        Ok(answer)
    }
}

/// Waits until every notify written so far is published (the outbox is
/// empty), so that the database changes only on request.
pub async fn settled(hub: &TestHub) -> anyhow::Result<()> {
    wait_until("the outbox drained", || async {
        Ok(hub.hub().store().pending_outbox(1).await?.is_empty())
    })
    .await
}

fn task_id(answer: &Value) -> String {
    answer["taskId"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_appliance_installs_a_service_from_the_frontend() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_dns(&hub).await?;
    let mut ui = Frontend::start(&hub).await?;
    let id = ui.id.clone();
    assert_eq!(ui.registered["iotHost"], "localhost");
    assert_eq!(ui.registered["productKey"], "va");

    let install = json!({"applianceId": id, "version": "1.4.2"});
    let (status, answer) = ui.post("/ui/services/dns/install/", &install).await?;
    assert_eq!(status, 202, "{answer}");
    let task = task_id(&answer);
    let (status, twice) = ui.post("/ui/services/dns/install/", &install).await?;
    assert_eq!(status, 409, "one package change at a time: {twice}");
    let notified = ui.appliance.notify().await?.params.task;
    assert_eq!(notified.task_id.as_str(), task);
    let JobDocument::InstallService(package) = &notified.job_document else {
        panic!("expected installService, got {:?}", notified.job_document);
    };
    let bytes = file_of("dns 1.4.2");
    assert_eq!(package.image_sha256, Sha256Digest::of(&bytes).to_string());
    downloads(&hub, &notified, &bytes).await?;
    succeed(&mut ui.appliance, &task, json!({})).await?;

    let (status, view) = ui.get(&format!("/ui/tasks/{task}/")).await?;
    assert_eq!(status, 200);
    assert_eq!(
        view,
        json!({"delivered": true, "status": "SUCCEEDED", "result": {}, "error_message": null})
    );

    let (status, list) = ui.get("/ui/appliances/").await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    let item = &list["items"][0];
    assert_eq!(item["applianceId"], id.as_str());
    assert_eq!(item["status"], "ONLINE");
    assert_eq!(
        item["services"],
        json!([{"serviceCode": "dns", "version": "1.4.2",
        "status": "enabled", "health": null}])
    );
    assert_eq!(item["cpu"]["requested"], 1.0);

    // Installing what is installed is OK and creates nothing.
    let (status, answer) = ui
        .post_changing_nothing("/ui/services/dns/install", &install)
        .await?;
    assert_eq!((status, &answer["taskId"]), (200, &Value::Null), "{answer}");

    // The services list shows the newer version as an upgrade.
    let (_, services) = ui.get(&format!("/ui/appliances/{id}/services")).await?;
    assert_eq!(services["items"][0]["installedVersion"], "1.4.2");
    assert_eq!(services["items"][0]["latestVersion"], "1.5.0");
    assert_eq!(services["items"][0]["upgradable"], true);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_change_the_appliance_the_frontend_sees() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_dns(&hub).await?;
    let mut ui = Frontend::start(&hub).await?;
    let id = ui.id.clone();
    let path = |tail: &str| format!("/ui/appliances/{id}/{tail}");

    // Metrics over MQTT are stored and answer the storage endpoint.
    let sample = json!({"id": "m-1", "version": "1.0", "params": {"time": 1, "cpu": {"cores": 4,
        "usagePercent": 12.5}, "memory": {"totalBytes": 8 * GIB, "usedBytes": GIB},
        "storage": [{"volume": "data", "totalBytes": 50 * GIB, "usedBytes": GIB}]}});
    ui.appliance
        .publish_raw(MessageKind::MetricsPost, serde_json::to_vec(&sample)?)
        .await?;
    wait_until("the metrics sample", || async {
        let (_, storage) = ui.get(&path("storage")).await?;
        Ok(storage["volumes"][0]["totalBytes"] == json!(50 * GIB))
    })
    .await?;

    // Storage: one extension at a time; the figures grow when it succeeds.
    let extend = json!({"extend": [{"targetVolume": "data", "size": 10 * GIB}]});
    let (status, answer) = ui.post(&path("storage"), &extend).await?;
    assert_eq!(status, 202, "{answer}");
    let (_, storage) = ui.get(&path("storage")).await?;
    assert_eq!(storage["extendOngoing"], true);
    let extension = task_id(&answer);
    let task = ui.appliance.notify().await?.params.task;
    assert_eq!(task.task_id.as_str(), extension);
    let (status, refused) = ui.post_changing_nothing(&path("storage"), &extend).await?;
    assert_eq!(status, 409, "{refused}");
    let reply = ui
        .appliance
        .update(json!({"taskId": extension, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    let (_, storage) = ui.get(&path("storage")).await?;
    assert_eq!(storage["volumes"][0]["totalBytes"], json!(60 * GIB));
    assert_eq!(storage["extendOngoing"], false);

    // Install, disable, configure.
    let target = json!({"applianceId": id});
    let (_, answer) = ui.post("/ui/services/dns/install", &target).await?;
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let toggle = json!({"action": "disable"});
    let toggle_path = format!("/ui/services/dns/{id}/toggle");
    let (status, answer) = ui.post(&toggle_path, &toggle).await?;
    assert_eq!(status, 202, "{answer}");
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let settings = json!({"settings": {"forwarders": ["192.0.2.53"]}});
    let settings_path = format!("/ui/services/dns/{id}/settings/");
    let (status, answer) = ui.post(&settings_path, &settings).await?;
    assert_eq!(status, 202, "{answer}");
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (_, current) = ui.get(&settings_path).await?;
    assert_eq!(
        current,
        json!({"settings": {"forwarders": ["192.0.2.53"]}, "settingVersion": 1})
    );
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["items"][0]["services"][0]["status"], "disabled");

    // Appliance settings apply once the appliance confirms them.
    let body = json!({"timeZone": "Europe/Berlin", "scheduleUpdateDay": "sunday"});
    let (_, answer) = ui.post(&path("settings"), &body).await?;
    let (_, pending) = ui.get(&path("settings")).await?;
    assert_eq!(pending["timeZone"], Value::Null);
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (_, applied) = ui.get(&path("settings")).await?;
    assert_eq!(applied["timeZone"], "Europe/Berlin");
    assert_eq!(applied["hostname"], "va-1");

    // Uninstall removes it; delete unregisters the appliance.
    let (_, answer) = ui.post("/ui/services/dns/uninstall", &target).await?;
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["items"][0]["services"], json!([]));
    let (status, answer) = ui
        .call(Method::DELETE, &format!("/ui/appliances/{id}/"), None)
        .await?;
    assert_eq!(status, 202, "{answer}");
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["items"][0]["status"], "UNREGISTERING");
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["total"], 0);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_and_services_upgrade_to_the_newest_enabled_versions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_dns(&hub).await?;
    for version in ["3.2.0.0", "3.1.4.0"] {
        let image = file_of(&format!("firmware {version}"));
        let sha = hub
            .upload_artifact(&format!("va-{version}.img"), image)
            .await?;
        let body = json!({"version": version, "displayVersion": version.trim_end_matches(".0"),
            "firmwarePath": format!("fw/{version}.img"), "firmwareSha256": sha});
        assert_eq!(hub.post("/api/v1/appliance-versions", &body).await?.0, 201);
    }
    let newest = file_of("firmware 3.2.0.0");
    let mut ui = Frontend::start(&hub).await?;
    let id = ui.id.clone();

    // Firmware: the newest enabled version, once; done when it reports it.
    let (_, list) = ui.get("/ui/appliances").await?;
    let status = &list["items"][0]["upgradeStatus"];
    assert_eq!(
        (&status["latestVersion"], &status["upgradable"]),
        (&json!("3.2"), &json!(true))
    );
    let upgrade = format!("/ui/appliances/{id}/upgrade/");
    let (code, answer) = ui.call(Method::POST, &upgrade, None).await?;
    assert_eq!(code, 202, "{answer}");
    let (code, again) = ui.call(Method::POST, &upgrade, None).await?;
    assert_eq!(code, 409, "one upgrade at a time: {again}");
    let task = ui.appliance.notify().await?.params.task;
    assert_eq!(task.task_id.as_str(), task_id(&answer));
    match &task.job_document {
        JobDocument::UpgradeAppliance {
            target_version,
            firmware_sha256,
            ..
        } => {
            assert_eq!(
                (target_version.as_str(), firmware_sha256.clone()),
                ("3.2", Sha256Digest::of(&newest).to_string())
            );
        }
        other => panic!("expected upgradeAppliance, got {other:?}"),
    }
    downloads(&hub, &task, &newest).await?;
    let reply = ui
        .appliance
        .update(
            json!({"taskId": task.task_id, "status": "SUCCEEDED", "result": {"version": "3.2"}}),
        )
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["items"][0]["version"], "3.2");
    assert_eq!(list["items"][0]["upgradeStatus"]["upgradable"], false);
    let (code, _) = ui.call(Method::POST, &upgrade, None).await?;
    assert_eq!(code, 409, "already at the newest");

    // Services: install 1.4.2, then upgrade to the newest enabled one.
    let install = json!({"applianceId": id, "version": "1.4.2"});
    let (_, answer) = ui.post("/ui/services/dns/install", &install).await?;
    complete(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (code, _) = hub
        .post("/api/v1/service-versions/dns/1.5.0/disable", &json!({}))
        .await?;
    assert_eq!(code, 200);
    let target = json!({"applianceId": id});
    let (code, nothing) = ui.post("/ui/services/dns/upgrade", &target).await?;
    assert_eq!(
        (code, &nothing["taskId"]),
        (200, &Value::Null),
        "1.4.2 is the newest enabled: {nothing}"
    );
    let (code, _) = hub
        .post("/api/v1/service-versions/dns/1.5.0/enable", &json!({}))
        .await?;
    assert_eq!(code, 200);
    let (code, answer) = ui.post("/ui/services/dns/upgrade", &target).await?;
    assert_eq!(code, 202, "{answer}");
    let upgrade = ui.appliance.notify().await?.params.task;
    assert_eq!(upgrade.job_document.task_type(), TaskType::UpgradeService);
    downloads(&hub, &upgrade, &file_of("dns 1.5.0")).await?;
    succeed(&mut ui.appliance, &task_id(&answer), json!({})).await?;
    let (_, list) = ui.get("/ui/appliances").await?;
    assert_eq!(list["items"][0]["services"][0]["version"], "1.5.0");
    assert_eq!(list["items"][0]["cpu"]["requested"], 2.0);
    let (_, versions) = hub
        .get("/api/v1/service-versions?serviceCode=dns&order=desc")
        .await?;
    assert_eq!(
        (&versions["total"], &versions["items"][0]["version"]),
        (&json!(2), &json!("1.5.0"))
    );
    hub.stop().await;
    Ok(())
}
