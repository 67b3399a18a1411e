//! Execution transitions committed through the store, with group commit and
//! with one transaction per transition, on the same disk in the same run.
//!
//! `cargo bench -p hub --bench store`. Each phase opens a fresh database in
//! a temp dir under `target/tmp` (or `FLEETHUB_BENCH_DIR`), with
//! `synchronous=FULL`, creates a job for N appliances and releases it (not
//! timed; the same in both phases, so the database and its WAL file have
//! the same size when timing starts), then drives IN_PROGRESS and SUCCEEDED
//! for the executions from many concurrent tokio tasks through
//! `Store::record_update`, and reports transitions per second. The
//! one-per-transaction phase drives fewer executions and stops at a time
//! budget: rates are compared, not totals. "reply" is the time from calling
//! `record_update` to its answer, which comes after the commit.
//!
//! Settings (environment): `FLEETHUB_BENCH_EXECUTIONS` (10000),
//! `FLEETHUB_BENCH_SINGLE_EXECUTIONS` (1000), `FLEETHUB_BENCH_CONCURRENCY`
//! (512), `FLEETHUB_BENCH_DIR`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hub::model::JobId;
use hub::store::{NewJob, Store, StoreOptions, Synchronous, UpdateResult};
use protocol::message::{decode_notify, UpdateParams};
use protocol::{ApplianceId, ExecutionStatus, JobDocument, ReportedStatus, TaskId};

const NOW: i64 = 1_700_000_000_000;

struct Phase {
    name: &'static str,
    max_batch: usize,
    /// Executions driven (both phases set up the same job, so that the
    /// database and its WAL have the same size when timing starts).
    driven: usize,
    budget: Duration,
}

struct Measured {
    transitions: usize,
    elapsed: Duration,
    transactions: u64,
    latencies: Vec<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.transitions as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

fn setting(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var_os("FLEETHUB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir)?;
    let concurrency = setting("FLEETHUB_BENCH_CONCURRENCY", 512)?.max(1);
    let executions = setting("FLEETHUB_BENCH_EXECUTIONS", 10_000)?;
    let phases = [
        Phase {
            name: "group commit",
            max_batch: StoreOptions::default().max_batch,
            driven: executions,
            budget: Duration::from_secs(120),
        },
        Phase {
            name: "one transaction per transition",
            max_batch: 1,
            driven: setting("FLEETHUB_BENCH_SINGLE_EXECUTIONS", 1_000)?.min(executions),
            budget: Duration::from_secs(20),
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "store bench: synchronous=FULL, {concurrency} concurrent tasks, dir {}",
        dir.display()
    );
    let mut rates = Vec::new();
    for phase in &phases {
        let measured = runtime.block_on(run(&dir, phase, executions, concurrency))?;
        println!(
            "{:<32} {:>7} transitions in {:>7.3} s = {:>9.0} transitions/s \
             ({} transactions, {:.1} per transaction; reply p50 {:.2} ms, p99 {:.2} ms)",
            phase.name,
            measured.transitions,
            measured.elapsed.as_secs_f64(),
            measured.rate(),
            measured.transactions,
            measured.transitions as f64 / measured.transactions.max(1) as f64,
            measured.percentile(0.50).as_secs_f64() * 1e3,
            measured.percentile(0.99).as_secs_f64() * 1e3,
        );
        rates.push(measured.rate());
    }
    if let [group, single] = rates[..] {
        println!("ratio group / one-per-transaction: {:.1}x", group / single);
    }
    Ok(())
}

/// Sets up a released job of `executions` appliances, then times the
/// transitions of the first `phase.driven` of them.
async fn run(
    dir: &Path,
    phase: &Phase,
    executions: usize,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir_in(dir)?;
    let options = StoreOptions {
        synchronous: Synchronous::Full,
        max_batch: phase.max_batch,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.path().join("bench.db"), options)?;
    let setup = Instant::now();
    let (job_id, mut work) = prepare(&store, executions).await?;
    work.truncate(phase.driven);
    let work = Arc::new(work);
    eprintln!(
        "{}: setup of {executions} executions took {:.2} s (not timed)",
        phase.name,
        setup.elapsed().as_secs_f64()
    );
    let before = store.stats();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + phase.budget;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, work, next) = (store.clone(), Arc::clone(&work), Arc::clone(&next));
            tokio::spawn(async move { drive(&store, &work, &next, deadline).await })
        })
        .collect();
    let mut latencies = Vec::with_capacity(work.len() * 2);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = start.elapsed();
    let transactions = store.stats().transactions - before.transactions;
    let summary = store.job_summary(job_id).await?.context("job")?;
    let succeeded = summary.counts.get(ExecutionStatus::Succeeded);
    ensure!(
        succeeded as usize * 2 == latencies.len(),
        "counters say {succeeded} succeeded after {} transitions",
        latencies.len()
    );
    store.close().await?;
    latencies.sort_unstable();
    Ok(Measured {
        transitions: latencies.len(),
        elapsed,
        transactions,
        latencies,
    })
}

/// Creates the appliances and the job and releases every execution: the
/// job and the (appliance, task id) pairs to drive.
async fn prepare(
    store: &Store,
    executions: usize,
) -> anyhow::Result<(JobId, Vec<(ApplianceId, TaskId)>)> {
    let appliances: Vec<ApplianceId> = (0..executions).map(|_| ApplianceId::new_random()).collect();
    let rows = appliances
        .iter()
        .map(|id| (*id, "hash".to_owned(), NOW + 86_400_000))
        .collect();
    store
        .create_appliances(None, Default::default(), rows, NOW)
        .await?;
    let job_id = JobId::new_random();
    store
        .create_job(NewJob {
            job_id,
            customer_id: None,
            document: JobDocument::CollectMetrics {},
            targets: appliances,
            now: NOW,
        })
        .await?;
    let released = store.release(Some(job_id), executions, NOW).await?;
    ensure!(released.len() == executions, "released {}", released.len());
    store
        .ack_outbox(released.iter().map(|m| m.id).collect())
        .await?;
    let work = released
        .iter()
        .map(|m| {
            let task = decode_notify(&m.payload)?.params.task.task_id;
            Ok((m.appliance_id, task))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((job_id, work))
}

/// Takes executions one by one until none is left or the budget is spent:
/// IN_PROGRESS then SUCCEEDED for each. Returns each transition's latency.
async fn drive(
    store: &Store,
    work: &[(ApplianceId, TaskId)],
    next: &AtomicUsize,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let Some((appliance, task)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
            break;
        };
        for (status, expected) in [
            (ReportedStatus::InProgress, ExecutionStatus::InProgress),
            (ReportedStatus::Succeeded, ExecutionStatus::Succeeded),
        ] {
            let update = UpdateParams {
                task_id: task.clone(),
                status,
                progress: None,
                status_details: None,
                result: None,
                error_message: None,
                expected_version: None,
                client_token: None,
            };
            let sent = Instant::now();
            match store.record_update(*appliance, update, NOW + 1).await? {
                UpdateResult::Accepted(reply) if reply.status == expected => {}
                other => bail!("unexpected {other:?}"),
            }
            latencies.push(sent.elapsed());
        }
    }
    Ok(latencies)
}
