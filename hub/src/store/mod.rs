//! SQLite persistence of Fleethub: the only module that speaks SQL.
//!
//! One file, WAL mode, schema migrations embedded in the binary and applied
//! at [`Store::open`]. Writes go through ONE writer thread that owns the
//! write connection and does group commit: callers send a command over a
//! bounded channel and await its answer; the writer takes every command
//! already queued (up to [`StoreOptions::max_batch`]), runs each in its own
//! SAVEPOINT inside one `BEGIN IMMEDIATE` transaction, adjusts the job
//! counters once per job per batch, COMMITs, and only then answers the
//! callers. A caller therefore learns of its transition only once it is
//! durable (`synchronous=FULL` by default), and a device's reply is sent
//! after the commit. Device updates are decided by the engine inside the
//! writer (read row -> [`crate::engine::apply_update`] -> write), so
//! concurrent updates of one execution are serialized.
//!
//! A transition and the MQTT messages it causes (notify) are written in the
//! same transaction, to the outbox; the caller publishes them and then
//! acknowledges them ([`Store::ack_outbox`]); what a crash left unpublished
//! is found with [`Store::pending_outbox`].
//!
//! Reads use their own connections (a small pool), run on tokio's blocking
//! threads. A checkpointer thread copies the WAL into the database file
//! behind the writer, so that commits do not wait for it.
//!
//! Layout: `schema` (pragmas, migrations), `writer` (thread, batches,
//! counters), `checkpoint`, `readers` (pool), `row` (decoding), one file per
//! table group (`appliances`, `jobs`, `executions`, `outbox`), `types`
//! (public values).
//! A dropped command future does not cancel a write already queued.

mod appliances;
mod artifacts;
mod auto_upgrade;
mod catalog;
mod checkpoint;
mod customers;
mod effects;
mod error;
mod executions;
mod fleet;
mod fleet_types;
mod heartbeats;
mod jobs;
mod links;
mod logs;
mod outbox;
mod readers;
mod release;
mod retries;
mod rollout_view;
mod rollouts;
mod row;
mod schema;
mod targets;
mod telemetry;
mod timeouts;
mod tokens;
mod types;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use protocol::message::{Task, TaskSummary, UpdateParams};
use protocol::{ApplianceId, ExecutionStatus, ProductKey, TaskId};
use rusqlite::Connection;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use artifacts::{Artifact, ArtifactQuery, ArtifactSort};
pub use auto_upgrade::{AutoUpgradeCandidate, AUTO_UPGRADE_GROUPS};
pub use catalog::{NewApplianceVersion, NewServiceVersion};
pub use error::StoreError;
pub use fleet_types::{
    ApplianceFilter, ApplianceRecord, ApplianceVersionView, AuditEntry, Capacity, CustomerView,
    InstalledService, NewCustomer, NewRegistration, OpenTask, Paging, Registered,
    ServiceVersionView, TagView, TaskCreated, TaskRequest, TaskView,
};
pub use heartbeats::{ApplianceLiveness, HeartbeatBatch};
pub use links::{downloads, TaskLinks, UPLOAD_PATH_PLACEHOLDER};
pub use logs::{accepts_upload, LogRecorded, LogTask, LogUpload};
pub use rollout_view::RolloutView;
pub use rollouts::{GateOpening, RolloutStep, TargetSelector};
pub use telemetry::{MAX_SAMPLES, RETENTION_MS};
pub use tokens::{RenewalsSettled, TOKEN_FIELD};
pub use types::{
    ApplianceCredentials, ExecutionView, JobCreated, JobSummary, NewJob, OutboxMessage, Page,
    StoreStats, UpdateResult,
};

use crate::model::{CustomerId, JobId};
use readers::Readers;
use writer::{Command, Isolation, Stats, WriteCtx};

/// SQLite's `synchronous` setting of the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit is on disk before callers are answered (fsync of the WAL).
    #[default]
    Full,
    /// WAL is synced at checkpoints only: a power loss may lose the last
    /// commits (an application crash does not).
    Normal,
    /// No syncing at all; for tests and throwaway data.
    Off,
}

impl Synchronous {
    /// The pragma's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
            Self::Off => "OFF",
        }
    }
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Full, Self::Normal, Self::Off]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("invalid synchronous `{s}`: expected full, normal or off"))
    }
}

/// How the store runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Most commands committed in one transaction; 1 commits every write on
    /// its own (the benchmark's baseline).
    pub max_batch: usize,
    /// Reader connections (and concurrent reads).
    pub readers: usize,
    /// Commands that may wait for the writer; beyond that, writes answer
    /// [`StoreError::Overloaded`].
    pub queue_depth: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            readers: 4,
            queue_depth: 8192,
        }
    }
}

/// A handle on the database. Clones share the same writer and readers
/// ([`Store::with_own_readers`] gives a clone a reader pool of its own);
/// the writer thread stops when [`Store::close`] is awaited or the last
/// clone is dropped (which then waits for it).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// The pool this handle reads through.
    readers: Arc<Readers>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner {
    commands: Option<mpsc::Sender<Command>>,
    links: Option<Arc<dyn TaskLinks>>,
    /// The writer, then the checkpointer (which stops when the writer does).
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The database file, for more reader pools.
    path: std::path::PathBuf,
    /// The pool of the handle [`Store::open`] returned and its clones.
    readers: Arc<Readers>,
    stats: Arc<Stats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        self.commands.take();
        self.readers.close();
        let threads = self
            .threads
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations in one transaction, and starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        Self::open_with_links(path, options, None)
    }

    /// [`Store::open`] with the signer of the links tasks carry (`jobFile`,
    /// a collectLog's `uploadPath`); without one, tasks go out as stored.
    pub fn open_with_links(
        path: &Path,
        options: StoreOptions,
        links: Option<Arc<dyn TaskLinks>>,
    ) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Io(Arc::new(e)))?;
        }
        let mut conn = Connection::open(path)?;
        schema::configure_writer(&conn, &options)?;
        schema::migrate(&mut conn)?;
        let readers = Arc::new(Readers::new(path, options.readers.max(1)));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (nudge, checkpointer) = checkpoint::spawn(path, &options)?;
        let writer = writer::spawn(
            conn,
            rx,
            options.max_batch.max(1),
            Arc::clone(&stats),
            nudge,
            links.clone(),
        )
        .map_err(|e| StoreError::Io(Arc::new(e)))?;
        Ok(Store {
            inner: Arc::new(Inner {
                commands: Some(tx),
                links,
                threads: Mutex::new(vec![writer, checkpointer]),
                path: path.to_owned(),
                readers: Arc::clone(&readers),
                stats,
            }),
            readers,
        })
    }

    /// A handle on the same database and writer that reads through a pool
    /// of `readers` connections of its own, so that its reads never wait
    /// behind those of other handles (the REST API's, behind the reads of
    /// thousands of appliances connecting and asking for `$next`).
    pub fn with_own_readers(&self, readers: usize) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
            readers: Arc::new(Readers::new(&self.inner.path, readers.max(1))),
        }
    }

    /// Finishes every queued command, stops the writer and the checkpointer
    /// and waits for their threads. Later calls on any clone answer
    /// [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        self.readers.close();
        self.inner.readers.close();
        if let Some(commands) = &self.inner.commands {
            // Fails only if the writer already stopped.
            let _ = commands.send(Command::Shutdown).await;
        }
        let threads = self
            .inner
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(JoinHandle::join)
                .collect::<Result<Vec<()>, _>>()
        })
        .await
        .map_err(|_| StoreError::Closed)?
        .map_err(|_| StoreError::Closed)?;
        Ok(())
    }

    /// Checks that the writer runs and a reader can query the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let running = self.inner.commands.as_ref().is_some_and(|c| !c.is_closed());
        if !running {
            return Err(StoreError::Closed);
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }

    /// Counters of the writer (commands, transactions).
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    /// Runs `f` in the writer, inside the next batch's transaction, and
    /// answers once that transaction is committed. A full queue answers
    /// [`StoreError::Overloaded`] at once instead of waiting: the writer is
    /// already [`StoreOptions::queue_depth`] commands behind.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(Isolation::Savepoint, f).await
    }

    /// [`Store::write`] for a command that writes at most one statement,
    /// after all its fallible reads (see [`Isolation::SingleStatement`]).
    async fn write_single<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(Isolation::SingleStatement, f).await
    }

    async fn submit<R, F>(&self, isolation: Isolation, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let commands = self.inner.commands.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        commands
            .try_send(Command::operation(isolation, f, reply))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a reader connection, on a blocking thread.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.readers.run(f).await
    }

    // ---- customers and appliances ----

    /// Creates a customer.
    pub async fn create_customer(
        &self,
        name: impl Into<String>,
        now: i64,
    ) -> Result<CustomerId, StoreError> {
        let name = name.into();
        self.write_single(move |ctx| appliances::create_customer(ctx.conn(), &name, now))
            .await
    }

    /// Registers appliances (one transaction): `(id, token hash, token
    /// expiry)` each, OFFLINE. Returns how many were inserted.
    pub async fn create_appliances(
        &self,
        customer: Option<CustomerId>,
        product_key: ProductKey,
        tokens: Vec<(ApplianceId, String, i64)>,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.write(move |ctx| {
            appliances::create_appliances(ctx.conn(), customer, &product_key, &tokens, now)
        })
        .await
    }

    /// What device authentication needs, or None for an unknown appliance.
    pub async fn appliance_credentials(
        &self,
        id: ApplianceId,
    ) -> Result<Option<ApplianceCredentials>, StoreError> {
        self.read(move |conn| appliances::credentials(conn, id))
            .await
    }

    /// Whether the appliance exists (removed ones included).
    pub async fn appliance_exists(&self, id: ApplianceId) -> Result<bool, StoreError> {
        self.read(move |conn| appliances::exists(conn, id)).await
    }

    /// Records a connection (`online`) or disconnection: status, connect
    /// time, last seen. False for an unknown or removed appliance.
    pub async fn record_presence(
        &self,
        id: ApplianceId,
        online: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write_single(move |ctx| appliances::record_presence(ctx.conn(), id, online, now))
            .await
    }

    /// Upserts the appliance's heartbeat row (its `result`) and its last
    /// seen time. False for an unknown appliance.
    pub async fn record_heartbeat(
        &self,
        id: ApplianceId,
        result: Option<Map<String, Value>>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |ctx| appliances::record_heartbeat(ctx.conn(), id, result.as_ref(), now))
            .await
    }

    // ---- jobs ----

    /// Creates a job and one QUEUED execution per distinct target, in one
    /// transaction. Targets that are not appliances of the job's customer
    /// (any appliance when the job has none) fail the whole call with
    /// [`StoreError::UnknownAppliances`].
    pub async fn create_job(&self, job: NewJob) -> Result<JobCreated, StoreError> {
        self.write(move |ctx| {
            let targets = crate::rollout::Targets::ApplianceIds(job.targets.clone());
            let policy = crate::rollout::JobPolicy::default();
            let job_id = job.job_id;
            let created = rollouts::create(ctx, job, &targets, &policy)?;
            Ok(created.unwrap_or(JobCreated {
                job_id,
                executions: 0,
            }))
        })
        .await
    }

    /// Releases up to `limit` of the oldest QUEUED executions (of one job,
    /// or of any): QUEUED -> SENT, with one notify each in the outbox, in
    /// the same transaction. Returns the outbox rows to publish.
    pub async fn release(
        &self,
        job_id: Option<JobId>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.write(move |ctx| executions::release(ctx, job_id, limit, now))
            .await
    }

    /// Cancels a job: QUEUED and SENT executions (and IN_PROGRESS ones with
    /// `force`) become CANCELED; those the device had get a notify with
    /// status CANCELED. None for an unknown job.
    pub async fn cancel_job(
        &self,
        job_id: JobId,
        force: bool,
        now: i64,
    ) -> Result<Option<Vec<OutboxMessage>>, StoreError> {
        self.write(move |ctx| jobs::cancel(ctx, job_id, force, now))
            .await
    }

    /// A job with its counters per execution status. None when unknown.
    pub async fn job_summary(&self, job_id: JobId) -> Result<Option<JobSummary>, StoreError> {
        self.read(move |conn| jobs::summary(conn, job_id)).await
    }

    /// A page of a job's executions (optionally of one status): the latest
    /// attempt of each appliance, by appliance; `total` comes from the
    /// job's counters. None when unknown.
    pub async fn list_executions(
        &self,
        job_id: JobId,
        status: Option<ExecutionStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<Option<Page<ExecutionView>>, StoreError> {
        self.read(move |conn| jobs::list_executions(conn, job_id, status, offset, limit, false))
            .await
    }

    /// [`Store::list_executions`] with every attempt (retries included).
    pub async fn list_attempts(
        &self,
        job_id: JobId,
        status: Option<ExecutionStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<Option<Page<ExecutionView>>, StoreError> {
        self.read(move |conn| jobs::list_executions(conn, job_id, status, offset, limit, true))
            .await
    }

    // ---- executions, as a device sees them ----

    /// Applies a device's update, committed before this returns. A task id
    /// that is unknown or belongs to another appliance is
    /// [`UpdateResult::NotFound`] either way.
    pub async fn record_update(
        &self,
        appliance: ApplianceId,
        update: UpdateParams,
        now: i64,
    ) -> Result<UpdateResult, StoreError> {
        self.write_single(move |ctx| executions::record_update(ctx, appliance, &update, now))
            .await
    }

    /// `$next`: the appliance's oldest SENT or IN_PROGRESS execution.
    pub async fn next_task(&self, appliance: ApplianceId) -> Result<Option<Task>, StoreError> {
        let links = self.inner.links.clone();
        self.read(move |conn| executions::next_task(conn, links.as_deref(), appliance))
            .await
    }

    /// `$list`: the appliance's non-terminal executions (QUEUED, SENT,
    /// IN_PROGRESS), oldest first. QUEUED ones are for information only: the
    /// appliance runs what it received as SENT (topics.md section 4.2).
    pub async fn list_tasks(&self, appliance: ApplianceId) -> Result<Vec<TaskSummary>, StoreError> {
        self.read(move |conn| executions::list_tasks(conn, appliance))
            .await
    }

    /// One of the appliance's own tasks, in any state (terminal included).
    /// None when unknown or another appliance's.
    pub async fn get_task(
        &self,
        appliance: ApplianceId,
        task_id: &TaskId,
    ) -> Result<Option<Task>, StoreError> {
        let task_id = task_id.clone();
        let links = self.inner.links.clone();
        self.read(move |conn| executions::get_task(conn, links.as_deref(), appliance, &task_id))
            .await
    }

    // ---- outbox ----

    /// The oldest `limit` messages not acknowledged yet (what a crash left).
    pub async fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        self.read(move |conn| outbox::pending(conn, limit)).await
    }

    /// Deletes published messages. Returns how many existed.
    pub async fn ack_outbox(&self, ids: Vec<i64>) -> Result<usize, StoreError> {
        self.write(move |ctx| outbox::ack(ctx.conn(), &ids)).await
    }
}
