//! A larger fleet (behind `FLEETHUB_SLOW_TESTS=1`): 200 appliances register,
//! connect over TLS, and all run one job to SUCCEEDED; the report of the
//! run counts them.

use device_sim::fault::FaultConfig;
use device_sim::report::Report;
use device_sim::stats::Counter;
use serde_json::json;
use tests::TestHub;

use super::{behaviour, ids, job, job_counts, registered, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_appliances_run_one_job() -> anyhow::Result<()> {
    if std::env::var_os("FLEETHUB_SLOW_TESTS").is_none() {
        return Ok(());
    }
    const SIZE: usize = 200;
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let (_, identities) = registered(&hub, SIZE).await?;
    let fleet = start(&hub, &identities, behaviour(FaultConfig::default()), 5).await?;
    let job = job(
        &hub,
        json!({"taskType": "collectMetrics"}),
        &ids(&identities),
    )
    .await?;
    job_counts(&hub, &job, &[("SUCCEEDED", SIZE as u64)]).await?;
    tests::wait_until("the last replies", || async {
        Ok(fleet.stats().get(Counter::Succeeded) == SIZE as u64)
    })
    .await?;
    let elapsed = fleet.elapsed().as_millis() as u64;
    let stats = fleet.stop().await;
    let report = Report::new("test", 5, SIZE, elapsed, &stats);
    assert_eq!(report.counts["succeeded"], SIZE as u64);
    assert_eq!(report.notify_to_succeeded_ms.count, SIZE as u64);
    assert!(report.to_string().contains("seed 5"));
    hub.stop().await;
    Ok(())
}
