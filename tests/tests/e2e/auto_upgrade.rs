//! Auto-upgrade end to end on a hub with a manual clock: appliances whose
//! update schedule (their own day, time and time zone) comes within the
//! hour are upgraded to the latest published version, one job per
//! customer, half first and the rest once the first half succeeded; those
//! not due, already on the latest version or a newer one, rolled back,
//! offline or whose upgrade to that version failed before are left alone.

use hub::clock::ManualClock;
use hub::config::ServeArgs;
use protocol::message::{GetReplyData, Task};
use protocol::{ApplianceId, JobDocument, ReplyCode, TaskType};
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::TestCustomer;
use tests::{wait_until, HubOptions, TestAppliance, TestHub};

use crate::rest_flow::connect;
use crate::upgrade::publish_firmware;

/// 2024-01-01T01:00:00Z, a Monday.
const T0: i64 = 1_704_070_800_000;
const MINUTE: i64 = 60_000;

/// One appliance of the test: its schedule and what it runs.
struct Spec {
    name: &'static str,
    version: &'static str,
    schedule: (&'static str, &'static str, &'static str),
}

/// An appliance registered, connected over TLS, its schedule applied.
struct Scheduled {
    name: &'static str,
    registered: Value,
    id: ApplianceId,
    link: TestAppliance,
}

/// Registers an appliance of `customer` that runs `version`.
async fn register(
    hub: &TestHub,
    customer: &TestCustomer,
    name: &str,
    version: &str,
) -> anyhow::Result<Value> {
    let facts = json!({"hostname": name, "ipv4Address": "192.0.2.10", "version": version,
        "totalCpu": 4, "totalMemory": 1u64 << 33, "totalStorage": 100u64 << 30});
    let (status, answer) = hub
        .call(
            Method::POST,
            "/va/register/",
            Some(&customer.registration_token),
            Some(&facts),
        )
        .await?;
    anyhow::ensure!(status == 201, "registering answered {status}: {answer}");
    Ok(answer)
}

/// Registers and connects the appliance, then sets its update schedule
/// through `/ui/` and lets the appliance confirm it.
async fn scheduled(
    hub: &TestHub,
    customer: &TestCustomer,
    spec: &Spec,
) -> anyhow::Result<Scheduled> {
    let registered = register(hub, customer, spec.name, spec.version).await?;
    let id: ApplianceId = registered["applianceId"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let mut link = connect(hub, &registered).await?;
    let (day, time, zone) = spec.schedule;
    let body = json!({"scheduleUpdateDay": day, "scheduleUpdateTime": time, "timeZone": zone});
    let (status, answer) = hub
        .call(
            Method::POST,
            &format!("/ui/appliances/{id}/settings/"),
            Some(&customer.api_key),
            Some(&body),
        )
        .await?;
    anyhow::ensure!(status == 202, "{answer}");
    let task = link.notify().await?.params.task;
    assert_eq!(task.task_id.as_str(), answer["taskId"]);
    let reply = link
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED", "result": {}}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    Ok(Scheduled {
        name: spec.name,
        registered,
        id,
        link,
    })
}

/// The appliance's released task, through `$next` (None when it has none).
async fn next_task(appliance: &mut TestAppliance) -> anyhow::Result<Option<Box<Task>>> {
    match appliance.get("$next").await?.data {
        Some(GetReplyData::One { task }) => Ok(task),
        other => anyhow::bail!("unexpected $next answer {other:?}"),
    }
}

/// The appliance's open upgradeAppliance tasks.
async fn open_upgrades(hub: &TestHub, id: ApplianceId) -> anyhow::Result<Vec<protocol::TaskId>> {
    Ok(hub
        .hub()
        .store()
        .open_tasks(id)
        .await?
        .into_iter()
        .filter(|t| t.task_type == TaskType::UpgradeAppliance)
        .map(|t| t.task_id)
        .collect())
}

/// Runs a released upgrade as the appliance does: rebooting, reconnect,
/// then SUCCEEDED on `version`.
async fn upgrade(
    hub: &TestHub,
    appliance: Scheduled,
    task: &Task,
    version: &str,
) -> anyhow::Result<Scheduled> {
    let Scheduled {
        name,
        registered,
        id,
        mut link,
    } = appliance;
    let rebooting = json!({"taskId": task.task_id, "status": "IN_PROGRESS", "progress": 90,
        "statusDetails": {"step": "rebooting"}});
    assert_eq!(link.update(rebooting).await?.code, ReplyCode::Ok);
    drop(link);
    let mut link = connect(hub, &registered).await?;
    let report = json!({"taskId": task.task_id, "status": "SUCCEEDED",
        "result": {"version": version}});
    let reply = link.update(report).await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    Ok(Scheduled {
        name,
        registered,
        id,
        link,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_due_within_the_hour_are_upgraded_half_first() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Heartbeats once a day: the appliances need not answer any.
    let options = HubOptions {
        args: ServeArgs {
            heartbeat_interval: Some(24 * 3600),
            ..ServeArgs::default()
        },
        clock: Some(ManualClock::new(T0)),
        ..HubOptions::default()
    };
    let hub = TestHub::start_with(dir.path(), options).await?;
    publish_firmware(&hub, "3.2.0.0").await?;
    publish_firmware(&hub, "3.3.0.0").await?;
    let (status, answer) = hub
        .post("/api/v1/appliance-versions/3.3.0.0/disable", &json!({}))
        .await?;
    anyhow::ensure!(status == 200, "disabling answered {status}: {answer}");
    let acme = hub.customer("ACME").await?;
    let globex = hub.customer("Globex").await?;

    // The duty runs at T0 + 10 min = Monday 01:10Z.
    let spec = |name, version, schedule| Spec {
        name,
        version,
        schedule,
    };
    let due = [
        spec("utc", "3.1.4", ("monday", "02:00", "UTC")),
        // Sunday 17:45 in Los Angeles is Monday 01:45Z.
        spec("la", "3.1.4", ("sunday", "17:45", "America/Los_Angeles")),
        // 07:00 in Kolkata (+05:30) is 01:30Z.
        spec("kolkata", "3.1.4", ("monday", "07:00", "Asia/Kolkata")),
        // 02:30 in Berlin (+01:00 in winter) is 01:30Z.
        spec("berlin", "3.1.4", ("daily", "02:30", "Europe/Berlin")),
    ];
    let skipped = [
        spec("later", "3.1.4", ("monday", "03:30", "UTC")),
        spec(
            "tokyo-yesterday",
            "3.1.4",
            ("monday", "10:00", "Asia/Tokyo"),
        ),
        spec("latest", "3.2", ("monday", "02:00", "UTC")),
        spec("rolled-back", "3.1.4", ("monday", "02:00", "UTC")),
        spec("offline", "3.1.4", ("monday", "02:00", "UTC")),
        spec("failed-before", "3.1.4", ("monday", "02:00", "UTC")),
        // Runs 3.3, published and then disabled: never downgraded.
        spec("newer", "3.3", ("monday", "02:00", "UTC")),
    ];
    let mut due_now = Vec::new();
    for spec in &due {
        due_now.push(scheduled(&hub, &acme, spec).await?);
    }
    let mut left_alone = Vec::new();
    for spec in &skipped {
        left_alone.push(scheduled(&hub, &acme, spec).await?);
    }
    let mut other = scheduled(
        &hub,
        &globex,
        &spec("globex", "3.1.4", ("daily", "01:59", "UTC")),
    )
    .await?;

    // "rolled-back" comes back from a manual upgrade on its old version.
    let rolled = left_alone.remove(3);
    let path = format!("/ui/appliances/{}/upgrade/", rolled.id);
    let (code, answer) = hub
        .call(Method::POST, &path, Some(&acme.api_key), None)
        .await?;
    anyhow::ensure!(code == 202, "{answer}");
    let mut rolled = rolled;
    let task = rolled.link.notify().await?.params.task;
    let rolled = upgrade(&hub, rolled, &task, "3.1.4").await?;
    let seen = hub.liveness(rolled.id).await?;
    assert_eq!(seen["version"], "3.1.4", "{seen}");
    left_alone.insert(3, rolled);

    // "failed-before": a manual upgrade to 3.2 failed before its reboot.
    let mut failed = left_alone.remove(5);
    let path = format!("/ui/appliances/{}/upgrade/", failed.id);
    let (code, answer) = hub
        .call(Method::POST, &path, Some(&acme.api_key), None)
        .await?;
    anyhow::ensure!(code == 202, "{answer}");
    let task = failed.link.notify().await?.params.task;
    let report = json!({"taskId": task.task_id, "status": "FAILED",
        "statusDetails": {"reason": "checksum mismatch"}});
    assert_eq!(failed.link.update(report).await?.code, ReplyCode::Ok);
    left_alone.insert(5, failed);

    // "offline" disconnects.
    let offline = left_alone.remove(4);
    let offline_id = offline.id;
    drop(offline.link);
    wait_until("offline", || async {
        Ok(hub.liveness(offline_id).await?["status"] == "OFFLINE")
    })
    .await?;

    hub.advance(10 * MINUTE)?;
    let mut jobs = Vec::new();
    for appliance in due_now.iter().chain([&other]) {
        wait_until(&format!("{} upgrading", appliance.name), || async {
            Ok(!open_upgrades(&hub, appliance.id).await?.is_empty())
        })
        .await?;
        let tasks = open_upgrades(&hub, appliance.id).await?;
        assert_eq!(tasks.len(), 1, "{}: one upgrade", appliance.name);
        let job = hub.hub().store().job_of_task(&tasks[0]).await?;
        jobs.push(job.map(|j| j.to_string()).unwrap_or_default());
    }
    for appliance in left_alone
        .iter()
        .map(|a| (a.name, a.id))
        .chain([("offline", offline_id)])
    {
        assert_eq!(
            open_upgrades(&hub, appliance.1).await?,
            Vec::new(),
            "{} is left alone",
            appliance.0
        );
    }
    let acme_job = jobs[0].clone();
    assert!(
        jobs[..4].iter().all(|j| *j == acme_job),
        "one job for ACME: {jobs:?}"
    );
    assert_ne!(jobs[4], acme_job, "one job per customer");

    // Half first: two released, two QUEUED behind the stage gate.
    let gated = |j: &Value| j["rollout"]["phase"] == "STAGE_GATED";
    wait_until("the first half released", || async {
        hub.wake();
        Ok(gated(&hub.job(&acme_job).await?))
    })
    .await?;
    let view = hub.job(&acme_job).await?;
    assert_eq!(
        (
            view["rollout"]["released"].clone(),
            view["rollout"]["group"].clone(),
            view["counts"]["SENT"].clone(),
            view["counts"]["QUEUED"].clone()
        ),
        (json!(2), json!(0), json!(2), json!(2)),
        "{view}"
    );
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for mut appliance in due_now {
        match next_task(&mut appliance.link).await? {
            Some(task) => first.push((appliance, task)),
            None => rest.push(appliance),
        }
    }
    assert_eq!((first.len(), rest.len()), (2, 2));
    for (appliance, task) in first {
        let JobDocument::UpgradeAppliance {
            target_version,
            firmware_sha256,
            ..
        } = &task.job_document
        else {
            panic!("expected upgradeAppliance, got {:?}", task.job_document);
        };
        assert_eq!(target_version, "3.2");
        assert_eq!(firmware_sha256.len(), 64);
        assert!(task.job_file.is_some(), "the firmware is downloadable");
        upgrade(&hub, appliance, &task, "3.2").await?;
    }

    // The first half succeeded: the rest is released.
    let done = |j: &Value| j["rollout"]["released"] == 4;
    wait_until("the second half released", || async {
        hub.wake();
        Ok(done(&hub.job(&acme_job).await?))
    })
    .await?;
    for appliance in &mut rest {
        let task = next_task(&mut appliance.link).await?;
        assert!(
            task.is_some_and(|t| t.job_document.task_type() == TaskType::UpgradeAppliance),
            "{} upgrades in the second half",
            appliance.name
        );
    }
    assert!(
        next_task(&mut other.link).await?.is_some(),
        "Globex's own job"
    );
    hub.stop().await;
    Ok(())
}
