//! Liveness and credentials of the fleet end to end, over TLS through the
//! device edge, on a hub with a manual clock: heartbeats and their
//! replies, OFFLINE after two missed heartbeats and back on the next
//! reply, clock skew, and token renewal with both tokens accepted until
//! the appliance confirmed the new one.

use protocol::message::Notify;
use protocol::{ApplianceId, JobDocument, ReplyCode, TaskType};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet};
use serde_json::{json, Value};
use tests::appliance::{tls_options, Identity};
use tests::{wait_until, within, TestAppliance, TestHub};

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

async fn liveness_when(
    hub: &TestHub,
    id: ApplianceId,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(what, || async { Ok(check(&hub.liveness(id).await?)) }).await?;
    hub.liveness(id).await
}

/// Answers a heartbeat as topics.md 5.3 says, with the appliance's clock.
async fn answer(appliance: &mut TestAppliance, server_time: i64, clock: i64) -> anyhow::Result<()> {
    let reply = appliance
        .update(json!({"taskId": appliance.id, "status": "SUCCEEDED",
            "result": {"version": "3.1.4", "clock": clock, "services": []},
            "clientToken": format!("hb-{server_time}")}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    let data = reply.data.expect("data");
    assert_eq!(data.task_id.as_str(), appliance.id.to_string());
    assert_eq!(
        (data.status.as_str(), data.version_number),
        ("SUCCEEDED", 2)
    );
    Ok(())
}

/// The heartbeat's serverTime, checking the notify's form.
fn server_time(notify: &Notify, id: ApplianceId) -> i64 {
    let task = &notify.params.task;
    assert_eq!(
        task.task_id.as_str(),
        id.to_string(),
        "taskId = applianceId"
    );
    assert_eq!((task.execution_number, task.version_number), (1, 1));
    let JobDocument::Heartbeat { server_time } = task.job_document else {
        panic!("expected a heartbeat, got {:?}", task.job_document);
    };
    assert_eq!(task.queued_at, server_time);
    server_time
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_appliances_online_and_two_missed_make_them_offline() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start_manual(dir.path(), T0).await?;
    let identities = hub.provision(2).await?;
    let mut alive = hub.connect_tls(&identities[0]).await?;
    let mut quiet = hub.connect_tls(&identities[1]).await?;
    for appliance in [&alive, &quiet] {
        liveness_when(&hub, appliance.id, "online", |l| l["edgeConnected"] == true).await?;
    }
    for round in 1..=3 {
        hub.advance(5 * MINUTE)?;
        let now = T0 + round * 5 * MINUTE;
        let notify = alive.heartbeat().await?;
        assert_eq!(server_time(&notify, alive.id), now);
        answer(&mut alive, now, now + 50).await?;
        let ignored = quiet.heartbeat().await?;
        assert_eq!(server_time(&ignored, quiet.id), now);
        let expected = if round < 3 { "ONLINE" } else { "OFFLINE" };
        let seen = liveness_when(&hub, quiet.id, "the round recorded", |l| {
            l["heartbeatsUnanswered"] == round
        })
        .await?;
        assert_eq!(seen["status"], expected, "round {round}: {seen}");
        let alive_now = hub.liveness(alive.id).await?;
        assert_eq!(
            (alive_now["status"].clone(), alive_now["version"].clone()),
            (json!("ONLINE"), json!("3.1.4"))
        );
        assert_eq!(alive_now["clockSkewed"], false);
    }
    // Still connected, still sent heartbeats: its next reply is enough.
    answer(&mut quiet, T0 + 15 * MINUTE, T0 + 15 * MINUTE).await?;
    let back = hub.liveness(quiet.id).await?;
    assert_eq!(
        (back["status"].clone(), back["heartbeatsUnanswered"].clone()),
        (json!("ONLINE"), json!(0))
    );

    // A clock ten minutes behind is flagged.
    answer(&mut alive, T0 + 15 * MINUTE, T0 + 5 * MINUTE).await?;
    let skewed = hub.liveness(alive.id).await?;
    assert_eq!(
        (skewed["clockSkewed"].clone(), skewed["clockSkewMs"].clone()),
        (json!(true), json!(-10 * MINUTE))
    );

    // Heartbeat updates that are not SUCCEEDED with a HeartbeatResult are 400.
    for params in [
        json!({"taskId": alive.id, "status": "FAILED", "result": {"version": "1", "clock": 1}}),
        json!({"taskId": alive.id, "status": "SUCCEEDED"}),
        json!({"taskId": alive.id, "status": "SUCCEEDED", "result": {"version": 3}}),
    ] {
        let reply = alive.update(params.clone()).await?;
        assert_eq!(
            reply.code,
            ReplyCode::BadRequest,
            "{params}: {}",
            reply.message
        );
    }
    // The heartbeat is no task to get.
    let got = alive.get(&alive.id.to_string()).await?;
    assert_eq!(got.code, ReplyCode::NotFound);

    // An edge disconnect is OFFLINE at once.
    let id = quiet.id;
    drop(quiet);
    liveness_when(&hub, id, "offline", |l| {
        l["status"] == "OFFLINE" && l["edgeConnected"] == false
    })
    .await?;
    hub.stop().await;
    Ok(())
}

/// What the device edge answers a CONNECT with this identity.
async fn connack(hub: &TestHub, identity: &Identity) -> anyhow::Result<ConnectReturnCode> {
    let addr = hub.hub().mqtts_addr().expect("device edge");
    let (_client, mut eventloop) =
        AsyncClient::new(tls_options(identity, addr, &hub.ca_pem()?)?, 8);
    within("CONNACK", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => continue,
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(err) => return Err(anyhow::anyhow!(err)),
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_renewed_before_it_expires_and_both_work_until_confirmed() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start_manual(dir.path(), T0).await?;
    let old = hub.provision(1).await?.remove(0);
    let id = old.appliance_id;
    let mut appliance = hub.connect_tls(&old).await?;
    let fresh = hub.liveness(id).await?;
    assert_eq!(fresh["tokenExpiresAt"], T0 + 60 * DAY);

    // Ten days before expiry the renewal goes out.
    hub.advance(50 * DAY)?;
    let renewal = appliance.notify().await?.params.task;
    assert_eq!(
        renewal.job_document.task_type(),
        TaskType::UpdateApplianceConfig
    );
    let JobDocument::UpdateApplianceConfig { body } = &renewal.job_document else {
        panic!("expected updateApplianceConfig");
    };
    let new = Identity {
        appliance_id: id,
        appliance_token: body["applianceToken"]
            .as_str()
            .expect("a new token")
            .to_owned(),
    };
    assert_ne!(new.appliance_token, old.appliance_token);
    let pending = hub.liveness(id).await?;
    assert_eq!(pending["tokenRenewalTask"], json!(renewal.task_id));
    assert_eq!(pending["nextTokenExpiresAt"], T0 + 110 * DAY);

    // Both tokens open the appliance until it confirms.
    drop(appliance);
    assert_eq!(connack(&hub, &new).await?, ConnectReturnCode::Success);
    assert_eq!(connack(&hub, &old).await?, ConnectReturnCode::Success);
    let mut appliance = hub.connect_tls(&new).await?;
    let done = appliance
        .update(json!({"taskId": renewal.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(done.code, ReplyCode::Ok, "{}", done.message);

    hub.advance(MINUTE)?;
    let renewed = liveness_when(&hub, id, "the renewal settled", |l| {
        l["tokenRenewalTask"].is_null()
    })
    .await?;
    assert_eq!(renewed["tokenExpiresAt"], T0 + 110 * DAY);
    drop(appliance);
    assert_eq!(
        connack(&hub, &old).await?,
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(connack(&hub, &new).await?, ConnectReturnCode::Success);
    hub.stop().await;
    Ok(())
}
