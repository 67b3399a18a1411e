//! Rollouts through the store, with time passed in: rate, groups, abort,
//! timeouts, retries, start time and window, continuous targets, and two
//! stores on one file claiming releases.

use std::collections::HashSet;

use protocol::{ExecutionStatus as S, ReportedStatus as R};
use serde_json::json;

use super::*;
use crate::model::{JobStatus, RolloutPhase};
use crate::rollout::{JobPolicy, Targets};
use crate::store::{RolloutStep, UpdateResult};

const SECOND: i64 = 1000;

async fn planned(fx: &Fixture, targets: Targets, policy: serde_json::Value) -> JobId {
    let policy: JobPolicy = serde_json::from_value(policy).expect("policy");
    let job = NewJob {
        job_id: JobId::new_random(),
        customer_id: None,
        document: JobDocument::CollectMetrics {},
        targets: Vec::new(),
        now: T0,
    };
    let created = within(fx.store.create_planned_job(job, targets, policy))
        .await
        .expect("create")
        .expect("created");
    created.job_id
}

async fn advance(fx: &Fixture, job: JobId, now: i64) -> RolloutStep {
    within(fx.store.advance_rollout(job, 1000, now))
        .await
        .expect("advance")
}

/// The task ids of the released messages, by appliance.
fn released(step: &RolloutStep) -> HashMap<ApplianceId, TaskId> {
    step.messages
        .iter()
        .map(|m| (m.appliance_id, notified(m, S::Sent)))
        .collect()
}

async fn report(fx: &Fixture, appliance: ApplianceId, task: &TaskId, status: R, now: i64) {
    let result = within(fx.store.record_update(appliance, update(task, status), now)).await;
    assert!(
        matches!(result, Ok(UpdateResult::Accepted(_))),
        "{result:?}"
    );
}

async fn phase(fx: &Fixture, job: JobId) -> RolloutPhase {
    within(fx.store.rollout_view(job))
        .await
        .expect("view")
        .expect("rollout")
        .phase
}

#[tokio::test]
async fn the_rate_spreads_releases_and_survives_a_reopen() {
    let mut fx = Fixture::new();
    let ids = fx.appliances(None, 10).await;
    let job = planned(
        &fx,
        Targets::ApplianceIds(ids),
        json!({"rollout": {"maxPerMinute": 120}}),
    )
    .await;
    let first = advance(&fx, job, T0).await;
    assert_eq!((first.released, first.wake_at), (2, Some(T0 + SECOND)));
    assert_eq!(
        advance(&fx, job, T0 + 500).await.released,
        0,
        "one batch a second"
    );
    fx.reopen().await;
    assert_eq!(
        advance(&fx, job, T0 + 900).await.released,
        0,
        "the pace is in the database"
    );
    assert_eq!(advance(&fx, job, T0 + SECOND).await.released, 2);
    let view = within(fx.store.rollout_view(job))
        .await
        .expect("view")
        .expect("rollout");
    assert_eq!(
        (view.released, view.target_count, view.phase),
        (4, 10, RolloutPhase::Releasing)
    );
    assert_eq!(view.next_release_at, Some(T0 + 2 * SECOND));
}

#[tokio::test]
async fn the_next_group_waits_for_the_success_threshold() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 4).await;
    let policy = json!({"rollout": {"groups": [50, 50], "successThresholdPercent": 100}});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let group0 = released(&advance(&fx, job, T0).await);
    assert_eq!(group0.len(), 2);
    let (a, task) = group0.iter().next().expect("one");
    report(&fx, *a, task, R::Succeeded, T0 + SECOND).await;
    assert_eq!(advance(&fx, job, T0 + SECOND).await.released, 0);
    assert_eq!(phase(&fx, job).await, RolloutPhase::StageGated);
    for (a, task) in group0.iter().skip(1) {
        report(&fx, *a, task, R::Succeeded, T0 + 2 * SECOND).await;
    }
    let group1 = released(&advance(&fx, job, T0 + 2 * SECOND).await);
    assert_eq!(group1.len(), 2);
    assert!(group1.keys().all(|a| !group0.contains_key(a)));
    let view = within(fx.store.rollout_view(job))
        .await
        .expect("view")
        .expect("rollout");
    assert_eq!((view.group, view.groups, view.released), (1, 2, 4));
}

#[tokio::test]
async fn an_abort_cancels_what_has_not_run_and_marks_the_job() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 6).await;
    let policy = json!({"rollout": {"groups": [50, 50]},
        "abort": [{"failureType": "FAILED", "thresholdPercent": 50, "minExecuted": 2}]});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let sent = released(&advance(&fx, job, T0).await);
    let mut tasks = sent.iter();
    let (a, t) = tasks.next().expect("first");
    report(&fx, *a, t, R::Failed, T0 + SECOND).await;
    let (b, t) = tasks.next().expect("second");
    report(&fx, *b, t, R::InProgress, T0 + SECOND).await;
    assert!(
        advance(&fx, job, T0 + SECOND).await.messages.is_empty(),
        "1 executed < minimum 2"
    );
    report(&fx, *b, t, R::Succeeded, T0 + 2 * SECOND).await;
    let (c, t) = tasks.next().expect("third");
    report(&fx, *c, t, R::InProgress, T0 + 2 * SECOND).await;
    let step = advance(&fx, job, T0 + 2 * SECOND).await;
    // Only released tasks that had not started are told; the running one
    // goes on, the queued ones end quietly.
    assert!(
        step.messages.is_empty(),
        "group 0: failed, succeeded, running"
    );
    assert!(!step.active);
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Aborted);
    assert_eq!(
        summary.counts,
        counts(&[
            (S::Failed, 1),
            (S::Succeeded, 1),
            (S::InProgress, 1),
            (S::Canceled, 3)
        ])
    );
    let view = within(fx.store.rollout_view(job))
        .await
        .expect("view")
        .expect("rollout");
    assert_eq!(view.phase, RolloutPhase::Aborted);
    assert!(view
        .abort_reason
        .expect("a reason")
        .contains("FAILED failures"));
    report(&fx, *c, t, R::Succeeded, T0 + 3 * SECOND).await;
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(
        summary.status,
        JobStatus::Aborted,
        "stays aborted as the last one ends"
    );
}

#[tokio::test]
async fn sent_executions_of_an_aborted_job_are_told_canceled() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 3).await;
    let policy = json!({"abort": [{"failureType": "REJECTED", "thresholdPercent": 10}]});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let sent = released(&advance(&fx, job, T0).await);
    let (a, t) = sent.iter().next().expect("one");
    report(&fx, *a, t, R::Rejected, T0 + SECOND).await;
    let step = advance(&fx, job, T0 + SECOND).await;
    assert_eq!(step.messages.len(), 2);
    for message in &step.messages {
        assert_eq!(notified(message, S::Canceled), sent[&message.appliance_id]);
    }
}

#[tokio::test]
async fn overdue_executions_time_out_from_release_and_from_their_last_change() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 2).await;
    let policy = json!({"timeouts": {"inProgressSeconds": 100, "stepSeconds": 30}});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let step = advance(&fx, job, T0).await;
    assert_eq!(
        step.wake_at,
        Some(T0 + 30 * SECOND),
        "the earliest deadline"
    );
    let sent = released(&step);
    let mut tasks = sent.iter();
    let (busy, busy_task) = tasks.next().expect("first");
    // One reports every 20 s (the step timeout never fires), the other
    // never does.
    for t in [20, 40, 60, 80] {
        report(&fx, *busy, busy_task, R::InProgress, T0 + t * SECOND).await;
        advance(&fx, job, T0 + t * SECOND).await;
    }
    assert_eq!(
        fx.counts(job).await,
        counts(&[(S::InProgress, 1), (S::TimedOut, 1)])
    );
    let step = advance(&fx, job, T0 + 100 * SECOND).await;
    assert!(step.messages.is_empty(), "a timeout publishes nothing");
    assert_eq!(fx.counts(job).await, counts(&[(S::TimedOut, 2)]));
    let late = within(fx.store.record_update(
        *busy,
        update(busy_task, R::Succeeded),
        T0 + 101 * SECOND,
    ))
    .await;
    assert!(matches!(late, Ok(UpdateResult::Rejected(_))), "{late:?}");
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Completed);
}

#[tokio::test]
async fn failed_executions_are_retried_after_their_backoff_under_a_new_task_id() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 2).await;
    let policy =
        json!({"retry": {"maxAttempts": 3, "failureType": "FAILED", "backoffSeconds": 10}});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let sent = released(&advance(&fx, job, T0).await);
    let mut tasks = sent.iter();
    let (a, first) = tasks.next().expect("first");
    let (b, other) = tasks.next().expect("second");
    report(&fx, *b, other, R::Succeeded, T0 + SECOND).await;
    report(&fx, *a, first, R::Failed, T0 + SECOND).await;
    let step = advance(&fx, job, T0 + 5 * SECOND).await;
    assert!(step.messages.is_empty(), "backing off");
    assert_eq!(step.wake_at, Some(T0 + 11 * SECOND));
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::InProgress, "a retry is to come");

    let retried = released(&advance(&fx, job, T0 + 11 * SECOND).await);
    let second = retried.get(a).expect("the failed one again");
    assert_ne!(second, first, "a retry is a new task id");
    let attempts = within(fx.store.list_attempts(job, None, 0, 10))
        .await
        .expect("list")
        .expect("job");
    assert_eq!(attempts.total, 3);
    let retry = attempts
        .items
        .iter()
        .find(|e| &e.task_id == second)
        .expect("listed");
    assert_eq!(retry.execution_number, 2);
    assert_eq!(
        fx.counts(job).await,
        counts(&[(S::Sent, 1), (S::Succeeded, 1)]),
        "latest attempts"
    );
    let latest = within(fx.store.list_executions(job, None, 0, 10))
        .await
        .expect("list")
        .expect("job");
    assert_eq!((latest.total, latest.items.len()), (2, 2));

    // The second failure backs off twice as long; the third is the last.
    report(&fx, *a, second, R::Failed, T0 + 12 * SECOND).await;
    assert!(advance(&fx, job, T0 + 31 * SECOND)
        .await
        .messages
        .is_empty());
    let third = released(&advance(&fx, job, T0 + 32 * SECOND).await)[a].clone();
    report(&fx, *a, &third, R::Failed, T0 + 33 * SECOND).await;
    let step = advance(&fx, job, T0 + 3600 * SECOND).await;
    assert!(step.messages.is_empty() && !step.active);
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.status, JobStatus::Completed);
    assert_eq!(summary.counts, counts(&[(S::Failed, 1), (S::Succeeded, 1)]));
    assert_eq!(phase(&fx, job).await, RolloutPhase::Completed);
}

#[tokio::test]
async fn a_retried_job_canceled_between_attempts_is_canceled() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 1).await;
    let policy = json!({"retry": {"maxAttempts": 2, "backoffSeconds": 60}});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let (a, task) = released(&advance(&fx, job, T0).await)
        .into_iter()
        .next()
        .expect("one");
    report(&fx, a, &task, R::Failed, T0 + SECOND).await;
    advance(&fx, job, T0 + 2 * SECOND).await;
    within(fx.store.cancel_job(job, false, T0 + 3 * SECOND))
        .await
        .expect("cancel")
        .expect("job");
    let step = advance(&fx, job, T0 + 120 * SECOND).await;
    assert!(
        step.messages.is_empty() && !step.active,
        "no retry after a cancel"
    );
    assert_eq!(phase(&fx, job).await, RolloutPhase::Canceled);
}

#[tokio::test]
async fn nothing_is_released_before_the_start_time_or_outside_the_window() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 2).await;
    // T0 is 2023-11-14T22:13:20Z; the window is 23:00-01:00 at +01:00,
    // i.e. 22:00-00:00 UTC: open at T0, but the start time is two hours on.
    let start = T0 + 2 * 3600 * SECOND;
    let policy = json!({"rollout": {"startAt": start,
        "window": {"start": "23:00", "end": "01:00", "utcOffset": "+01:00"}}});
    let job = planned(&fx, Targets::ApplianceIds(ids), policy).await;
    let step = advance(&fx, job, T0).await;
    assert_eq!((step.released, step.wake_at), (0, Some(start)));
    assert_eq!(phase(&fx, job).await, RolloutPhase::WaitingStart);
    // At the start time (00:13 UTC) the window is closed until 22:00 UTC.
    let step = advance(&fx, job, start).await;
    assert_eq!(step.released, 0);
    assert_eq!(phase(&fx, job).await, RolloutPhase::WaitingWindow);
    let opens = step.wake_at.expect("the window's opening");
    assert_eq!(
        opens,
        T0 - 800 * SECOND + 24 * 3600 * SECOND,
        "22:00 UTC the next day"
    );
    assert_eq!(advance(&fx, job, opens).await.released, 2);
}

#[tokio::test]
async fn a_continuous_job_reaches_appliances_its_customer_gains_later() {
    let fx = Fixture::new();
    let acme = within(fx.store.create_customer("acme", T0))
        .await
        .expect("customer");
    let first = fx.appliances(Some(acme), 1).await;
    fx.appliances(None, 1).await;
    let job = planned(&fx, Targets::CustomerId(acme), json!({"continuous": true})).await;
    let step = advance(&fx, job, T0).await;
    assert_eq!(released(&step).keys().copied().collect::<Vec<_>>(), first);
    report(
        &fx,
        first[0],
        &released(&step)[&first[0]],
        R::Succeeded,
        T0 + SECOND,
    )
    .await;
    assert!(
        advance(&fx, job, T0 + 2 * SECOND).await.active,
        "continuous: still running"
    );
    let later = fx.appliances(Some(acme), 2).await;
    assert!(
        advance(&fx, job, T0 + 5 * SECOND).await.messages.is_empty(),
        "checked every 10 s"
    );
    let step = advance(&fx, job, T0 + 10 * SECOND).await;
    let reached: HashSet<_> = released(&step).into_keys().collect();
    assert_eq!(reached, later.iter().copied().collect());
    let summary = within(fx.store.job_summary(job))
        .await
        .expect("summary")
        .expect("job");
    assert_eq!(summary.customer_id, Some(acme));
    assert_eq!(summary.status, JobStatus::InProgress);
    assert_eq!(summary.counts, counts(&[(S::Sent, 2), (S::Succeeded, 1)]));
}

#[tokio::test]
async fn a_customer_target_without_appliances_creates_nothing() {
    let fx = Fixture::new();
    let empty = within(fx.store.create_customer("empty", T0))
        .await
        .expect("customer");
    let job = NewJob {
        job_id: JobId::new_random(),
        customer_id: None,
        document: JobDocument::CollectMetrics {},
        targets: Vec::new(),
        now: T0,
    };
    let created = within(fx.store.create_planned_job(
        job,
        Targets::CustomerId(empty),
        JobPolicy::default(),
    ))
    .await
    .expect("no error");
    assert!(created.is_none());
    let missing = NewJob {
        job_id: JobId::new_random(),
        customer_id: None,
        document: JobDocument::CollectMetrics {},
        targets: Vec::new(),
        now: T0,
    };
    let refused = within(fx.store.create_planned_job(
        missing,
        Targets::CustomerId(CustomerId::new_random()),
        JobPolicy::default(),
    ))
    .await;
    assert!(matches!(
        refused,
        Err(crate::store::StoreError::UnknownCustomer(_))
    ));
}

#[tokio::test]
async fn two_stores_on_one_file_never_release_an_execution_twice() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 300).await;
    let job = planned(
        &fx,
        Targets::ApplianceIds(ids),
        json!({"rollout": {"maxPerMinute": 6000}}),
    )
    .await;
    let replica = Store::open(&fx.path(), Fixture::options()).expect("second store");
    let mut seen: HashMap<ApplianceId, TaskId> = HashMap::new();
    let mut total = 0;
    for second in 0..200 {
        let now = T0 + second * SECOND;
        let (a, b) = tokio::join!(
            fx.store.advance_rollout(job, 1000, now),
            replica.advance_rollout(job, 1000, now)
        );
        let (a, b) = (a.expect("first replica"), b.expect("second replica"));
        // Whoever claims first takes the step's batch; the other finds
        // nothing more due in that second.
        assert!(
            a.released == 0 || b.released == 0,
            "second {second}: {} + {}",
            a.released,
            b.released
        );
        for (appliance, task) in released(&a).into_iter().chain(released(&b)) {
            assert!(seen.insert(appliance, task).is_none(), "released twice");
        }
        total += a.released + b.released;
        if total == 300 {
            break;
        }
    }
    assert_eq!(total, 300);
    assert_eq!(fx.counts(job).await, counts(&[(S::Sent, 300)]));
    within(replica.close()).await.expect("close");
}
