//! upgradeAppliance end to end (topics.md 7.3): the task succeeds only once
//! the appliance has rebooted, reconnected and reports targetVersion; one
//! that comes back on its old version ends FAILED "rolled back", is marked
//! rolled back and is not retried.

use protocol::message::GetReplyData;
use protocol::{ExecutionStatus, ReplyCode};
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::TestCustomer;
use tests::{TestAppliance, TestHub};

use crate::rest_flow::{connect, register};

/// Publishes firmware `version` (display version = `version` without its
/// last ".0") with an uploaded image.
pub async fn publish_firmware(hub: &TestHub, version: &str) -> anyhow::Result<()> {
    let image = format!("firmware {version}\n").repeat(512).into_bytes();
    let sha = hub
        .upload_artifact(&format!("va-{version}.img"), image)
        .await?;
    let body = json!({"version": version, "displayVersion": version.trim_end_matches(".0"),
        "firmwarePath": format!("fw/{version}.img"), "firmwareSha256": sha});
    let (status, answer) = hub.post("/api/v1/appliance-versions", &body).await?;
    anyhow::ensure!(status == 201, "publishing answered {status}: {answer}");
    Ok(())
}

/// The customer's appliance as `/ui/appliances` lists it.
async fn listed(hub: &TestHub, customer: &TestCustomer) -> anyhow::Result<Value> {
    let (status, list) = hub
        .call(Method::GET, "/ui/appliances", Some(&customer.api_key), None)
        .await?;
    anyhow::ensure!(status == 200, "{list}");
    Ok(list["items"][0].clone())
}

/// Starts an upgrade of the registered appliance through `/ui/`, runs it up
/// to the reboot, reconnects, and reports `status` on `version` after
/// finding the task IN_PROGRESS with `$next`; returns the reply.
async fn upgrade_and_come_back(
    hub: &TestHub,
    customer: &TestCustomer,
    registered: &Value,
    status: &str,
    version: &str,
) -> anyhow::Result<protocol::message::Reply<protocol::message::UpdateReplyData>> {
    let id = registered["applianceId"].as_str().unwrap_or_default();
    let mut appliance: TestAppliance = connect(hub, registered).await?;
    let path = format!("/ui/appliances/{id}/upgrade/");
    let (code, answer) = hub
        .call(Method::POST, &path, Some(&customer.api_key), None)
        .await?;
    anyhow::ensure!(code == 202, "{answer}");
    let task = appliance.notify().await?.params.task;
    let rebooting = json!({"taskId": task.task_id, "status": "IN_PROGRESS", "progress": 90,
        "statusDetails": {"step": "rebooting"}});
    assert_eq!(appliance.update(rebooting).await?.code, ReplyCode::Ok);
    drop(appliance);

    let mut appliance = connect(hub, registered).await?;
    let next = appliance.get("$next").await?;
    let Some(GetReplyData::One { task: Some(found) }) = next.data else {
        anyhow::bail!("no task after the reboot: {:?}", next.data);
    };
    assert_eq!(
        (&found.task_id, found.status),
        (&task.task_id, ExecutionStatus::InProgress)
    );
    let bare = json!({"taskId": task.task_id, "status": "SUCCEEDED"});
    let refused = appliance.update(bare).await?;
    assert_eq!(refused.code, ReplyCode::BadRequest, "no result.version");
    let report = json!({"taskId": task.task_id, "status": status,
        "result": {"version": version}, "clientToken": "after-reboot"});
    let reply = appliance.update(report.clone()).await?;
    let again = appliance.update(report).await?;
    assert_eq!(again.data, reply.data, "a repeat gets the same reply");
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_succeeds_after_the_reconnect_on_its_target() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_firmware(&hub, "3.2.0.0").await?;
    let customer = hub.customer("ACME").await?;
    let registered = register(&hub, &customer).await?;
    let reply = upgrade_and_come_back(&hub, &customer, &registered, "SUCCEEDED", "3.2").await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    assert_eq!(
        reply.data.map(|d| d.status),
        Some(ExecutionStatus::Succeeded)
    );
    let appliance = listed(&hub, &customer).await?;
    assert_eq!(
        (
            &appliance["version"],
            &appliance["upgradeStatus"]["rolledBack"]
        ),
        (&json!("3.2"), &json!(false))
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_back_on_its_old_version_rolled_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_firmware(&hub, "3.2.0.0").await?;
    let customer = hub.customer("ACME").await?;
    let registered = register(&hub, &customer).await?;
    let reply = upgrade_and_come_back(&hub, &customer, &registered, "SUCCEEDED", "3.1.4").await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    assert_eq!(reply.data.map(|d| d.status), Some(ExecutionStatus::Failed));
    let appliance = listed(&hub, &customer).await?;
    assert_eq!(
        (
            &appliance["version"],
            &appliance["upgradeStatus"]["rolledBack"]
        ),
        (&json!("3.1.4"), &json!(true))
    );
    let open = appliance["upgradeStatus"].clone();
    assert_eq!(open["latestVersion"], "3.2", "{open}");
    hub.stop().await;
    Ok(())
}
