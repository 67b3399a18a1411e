//! The writer thread: group commit of every queued command.
//!
//! One loop: wait for a command, take every other command already queued
//! (up to `max_batch`), `BEGIN IMMEDIATE`, run each isolated from the
//! others (in a SAVEPOINT, or as a single statement: a failing command
//! undoes only itself), apply the job counter deltas aggregated per job,
//! `COMMIT`, then answer every caller and nudge the checkpointer. When the
//! commit fails, every caller of the batch gets the error and nothing of it
//! stays.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread::{self, JoinHandle};

use protocol::ExecutionStatus;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Nudge;
use super::schema::counter_column;
use super::{StoreError, StoreStats, TaskLinks};
use crate::model::{JobId, JobStatus};

/// A message to the writer.
pub(crate) enum Command {
    /// Run an operation in the next batch.
    Operation(Box<dyn Operation>),
    /// Finish what is queued, then stop.
    Shutdown,
}

/// How a command is kept from leaving half its writes behind when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// In its own SAVEPOINT, rolled back if it fails.
    Savepoint,
    /// The command writes at most one statement, after every fallible read,
    /// so SQLite's statement atomicity already undoes a failure. Saves the
    /// savepoint's statements and sub-journal copies on the hot path
    /// (device updates).
    SingleStatement,
}

impl Command {
    /// Wraps a closure and the channel its answer goes to.
    pub(crate) fn operation<R, F>(
        isolation: Isolation,
        f: F,
        reply: oneshot::Sender<Result<R, StoreError>>,
    ) -> Self
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        Self::Operation(Box::new(Op {
            isolation,
            f,
            reply,
        }))
    }
}

/// One command: run inside the batch, answered after the commit.
pub(crate) trait Operation: Send {
    /// Runs isolated from the other commands of the batch; returns the
    /// answer to deliver after the commit.
    fn run(self: Box<Self>, ctx: &mut WriteCtx<'_>) -> Box<dyn Answer>;
    /// Answers without running (the batch could not start).
    fn refuse(self: Box<Self>, error: StoreError);
}

/// A command's result, waiting for the commit.
pub(crate) trait Answer: Send {
    /// Sends the result, or the commit's failure.
    fn deliver(self: Box<Self>, failure: Option<&StoreError>);
}

struct Op<R, F> {
    isolation: Isolation,
    f: F,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Operation for Op<R, F>
where
    R: Send + 'static,
    F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, ctx: &mut WriteCtx<'_>) -> Box<dyn Answer> {
        let Op {
            isolation,
            f,
            reply,
        } = *self;
        let result = match isolation {
            Isolation::Savepoint => ctx.in_savepoint(f),
            Isolation::SingleStatement => ctx.unguarded(f),
        };
        Box::new(Pending { result, reply })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        // The caller may have gone away; nothing to do then.
        let _ = self.reply.send(Err(error));
    }
}

struct Pending<R> {
    result: Result<R, StoreError>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R: Send> Answer for Pending<R> {
    fn deliver(self: Box<Self>, failure: Option<&StoreError>) {
        let result = match (failure, self.result) {
            (Some(error), Ok(_)) => Err(StoreError::NotCommitted(error.to_string())),
            (_, result) => result,
        };
        let _ = self.reply.send(result);
    }
}

/// Writer counters, shared with [`super::Store::stats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commands: AtomicU64,
    transactions: AtomicU64,
    failed_transactions: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commands: self.commands.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            failed_transactions: self.failed_transactions.load(Ordering::Relaxed),
        }
    }
}

/// Per-job changes of the status counters, and the latest time they changed.
#[derive(Debug, Default)]
struct CounterDeltas(HashMap<JobId, ([i64; 9], i64)>);

impl CounterDeltas {
    fn add(&mut self, job: JobId, status: ExecutionStatus, delta: i64, now: i64) {
        let entry = self.0.entry(job).or_insert(([0; 9], now));
        entry.0[status.index()] += delta;
        entry.1 = entry.1.max(now);
    }

    fn merge(&mut self, other: &mut CounterDeltas) {
        for (job, (deltas, now)) in other.0.drain() {
            let entry = self.0.entry(job).or_insert(([0; 9], now));
            for (total, delta) in entry.0.iter_mut().zip(deltas) {
                *total += delta;
            }
            entry.1 = entry.1.max(now);
        }
    }
}

/// What a command sees of the batch: the connection (inside the batch's
/// transaction) and the counter bookkeeping.
pub(crate) struct WriteCtx<'c> {
    conn: &'c Connection,
    links: Option<&'c dyn TaskLinks>,
    batch: CounterDeltas,
    command: CounterDeltas,
    broken: Option<StoreError>,
}

impl<'c> WriteCtx<'c> {
    /// The write connection, inside the batch's transaction.
    pub(crate) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// The signer of the links tasks carry, if the store has one.
    pub(crate) fn links(&self) -> Option<&'c dyn TaskLinks> {
        self.links
    }

    /// Records that an execution of `job` moved `from` -> `to` (`from` None
    /// for a new one), for the job's counters.
    pub(crate) fn moved(
        &mut self,
        job: JobId,
        from: Option<ExecutionStatus>,
        to: ExecutionStatus,
        now: i64,
    ) {
        if from == Some(to) {
            return;
        }
        if let Some(from) = from {
            self.command.add(job, from, -1, now);
        }
        self.command.add(job, to, 1, now);
    }

    /// The counter changes of `job` made earlier in this batch and not yet
    /// written to its row (they are, once, at commit), per status in
    /// `ExecutionStatus::ALL` order. A command that decides from a job's
    /// counters adds them to what it reads.
    pub(crate) fn pending_counts(&self, job: JobId) -> [i64; 9] {
        let mut total = [0; 9];
        for deltas in [&self.batch, &self.command] {
            if let Some((counts, _)) = deltas.0.get(&job) {
                for (sum, delta) in total.iter_mut().zip(counts) {
                    *sum += delta;
                }
            }
        }
        total
    }

    fn exec(&mut self, sql: &str) -> Result<(), StoreError> {
        let result = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]));
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                let error = StoreError::from(error);
                self.broken.get_or_insert(error.clone());
                Err(error)
            }
        }
    }

    fn in_savepoint<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if let Some(error) = &self.broken {
            return Err(StoreError::NotCommitted(error.to_string()));
        }
        self.exec("SAVEPOINT command")?;
        let result = f(self);
        if result.is_ok() {
            self.exec("RELEASE command")?;
            self.batch.merge(&mut self.command);
        } else {
            self.command.0.clear();
            self.exec("ROLLBACK TO command")?;
            self.exec("RELEASE command")?;
        }
        result
    }

    fn unguarded<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if let Some(error) = &self.broken {
            return Err(StoreError::NotCommitted(error.to_string()));
        }
        let result = f(self);
        if result.is_ok() {
            self.batch.merge(&mut self.command);
        } else {
            self.command.0.clear();
            // Some errors (I/O, full disk) make SQLite roll back the whole
            // transaction: no later command may run outside of it.
            if self.conn.is_autocommit() {
                self.broken.get_or_insert(StoreError::NotCommitted(
                    "the transaction was rolled back by SQLite".into(),
                ));
            }
        }
        result
    }

    /// Applies the counters and commits.
    fn commit(mut self) -> Result<(), StoreError> {
        if let Some(error) = self.broken.take() {
            return Err(error);
        }
        let mut statement = self.conn.prepare_cached(&COUNTERS_SQL)?;
        for (job, (deltas, now)) in &self.batch.0 {
            let id = job.to_string();
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(11);
            params.push(&id);
            params.extend(deltas.iter().map(|d| d as &dyn rusqlite::ToSql));
            params.push(now);
            statement.execute(params.as_slice())?;
        }
        drop(statement);
        if self.conn.is_autocommit() {
            return Err(StoreError::NotCommitted(
                "the transaction was rolled back by SQLite".into(),
            ));
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

/// Adds the deltas (?2..?10, in `ExecutionStatus::ALL` order) to a job's
/// counters, and completes an IN_PROGRESS job whose executions are all
/// terminal now, unless the scheduler completes it (retries may follow, or
/// the job is continuous).
static COUNTERS_SQL: LazyLock<String> = LazyLock::new(|| {
    let param = |s: ExecutionStatus| s.index() + 2;
    let set: Vec<String> = ExecutionStatus::ALL
        .iter()
        .map(|s| format!("{c} = {c} + ?{p}", c = counter_column(*s), p = param(*s)))
        .collect();
    let open: Vec<String> = ExecutionStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("({} + ?{})", counter_column(*s), param(*s)))
        .collect();
    format!(
        "UPDATE jobs SET {set}, updated_at = max(updated_at, ?11), \
         status = CASE WHEN status = '{running}' AND scheduler_completes = 0 AND {open} = 0 \
         THEN '{done}' ELSE status END \
         WHERE id = ?1",
        set = set.join(", "),
        running = JobStatus::InProgress.as_str(),
        open = open.join(" + "),
        done = JobStatus::Completed.as_str(),
    )
});

/// Starts the writer thread; it owns `conn` and stops when the channel is
/// closed (every sender dropped, or a [`Command::Shutdown`]) and drained.
/// It nudges the checkpointer after each commit, and stops it by dropping
/// the nudge when it stops.
pub(crate) fn spawn(
    conn: Connection,
    commands: mpsc::Receiver<Command>,
    max_batch: usize,
    stats: Arc<Stats>,
    checkpointer: Nudge,
    links: Option<Arc<dyn TaskLinks>>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            run(
                conn,
                commands,
                max_batch,
                &stats,
                &checkpointer,
                links.as_deref(),
            )
        })
}

fn run(
    mut conn: Connection,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
    stats: &Stats,
    checkpointer: &Nudge,
    links: Option<&dyn TaskLinks>,
) {
    let mut batch: Vec<Box<dyn Operation>> = Vec::with_capacity(max_batch);
    while let Some(first) = commands.blocking_recv() {
        let mut closing = false;
        let mut take = |command, batch: &mut Vec<_>| match command {
            Command::Operation(op) => batch.push(op),
            Command::Shutdown => closing = true,
        };
        take(first, &mut batch);
        while batch.len() < max_batch {
            match commands.try_recv() {
                Ok(command) => take(command, &mut batch),
                Err(_) => break,
            }
        }
        if closing {
            // Refuse new commands; those already queued are still received.
            commands.close();
        }
        if !batch.is_empty() && run_batch(&mut conn, batch.drain(..), stats, links) {
            checkpointer.send();
        }
    }
}

/// Runs one batch; true when it committed.
fn run_batch(
    conn: &mut Connection,
    ops: impl ExactSizeIterator<Item = Box<dyn Operation>>,
    stats: &Stats,
    links: Option<&dyn TaskLinks>,
) -> bool {
    stats
        .commands
        .fetch_add(ops.len() as u64, Ordering::Relaxed);
    let begun = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]));
    if let Err(error) = begun {
        let error = StoreError::from(error);
        stats.failed_transactions.fetch_add(1, Ordering::Relaxed);
        for op in ops {
            op.refuse(error.clone());
        }
        return false;
    }
    let mut ctx = WriteCtx {
        conn,
        links,
        batch: CounterDeltas::default(),
        command: CounterDeltas::default(),
        broken: None,
    };
    let answers: Vec<Box<dyn Answer>> = ops.map(|op| op.run(&mut ctx)).collect();
    match ctx.commit() {
        Ok(()) => {
            stats.transactions.fetch_add(1, Ordering::Relaxed);
            for answer in answers {
                answer.deliver(None);
            }
            true
        }
        Err(error) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            stats.failed_transactions.fetch_add(1, Ordering::Relaxed);
            for answer in answers {
                answer.deliver(Some(&error));
            }
            false
        }
    }
}
