//! Jobs over MQTT end to end: notify, progress, results, `$next` for late
//! appliances, version and token rules, bad input, and a restart.

use futures::future::try_join_all;
use protocol::message::GetReplyData;
use protocol::{ApplianceId, ExecutionStatus, MessageKind, ReplyCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tests::{within, TestAppliance, TestHub};

fn collect_metrics() -> Value {
    json!({"taskType": "collectMetrics"})
}

/// Runs one task to SUCCEEDED with a progress report in between.
async fn complete(appliance: &mut TestAppliance) -> anyhow::Result<()> {
    let notify = appliance.notify().await?;
    let task = notify.params.task;
    assert_eq!(task.status, ExecutionStatus::Sent);
    let task_id = task.task_id.to_string();
    let reply = appliance
        .update(
            json!({"taskId": task_id, "status": "IN_PROGRESS", "progress": 40,
                       "statusDetails": {"step": "collecting"}}),
        )
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    let reply = appliance
        .update(json!({"taskId": task_id, "status": "SUCCEEDED", "result": {"ok": true}}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    let data = reply.data.expect("accepted update carries data");
    assert_eq!(data.status, ExecutionStatus::Succeeded);
    assert_eq!(data.version_number, task.version_number + 2);
    Ok(())
}

async fn fleet(hub: &TestHub, count: usize) -> anyhow::Result<Vec<TestAppliance>> {
    let identities = hub.provision(count).await?;
    try_join_all(
        identities
            .iter()
            .map(|i| hub.connect_internal(i.appliance_id)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_to_fifty_appliances_completes_and_the_counts_say_so() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let mut appliances = fleet(&hub, 50).await?;
    let ids: Vec<ApplianceId> = appliances.iter().map(|a| a.id).collect();
    let job_id = hub.create_job(collect_metrics(), &ids).await?;

    try_join_all(appliances.iter_mut().map(complete)).await?;

    let job = hub.job(&job_id).await?;
    assert_eq!(job["counts"]["SUCCEEDED"], 50, "{job}");
    assert_eq!(job["counts"]["IN_PROGRESS"], 0, "{job}");
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["taskType"], "collectMetrics");
    hub.stop().await;
    Ok(())
}

/// Watches every notify the hub publishes, as a second internal client.
async fn notify_watcher(
    hub: &TestHub,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<String>> {
    let addr = hub.hub().broker_addr().expect("embedded broker");
    let creds = hub.hub().broker_credentials().expect("embedded broker");
    let mut options = MqttOptions::new("test-notify-watcher", addr.ip().to_string(), addr.port());
    options.set_credentials(&creds.username, &creds.password);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe("/sys/+/+/thing/job/notify", QoS::AtLeastOnce)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) if tx.send(p.topic.clone()).is_err() => return,
                _ => {}
            }
        }
    });
    within("watcher SUBACK", ready_rx).await??;
    Ok(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_that_was_offline_gets_its_task_through_next() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let id = hub.provision(1).await?[0].appliance_id;
    let mut notifies = notify_watcher(&hub).await?;
    let job_id = hub.create_job(collect_metrics(), &[id]).await?;
    // The notify went out while the appliance was offline.
    let topic = within("notify", notifies.recv())
        .await?
        .expect("watcher alive");
    assert!(topic.contains(&id.to_string()));

    let mut appliance = hub.connect_internal(id).await?;
    let reply = appliance.get("$next").await?;
    assert_eq!(reply.code, ReplyCode::Ok);
    let Some(GetReplyData::One { task: Some(task) }) = reply.data else {
        panic!("expected a task in $next, got {:?}", reply.data);
    };
    assert_eq!(task.status, ExecutionStatus::Sent);
    let task_id = task.task_id.to_string();

    let list = appliance.get("$list").await?;
    let Some(GetReplyData::List { tasks }) = list.data else {
        panic!("expected a list, got {:?}", list.data);
    };
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_id, task.task_id);

    let by_id = appliance.get(&task_id).await?;
    assert!(matches!(
        by_id.data,
        Some(GetReplyData::One { task: Some(_) })
    ));

    let done = appliance
        .update(json!({"taskId": task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(done.code, ReplyCode::Ok);
    let empty = appliance.get("$next").await?;
    assert_eq!(empty.code, ReplyCode::Ok);
    assert!(
        matches!(empty.data, Some(GetReplyData::One { task: None })),
        "{:?}",
        empty.data
    );
    assert_eq!(hub.job(&job_id).await?["counts"]["SUCCEEDED"], 1);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_tokens_and_terminal_states_are_enforced() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let mut appliance = fleet(&hub, 1).await?.remove(0);
    let job_id = hub.create_job(collect_metrics(), &[appliance.id]).await?;
    let task = appliance.notify().await?.params.task;
    let (task_id, v) = (task.task_id.to_string(), task.version_number);

    // The same clientToken twice makes one transition and the same reply.
    let first = appliance
        .update(
            json!({"taskId": task_id, "status": "IN_PROGRESS", "progress": 10,
                       "expectedVersion": v, "clientToken": "tok-1"}),
        )
        .await?;
    let again = appliance
        .update(
            json!({"taskId": task_id, "status": "IN_PROGRESS", "progress": 10,
                       "expectedVersion": v, "clientToken": "tok-1"}),
        )
        .await?;
    assert_eq!(first.code, ReplyCode::Ok);
    assert_eq!(again.code, ReplyCode::Ok);
    assert_eq!(first.data, again.data);
    assert_eq!(first.data.as_ref().map(|d| d.version_number), Some(v + 1));

    // A stale expectedVersion gets 409 and the current state.
    let stale = appliance
        .update(
            json!({"taskId": task_id, "status": "IN_PROGRESS", "progress": 20,
                       "expectedVersion": v}),
        )
        .await?;
    assert_eq!(stale.code, ReplyCode::Conflict);
    assert!(
        stale.message.contains("version mismatch"),
        "{}",
        stale.message
    );
    let current = stale.data.expect("409 carries the current state");
    assert_eq!(
        (current.status, current.version_number),
        (ExecutionStatus::InProgress, v + 1)
    );

    let done = appliance
        .update(json!({"taskId": task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(done.code, ReplyCode::Ok);
    let late = appliance
        .update(json!({"taskId": task_id, "status": "IN_PROGRESS", "progress": 99}))
        .await?;
    assert_eq!(late.code, ReplyCode::Conflict);
    assert!(late.message.contains("terminal state"), "{}", late.message);
    assert_eq!(
        late.data.map(|d| d.status),
        Some(ExecutionStatus::Succeeded)
    );

    let (status, page) = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions"))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["versionNumber"], v + 2, "{page}");
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_changes_nothing_and_others_are_served() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let mut appliances = fleet(&hub, 2).await?;
    let ids: Vec<ApplianceId> = appliances.iter().map(|a| a.id).collect();
    let job_id = hub.create_job(collect_metrics(), &ids).await?;
    let mut other = appliances.pop().expect("two appliances");
    let mut bad = appliances.pop().expect("two appliances");
    let bad_task = bad.notify().await?.params.task;
    let other_task = other.notify().await?.params.task;
    let before = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions"))
        .await?;

    // Malformed JSON: 400 (the id cannot be read, so it is echoed empty).
    bad.publish_raw(MessageKind::JobUpdate, b"{not json".to_vec())
        .await?;
    let reply = bad
        .reply(
            MessageKind::JobUpdateReply,
            "",
            protocol::message::decode_update_reply,
        )
        .await?;
    assert_eq!(reply.code, ReplyCode::BadRequest);
    // Valid JSON, invalid request: 400 with the id echoed.
    let reply = bad
        .update(json!({"taskId": bad_task.task_id, "status": "IN_PROGRESS", "progress": 300}))
        .await?;
    assert_eq!(reply.code, ReplyCode::BadRequest);
    assert!(reply.message.contains("progress"), "{}", reply.message);
    // Unknown task, and another appliance's task: 404, indistinguishable.
    let unknown = bad
        .update(json!({"taskId": "no-such-task", "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(unknown.code, ReplyCode::NotFound);
    let foreign = bad
        .update(json!({"taskId": other_task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(foreign.code, ReplyCode::NotFound);
    assert_eq!(foreign.message, unknown.message);
    let foreign_get = bad.get(other_task.task_id.as_str()).await?;
    assert_eq!(foreign_get.code, ReplyCode::NotFound);

    let after = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions"))
        .await?;
    assert_eq!(before, after, "refused requests changed nothing");

    // The other appliance is served as usual.
    let reply = other
        .update(json!({"taskId": other_task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok);
    let job = hub.job(&job_id).await?;
    assert_eq!(job["counts"]["SUCCEEDED"], 1);
    assert_eq!(job["counts"]["SENT"], 1);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_shows_the_job_as_it_was() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let mut appliances = fleet(&hub, 3).await?;
    let ids: Vec<ApplianceId> = appliances.iter().map(|a| a.id).collect();
    let job_id = hub.create_job(collect_metrics(), &ids).await?;
    try_join_all(appliances.iter_mut().take(2).map(complete)).await?;
    let before = hub.job(&job_id).await?;
    let (_, executions_before) = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions"))
        .await?;
    drop(appliances);
    hub.stop().await;

    let hub = TestHub::start(dir.path()).await?;
    let after = hub.job(&job_id).await?;
    assert_eq!(before, after);
    assert_eq!(after["counts"]["SUCCEEDED"], 2);
    assert_eq!(after["counts"]["SENT"], 1);
    let (_, executions_after) = hub
        .get(&format!("/api/v1/jobs/{job_id}/executions"))
        .await?;
    assert_eq!(executions_before, executions_after);

    // The third appliance, back after the restart, still gets its task.
    let mut late = hub.connect_internal(ids[2]).await?;
    let next = late.get("$next").await?;
    let Some(GetReplyData::One { task: Some(task) }) = next.data else {
        panic!("expected the pending task, got {:?}", next.data);
    };
    assert_eq!(task.status, ExecutionStatus::Sent);
    let done = late
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(done.code, ReplyCode::Ok, "{}", done.message);
    let job = hub.job(&job_id).await?;
    assert_eq!(job["counts"]["SUCCEEDED"], 3);
    assert_eq!(job["status"], "COMPLETED");
    hub.stop().await;
    Ok(())
}
