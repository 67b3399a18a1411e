//! The writer: group commit, savepoint isolation, overload, close and
//! reopen, migrations on an existing file, rows that do not decode.

use std::sync::mpsc as std_mpsc;

use futures::future::join_all;
use protocol::ReportedStatus as R;
use rusqlite::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::store::{executions, release, schema, StoreError, UpdateResult};

/// Occupies the writer with a command that waits for the returned sender
/// (or 30 s), and returns once the writer is inside it.
async fn block_writer(store: &Store) -> (std_mpsc::Sender<()>, JoinHandle<Result<(), StoreError>>) {
    let (started, started_rx) = oneshot::channel();
    let (release, release_rx) = std_mpsc::channel::<()>();
    let blocker = store.clone();
    let handle = tokio::spawn(async move {
        blocker
            .write(move |_| {
                let _ = started.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .await
    });
    within(started_rx)
        .await
        .expect("the writer runs the blocker");
    (release, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_are_committed_in_one_transaction() {
    let fx = Fixture::new();
    let appliances = fx.appliances(None, 100).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 100).await;
    let before = fx.store.stats();

    let (release, blocker) = block_writer(&fx.store).await;
    let updates: Vec<_> = tasks
        .iter()
        .map(|(appliance, task)| {
            fx.store
                .record_update(*appliance, update(task, R::InProgress), T0 + 20)
        })
        .collect();
    // One command of the batch fails: only its own savepoint is rolled back.
    let bad_job = NewJob {
        job_id: JobId::new_random(),
        customer_id: None,
        document: JobDocument::CollectMetrics {},
        targets: vec![ApplianceId::new_random()],
        now: T0,
    };
    let all = join_all(updates);
    let bad = fx.store.create_job(bad_job);
    tokio::pin!(all, bad);
    // A first poll queues every command (sending never waits); the writer
    // is still busy with the blocker.
    assert!(futures::poll!(&mut all).is_pending());
    assert!(futures::poll!(&mut bad).is_pending());
    release.send(()).expect("blocker waiting");
    within(blocker)
        .await
        .expect("joined")
        .expect("blocker committed");

    let results = within(all).await;
    assert!(matches!(
        within(bad).await,
        Err(StoreError::UnknownAppliances(_))
    ));
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(UpdateResult::Accepted(_)))));
    let after = fx.store.stats();
    assert_eq!(after.commands - before.commands, 102);
    assert_eq!(
        after.transactions - before.transactions,
        2,
        "blocker, then one batch"
    );
    assert_eq!(
        fx.counts(job).await,
        counts(&[(ExecutionStatus::InProgress, 100)])
    );
}

#[tokio::test]
async fn max_batch_one_commits_every_command_alone() {
    let fx = Fixture::with(StoreOptions {
        max_batch: 1,
        ..Fixture::options()
    });
    let appliances = fx.appliances(None, 10).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 10).await;
    let before = fx.store.stats();
    let (release, blocker) = block_writer(&fx.store).await;
    let all = join_all(
        tasks
            .iter()
            .map(|(a, t)| fx.store.record_update(*a, update(t, R::Failed), T0)),
    );
    tokio::pin!(all);
    assert!(futures::poll!(&mut all).is_pending());
    release.send(()).expect("blocker waiting");
    within(blocker)
        .await
        .expect("joined")
        .expect("blocker committed");
    assert_eq!(within(all).await.len(), 10);
    let after = fx.store.stats();
    assert_eq!(after.transactions - before.transactions, 11);
}

#[tokio::test]
async fn a_full_queue_answers_overloaded() {
    let fx = Fixture::with(StoreOptions {
        queue_depth: 1,
        ..Fixture::options()
    });
    let (release, blocker) = block_writer(&fx.store).await;
    let queued = fx
        .store
        .record_presence(ApplianceId::new_random(), true, T0);
    tokio::pin!(queued);
    assert!(futures::poll!(&mut queued).is_pending());
    let refused = fx
        .store
        .record_presence(ApplianceId::new_random(), true, T0)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Overloaded)),
        "{refused:?}"
    );
    release.send(()).expect("blocker waiting");
    within(blocker)
        .await
        .expect("joined")
        .expect("blocker committed");
    assert!(matches!(within(queued).await, Ok(false)));
}

#[tokio::test]
async fn close_then_reopen_shows_the_same_data() {
    let mut fx = Fixture::new();
    let appliances = fx.appliances(None, 5).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 3).await;
    for (appliance, task) in &tasks {
        within(
            fx.store
                .record_update(*appliance, update(task, R::Succeeded), T0 + 20),
        )
        .await
        .expect("update");
    }
    let summary = within(fx.store.job_summary(job)).await.expect("summary");
    let page = within(fx.store.list_executions(job, None, 0, 10))
        .await
        .expect("list");
    let pending = within(fx.store.pending_outbox(10)).await.expect("outbox");

    let old = fx.store.clone();
    fx.reopen().await;
    assert!(matches!(
        old.record_presence(appliances[0], true, T0).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        old.job_summary(job).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(old.ping().await, Err(StoreError::Closed)));

    assert_eq!(
        within(fx.store.job_summary(job)).await.expect("summary"),
        summary
    );
    assert_eq!(
        within(fx.store.list_executions(job, None, 0, 10))
            .await
            .expect("list"),
        page
    );
    assert_eq!(
        within(fx.store.pending_outbox(10)).await.expect("outbox"),
        pending
    );
    let released = within(fx.store.release(Some(job), 10, T0 + 30))
        .await
        .expect("release");
    assert_eq!(released.len(), 2, "the queued ones, and only them");
}

#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let mut fx = Fixture::new();
    fx.appliances(None, 1).await;
    fx.reopen().await;
    fx.reopen().await;
    within(fx.store.close()).await.expect("close");
    let conn = Connection::open(fx.path()).expect("open file");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, schema::latest_version());
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM appliances", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 1);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn rows_that_do_not_decode_are_corrupt_errors() {
    let mut fx = Fixture::new();
    let appliances = fx.appliances(None, 2).await;
    let job = fx.job(&appliances).await;
    let tasks = fx.release(job, 2).await;
    let (a, b) = (appliances[0], appliances[1]);
    within(fx.store.close()).await.expect("close");
    let conn = Connection::open(fx.path()).expect("open file");
    conn.execute(
        "UPDATE executions SET client_tokens = 'not json' WHERE task_id = ?1",
        [tasks[&a].as_str()],
    )
    .expect("damage");
    drop(conn);
    fx.store = Store::open(&fx.path(), Fixture::options()).expect("reopen");

    let damaged = within(
        fx.store
            .record_update(a, update(&tasks[&a], R::InProgress), T0),
    )
    .await;
    assert!(
        matches!(damaged, Err(StoreError::Corrupt(_))),
        "{damaged:?}"
    );
    let listed = within(fx.store.list_executions(job, None, 0, 10)).await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    let healthy = within(
        fx.store
            .record_update(b, update(&tasks[&b], R::InProgress), T0),
    )
    .await;
    assert!(
        matches!(healthy, Ok(UpdateResult::Accepted(_))),
        "{healthy:?}"
    );
}

#[test]
fn device_and_release_queries_use_their_partial_indexes() {
    let fx = Fixture::new();
    let conn = Connection::open(fx.path()).expect("open file");
    for (sql, index) in [
        (&*executions::NEXT_TASK, "executions_open_by_appliance"),
        (&*executions::LIST_TASKS, "executions_open_by_appliance"),
        (&*executions::RELEASE_ANY, "executions_queued"),
        (&*executions::RELEASE_ONE, "executions_queued_by_job"),
        (&release::CLAIM[0], "executions_queued_by_job"),
        (&release::CLAIM[1], "executions_retries_queued"),
        (&*release::QUEUED_RETRIES, "executions_retries_queued"),
    ] {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        let params = rusqlite::params_from_iter(vec!["x"; statement.parameter_count()]);
        let details: Vec<String> = statement
            .query_map(params, |row| row.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = details.join("\n");
        assert!(plan.split_whitespace().any(|w| w == index), "{sql}\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {sql}\n{plan}");
    }
}

/// A handle with its own reader pool reads while every connection of the
/// store's pool is taken (the REST API while appliances' reads queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_with_its_own_readers_reads_while_the_shared_pool_is_busy() {
    let f = Fixture::with(StoreOptions {
        readers: 2,
        ..Fixture::options()
    });
    let customer = within(f.store.create_customer("ACME", T0))
        .await
        .expect("customer");
    let (release, released) = std_mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::Mutex::new(released));
    let (busy, mut all_busy) = tokio::sync::mpsc::channel(2);
    let mut holders = Vec::new();
    for _ in 0..2 {
        let (released, busy) = (released.clone(), busy.clone());
        let store = f.store.clone();
        holders.push(tokio::spawn(async move {
            store
                .read(move |_| {
                    let _ = busy.blocking_send(());
                    let waiting = released.lock().map_err(|_| StoreError::Closed)?;
                    let _ = waiting.recv_timeout(Duration::from_secs(120));
                    Ok(())
                })
                .await
        }));
    }
    for _ in 0..2 {
        within(all_busy.recv()).await.expect("a reader taken");
    }
    let own = f.store.with_own_readers(1);
    let named = within(own.read(move |conn| {
        let name: String = conn.query_row(
            "SELECT name FROM customers WHERE id = ?1",
            [customer.to_string()],
            |row| row.get(0),
        )?;
        Ok(name)
    }))
    .await
    .expect("read through the handle's own pool");
    assert_eq!(named, "ACME");
    for _ in 0..2 {
        release.send(()).expect("holders wait");
    }
    for holder in holders {
        within(holder).await.expect("joined").expect("held read");
    }
}
