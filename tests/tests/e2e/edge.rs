//! Appliances through the device edge, over TLS with their tokens: jobs
//! work, presence is recorded, and an appliance cannot act for another.

use anyhow::Context;
use hub::config::ServeArgs;
use hub::model::ApplianceStatus;
use protocol::{ExecutionStatus, MessageKind, ReplyCode};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet};
use serde_json::json;
use tests::appliance::{tls_options, Identity};
use tests::{wait_until, within, HubOptions, TestAppliance, TestHub};

async fn status_of(hub: &TestHub, identity: &Identity) -> anyhow::Result<ApplianceStatus> {
    let credentials = hub
        .hub()
        .store()
        .appliance_credentials(identity.appliance_id)
        .await?;
    Ok(credentials.expect("provisioned appliance").status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_over_tls_completes_a_job_and_its_presence_is_recorded() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let identity = hub.provision(1).await?.remove(0);
    assert_eq!(status_of(&hub, &identity).await?, ApplianceStatus::Offline);

    let mut appliance = hub.connect_tls(&identity).await?;
    wait_until("the appliance online", || async {
        Ok(status_of(&hub, &identity).await? == ApplianceStatus::Online)
    })
    .await?;

    let job_id = hub
        .create_job(
            json!({"taskType": "collectMetrics"}),
            &[identity.appliance_id],
        )
        .await?;
    let task = appliance.notify().await?.params.task;
    let reply = appliance
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    assert_eq!(
        reply.data.map(|d| d.status),
        Some(ExecutionStatus::Succeeded)
    );
    assert_eq!(hub.job(&job_id).await?["counts"]["SUCCEEDED"], 1);

    drop(appliance);
    wait_until("the appliance offline", || async {
        Ok(status_of(&hub, &identity).await? == ApplianceStatus::Offline)
    })
    .await?;
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_bad_username_or_password() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let mut identity = hub.provision(1).await?.remove(0);
    identity.appliance_token = "0".repeat(64);
    let addr = hub.hub().mqtts_addr().expect("device edge");
    let (_client, mut eventloop) =
        AsyncClient::new(tls_options(&identity, addr, &hub.ca_pem()?)?, 8);
    let outcome = within("CONNACK", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => continue,
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(err) => return Err(err),
            }
        }
    })
    .await?;
    assert_eq!(outcome?, ConnectReturnCode::BadUserNamePassword);
    assert_eq!(status_of(&hub, &identity).await?, ApplianceStatus::Offline);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_cannot_update_another_appliances_task() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let identities = hub.provision(2).await?;
    let mut victim = hub.connect_tls(&identities[0]).await?;
    let mut attacker = hub.connect_tls(&identities[1]).await?;
    let job_id = hub
        .create_job(
            json!({"taskType": "collectMetrics"}),
            &[identities[0].appliance_id],
        )
        .await?;
    let task = victim.notify().await?.params.task;

    // Publishing on the victim's update topic closes the attacker's
    // connection at the edge; the hub never sees the message.
    let forged = json!({"id": "x", "version": "1.0",
                        "params": {"taskId": task.task_id, "status": "SUCCEEDED"}});
    let victim_topic = protocol::Topic::new(
        protocol::ProductKey::default(),
        identities[0].appliance_id,
        MessageKind::JobUpdate,
    );
    attacker
        .publish_to(&victim_topic.to_string(), serde_json::to_vec(&forged)?)
        .await?;
    attacker.closed().await?;

    // The execution is untouched.
    let current = victim.get(task.task_id.as_str()).await?;
    let Some(protocol::message::GetReplyData::One {
        task: Some(current),
    }) = current.data
    else {
        panic!("expected the task");
    };
    assert_eq!(current.status, ExecutionStatus::Sent);
    assert_eq!(current.version_number, task.version_number);
    assert_eq!(hub.job(&job_id).await?["counts"]["SUCCEEDED"], 0);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_released_while_offline_comes_through_next_on_reconnect() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let identity = hub.provision(1).await?.remove(0);
    let appliance = hub.connect_tls(&identity).await?;
    wait_until("the appliance online", || async {
        Ok(status_of(&hub, &identity).await? == ApplianceStatus::Online)
    })
    .await?;
    drop(appliance);
    wait_until("the appliance offline", || async {
        Ok(status_of(&hub, &identity).await? == ApplianceStatus::Offline)
    })
    .await?;

    // Released while nobody listens: the edge keeps nothing for it.
    let job_id = hub
        .create_job(
            json!({"taskType": "collectMetrics"}),
            &[identity.appliance_id],
        )
        .await?;
    wait_until("the notify sent", || async {
        Ok(hub.job(&job_id).await?["counts"]["SENT"] == 1)
    })
    .await?;

    let mut appliance = hub.connect_tls(&identity).await?;
    let next = appliance.get("$next").await?;
    let Some(protocol::message::GetReplyData::One { task: Some(task) }) = next.data else {
        panic!("expected the task through $next, got {next:?}");
    };
    let reply = appliance
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    assert_eq!(hub.job(&job_id).await?["counts"]["SUCCEEDED"], 1);
    hub.stop().await;
    Ok(())
}

/// The operator's own certificate files replace the dev ones: the hub
/// creates no dev certificate, registration hands out the operator's CA,
/// an appliance trusting it connects and one trusting another CA cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_certificates_replace_the_dev_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The operator's PKI (made with the dev tooling, in a directory of its own).
    let operator = broker::certs::ensure_dev_certs(&dir.path().join("pki"), &[])?;
    let options = HubOptions {
        args: ServeArgs {
            tls_cert: Some(operator.server_cert.clone()),
            tls_key: Some(operator.server_key.clone()),
            registration_ca: Some(operator.ca_cert.clone()),
            ..ServeArgs::default()
        },
        ..HubOptions::default()
    };
    let data = dir.path().join("data");
    let hub = TestHub::start_with(&data, options).await?;
    assert!(!data.join("certs").exists(), "no dev certificate created");

    let customer = hub.customer("ACME").await?;
    let registered = crate::rest_flow::register(&hub, &customer).await?;
    let operator_ca = std::fs::read_to_string(&operator.ca_cert)?;
    assert_eq!(registered["caCert"].as_str(), Some(operator_ca.as_str()));
    let mut appliance = crate::rest_flow::connect(&hub, &registered).await?;
    let reply = appliance.get("$next").await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);

    let other = broker::certs::ensure_dev_certs(&dir.path().join("other"), &[])?;
    let identity: Identity = serde_json::from_value(registered)?;
    let addr = hub.hub().mqtts_addr().context("device edge")?;
    let other_ca = std::fs::read(&other.ca_cert)?;
    let untrusted = TestAppliance::connect_tls(&identity, addr, &other_ca).await;
    assert!(
        untrusted.is_err(),
        "an appliance trusting another CA must not connect"
    );
    hub.stop().await;
    Ok(())
}
