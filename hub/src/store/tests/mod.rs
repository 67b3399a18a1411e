//! Store tests on temp-dir databases. Helpers here; one module per feature:
//! `flow` (jobs and device updates end to end), `writer` (group commit,
//! overload, close and reopen, corrupt rows), `artifacts` (catalogue, task
//! links, log uploads), `fleet` (the REST surface's registration, tasks,
//! effects and metrics), `liveness` (heartbeats, clock skew, token
//! renewal), `rollouts` (rollout policies with time passed in).

mod artifacts;
mod fleet;
mod flow;
mod liveness;
mod rollouts;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use protocol::message::{decode_notify, UpdateParams};
use protocol::{ApplianceId, ExecutionStatus, JobDocument, ReportedStatus, TaskId};
use tempfile::TempDir;

use super::{NewJob, OutboxMessage, Store, StoreOptions, Synchronous};
use crate::model::{CustomerId, JobId, StatusCounts};

const T0: i64 = 1_700_000_000_000;

/// Awaits `f`, failing the test if it takes more than 30 s.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("timed out")
}

struct Fixture {
    dir: TempDir,
    store: Store,
}

impl Fixture {
    fn path(&self) -> PathBuf {
        self.dir.path().join("hub.db")
    }

    fn options() -> StoreOptions {
        StoreOptions {
            synchronous: Synchronous::Off,
            ..StoreOptions::default()
        }
    }

    fn new() -> Self {
        Self::with(Self::options())
    }

    fn with(options: StoreOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("hub.db"), options).expect("open");
        Self { dir, store }
    }

    async fn reopen(&mut self) {
        within(self.store.close()).await.expect("close");
        self.store = Store::open(&self.path(), Self::options()).expect("reopen");
    }

    async fn appliances(&self, customer: Option<CustomerId>, n: usize) -> Vec<ApplianceId> {
        let ids: Vec<_> = (0..n).map(|_| ApplianceId::new_random()).collect();
        let rows = ids
            .iter()
            .map(|id| (*id, "hash".to_owned(), T0 + 1_000_000))
            .collect();
        let created = self
            .store
            .create_appliances(customer, Default::default(), rows, T0);
        assert_eq!(within(created).await.expect("appliances"), n);
        ids
    }

    async fn job(&self, targets: &[ApplianceId]) -> JobId {
        let job_id = JobId::new_random();
        let created = self.store.create_job(NewJob {
            job_id,
            customer_id: None,
            document: JobDocument::CollectMetrics {},
            targets: targets.to_vec(),
            now: T0,
        });
        let created = within(created).await.expect("job");
        assert_eq!(created.executions, targets.len());
        job_id
    }

    /// Releases up to `limit` executions of `job`; the task id of each
    /// appliance notified.
    async fn release(&self, job: JobId, limit: usize) -> HashMap<ApplianceId, TaskId> {
        let messages = within(self.store.release(Some(job), limit, T0 + 10))
            .await
            .expect("release");
        messages
            .iter()
            .map(|m| (m.appliance_id, notified(m, ExecutionStatus::Sent)))
            .collect()
    }

    async fn counts(&self, job: JobId) -> StatusCounts {
        within(self.store.job_summary(job))
            .await
            .expect("summary")
            .expect("job exists")
            .counts
    }
}

/// The task id of a notify, checking its status.
fn notified(message: &OutboxMessage, status: ExecutionStatus) -> TaskId {
    let notify = decode_notify(&message.payload).expect("a valid notify");
    assert_eq!(notify.params.task.status, status);
    notify.params.task.task_id
}

fn update(task: &TaskId, status: ReportedStatus) -> UpdateParams {
    UpdateParams {
        task_id: task.clone(),
        status,
        progress: None,
        status_details: None,
        result: None,
        error_message: None,
        expected_version: None,
        client_token: None,
    }
}

/// Counts from `(status, n)` pairs.
fn counts(pairs: &[(ExecutionStatus, u64)]) -> StatusCounts {
    let mut counts = StatusCounts::default();
    for (status, n) in pairs {
        counts.set(*status, *n);
    }
    counts
}
