//! One appliance over the embedded broker: a notify becomes IN_PROGRESS
//! then SUCCEEDED, answered by the test hub; a redelivered notify gets the
//! same final report; an unanswered update is repeated unchanged.

use std::sync::atomic::Ordering;

use device_sim::appliance::Behaviour;
use device_sim::stats::Counter;
use protocol::{JobDocument, ReportedStatus};

use crate::support::{embedded_broker, file_server, fleet, task, TestHub, Uplink};

fn quiet() -> Behaviour {
    Behaviour {
        metrics_interval_ms: None,
        work_ms: 10,
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_to_succeeded_and_redelivery() -> anyhow::Result<()> {
    let broker = embedded_broker().await?;
    let mut hub = TestHub::connect(&broker).await?;
    let (files, file_log) = file_server(vec![0; 16]).await?;
    let fleet = fleet(&broker, &files, 1, quiet(), 7)?;

    // Every (re)connect starts with get $next.
    let Uplink::Get(topic, get) = hub.next().await? else {
        anyhow::bail!("the appliance did not start with get $next");
    };
    assert_eq!(get.params.task_id, protocol::message::GetTarget::Next);
    hub.reply_get(&topic, &get.id, None).await?;

    let collect = task(
        JobDocument::CollectLog {
            start: 0,
            end: 64_000,
            upload_path: "/upload/log-1".into(),
        },
        None,
    );
    hub.notify(&topic, &collect).await?;
    let (_, started) = hub.next_update(None).await?;
    assert_eq!(started.params.status, ReportedStatus::InProgress);
    assert_eq!(started.params.task_id, collect.task_id);
    hub.accept(&topic, &started, 3).await?;
    let (_, done) = hub.next_update(None).await?;
    assert_eq!(done.params.status, ReportedStatus::Succeeded);
    assert_ne!(done.params.client_token, started.params.client_token);
    hub.accept(&topic, &done, 4).await?;
    assert_eq!(file_log.uploads.load(Ordering::SeqCst), 1);

    // The broker or the hub delivers the same task again: it is not run
    // twice; the recorded final report goes out again, same clientToken.
    hub.notify(&topic, &collect).await?;
    let (_, again) = hub.next_update(None).await?;
    assert_eq!(again.params, done.params);
    hub.accept(&topic, &again, 4).await?;
    assert_eq!(file_log.uploads.load(Ordering::SeqCst), 1);

    let stats = fleet.stop().await;
    assert_eq!(stats.get(Counter::TasksStarted), 1);
    assert_eq!(stats.get(Counter::Duplicates), 1);
    assert!(stats.get(Counter::Succeeded) >= 1);
    assert_eq!(
        stats.task_percentiles().count,
        stats.get(Counter::Succeeded)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_update_is_repeated_with_the_same_token() -> anyhow::Result<()> {
    let broker = embedded_broker().await?;
    let mut hub = TestHub::connect(&broker).await?;
    let behaviour = Behaviour {
        reply_timeout_ms: 200,
        ..quiet()
    };
    let fleet = fleet(&broker, "http://127.0.0.1:9", 1, behaviour, 7)?;
    let Uplink::Get(topic, get) = hub.next().await? else {
        anyhow::bail!("the appliance did not start with get $next");
    };
    hub.reply_get(&topic, &get.id, None).await?;
    hub.notify(&topic, &task(JobDocument::CollectMetrics {}, None))
        .await?;
    let (_, first) = hub.next_update(None).await?;
    // No reply: the same request comes again, byte for byte.
    let (_, repeat) = hub.next_update(None).await?;
    assert_eq!((&repeat.id, &repeat.params), (&first.id, &first.params));
    hub.accept(&topic, &repeat, 3).await?;
    let (_, done) = hub.next_update(None).await?;
    assert_eq!(done.params.status, ReportedStatus::Succeeded);
    hub.accept(&topic, &done, 4).await?;
    let stats = fleet.stop().await;
    assert!(stats.get(Counter::Retries) >= 1);
    Ok(())
}
