//! Heartbeats, liveness and token renewal through the store, with time
//! passed in.

use protocol::message::{decode_notify, HeartbeatResult};
use protocol::{ExecutionStatus as S, ReportedStatus as R};

use super::*;
use crate::credentials::{hash_token, TokenPolicy};
use crate::model::ApplianceStatus;
use crate::presence::HeartbeatPolicy;
use crate::store::{UpdateResult, TOKEN_FIELD};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn policy() -> HeartbeatPolicy {
    HeartbeatPolicy {
        interval_ms: 5 * MINUTE,
        ..HeartbeatPolicy::default()
    }
}

fn result(clock: i64) -> HeartbeatResult {
    HeartbeatResult {
        version: "3.1.4".into(),
        clock,
        services: Vec::new(),
    }
}

async fn connect(fx: &Fixture, id: ApplianceId, now: i64) {
    let recorded = within(fx.store.record_presence(id, true, now)).await;
    assert!(recorded.expect("presence"));
}

async fn status(fx: &Fixture, id: ApplianceId) -> (ApplianceStatus, u32) {
    let liveness = within(fx.store.appliance_liveness(id))
        .await
        .expect("liveness")
        .expect("appliance");
    (liveness.status, liveness.heartbeats_unanswered)
}

#[tokio::test]
async fn heartbeats_go_to_connected_appliances_and_two_missed_make_them_offline() {
    let fx = Fixture::new();
    let ids = fx.appliances(None, 3).await;
    let (quiet, talkative, away) = (ids[0], ids[1], ids[2]);
    connect(&fx, quiet, T0).await;
    connect(&fx, talkative, T0).await;
    let store = &fx.store;

    // The first call schedules the first round one interval on.
    let first = within(store.heartbeat_round(policy(), 100, T0))
        .await
        .expect("round");
    assert!(first.messages.is_empty());
    assert_eq!(first.due_at, T0 + 5 * MINUTE);
    let early = within(store.heartbeat_round(policy(), 100, T0 + MINUTE))
        .await
        .expect("round");
    assert!(early.messages.is_empty(), "not due yet");

    for round in 1..=3 {
        let now = T0 + round * 5 * MINUTE;
        let batch = within(store.heartbeat_round(policy(), 100, now))
            .await
            .expect("round");
        assert_eq!(batch.due_at, now + 5 * MINUTE);
        let mut notified: Vec<ApplianceId> =
            batch.messages.iter().map(|m| m.appliance_id).collect();
        notified.sort();
        let mut expected = vec![quiet, talkative];
        expected.sort();
        assert_eq!(
            notified, expected,
            "only connected appliances; {away} is not"
        );
        for message in &batch.messages {
            let task = decode_notify(&message.payload).expect("notify").params.task;
            assert_eq!(task.task_id, TaskId::heartbeat(&message.appliance_id));
            assert_eq!(
                (task.status, task.version_number, task.queued_at),
                (S::Sent, 1, now)
            );
            assert_eq!(
                task.job_document,
                JobDocument::Heartbeat { server_time: now }
            );
        }
        let answered =
            store.record_heartbeat_reply(talkative, result(now + 100), policy(), now + 100);
        let check = within(answered).await.expect("reply").expect("known");
        assert!(!check.skewed);
        let expected_quiet = if round < 3 {
            (ApplianceStatus::Online, round as u32)
        } else {
            (ApplianceStatus::Offline, 3)
        };
        assert_eq!(status(&fx, quiet).await, expected_quiet, "round {round}");
        assert_eq!(status(&fx, talkative).await, (ApplianceStatus::Online, 0));
    }
    // Still connected, it is still sent heartbeats; its next reply brings
    // it back.
    let now = T0 + 20 * MINUTE;
    let back = store.record_heartbeat_reply(quiet, result(now), policy(), now);
    within(back).await.expect("reply").expect("known");
    assert_eq!(status(&fx, quiet).await, (ApplianceStatus::Online, 0));
    let liveness = within(store.appliance_liveness(quiet))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(
        (liveness.version.as_deref(), liveness.last_seen),
        (Some("3.1.4"), Some(now))
    );
    assert!(
        pending_outbox_has(&fx, quiet).await,
        "heartbeats are published through the outbox"
    );
    let unknown =
        store.record_heartbeat_reply(ApplianceId::new_random(), result(now), policy(), now);
    assert_eq!(within(unknown).await.expect("reply"), None);
}

async fn pending_outbox_has(fx: &Fixture, id: ApplianceId) -> bool {
    within(fx.store.pending_outbox(1000))
        .await
        .expect("outbox")
        .iter()
        .any(|m| m.appliance_id == id)
}

#[tokio::test]
async fn a_large_round_runs_in_batches_and_resumes_after_a_reopen() {
    let mut fx = Fixture::new();
    let ids = fx.appliances(None, 5).await;
    for id in &ids {
        connect(&fx, *id, T0).await;
    }
    within(fx.store.heartbeat_round(policy(), 2, T0))
        .await
        .expect("schedule");
    let due = T0 + 5 * MINUTE;
    let one = within(fx.store.heartbeat_round(policy(), 2, due))
        .await
        .expect("round");
    assert_eq!((one.messages.len(), one.more_now), (2, true));
    fx.reopen().await;
    let mut notified: Vec<ApplianceId> = one.messages.iter().map(|m| m.appliance_id).collect();
    let later = due + MINUTE;
    loop {
        let batch = within(fx.store.heartbeat_round(policy(), 2, later))
            .await
            .expect("round");
        for message in &batch.messages {
            let task = decode_notify(&message.payload).expect("notify").params.task;
            assert_eq!(task.queued_at, due, "the round keeps its serverTime");
            notified.push(message.appliance_id);
        }
        if !batch.more_now {
            assert_eq!(batch.due_at, due + 5 * MINUTE);
            break;
        }
    }
    notified.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(notified, expected, "each appliance once per round");
}

#[tokio::test]
async fn a_clock_more_than_five_minutes_off_is_flagged() {
    let fx = Fixture::new();
    let id = fx.appliances(None, 1).await[0];
    let now = T0 + MINUTE;
    let reply = fx
        .store
        .record_heartbeat_reply(id, result(now - 10 * MINUTE), policy(), now);
    let check = within(reply).await.expect("reply").expect("known");
    assert!(check.skewed);
    let liveness = within(fx.store.appliance_liveness(id))
        .await
        .expect("read")
        .expect("known");
    assert!(liveness.clock_skewed);
    assert_eq!(liveness.clock_skew_ms, Some(-10 * MINUTE));
    let fixed = fx
        .store
        .record_heartbeat_reply(id, result(now + 2 * MINUTE), policy(), now);
    within(fixed).await.expect("reply");
    let liveness = within(fx.store.appliance_liveness(id))
        .await
        .expect("read")
        .expect("known");
    assert!(!liveness.clock_skewed);
}

#[tokio::test]
async fn a_duty_is_claimed_once_per_due_time() {
    let fx = Fixture::new();
    let claim = |now, next| fx.store.claim_duty("tokens", now, next);
    assert_eq!(
        within(claim(T0, T0 + MINUTE)).await.expect("claim"),
        (true, T0 + MINUTE)
    );
    assert_eq!(
        within(claim(T0, T0 + MINUTE)).await.expect("claim"),
        (false, T0 + MINUTE)
    );
    let (first, second) = tokio::join!(
        claim(T0 + MINUTE, T0 + 2 * MINUTE),
        claim(T0 + MINUTE, T0 + 2 * MINUTE)
    );
    let claimed = [first.expect("claim").0, second.expect("claim").0];
    assert_eq!(claimed.iter().filter(|c| **c).count(), 1, "{claimed:?}");
}

/// The token carried by an updateApplianceConfig task.
async fn sent_token(fx: &Fixture, job: JobId) -> (ApplianceId, TaskId, String) {
    let task = fx
        .release(job, 10)
        .await
        .into_iter()
        .next()
        .expect("one execution");
    let page = within(fx.store.list_executions(job, None, 0, 1))
        .await
        .expect("list")
        .expect("job");
    assert_eq!(page.items[0].task_id, task.1);
    let got = within(fx.store.get_task(task.0, &task.1))
        .await
        .expect("get")
        .expect("task");
    let JobDocument::UpdateApplianceConfig { body } = got.job_document else {
        panic!("expected updateApplianceConfig, got {:?}", got.job_document);
    };
    let token = body[TOKEN_FIELD].as_str().expect("a token").to_owned();
    (task.0, task.1, token)
}

#[tokio::test]
async fn a_renewed_token_replaces_the_old_one_once_confirmed() {
    let fx = Fixture::new();
    let tokens = TokenPolicy::default();
    let id = fx.appliances(None, 1).await[0];
    // The fixture's tokens expire at T0 + 1_000_000.
    let expires = T0 + 1_000_000;
    let early = expires - tokens.renew_before_ms - 1;
    assert!(within(fx.store.token_renewals_due(tokens, early, 10))
        .await
        .expect("due")
        .is_empty());
    let now = expires - tokens.renew_before_ms;
    assert_eq!(
        within(fx.store.token_renewals_due(tokens, now, 10))
            .await
            .expect("due"),
        [id]
    );

    let started =
        fx.store
            .start_token_renewal(id, "new-token".into(), hash_token("new-token"), tokens, now);
    let (job, task) = within(started).await.expect("start").expect("due");
    let again = fx
        .store
        .start_token_renewal(id, "other".into(), hash_token("other"), tokens, now);
    assert_eq!(
        within(again).await.expect("start"),
        None,
        "one renewal at a time"
    );
    assert!(within(fx.store.token_renewals_due(tokens, now, 10))
        .await
        .expect("due")
        .is_empty());

    let credentials = within(fx.store.appliance_credentials(id))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(
        credentials.token_hash, "hash",
        "the old token still opens it"
    );
    assert_eq!(credentials.next_token_hash, Some(hash_token("new-token")));
    assert_eq!(credentials.next_token_expires_at, Some(tokens.expiry(now)));

    let (appliance, sent_task, token) = sent_token(&fx, job).await;
    assert_eq!(
        (appliance, &sent_task, token.as_str()),
        (id, &task, "new-token")
    );
    let settled = within(fx.store.settle_token_renewals(now + MINUTE))
        .await
        .expect("settle");
    assert_eq!(settled.confirmed, 0, "not confirmed yet");
    let done = fx
        .store
        .record_update(id, update(&task, R::Succeeded), now + MINUTE);
    assert!(matches!(within(done).await, Ok(UpdateResult::Accepted(_))));
    let settled = within(fx.store.settle_token_renewals(now + 2 * MINUTE))
        .await
        .expect("settle");
    assert_eq!((settled.confirmed, settled.failed), (1, 0));

    let credentials = within(fx.store.appliance_credentials(id))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(credentials.token_hash, hash_token("new-token"));
    assert_eq!(credentials.expires_at, tokens.expiry(now));
    assert_eq!(credentials.next_token_hash, None);
    let kept = within(fx.store.get_task(id, &task))
        .await
        .expect("get")
        .expect("task");
    let JobDocument::UpdateApplianceConfig { body } = kept.job_document else {
        panic!("expected updateApplianceConfig");
    };
    assert_eq!(body[TOKEN_FIELD], "", "the clear token is blanked out");
}

#[tokio::test]
async fn a_renewal_that_fails_is_dropped_and_tried_again_a_day_later() {
    let fx = Fixture::new();
    let tokens = TokenPolicy {
        lifetime_ms: 60 * DAY,
        renew_before_ms: 10 * DAY,
    };
    let id = fx.appliances(None, 1).await[0];
    let now = T0 + 1_000_000 - tokens.renew_before_ms;
    let started = fx
        .store
        .start_token_renewal(id, "t1".into(), hash_token("t1"), tokens, now);
    let (job, task) = within(started).await.expect("start").expect("due");
    fx.release(job, 1).await;
    let refused = fx
        .store
        .record_update(id, update(&task, R::Rejected), now + MINUTE);
    assert!(matches!(
        within(refused).await,
        Ok(UpdateResult::Accepted(_))
    ));
    let settled = within(fx.store.settle_token_renewals(now + MINUTE))
        .await
        .expect("settle");
    assert_eq!(settled.failed, 1);
    let credentials = within(fx.store.appliance_credentials(id))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(
        (credentials.token_hash.as_str(), credentials.next_token_hash),
        ("hash", None)
    );
    let soon = now + 2 * MINUTE;
    assert!(within(fx.store.token_renewals_due(tokens, soon, 10))
        .await
        .expect("due")
        .is_empty());
    let tomorrow = now + MINUTE + DAY;
    assert_eq!(
        within(fx.store.token_renewals_due(tokens, tomorrow, 10))
            .await
            .expect("due"),
        [id]
    );
}
