//! Jobs targeted by tag, end to end: a tag (by name or id) takes the live
//! appliances carrying it; a continuous tag job also reaches appliances
//! tagged later, and never untagged ones.

use protocol::message::GetReplyData;
use protocol::ApplianceId;
use serde_json::json;
use tests::{TestAppliance, TestHub};

/// 2024-01-01T01:00:00Z.
const T0: i64 = 1_704_070_800_000;
const SECOND: i64 = 1000;

async fn tag(hub: &TestHub, name: &str) -> anyhow::Result<String> {
    let (status, tag) = hub.post("/api/v1/tags", &json!({"name": name})).await?;
    anyhow::ensure!(status == 201, "{tag}");
    Ok(tag["tagId"].as_str().unwrap_or_default().to_owned())
}

async fn put_tag(hub: &TestHub, tag: &str, ids: &[ApplianceId]) -> anyhow::Result<()> {
    let path = format!("/api/v1/tags/{tag}/appliances");
    let (status, added) = hub.post(&path, &json!({"applianceIds": ids})).await?;
    anyhow::ensure!(status == 200, "{added}");
    Ok(())
}

/// How many tasks the appliance has that are not finished.
async fn open_tasks(appliance: &mut TestAppliance) -> anyhow::Result<usize> {
    match appliance.get("$list").await?.data {
        Some(GetReplyData::List { tasks }) => Ok(tasks.len()),
        other => anyhow::bail!("unexpected $list answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_jobs_reach_tagged_appliances_and_continuous_ones_those_tagged_later(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start_manual(dir.path(), T0).await?;
    let mut appliances = Vec::new();
    for identity in hub.provision(3).await? {
        appliances.push(hub.connect_internal(identity.appliance_id).await?);
    }
    let berlin = tag(&hub, "berlin").await?;
    tag(&hub, "empty").await?;
    put_tag(&hub, &berlin, &[appliances[0].id]).await?;

    let by_name = json!({"taskType": "collectMetrics", "targets": {"tag": "berlin"}});
    let snapshot = hub.create_job_body(&by_name).await?;
    let by_id = json!({"taskType": "collectMetrics", "targets": {"tag": berlin},
        "continuous": true});
    let continuous = hub.create_job_body(&by_id).await?;
    for _ in 0..2 {
        let task = appliances[0].notify().await?.params.task;
        assert_eq!(task.job_document.task_type().as_str(), "collectMetrics");
    }
    let view = hub.job(&snapshot).await?;
    assert_eq!(view["rollout"]["targetCount"], 1, "{view}");
    assert_eq!(view["rollout"]["targets"], json!({"tag": berlin}));

    put_tag(&hub, &berlin, &[appliances[1].id]).await?;
    hub.advance(10 * SECOND)?;
    let task = appliances[1].notify().await?.params.task;
    assert_eq!(task.job_document.task_type().as_str(), "collectMetrics");
    assert_eq!(
        open_tasks(&mut appliances[1]).await?,
        1,
        "only the continuous job grows"
    );
    assert_eq!(hub.job(&continuous).await?["rollout"]["targetCount"], 2);
    assert_eq!(hub.job(&snapshot).await?["rollout"]["targetCount"], 1);
    assert_eq!(open_tasks(&mut appliances[2]).await?, 0, "never tagged");

    let (status, answer) = hub
        .post(
            "/api/v1/jobs",
            &json!({"taskType": "collectMetrics", "targets": {"tag": "empty"}}),
        )
        .await?;
    assert_eq!(
        (status, &answer["message"]),
        (400, &json!("invalid targets or task"))
    );
    hub.stop().await;
    Ok(())
}
