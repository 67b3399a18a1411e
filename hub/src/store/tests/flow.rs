//! Jobs and device updates end to end through the store.

use protocol::message::UpdateReplyData;
use protocol::{ExecutionStatus as S, ReportedStatus as R};

use super::*;
use crate::engine::RejectionKind;
use crate::model::JobStatus;
use crate::store::{StoreError, UpdateResult};

#[tokio::test]
async fn job_release_updates_and_counters() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 3).await;
    let job = fx.job(&appliances).await;
    assert_eq!(fx.counts(job).await, counts(&[(S::Queued, 3)]));

    let tasks = fx.release(job, 2).await;
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        fx.counts(job).await,
        counts(&[(S::Queued, 1), (S::Sent, 2)])
    );
    let pending = within(fx.store.pending_outbox(10)).await.expect("outbox");
    assert_eq!(
        pending.len(),
        2,
        "notifies are in the outbox until acknowledged"
    );

    let mut ids = tasks.iter();
    let (&a1, t1) = ids.next().expect("first");
    let (&a2, t2) = ids.next().expect("second");
    let store = &fx.store;
    let r1 = within(store.record_update(a1, update(t1, R::InProgress), T0 + 20)).await;
    assert!(
        matches!(
            r1,
            Ok(UpdateResult::Accepted(UpdateReplyData {
                status: S::InProgress,
                version_number: 3,
                ..
            }))
        ),
        "{r1:?}"
    );
    let r2 = within(store.record_update(a2, update(t2, R::Failed), T0 + 20)).await;
    assert!(matches!(r2, Ok(UpdateResult::Accepted(_))), "{r2:?}");
    let r3 = within(store.record_update(a1, update(t1, R::Succeeded), T0 + 30)).await;
    assert!(
        matches!(
            r3,
            Ok(UpdateResult::Accepted(UpdateReplyData {
                status: S::Succeeded,
                version_number: 4,
                ..
            }))
        ),
        "{r3:?}"
    );
    let summary = within(store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(
        summary.counts,
        counts(&[(S::Queued, 1), (S::Succeeded, 1), (S::Failed, 1)])
    );
    assert_eq!(summary.status, JobStatus::InProgress);
    assert_eq!(summary.updated_at, T0 + 30);

    let last = fx.release(job, 10).await;
    let (&a3, t3) = last.iter().next().expect("the third");
    assert!(!tasks.contains_key(&a3), "released once");
    let r4 = within(store.record_update(a3, update(t3, R::Rejected), T0 + 40)).await;
    assert!(matches!(r4, Ok(UpdateResult::Accepted(_))), "{r4:?}");
    let summary = within(store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(
        summary.status,
        JobStatus::Completed,
        "every execution is terminal"
    );
    assert_eq!(summary.counts.open(), 0);
    assert!(within(store.release(Some(job), 10, T0 + 50))
        .await
        .expect("release")
        .is_empty());
}

#[tokio::test]
async fn executions_are_listed_in_pages_counted_by_the_job() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 3).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 3).await;
    let store = &fx.store;
    let (&a1, t1) = tasks.iter().next().expect("one");
    within(store.record_update(a1, update(t1, R::InProgress), T0 + 20))
        .await
        .expect("update");
    within(store.record_update(a1, update(t1, R::Succeeded), T0 + 30))
        .await
        .expect("update");

    let page = within(store.list_executions(job, Some(S::Succeeded), 0, 10)).await;
    let page = page.expect("list").expect("job");
    assert_eq!((page.total, page.items.len()), (1, 1));
    assert_eq!(page.items[0].progress, Some(100));
    assert_eq!(page.items[0].started_at, Some(T0 + 20));
    let all = within(store.list_executions(job, None, 1, 10))
        .await
        .expect("list")
        .expect("job");
    assert_eq!((all.total, all.items.len()), (3, 2), "offset 1 of 3");
    let mut sorted = appliances.clone();
    sorted.sort();
    let order: Vec<_> = within(store.list_executions(job, None, 0, 10))
        .await
        .expect("list")
        .expect("job")
        .items
        .iter()
        .map(|e| e.appliance_id)
        .collect();
    assert_eq!(order, sorted, "by appliance, stable across pages");
    let none = within(store.list_executions(JobId::new_random(), None, 0, 10)).await;
    assert_eq!(none.expect("list"), None);
}

#[tokio::test]
async fn device_reads_show_their_own_tasks_and_next_only_released_ones() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 2).await;
    let (a, b) = (appliances[0], appliances[1]);
    let first = fx.job(&[a]).await;
    let second = fx.job(&[a, b]).await;
    let store = &fx.store;
    assert_eq!(
        within(store.next_task(a)).await.expect("next"),
        None,
        "QUEUED is not shown"
    );
    let queued = within(store.list_tasks(a)).await.expect("list");
    assert_eq!(
        queued.len(),
        2,
        "$list shows QUEUED attempts, for information"
    );
    assert!(queued.iter().all(|t| t.status == ExecutionStatus::Queued));
    let queued_id = queued[0].task_id.clone();
    let seen = within(store.get_task(a, &queued_id)).await.expect("get");
    assert_eq!(seen.map(|t| t.status), Some(ExecutionStatus::Queued));
    assert_eq!(
        within(store.get_task(b, &queued_id)).await.expect("get"),
        None,
        "another appliance's task"
    );

    let t1 = fx.release(first, 10).await[&a].clone();
    let t2 = fx.release(second, 10).await[&a].clone();
    let next = within(store.next_task(a))
        .await
        .expect("next")
        .expect("a task");
    assert_eq!(next.task_id, t1, "oldest first");
    assert_eq!(next.job_document, JobDocument::CollectMetrics {});
    let list = within(store.list_tasks(a)).await.expect("list");
    assert_eq!(
        list.iter().map(|t| &t.task_id).collect::<Vec<_>>(),
        [&t1, &t2]
    );

    within(store.record_update(a, update(&t1, R::Succeeded), T0 + 20))
        .await
        .expect("update");
    let next = within(store.next_task(a))
        .await
        .expect("next")
        .expect("a task");
    assert_eq!(next.task_id, t2);
    let done = within(store.get_task(a, &t1))
        .await
        .expect("get")
        .expect("own task");
    assert_eq!(
        done.status,
        S::Succeeded,
        "terminal tasks can still be read by id"
    );
    assert_eq!(
        within(store.get_task(b, &t1)).await.expect("get"),
        None,
        "not b's"
    );
    let unknown: TaskId = "no-such-task".parse().expect("task id");
    assert_eq!(
        within(store.get_task(a, &unknown)).await.expect("get"),
        None
    );
}

#[tokio::test]
async fn rejections_duplicates_and_foreign_tasks_change_nothing() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 3).await;
    let (a, b) = (appliances[0], appliances[1]);
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 2).await;
    let queued = within(fx.store.list_executions(job, Some(S::Queued), 0, 1)).await;
    let queued = queued.expect("list").expect("job").items.remove(0);
    let ta = tasks[&a].clone();
    let store = &fx.store;

    let mut done = update(&ta, R::Succeeded);
    done.client_token = Some("tok-1".into());
    let first = within(store.record_update(a, done.clone(), T0 + 20))
        .await
        .expect("update");
    let UpdateResult::Accepted(reply) = first else {
        panic!("accepted: {first:?}")
    };

    let snapshot = || async {
        let page = store
            .list_executions(job, None, 0, 10)
            .await
            .expect("list")
            .expect("job");
        let summary = store.job_summary(job).await.expect("summary").expect("job");
        (page, summary)
    };
    let before = within(snapshot()).await;
    let stats_before = store.stats();

    let repeat = within(store.record_update(a, done, T0 + 30))
        .await
        .expect("repeat");
    assert_eq!(repeat, UpdateResult::Duplicate(reply));

    let rejected = |kind| {
        move |result: UpdateResult| match result {
            UpdateResult::Rejected(rejection) => assert_eq!(rejection.kind, kind),
            other => panic!("expected {kind:?}, got {other:?}"),
        }
    };
    let terminal = within(store.record_update(a, update(&ta, R::Failed), T0 + 30)).await;
    rejected(RejectionKind::TerminalState)(terminal.expect("update"));
    let tb = tasks[&b].clone();
    let mut stale = update(&tb, R::InProgress);
    stale.expected_version = Some(1);
    let mismatch = within(store.record_update(b, stale, T0 + 30)).await;
    rejected(RejectionKind::VersionMismatch)(mismatch.expect("update"));
    let early = update(&queued.task_id, R::InProgress);
    let early = within(store.record_update(queued.appliance_id, early, T0 + 30)).await;
    rejected(RejectionKind::InvalidTransition)(early.expect("update"));

    let foreign = within(store.record_update(b, update(&ta, R::InProgress), T0 + 30)).await;
    assert_eq!(foreign.expect("update"), UpdateResult::NotFound);
    let unknown = update(&"nope".parse().expect("task id"), R::InProgress);
    let unknown = within(store.record_update(a, unknown, T0 + 30)).await;
    assert_eq!(unknown.expect("update"), UpdateResult::NotFound);

    assert_eq!(
        within(snapshot()).await,
        before,
        "rows and counters identical"
    );
    assert_eq!(store.stats().commands, stats_before.commands + 6);
}

#[tokio::test]
async fn cancel_and_force_cancel() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 4).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 3).await;
    let (&running, task) = tasks.iter().next().expect("one");
    let store = &fx.store;
    within(store.record_update(running, update(task, R::InProgress), T0 + 20))
        .await
        .expect("update");

    let canceled = within(store.cancel_job(job, false, T0 + 30))
        .await
        .expect("cancel");
    let canceled = canceled.expect("job exists");
    assert_eq!(
        canceled.len(),
        2,
        "a notify for each SENT one, none for the QUEUED one"
    );
    for message in &canceled {
        assert_ne!(message.appliance_id, running);
        assert_eq!(notified(message, S::Canceled), tasks[&message.appliance_id]);
    }
    let summary = within(store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Canceled);
    assert_eq!(
        summary.counts,
        counts(&[(S::Canceled, 3), (S::InProgress, 1)])
    );
    let progress = within(store.record_update(running, update(task, R::InProgress), T0 + 35)).await;
    assert!(
        matches!(progress, Ok(UpdateResult::Accepted(_))),
        "not forced: it runs on"
    );

    let forced = within(store.cancel_job(job, true, T0 + 40))
        .await
        .expect("cancel")
        .expect("job");
    assert_eq!(
        forced.iter().map(|m| m.appliance_id).collect::<Vec<_>>(),
        [running]
    );
    assert_eq!(notified(&forced[0], S::Canceled), *task);
    assert_eq!(fx.counts(job).await, counts(&[(S::Canceled, 4)]));
    let late = within(store.record_update(running, update(task, R::Succeeded), T0 + 50)).await;
    assert!(matches!(late, Ok(UpdateResult::Rejected(_))), "{late:?}");
    assert_eq!(
        within(store.cancel_job(JobId::new_random(), true, T0))
            .await
            .expect("cancel"),
        None
    );
}

#[tokio::test]
async fn a_completed_job_stays_completed_when_canceled() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 1).await;
    let job = fx.job(&appliances).await;
    let task = fx.release(job, 1).await[&appliances[0]].clone();
    within(
        fx.store
            .record_update(appliances[0], update(&task, R::Succeeded), T0 + 20),
    )
    .await
    .expect("update");
    let canceled = within(fx.store.cancel_job(job, true, T0 + 30))
        .await
        .expect("cancel");
    assert_eq!(canceled, Some(Vec::new()));
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Completed);
}

#[tokio::test]
async fn job_targets_must_be_live_appliances_of_the_customer() {
    let fx = Fixture::new();
    let store = &fx.store;
    let acme = within(store.create_customer("acme", T0))
        .await
        .expect("customer");
    let other = within(store.create_customer("other", T0))
        .await
        .expect("customer");
    let own = fx.appliances(Some(acme), 2).await;
    let foreign = fx.appliances(Some(other), 1).await;
    let stranger = ApplianceId::new_random();
    let job = |customer_id, targets: Vec<ApplianceId>| NewJob {
        job_id: JobId::new_random(),
        customer_id,
        document: JobDocument::Unregister {},
        targets,
        now: T0,
    };
    let refused =
        within(store.create_job(job(Some(acme), vec![own[0], foreign[0], stranger]))).await;
    match refused {
        Err(StoreError::UnknownAppliances(ids)) => assert_eq!(ids, [foreign[0], stranger]),
        other => panic!("expected UnknownAppliances, got {other:?}"),
    }
    let missing = CustomerId::new_random();
    let refused = within(store.create_job(job(Some(missing), own.clone()))).await;
    assert!(matches!(refused, Err(StoreError::UnknownCustomer(c)) if c == missing));
    assert!(within(store.pending_outbox(10))
        .await
        .expect("outbox")
        .is_empty());

    let twice = vec![own[0], own[1], own[0]];
    let created = within(store.create_job(job(Some(acme), twice)))
        .await
        .expect("own appliances");
    assert_eq!(created.executions, 2, "duplicates ignored");
    let created = within(store.create_job(job(None, vec![own[0], foreign[0]]))).await;
    assert_eq!(created.expect("an operator's job").executions, 2);
    let empty = within(store.create_job(job(None, Vec::new())))
        .await
        .expect("empty job");
    let summary = within(store.job_summary(empty.job_id))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Completed);
}

#[tokio::test]
async fn appliances_credentials_presence_and_heartbeats() {
    let fx = Fixture::new();
    let store = &fx.store;
    let id = fx.appliances(None, 1).await[0];
    let credentials = within(store.appliance_credentials(id))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(credentials.token_hash, "hash");
    assert_eq!(credentials.status, crate::model::ApplianceStatus::Offline);
    assert_eq!(credentials.product_key.as_str(), "va");
    assert!(within(store.record_presence(id, true, T0 + 1))
        .await
        .expect("presence"));
    let credentials = within(store.appliance_credentials(id))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(credentials.status, crate::model::ApplianceStatus::Online);
    let stranger = ApplianceId::new_random();
    assert!(!within(store.record_presence(stranger, true, T0))
        .await
        .expect("presence"));
    assert!(!within(store.appliance_exists(stranger))
        .await
        .expect("exists"));
    assert!(within(store.appliance_exists(id)).await.expect("exists"));
    assert_eq!(
        within(store.appliance_credentials(stranger))
            .await
            .expect("read"),
        None
    );
    let mut result = serde_json::Map::new();
    result.insert("version".into(), "1.2".into());
    assert!(
        within(store.record_heartbeat(id, Some(result.clone()), T0 + 2))
            .await
            .expect("hb")
    );
    assert!(within(store.record_heartbeat(id, Some(result), T0 + 3))
        .await
        .expect("upsert"));
    assert!(!within(store.record_heartbeat(stranger, None, T0))
        .await
        .expect("hb"));
    within(store.ping()).await.expect("ping");
}

#[tokio::test]
async fn outbox_is_acknowledged_once() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 3).await;
    let job = fx.job(&appliances).await;
    let released = within(fx.store.release(None, 10, T0))
        .await
        .expect("release");
    assert_eq!(released.len(), 3);
    let pending = within(fx.store.pending_outbox(10)).await.expect("pending");
    assert_eq!(pending, released, "what a crash would leave");
    assert!(pending[0]
        .topic()
        .to_string()
        .ends_with("/thing/job/notify"));
    let ids: Vec<i64> = released.iter().take(2).map(|m| m.id).collect();
    assert_eq!(
        within(fx.store.ack_outbox(ids.clone())).await.expect("ack"),
        2
    );
    assert_eq!(
        within(fx.store.ack_outbox(ids)).await.expect("ack again"),
        0
    );
    let left = within(fx.store.pending_outbox(10)).await.expect("pending");
    assert_eq!(left, released[2..]);
    assert_eq!(fx.counts(job).await, counts(&[(S::Sent, 3)]));
}

#[tokio::test]
async fn progress_reports_update_the_row_and_keep_the_task_open() {
    let fx = Fixture::new();
    let appliance = fx.appliances(None, 1).await[0];
    let job = fx.job(&[appliance]).await;
    let task = fx.release(job, 1).await[&appliance].clone();
    let store = &fx.store;
    for (i, progress) in [10, 50, 90].into_iter().enumerate() {
        let mut report = update(&task, R::InProgress);
        report.progress = Some(progress);
        let result = within(store.record_update(appliance, report, T0 + 20 + i as i64)).await;
        assert!(
            matches!(result, Ok(UpdateResult::Accepted(_))),
            "{result:?}"
        );
    }
    let next = within(store.next_task(appliance))
        .await
        .expect("next")
        .expect("still open");
    assert_eq!(
        (next.status, next.progress, next.version_number),
        (S::InProgress, Some(90), 5)
    );
    assert_eq!(
        within(store.list_tasks(appliance))
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(fx.counts(job).await, counts(&[(S::InProgress, 1)]));
}
