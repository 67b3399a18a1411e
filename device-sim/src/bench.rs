//! `device-sim bench <scenario>`: the benchmarks' load generator.
//!
//! - `connect`: N appliances connect and subscribe; time until all are
//!   subscribed, connection rate, connect-time percentiles, resident
//!   memory per connected appliance.
//! - `job`: N appliances (provisioned or loaded), connected; one job for
//!   all of them through REST; time until the hub counts every execution
//!   SUCCEEDED, and per-appliance job-creation -> SUCCEEDED percentiles.
//!   With `--max-per-minute`, the job is rate-limited and the report shows
//!   the pace the appliances received it at ([`crate::rollout`]); with
//!   `--rest-probe`, REST latency idle and under the job ([`crate::probe`]).

use std::time::Duration;

use anyhow::{bail, Context};
use protocol::{ExecutionStatus, JobDocument};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::cli::{FleetArgs, JobArgs};
use crate::fleet::Fleet;
use crate::hub_api::{HubApi, JobSummary};
use crate::launch::prepare;
use crate::probe;
use crate::progress::Progress;
use crate::report::{rss_bytes, Memory, Report};
use crate::rollout::Pace;
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
pub async fn job(args: FleetArgs, options: JobArgs) -> anyhow::Result<Report> {
    let document = job_document(&options.task_type, &options.document)?;
    if document.task_type() == protocol::TaskType::Heartbeat {
        bail!("heartbeats are not jobs");
    }
    let prepared = prepare(&args).await?;
    let (seed, size) = (prepared.seed, prepared.identities.appliances.len());
    let hub = prepared.config.hub.clone();
    let probe = options
        .rest_probe
        .then(|| probe_plan(&args, &options, prepared.config.broker.tls.clone()))
        .transpose()?;
    let targets: Vec<_> = prepared
        .identities
        .appliances
        .iter()
        .map(|i| i.appliance_id)
        .collect();
    let started = Instant::now();
    let (fleet, saved) = prepared.start();
    let progress = Progress::start(fleet.stats().clone(), size, args.json);
    let connected = all_subscribed(fleet.stats(), size, options.timeout).await;
    let outcome = if connected {
        let job = JobPlan {
            hub: &hub,
            document: &document,
            max_per_minute: options.max_per_minute,
            timeout: job_timeout(&options, size),
        };
        job.run(&fleet, &targets, probe.as_ref()).await
    } else {
        Err(anyhow::anyhow!(
            "not every appliance subscribed within {:?}",
            options.timeout
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
    report.figure("jobId", run.job_id.clone());
    report.figure("finished", run.finished);
    report.figure("allSucceeded", all);
    report.figure("timeToAllSucceededMs", run.took.as_millis() as u64);
    report.figure("jobCreatedToSucceededMs", serde_json::to_value(since)?);
    report.figure("jobCounts", serde_json::to_value(&run.summary.counts)?);
    report.figure("reportedSucceeded", run.reported_succeeded);
    if let Some(limit) = options.max_per_minute {
        let pace = Pace::measure(limit, stats.received_since_reference());
        report.figure("rollout", serde_json::to_value(pace)?);
        let released = hub.release_instants(&run.job_id).await?;
        let origin = run.summary.created_at.or(released.iter().copied().min());
        let since_creation = released
            .iter()
            .map(|at| u64::try_from(at - origin.unwrap_or(*at)).unwrap_or(0))
            .collect();
        let pace = Pace::measure(limit, since_creation);
        report.figure("rolloutReleased", serde_json::to_value(pace)?);
    }
    if let Some(probed) = run.probed {
        report.figure("restProbe", serde_json::to_value(probed)?);
    }
    Ok(report)
}

/// How long to wait for the job: `--timeout`, plus the rollout's own
/// duration when it is rate-limited.
fn job_timeout(options: &JobArgs, size: usize) -> Duration {
    let rollout = options.max_per_minute.map_or(Duration::ZERO, |limit| {
        Duration::from_secs_f64(size as f64 * 60.0 / f64::from(limit))
    });
    options.timeout + rollout
}

/// The REST probe's plan, from the command line: the job summary with the
/// admin token, the frontend's appliance list with a customer's api key.
fn probe_plan(
    args: &FleetArgs,
    options: &JobArgs,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> anyhow::Result<probe::Plan> {
    let admin_token = args
        .admin_token
        .clone()
        .context("--rest-probe needs the admin token (--admin-token)")?;
    Ok(probe::Plan {
        hub_url: args.hub_url.clone(),
        tls,
        admin_token,
        api_key: options.api_key.clone(),
        rate: options.probe_rate,
        idle: options.probe_idle,
    })
}

/// The job to create and how long to wait for it.
struct JobPlan<'a> {
    hub: &'a HubApi,
    document: &'a JobDocument,
    max_per_minute: Option<u32>,
    timeout: Duration,
}

/// What became of the benchmark's job.
struct JobRun {
    job_id: String,
    summary: JobSummary,
    took: Duration,
    /// False when `timeout` passed before every execution was terminal.
    finished: bool,
    /// SUCCEEDED reports of this job the hub accepted, as the fleet saw
    /// them.
    reported_succeeded: u64,
    /// The REST probe's figures, idle and under the job's load.
    probed: Option<probe::Comparison>,
}

impl JobPlan<'_> {
    /// With a probe: a one-appliance job first (so that a job summary
    /// exists to read), the idle phase on it, then the job with the load
    /// phase from its creation to its end. The hub counts an execution
    /// once committed and replies after that: the last replies get a
    /// moment to reach the devices.
    async fn run(
        &self,
        fleet: &Fleet,
        targets: &[protocol::ApplianceId],
        probe: Option<&probe::Plan>,
    ) -> anyhow::Result<JobRun> {
        let idle = match probe {
            Some(plan) => Some(self.idle_phase(plan, &targets[..1]).await?),
            None => None,
        };
        let stats = fleet.stats();
        let before = stats.get(Counter::Succeeded);
        let created = Instant::now();
        stats.set_reference(created);
        let job_id = self
            .hub
            .create_job(self.document, targets, self.max_per_minute)
            .await?;
        let load = probe.map(|plan| plan.start(&job_id)).transpose()?;
        let waited = self.wait(job_id, targets.len(), created).await;
        let load = match load {
            Some(probe) => Some(probe.stop().await?),
            None => None,
        };
        let mut run = waited?;
        let expected = run.summary.count(ExecutionStatus::Succeeded);
        let grace = Instant::now() + Duration::from_secs(5);
        while stats.get(Counter::Succeeded) - before < expected && Instant::now() < grace {
            tokio::time::sleep(POLL).await;
        }
        run.reported_succeeded = stats.get(Counter::Succeeded) - before;
        run.probed = idle
            .zip(load)
            .zip(probe)
            .map(|((idle, load), plan)| probe::Comparison::new(plan.rate, idle, load));
        Ok(run)
    }

    /// The probe's idle phase, on a job for `first` that has ended.
    async fn idle_phase(
        &self,
        plan: &probe::Plan,
        first: &[protocol::ApplianceId],
    ) -> anyhow::Result<probe::Phase> {
        let job_id = self.hub.create_job(self.document, first, None).await?;
        let run = self.wait(job_id, first.len(), Instant::now()).await?;
        if !run.finished {
            bail!("the probe's job {} did not finish", run.job_id);
        }
        plan.run_for(&run.job_id, plan.idle).await
    }

    /// Polls the job's summary until its `size` executions are terminal
    /// or the timeout passes (the run says which).
    async fn wait(&self, job_id: String, size: usize, created: Instant) -> anyhow::Result<JobRun> {
        let deadline = created + self.timeout;
        loop {
            let summary = self.hub.job(&job_id).await?;
            let finished = summary.terminal() >= size as u64;
            if finished || Instant::now() >= deadline {
                return Ok(JobRun {
                    job_id,
                    summary,
                    took: created.elapsed(),
                    finished,
                    reported_succeeded: 0,
                    probed: None,
                });
            }
            tokio::time::sleep(JOB_POLL).await;
        }
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
