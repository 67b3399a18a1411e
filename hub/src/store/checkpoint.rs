//! The checkpointer: copies committed WAL frames into the database file on
//! its own thread and connection, so that the writer's batches do not wait
//! for that copy and its fsync.
//!
//! The writer nudges it after every commit (nudges coalesce: one pending
//! at most), and it checkpoints at most once per [`MIN_INTERVAL`], so that
//! a stream of small commits costs one checkpoint (two fsyncs) per interval
//! rather than per commit. A PASSIVE checkpoint never blocks the writer or
//! the readers; once the whole WAL is copied, the writer's next transaction
//! starts it over from the beginning, so the WAL stays a few batches long.
//! The writer keeps SQLite's automatic checkpoint as a fallback, at a
//! larger threshold, in case this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{schema, StoreError, StoreOptions};

/// Tells the checkpointer there are new frames; dropped to stop it.
#[derive(Debug)]
pub(crate) struct Nudge(SyncSender<()>);

impl Nudge {
    /// Never blocks: a nudge already pending covers this one.
    pub(crate) fn send(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Opens the checkpointer's connection and starts its thread. It stops
/// (after a last checkpoint) when the [`Nudge`] is dropped.
pub(crate) fn spawn(
    path: &Path,
    options: &StoreOptions,
) -> Result<(Nudge, JoinHandle<()>), StoreError> {
    let conn = Connection::open(path)?;
    schema::configure_checkpointer(&conn, options)?;
    let (nudge, nudges) = mpsc::sync_channel(1);
    let handle = thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&conn, &nudges))
        .map_err(|e| StoreError::Io(std::sync::Arc::new(e)))?;
    Ok((Nudge(nudge), handle))
}

/// Shortest time between two checkpoints.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);

fn run(conn: &Connection, nudges: &Receiver<()>) {
    let mut last = Instant::now();
    while nudges.recv().is_ok() {
        // Nudges that arrive before the interval is over are absorbed; the
        // writer going away ends the wait at once.
        let next = last + MIN_INTERVAL;
        loop {
            match nudges.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    checkpoint(conn);
                    return;
                }
            }
        }
        checkpoint(conn);
        last = Instant::now();
    }
    checkpoint(conn);
}

/// A failed checkpoint is retried at the next nudge; meanwhile the WAL
/// grows, and the writer's own automatic checkpoint bounds it.
fn checkpoint(conn: &Connection) {
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    });
    if let Err(error) = done {
        tracing::warn!(%error, "WAL checkpoint failed");
    }
}
