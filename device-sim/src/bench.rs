//! `device-sim bench <scenario>`: the benchmarks' load generator.
//!
//! - `connect`: N appliances connect and subscribe; time until all are
//!   subscribed, connection rate, connect-time percentiles, resident
//!   memory per connected appliance.
//! - `job`: N appliances (provisioned or loaded), connected; one job for
//!   all of them through REST; time until the hub counts every execution
//!   SUCCEEDED, and per-appliance job-creation -> SUCCEEDED percentiles.

use std::time::Duration;

use anyhow::{bail, Context};
use protocol::{ExecutionStatus, JobDocument};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::cli::FleetArgs;
use crate::fleet::Fleet;
use crate::hub_api::JobSummary;
use crate::launch::prepare;
use crate::progress::Progress;
use crate::report::{rss_bytes, Memory, Report};
use crate::stats::{Counter, Stats};

/// How often a waiting benchmark looks at its condition.
const POLL: Duration = Duration::from_millis(20);
/// How often the job summary is read over REST.
const JOB_POLL: Duration = Duration::from_millis(100);

/// Waits until every appliance is subscribed, or `timeout`; true if all.
async fn all_subscribed(stats: &Stats, size: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while stats.subscribed_now() < size as u64 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// The `connect` scenario.
pub async fn connect(args: FleetArgs, timeout: Duration) -> anyhow::Result<Report> {
    let prepared = prepare(&args).await?;
    let (seed, size) = (prepared.seed, prepared.identities.appliances.len());
    let before = rss_bytes();
    let started = Instant::now();
    let (fleet, saved) = prepared.start();
    let progress = Progress::start(fleet.stats().clone(), size, args.json);
    let all = all_subscribed(fleet.stats(), size, timeout).await;
    let took = started.elapsed();
    let memory = Memory::measure(before, size);
    progress.finish().await;
    let subscribed = fleet.stats().subscribed_now();
    let stats = fleet.stop().await;
    saved.save(&stats)?;
    let mut report = Report::new("bench connect", seed, size, took.as_millis() as u64, &stats);
    report.memory = memory;
    report.figure("allSubscribed", all);
    report.figure("subscribed", subscribed);
    report.figure("timeToAllSubscribedMs", took.as_millis() as u64);
    report.figure(
        "subscribedPerSecond",
        (subscribed as f64 / took.as_secs_f64().max(1e-3)).round(),
    );
    Ok(report)
}

/// Builds the job document from `--task-type` and `--document`.
pub fn job_document(task_type: &str, document: &str) -> anyhow::Result<JobDocument> {
    let mut fields: Map<String, Value> =
        serde_json::from_str(document).context("--document must be a JSON object")?;
    fields.insert("taskType".into(), json!(task_type));
    Ok(JobDocument::from_value(Value::Object(fields))?)
}

/// The `job` scenario.
pub async fn job(
    args: FleetArgs,
    task_type: &str,
    document: &str,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let document = job_document(task_type, document)?;
    if document.task_type() == protocol::TaskType::Heartbeat {
        bail!("heartbeats are not jobs");
    }
    let prepared = prepare(&args).await?;
    let (seed, size) = (prepared.seed, prepared.identities.appliances.len());
    let hub = prepared.config.hub.clone();
    let targets: Vec<_> = prepared
        .identities
        .appliances
        .iter()
        .map(|i| i.appliance_id)
        .collect();
    let started = Instant::now();
    let (fleet, saved) = prepared.start();
    let progress = Progress::start(fleet.stats().clone(), size, args.json);
    let connected = all_subscribed(fleet.stats(), size, timeout).await;
    let outcome = if connected {
        let outcome = run_job(&fleet, &hub, &document, &targets, timeout).await;
        if let Ok(run) = &outcome {
            // The hub counts an execution once committed and replies after
            // that: give the last replies a moment to reach the devices.
            let expected = run.summary.count(ExecutionStatus::Succeeded);
            let stats = fleet.stats();
            let grace = Instant::now() + Duration::from_secs(5);
            while stats.get(Counter::Succeeded) < expected && Instant::now() < grace {
                tokio::time::sleep(POLL).await;
            }
        }
        outcome
    } else {
        Err(anyhow::anyhow!(
            "not every appliance subscribed within {timeout:?}"
        ))
    };
    progress.finish().await;
    let stats = fleet.stop().await;
    saved.save(&stats)?;
    let run = outcome?;
    let mut report = Report::new(
        "bench job",
        seed,
        size,
        started.elapsed().as_millis() as u64,
        &stats,
    );
    let since = stats.since_reference_percentiles();
    let all = run.summary.count(ExecutionStatus::Succeeded) == size as u64;
    report.figure("jobId", run.job_id);
    report.figure("finished", run.finished);
    report.figure("allSucceeded", all);
    report.figure("timeToAllSucceededMs", run.took.as_millis() as u64);
    report.figure("jobCreatedToSucceededMs", serde_json::to_value(since)?);
    report.figure("jobCounts", serde_json::to_value(&run.summary.counts)?);
    report.figure("reportedSucceeded", stats.get(Counter::Succeeded));
    Ok(report)
}

/// What became of the benchmark's job.
struct JobRun {
    job_id: String,
    summary: JobSummary,
    took: Duration,
    /// False when `timeout` passed before every execution was terminal.
    finished: bool,
}

/// Creates the job and polls its summary until every execution is
/// terminal or `timeout` passes (the report says which).
async fn run_job(
    fleet: &Fleet,
    hub: &crate::hub_api::HubApi,
    document: &JobDocument,
    targets: &[protocol::ApplianceId],
    timeout: Duration,
) -> anyhow::Result<JobRun> {
    let created = Instant::now();
    fleet.stats().set_reference(created);
    let job_id = hub.create_job(document, targets).await?;
    let deadline = created + timeout;
    loop {
        let summary = hub.job(&job_id).await?;
        let finished = summary.terminal() >= targets.len() as u64;
        if finished || Instant::now() >= deadline {
            return Ok(JobRun {
                job_id,
                summary,
                took: created.elapsed(),
                finished,
            });
        }
        tokio::time::sleep(JOB_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_from_flags() -> anyhow::Result<()> {
        assert_eq!(
            job_document("collectMetrics", "{}")?,
            JobDocument::CollectMetrics {}
        );
        let storage = job_document(
            "extendStorage",
            r#"{"storage": {"extend": [{"targetVolume": "data", "size": 1}]}}"#,
        )?;
        assert_eq!(storage.task_type(), protocol::TaskType::ExtendStorage);
        assert!(job_document("reboot", "{}").is_err());
        assert!(job_document("collectMetrics", "[]").is_err());
        Ok(())
    }
}
