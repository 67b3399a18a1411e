//! upgradeAppliance end to end with faults: the download is cut by a crash
//! and resumed with a Range request, the sha256 checks out, the appliance
//! reports "rebooting", reboots, comes back on its old version (rollback)
//! and reports FAILED with the version it runs.

use std::sync::Arc;

use device_sim::appliance::Behaviour;
use device_sim::fault::FaultConfig;
use device_sim::stats::Counter;
use protocol::document::SignMethod;
use protocol::message::Task;
use protocol::{ExecutionStatus, JobDocument, JobFile, ReportedStatus};
use sha2::{Digest, Sha256};

use crate::support::{embedded_broker, file_server, fleet, task, TestHub, Uplink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_resume_reboot_and_rollback() -> anyhow::Result<()> {
    let image: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&image));
    let (files, file_log) = file_server(image.clone()).await?;
    let broker = embedded_broker().await?;
    let mut hub = TestHub::connect(&broker).await?;
    let behaviour = Behaviour {
        metrics_interval_ms: None,
        reboot_ms: 100,
        faults: FaultConfig {
            crash_rate: 1.0,
            rollback_rate: 1.0,
            slow_download_rate: 1.0,
            slow_download_bytes_per_sec: 16 * 1024 * 1024,
            ..FaultConfig::default()
        },
        ..Behaviour::default()
    };
    let fleet = fleet(&broker, &files, 1, behaviour, 11)?;

    let Uplink::Get(topic, get) = hub.next().await? else {
        anyhow::bail!("the appliance did not start with get $next");
    };
    hub.reply_get(&topic, &get.id, None).await?;
    let mut upgrade: Task = task(
        JobDocument::UpgradeAppliance {
            target_version: "2.0.0".into(),
            firmware_path: "firmware/2.0.0.img".into(),
            firmware_sha256: sha.clone(),
        },
        Some(JobFile {
            sign_method: SignMethod::Sha256,
            sign: sha,
            file_url: "/files/fw.img".into(),
            file_size: image.len() as u64,
        }),
    );
    hub.notify(&topic, &upgrade).await?;
    upgrade.status = ExecutionStatus::InProgress;

    let mut steps = Vec::new();
    let mut version = 2;
    let last = loop {
        // Every get after a reconnect finds the upgrade IN_PROGRESS.
        let (_, update) = hub.next_update(Some(&upgrade)).await?;
        version += 1;
        hub.accept(&topic, &update, version).await?;
        let step = update
            .params
            .status_details
            .as_ref()
            .and_then(|d| d.get("step").cloned());
        steps.push((update.params.status, step));
        if update.params.status != ReportedStatus::InProgress {
            break update;
        }
    };

    let ranges = file_log
        .ranges
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert!(!ranges.is_empty(), "the download resumed with Range");
    assert!(steps.contains(&(ReportedStatus::InProgress, Some("rebooting".into()))));
    assert!(steps.contains(&(ReportedStatus::InProgress, Some("download".into()))));
    assert_eq!(last.params.status, ReportedStatus::Failed);
    let result = last.params.result.clone().unwrap_or_default();
    assert_eq!(result.get("version"), Some(&serde_json::json!("1.0.0")));
    assert_eq!(result.get("rolledBack"), Some(&serde_json::json!(true)));

    let stats: Arc<_> = fleet.stop().await;
    assert_eq!(stats.get(Counter::Crashes), 1);
    assert_eq!(stats.get(Counter::Reboots), 1);
    assert_eq!(stats.get(Counter::Rollbacks), 1);
    assert!(stats.get(Counter::DownloadedBytes) >= image.len() as u64);
    Ok(())
}
