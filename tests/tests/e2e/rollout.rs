//! Rollout policies end to end on a hub with a manual clock: the rate,
//! staged groups, abort criteria, timeouts and retries, start time and
//! maintenance window, continuous customer jobs, cancel and force-cancel,
//! and the refusal of bad policies.

use std::path::Path;

use futures::future::try_join_all;
use protocol::message::{GetReplyData, Task};
use protocol::{ApplianceId, ExecutionStatus, ReplyCode};
use serde_json::{json, Value};
use tests::{wait_until, TestAppliance, TestHub};

/// 2024-01-01T01:00:00Z.
const T0: i64 = 1_704_070_800_000;
const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;

async fn fleet(hub: &TestHub, count: usize) -> anyhow::Result<Vec<TestAppliance>> {
    let identities = hub.provision(count).await?;
    try_join_all(
        identities
            .iter()
            .map(|i| hub.connect_internal(i.appliance_id)),
    )
    .await
}

fn ids(appliances: &[TestAppliance]) -> Vec<ApplianceId> {
    appliances.iter().map(|a| a.id).collect()
}

fn job_body(targets: &[ApplianceId], policy: Value) -> Value {
    let mut body = json!({"taskType": "collectMetrics", "targets": {"applianceIds": targets}});
    if let (Some(body), Value::Object(policy)) = (body.as_object_mut(), policy) {
        body.extend(policy);
    }
    body
}

/// A hub in `dir` on a manual clock at T0, `count` connected appliances,
/// and a job for all of them under `policy`; returns the hub, the
/// appliances and the job's id.
async fn rollout(
    dir: &Path,
    count: usize,
    policy: Value,
) -> anyhow::Result<(TestHub, Vec<TestAppliance>, String)> {
    let hub = TestHub::start_manual(dir, T0).await?;
    let appliances = fleet(&hub, count).await?;
    let job = hub
        .create_job_body(&job_body(&ids(&appliances), policy))
        .await?;
    Ok((hub, appliances, job))
}

/// Waits until the job's summary satisfies `check`; returns it.
async fn job_when(
    hub: &TestHub,
    job: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(what, || async { Ok(check(&hub.job(job).await?)) }).await?;
    hub.job(job).await
}

/// A [`rollout`] of four appliances in two groups of 50 %, the second
/// opening only once every execution of the first succeeded; returns it
/// with the job's summary once the first group is released and the job
/// waits at the gate.
async fn staged_rollout(
    dir: &Path,
) -> anyhow::Result<(TestHub, Vec<TestAppliance>, String, Value)> {
    let policy = json!({"rollout": {"groups": [50, 50], "successThresholdPercent": 100}});
    let (hub, appliances, job) = rollout(dir, 4, policy).await?;
    let gated = job_when(&hub, &job, "the first group gated", |j| {
        hub.wake();
        j["rollout"]["phase"] == "STAGE_GATED"
    })
    .await?;
    Ok((hub, appliances, job, gated))
}

/// The appliance's released task, through `$next` (None when it has none).
async fn next_task(appliance: &mut TestAppliance) -> anyhow::Result<Option<Box<Task>>> {
    let reply = appliance.get("$next").await?;
    match reply.data {
        Some(GetReplyData::One { task }) => Ok(task),
        other => anyhow::bail!("unexpected $next answer {other:?}"),
    }
}

async fn report(
    appliance: &mut TestAppliance,
    task: &Task,
    status: &str,
) -> anyhow::Result<ReplyCode> {
    let reply = appliance
        .update(json!({"taskId": task.task_id, "status": status}))
        .await?;
    Ok(reply.code)
}

/// Reports `task` SUCCEEDED once it has ended: refused.
async fn succeed_too_late(appliance: &mut TestAppliance, task: &Task) -> anyhow::Result<()> {
    let late = appliance
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(
        (late.code, late.message.as_str()),
        (ReplyCode::Conflict, "terminal state reached")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_releases_at_its_rate_as_the_clock_moves() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = json!({"rollout": {"maxPerMinute": 60}});
    let (hub, mut appliances, job) = rollout(dir.path(), 4, policy).await?;
    for n in 1..=4 {
        if n > 1 {
            hub.advance(SECOND)?;
        }
        let view = job_when(&hub, &job, "the next release", |j| {
            j["rollout"]["released"].as_i64() >= Some(n)
        })
        .await?;
        assert_eq!(
            view["rollout"]["released"], n,
            "60 a minute: one a second; {view}"
        );
        assert_eq!(view["counts"]["SENT"], n);
        assert_eq!(view["counts"]["QUEUED"], 4 - n);
        assert_eq!(view["rollout"]["phase"], "RELEASING");
        if n < 4 {
            assert_eq!(view["rollout"]["nextReleaseAt"], T0 + n * SECOND);
        }
    }
    let mut tasks = Vec::new();
    for appliance in &mut appliances {
        tasks.push(appliance.notify().await?.params.task.task_id);
    }
    tasks.sort();
    tasks.dedup();
    assert_eq!(tasks.len(), 4, "one task each");
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_group_starts_once_the_first_succeeded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (hub, mut appliances, job, gated) = staged_rollout(dir.path()).await?;
    assert_eq!(
        (
            gated["rollout"]["released"].clone(),
            gated["rollout"]["group"].clone()
        ),
        (json!(2), json!(0))
    );
    let mut first = Vec::new();
    for (i, appliance) in appliances.iter_mut().enumerate() {
        if let Some(task) = next_task(appliance).await? {
            assert_eq!(report(appliance, &task, "SUCCEEDED").await?, ReplyCode::Ok);
            first.push(i);
        }
    }
    assert_eq!(first.len(), 2);
    hub.wake();
    let view = job_when(&hub, &job, "the second group", |j| {
        j["rollout"]["released"] == 4
    })
    .await?;
    assert_eq!(view["rollout"]["group"], 1);
    for (i, appliance) in appliances.iter_mut().enumerate() {
        if !first.contains(&i) {
            let task = next_task(appliance)
                .await?
                .expect("a task of the second group");
            assert_eq!(report(appliance, &task, "SUCCEEDED").await?, ReplyCode::Ok);
        }
    }
    let done = job_when(&hub, &job, "completion", |j| j["status"] == "COMPLETED").await?;
    assert_eq!(done["rollout"]["phase"], "COMPLETED");
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resumes_a_job_held_at_its_stage_gate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (hub, mut appliances, job, _) = staged_rollout(dir.path()).await?;
    let resume = format!("/api/v1/jobs/{job}/resume");
    // One of the first group fails: the gate (100 %) cannot be met.
    let mut first = Vec::new();
    for (i, appliance) in appliances.iter_mut().enumerate() {
        if let Some(task) = next_task(appliance).await? {
            let status = if first.is_empty() {
                "FAILED"
            } else {
                "SUCCEEDED"
            };
            assert_eq!(report(appliance, &task, status).await?, ReplyCode::Ok);
            first.push(i);
        }
    }
    assert_eq!(first.len(), 2);
    hub.wake();
    let held = job_when(&hub, &job, "both reports counted", |j| {
        j["counts"]["FAILED"] == 1 && j["counts"]["SUCCEEDED"] == 1
    })
    .await?;
    assert_eq!(
        (
            held["rollout"]["phase"].clone(),
            held["counts"]["QUEUED"].clone()
        ),
        (json!("STAGE_GATED"), json!(2)),
        "{held}"
    );

    let (status, resumed) = hub.post(&resume, &json!({})).await?;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["rollout"]["group"], 1, "{resumed}");
    let view = job_when(&hub, &job, "the second group released", |j| {
        hub.wake();
        j["rollout"]["released"] == 4
    })
    .await?;
    assert_eq!(view["counts"]["QUEUED"], 0, "{view}");
    for (i, appliance) in appliances.iter_mut().enumerate() {
        if !first.contains(&i) {
            let task = next_task(appliance).await?;
            assert!(task.is_some(), "appliance {i} got the second group's task");
        }
    }

    // Only a job waiting at a gate can be resumed; unknown jobs are 404.
    let (status, refused) = hub.post(&resume, &json!({})).await?;
    assert_eq!(status, 409, "{refused}");
    let unknown = format!("/api/v1/jobs/{}/resume", uuid::Uuid::new_v4());
    assert_eq!(hub.post(&unknown, &json!({})).await?.0, 404);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_past_the_threshold_abort_the_job_and_cancel_what_has_not_run(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy =
        json!({"abort": [{"failureType": "FAILED", "thresholdPercent": 50, "minExecuted": 2}]});
    let (hub, mut appliances, job) = rollout(dir.path(), 4, policy).await?;
    let mut tasks = Vec::new();
    for appliance in &mut appliances {
        tasks.push(appliance.notify().await?.params.task);
    }
    for i in 0..2 {
        assert_eq!(
            report(&mut appliances[i], &tasks[i], "FAILED").await?,
            ReplyCode::Ok
        );
    }
    hub.wake();
    let aborted = job_when(&hub, &job, "the abort", |j| j["status"] == "ABORTED").await?;
    assert_eq!(aborted["rollout"]["phase"], "ABORTED");
    assert!(aborted["rollout"]["abortReason"]
        .as_str()
        .is_some_and(|r| r.contains("FAILED failures")));
    assert_eq!(aborted["counts"]["CANCELED"], 2, "{aborted}");
    for i in 2..4 {
        let canceled = appliances[i].notify().await?.params.task;
        assert_eq!(
            (canceled.task_id.clone(), canceled.status),
            (tasks[i].task_id.clone(), ExecutionStatus::Canceled)
        );
        succeed_too_late(&mut appliances[i], &tasks[i]).await?;
    }
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_execution_times_out_and_is_retried_under_a_new_task_id() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = json!({"timeouts": {"stepSeconds": 60},
        "retry": {"maxAttempts": 2, "failureType": "TIMED_OUT", "backoffSeconds": 30}});
    let (hub, mut appliances, job) = rollout(dir.path(), 1, policy).await?;
    let appliance = &mut appliances[0];
    let first = appliance.notify().await?.params.task;
    assert_eq!(first.execution_number, 1);

    hub.advance(MINUTE)?;
    let timed_out = job_when(&hub, &job, "the timeout", |j| j["counts"]["TIMED_OUT"] == 1).await?;
    assert_eq!(timed_out["status"], "IN_PROGRESS", "a retry is to come");
    succeed_too_late(appliance, &first).await?;

    hub.advance(30 * SECOND)?;
    let second = appliance.notify().await?.params.task;
    assert_ne!(second.task_id, first.task_id);
    assert_eq!(
        (second.execution_number, second.status),
        (2, ExecutionStatus::Sent)
    );
    assert_eq!(
        report(appliance, &second, "SUCCEEDED").await?,
        ReplyCode::Ok
    );
    hub.wake();
    let done = job_when(&hub, &job, "completion", |j| j["status"] == "COMPLETED").await?;
    assert_eq!(
        done["counts"]["SUCCEEDED"], 1,
        "the latest attempt counts: {done}"
    );
    assert_eq!(done["counts"]["TIMED_OUT"], 0);
    assert_eq!(done["rollout"]["retries"], 1);
    let (_, latest) = hub.get(&format!("/api/v1/jobs/{job}/executions")).await?;
    assert_eq!(latest["total"], 1);
    let (_, all) = hub
        .get(&format!("/api/v1/jobs/{job}/executions?attempts=all"))
        .await?;
    assert_eq!(all["total"], 2);
    let numbers: Vec<Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["executionNumber"].clone())
        .collect();
    assert_eq!(numbers, [json!(1), json!(2)]);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_wait_for_the_start_time_then_for_the_window() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // T0 is 01:00 UTC; the window is 02:00-03:00 at UTC.
    let policy = json!({"rollout": {"startAt": T0 + 30 * MINUTE,
        "window": {"start": "02:00", "end": "03:00", "utcOffset": "Z"}}});
    let (hub, mut appliances, job) = rollout(dir.path(), 2, policy).await?;
    let waiting = job_when(&hub, &job, "waiting for the start", |j| {
        j["rollout"]["phase"] == "WAITING_START"
    })
    .await?;
    assert_eq!(waiting["rollout"]["nextReleaseAt"], T0 + 30 * MINUTE);
    hub.advance(30 * MINUTE)?;
    let closed = job_when(&hub, &job, "waiting for the window", |j| {
        j["rollout"]["phase"] == "WAITING_WINDOW"
    })
    .await?;
    assert_eq!(closed["rollout"]["nextReleaseAt"], T0 + 60 * MINUTE);
    assert_eq!(closed["counts"]["QUEUED"], 2);
    hub.advance(30 * MINUTE)?;
    for appliance in &mut appliances {
        let task = appliance.notify().await?.params.task;
        assert_eq!(task.status, ExecutionStatus::Sent);
    }
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_job_reaches_appliances_the_customer_gets_later() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start_manual(dir.path(), T0).await?;
    let acme = hub.hub().store().create_customer("acme", T0).await?;
    let first = hub.provision_for(acme, 1).await?.remove(0);
    let mut first = hub.connect_internal(first.appliance_id).await?;
    let body =
        json!({"taskType": "collectMetrics", "targets": {"customerId": acme}, "continuous": true});
    let continuous = hub.create_job_body(&body).await?;
    let snapshot = json!({"taskType": "collectLog", "document": {"start": 1, "end": 2, "uploadPath": "https://u/x"},
        "targets": {"customerId": acme}});
    let snapshot = hub.create_job_body(&snapshot).await?;
    assert_eq!(
        first.notify().await?.params.task.status,
        ExecutionStatus::Sent
    );
    assert_eq!(
        first.notify().await?.params.task.status,
        ExecutionStatus::Sent
    );

    let later = hub.provision_for(acme, 1).await?.remove(0);
    let mut later = hub.connect_internal(later.appliance_id).await?;
    hub.advance(10 * SECOND)?;
    let task = later.notify().await?.params.task;
    assert_eq!(task.job_document.task_type().as_str(), "collectMetrics");
    let reply = later.get("$list").await?;
    let Some(GetReplyData::List { tasks }) = reply.data else {
        panic!("expected a list");
    };
    assert_eq!(tasks.len(), 1, "the snapshot job does not grow");
    let view = hub.job(&continuous).await?;
    assert_eq!(
        (view["status"].clone(), view["customerId"].clone()),
        (json!("IN_PROGRESS"), json!(acme))
    );
    assert_eq!(view["rollout"]["targetCount"], 2);
    assert_eq!(view["rollout"]["targets"], json!({"customerId": acme}));
    assert_eq!(hub.job(&snapshot).await?["rollout"]["targetCount"], 1);
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_tells_appliances_that_had_the_task_and_force_ends_running_ones(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = json!({"rollout": {"maxPerMinute": 60}});
    let (hub, mut appliances, job) = rollout(dir.path(), 3, policy).await?;
    job_when(&hub, &job, "one release", |j| j["counts"]["SENT"] == 1).await?;
    hub.advance(SECOND)?;
    job_when(&hub, &job, "two releases", |j| j["counts"]["SENT"] == 2).await?;
    let mut had = Vec::new();
    for (i, appliance) in appliances.iter_mut().enumerate() {
        if let Some(task) = next_task(appliance).await? {
            let sent = appliance.notify().await?.params.task;
            assert_eq!(
                (sent.task_id.clone(), sent.status),
                (task.task_id.clone(), ExecutionStatus::Sent)
            );
            had.push((i, *task));
        }
    }
    let [(running, running_task), (waiting, waiting_task)] =
        <[_; 2]>::try_from(had).expect("two released");
    assert_eq!(
        report(&mut appliances[running], &running_task, "IN_PROGRESS").await?,
        ReplyCode::Ok
    );

    let (status, canceled) = hub
        .post(&format!("/api/v1/jobs/{job}/cancel"), &json!({}))
        .await?;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(canceled["rollout"]["phase"], "CANCELED");
    assert_eq!(
        canceled["counts"]["CANCELED"], 2,
        "the sent and the queued one: {canceled}"
    );
    let told = appliances[waiting].notify().await?.params.task;
    assert_eq!(
        (told.task_id, told.status),
        (waiting_task.task_id.clone(), ExecutionStatus::Canceled)
    );
    assert_eq!(
        report(&mut appliances[running], &running_task, "IN_PROGRESS").await?,
        ReplyCode::Ok,
        "a plain cancel lets a running task run on"
    );

    let (status, forced) = hub
        .post(&format!("/api/v1/jobs/{job}/cancel?force=true"), &json!({}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(forced["counts"]["CANCELED"], 3);
    let told = appliances[running].notify().await?.params.task;
    assert_eq!(
        (told.task_id, told.status),
        (running_task.task_id.clone(), ExecutionStatus::Canceled)
    );
    succeed_too_late(&mut appliances[running], &running_task).await?;
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_and_targets_are_refused_and_create_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start_manual(dir.path(), T0).await?;
    let id = hub.provision(1).await?[0].appliance_id;
    let empty = hub.hub().store().create_customer("empty", T0).await?;
    let stranger = hub::model::CustomerId::new_random();
    for (body, message) in [
        (
            job_body(&[id], json!({"rollout": {"maxPerMinute": 0}})),
            "invalid job policy",
        ),
        (
            job_body(&[id], json!({"rollout": {"groups": [60, 60]}})),
            "invalid job policy",
        ),
        (
            job_body(&[id], json!({"retry": {"maxAttempts": 99}})),
            "invalid job policy",
        ),
        (
            job_body(&[id], json!({"timeouts": {"stepSeconds": 0}})),
            "invalid job policy",
        ),
        (
            job_body(&[id], json!({"continuous": true})),
            "invalid job policy",
        ),
        (
            job_body(
                &[id],
                json!({"rollout": {"window": {"start": "25:00", "end": "01:00"}}}),
            ),
            "invalid JSON body",
        ),
        (
            job_body(
                &[id],
                json!({"abort": [{"failureType": "SOMETIMES", "thresholdPercent": 5}]}),
            ),
            "invalid JSON body",
        ),
        (
            job_body(&[id], json!({"rollout": {"speed": "fast"}})),
            "invalid JSON body",
        ),
        (
            json!({"taskType": "collectMetrics", "targets": {"tag": "berlin"}}),
            "unknown tag",
        ),
        (
            json!({"taskType": "collectMetrics", "targets": {"customerId": stranger}}),
            "unknown customer",
        ),
        (
            json!({"taskType": "collectMetrics", "targets": {"customerId": empty}}),
            "invalid targets or task",
        ),
        (
            json!({"taskType": "collectMetrics", "targets": {"applianceIds": [id], "customerId": empty}}),
            "invalid JSON body",
        ),
    ] {
        let (status, answer) = hub.post("/api/v1/jobs", &body).await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["message"], message, "{body}: {answer}");
    }
    let (status, _) = hub
        .get(&format!("/api/v1/appliances/{id}/liveness"))
        .await?;
    assert_eq!(status, 200);
    let reply = hub.connect_internal(id).await?.get("$list").await?;
    assert_eq!(
        reply.data,
        Some(GetReplyData::List { tasks: Vec::new() }),
        "no job was created"
    );
    let job = hub.create_job_body(&job_body(&[id], json!({}))).await?;
    let (status, answer) = hub
        .get(&format!("/api/v1/jobs/{job}/executions?attempts=some"))
        .await?;
    assert_eq!(
        (status, answer["message"].clone()),
        (400, json!("invalid attempts"))
    );
    let (status, _) = hub
        .get(&format!(
            "/api/v1/appliances/{}/liveness",
            ApplianceId::new_random()
        ))
        .await?;
    assert_eq!(status, 404);
    let (status, _) = hub.get("/api/v1/appliances/not-an-id/liveness").await?;
    assert_eq!(status, 400);
    hub.stop().await;
    Ok(())
}
