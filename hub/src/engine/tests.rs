//! Table-driven tests of the engine: every (state, reported status) pair
//! and every (state, hub action) pair, allowed and forbidden, then the
//! version, token and terminal rules.

use std::collections::{BTreeMap, HashSet};

use protocol::message::{UpdateParams, UpdateReplyData};
use protocol::{ExecutionStatus as S, ReplyCode, ReportedStatus as R, TaskId};

use super::*;
use RejectionKind::{InvalidTransition, TerminalState};

const T0: i64 = 1_700_000_000_000;

/// Every (current status, reported status) pair and what the engine must do.
#[rustfmt::skip]
const DEVICE_TABLE: [(S, R, Result<S, RejectionKind>); 36] = [
    (S::Queued, R::InProgress, Err(InvalidTransition)),
    (S::Queued, R::Succeeded, Err(InvalidTransition)),
    (S::Queued, R::Failed, Err(InvalidTransition)),
    (S::Queued, R::Rejected, Err(InvalidTransition)),
    (S::Sent, R::InProgress, Ok(S::InProgress)),
    (S::Sent, R::Succeeded, Ok(S::Succeeded)),
    (S::Sent, R::Failed, Ok(S::Failed)),
    (S::Sent, R::Rejected, Ok(S::Rejected)),
    (S::InProgress, R::InProgress, Ok(S::InProgress)),
    (S::InProgress, R::Succeeded, Ok(S::Succeeded)),
    (S::InProgress, R::Failed, Ok(S::Failed)),
    (S::InProgress, R::Rejected, Ok(S::Rejected)),
    (S::Succeeded, R::InProgress, Err(TerminalState)),
    (S::Succeeded, R::Succeeded, Err(TerminalState)),
    (S::Succeeded, R::Failed, Err(TerminalState)),
    (S::Succeeded, R::Rejected, Err(TerminalState)),
    (S::Failed, R::InProgress, Err(TerminalState)),
    (S::Failed, R::Succeeded, Err(TerminalState)),
    (S::Failed, R::Failed, Err(TerminalState)),
    (S::Failed, R::Rejected, Err(TerminalState)),
    (S::Rejected, R::InProgress, Err(TerminalState)),
    (S::Rejected, R::Succeeded, Err(TerminalState)),
    (S::Rejected, R::Failed, Err(TerminalState)),
    (S::Rejected, R::Rejected, Err(TerminalState)),
    (S::TimedOut, R::InProgress, Err(TerminalState)),
    (S::TimedOut, R::Succeeded, Err(TerminalState)),
    (S::TimedOut, R::Failed, Err(TerminalState)),
    (S::TimedOut, R::Rejected, Err(TerminalState)),
    (S::Canceled, R::InProgress, Err(TerminalState)),
    (S::Canceled, R::Succeeded, Err(TerminalState)),
    (S::Canceled, R::Failed, Err(TerminalState)),
    (S::Canceled, R::Rejected, Err(TerminalState)),
    (S::Removed, R::InProgress, Err(TerminalState)),
    (S::Removed, R::Succeeded, Err(TerminalState)),
    (S::Removed, R::Failed, Err(TerminalState)),
    (S::Removed, R::Rejected, Err(TerminalState)),
];

/// The new status and whether the device is notified, or None when refused.
type HubExpect = Option<(S, bool)>;

/// Every (current status, hub action) pair and what the engine must do.
#[rustfmt::skip]
const HUB_TABLE: [(S, HubAction, HubExpect); 45] = {
    use HubAction::{Cancel, ForceCancel, Release, Remove, TimeOut};
    [
        (S::Queued, Release, Some((S::Sent, true))),
        (S::Queued, Cancel, Some((S::Canceled, false))),
        (S::Queued, ForceCancel, Some((S::Canceled, false))),
        (S::Queued, TimeOut, None),
        (S::Queued, Remove, Some((S::Removed, false))),
        (S::Sent, Release, None),
        (S::Sent, Cancel, Some((S::Canceled, true))),
        (S::Sent, ForceCancel, Some((S::Canceled, true))),
        (S::Sent, TimeOut, Some((S::TimedOut, false))),
        (S::Sent, Remove, Some((S::Removed, false))),
        (S::InProgress, Release, None),
        (S::InProgress, Cancel, None),
        (S::InProgress, ForceCancel, Some((S::Canceled, true))),
        (S::InProgress, TimeOut, Some((S::TimedOut, false))),
        (S::InProgress, Remove, Some((S::Removed, false))),
        (S::Succeeded, Release, None), (S::Succeeded, Cancel, None), (S::Succeeded, ForceCancel, None),
        (S::Succeeded, TimeOut, None), (S::Succeeded, Remove, None),
        (S::Failed, Release, None), (S::Failed, Cancel, None), (S::Failed, ForceCancel, None),
        (S::Failed, TimeOut, None), (S::Failed, Remove, None),
        (S::Rejected, Release, None), (S::Rejected, Cancel, None), (S::Rejected, ForceCancel, None),
        (S::Rejected, TimeOut, None), (S::Rejected, Remove, None),
        (S::TimedOut, Release, None), (S::TimedOut, Cancel, None), (S::TimedOut, ForceCancel, None),
        (S::TimedOut, TimeOut, None), (S::TimedOut, Remove, None),
        (S::Canceled, Release, None), (S::Canceled, Cancel, None), (S::Canceled, ForceCancel, None),
        (S::Canceled, TimeOut, None), (S::Canceled, Remove, None),
        (S::Removed, Release, None), (S::Removed, Cancel, None), (S::Removed, ForceCancel, None),
        (S::Removed, TimeOut, None), (S::Removed, Remove, None),
    ]
};

fn task() -> TaskId {
    "task-1".parse().expect("valid task id")
}

fn state(status: S, version: u64) -> ExecutionState {
    let mut state = ExecutionState::queued(1, T0);
    state.status = status;
    state.version_number = version;
    state
}

fn update(status: R) -> UpdateParams {
    UpdateParams {
        task_id: task(),
        status,
        progress: None,
        status_details: None,
        result: None,
        error_message: None,
        expected_version: None,
        client_token: None,
    }
}

fn applied(outcome: Result<UpdateOutcome, Rejection>) -> (ExecutionState, UpdateReplyData) {
    match outcome {
        Ok(UpdateOutcome::Applied { state, reply }) => (state, reply),
        other => panic!("expected Applied, got {other:?}"),
    }
}

#[test]
fn tables_cover_every_pair_once() {
    let device: HashSet<_> = DEVICE_TABLE.iter().map(|(s, r, _)| (*s, *r)).collect();
    assert_eq!(device.len(), S::ALL.len() * R::ALL.len());
    let hub: HashSet<_> = HUB_TABLE.iter().map(|(s, a, _)| (*s, *a)).collect();
    assert_eq!(hub.len(), S::ALL.len() * HubAction::ALL.len());
}

#[test]
fn every_state_and_reported_status() {
    for (from, reported, expected) in DEVICE_TABLE {
        let before = state(from, 7);
        let outcome = apply_update(&before, &task(), &update(reported), T0 + 5);
        match expected {
            Ok(to) => {
                let (after, reply) = applied(outcome);
                assert_eq!(after.status, to, "{from} + {reported}");
                assert_eq!(after.version_number, 8, "{from} + {reported}");
                assert_eq!(after.updated_at, T0 + 5);
                assert_eq!(after.finished_at.is_some(), to.is_terminal());
                assert_eq!(reply, after.reply(&task()));
            }
            Err(kind) => {
                let rejection = outcome.expect_err("refused");
                assert_eq!(rejection.kind, kind, "{from} + {reported}");
                assert_eq!(rejection.current, before.reply(&task()));
                assert_eq!(rejection.code(), ReplyCode::Conflict);
            }
        }
    }
}

#[test]
fn every_state_and_hub_action() {
    for (from, action, expected) in HUB_TABLE {
        let before = state(from, 3);
        let outcome = apply_hub(&before, action, T0 + 9);
        match expected {
            Some((to, notify)) => {
                let outcome = outcome.expect("allowed");
                assert_eq!(outcome.state.status, to, "{action} from {from}");
                assert_eq!(outcome.state.version_number, 4, "{action} from {from}");
                assert_eq!(outcome.notify, notify, "{action} from {from}");
                assert_eq!(outcome.state.updated_at, T0 + 9);
            }
            None => assert_eq!(outcome, Err(TransitionError { action, from })),
        }
    }
}

#[test]
fn named_hub_functions_match_their_actions() {
    let sent = state(S::Sent, 2);
    let running = state(S::InProgress, 2);
    assert_eq!(
        release(&state(S::Queued, 1), T0).map(|o| o.state.sent_at),
        Ok(Some(T0))
    );
    assert!(cancel(&running, false, T0).is_err());
    assert_eq!(
        cancel(&running, true, T0).map(|o| o.state.status),
        Ok(S::Canceled)
    );
    assert_eq!(time_out(&sent, T0).map(|o| o.state.status), Ok(S::TimedOut));
    assert_eq!(remove(&sent, T0).map(|o| o.state.status), Ok(S::Removed));
    let error = remove(&state(S::Succeeded, 2), T0).expect_err("terminal");
    assert_eq!(
        error.to_string(),
        "cannot remove an execution that is SUCCEEDED"
    );
}

#[test]
fn expected_version_is_checked_before_the_transition() {
    for from in S::ALL {
        let mut stale = update(R::InProgress);
        stale.expected_version = Some(4);
        let rejection = apply_update(&state(from, 5), &task(), &stale, T0).expect_err("refused");
        let kind = if from.is_terminal() {
            TerminalState
        } else {
            RejectionKind::VersionMismatch
        };
        assert_eq!(rejection.kind, kind, "{from}");
    }
    let mut current = update(R::InProgress);
    current.expected_version = Some(5);
    let (after, _) = applied(apply_update(&state(S::Sent, 5), &task(), &current, T0));
    assert_eq!(after.version_number, 6);
}

#[test]
fn a_repeated_client_token_gets_the_same_reply_and_changes_nothing() {
    let mut first = update(R::Succeeded);
    first.client_token = Some("tok-1".into());
    let (done, reply) = applied(apply_update(&state(S::InProgress, 2), &task(), &first, T0));
    assert_eq!(done.status, S::Succeeded);

    // Even though the execution is terminal now, and with a stale version.
    first.expected_version = Some(1);
    assert_eq!(
        apply_update(&done, &task(), &first, T0 + 1),
        Ok(UpdateOutcome::Duplicate {
            reply: reply.clone()
        })
    );
    // The token decides, not the content.
    let mut other_content = update(R::Failed);
    other_content.client_token = Some("tok-1".into());
    assert_eq!(
        apply_update(&done, &task(), &other_content, T0 + 1),
        Ok(UpdateOutcome::Duplicate { reply })
    );
    // A new token is judged on its own.
    other_content.client_token = Some("tok-2".into());
    let rejection = apply_update(&done, &task(), &other_content, T0 + 1).expect_err("terminal");
    assert_eq!(rejection.kind, TerminalState);
}

#[test]
fn rejected_updates_do_not_remember_their_token() {
    let mut early = update(R::InProgress);
    early.client_token = Some("tok".into());
    let queued = state(S::Queued, 1);
    assert!(apply_update(&queued, &task(), &early, T0).is_err());
    // Released meanwhile: the same request is now judged afresh and accepted.
    let sent = release(&queued, T0).expect("release").state;
    let (after, _) = applied(apply_update(&sent, &task(), &early, T0));
    assert_eq!(after.status, S::InProgress);
}

#[test]
fn recent_tokens_are_bounded_and_forget_the_oldest() {
    let mut current = state(S::Sent, 1);
    for i in 0..=MAX_RECENT_TOKENS {
        let mut progress = update(R::InProgress);
        progress.client_token = Some(format!("tok-{i}"));
        current = applied(apply_update(&current, &task(), &progress, T0)).0;
        assert!(current.recent_tokens.len() <= MAX_RECENT_TOKENS);
    }
    assert_eq!(current.recent_tokens.len(), MAX_RECENT_TOKENS);
    let tokens: Vec<_> = current
        .recent_tokens
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(tokens.first(), Some(&"tok-1"));
    assert_eq!(tokens.last(), Some(&"tok-8"));
    let mut oldest = update(R::InProgress);
    oldest.client_token = Some("tok-0".into());
    assert!(matches!(
        apply_update(&current, &task(), &oldest, T0),
        Ok(UpdateOutcome::Applied { .. })
    ));
}

#[test]
fn reported_fields_are_kept_until_replaced() {
    let mut first = update(R::InProgress);
    first.progress = Some(40);
    first.status_details = Some(BTreeMap::from([("step".into(), "download".into())]));
    let (s1, _) = applied(apply_update(&state(S::Sent, 1), &task(), &first, T0 + 1));
    assert_eq!(s1.started_at, Some(T0 + 1));

    let (s2, _) = applied(apply_update(&s1, &task(), &update(R::InProgress), T0 + 2));
    assert_eq!(s2.progress, Some(40));
    assert_eq!(s2.status_details, first.status_details);
    assert_eq!(s2.started_at, Some(T0 + 1), "started once");

    let mut done = update(R::Succeeded);
    done.progress = Some(10);
    let mut result = serde_json::Map::new();
    result.insert("version".into(), "2.0".into());
    done.result = Some(result.clone());
    let (s3, reply) = applied(apply_update(&s2, &task(), &done, T0 + 3));
    assert_eq!(s3.progress, Some(100), "SUCCEEDED means 100");
    assert_eq!(s3.result, Some(result));
    assert_eq!(s3.finished_at, Some(T0 + 3));
    assert_eq!(reply.version_number, 4);

    let mut failed = update(R::Failed);
    failed.error_message = Some("disk full".into());
    let (s4, _) = applied(apply_update(&s1, &task(), &failed, T0 + 3));
    assert_eq!(s4.error_message.as_deref(), Some("disk full"));
    assert_eq!(s4.progress, Some(40));
}

#[test]
fn rejection_messages_name_the_kind() {
    let messages: Vec<_> = RejectionKind::ALL.iter().map(|k| k.message()).collect();
    assert_eq!(
        messages,
        [
            "invalid state transition",
            "version mismatch",
            "terminal state reached"
        ]
    );
    for kind in RejectionKind::ALL {
        assert_eq!(kind.code().as_u16(), 409);
    }
}

#[test]
fn only_failed_and_timed_out_attempts_are_retried() {
    for from in S::ALL {
        let mut previous = state(from, 6);
        previous.execution_number = 2;
        previous
            .recent_tokens
            .push(("t".into(), previous.reply(&task())));
        match next_attempt(&previous, T0 + 7) {
            Ok(NextAttempt { task_id, state }) => {
                assert!(matches!(from, S::Failed | S::TimedOut), "{from}");
                assert_ne!(task_id, task());
                assert_eq!(state, ExecutionState::queued(3, T0 + 7));
            }
            Err(error) => {
                assert!(!matches!(from, S::Failed | S::TimedOut), "{from}");
                assert_eq!(error, RetryError::NotRetryable(from));
            }
        }
    }
    let mut last = state(S::Failed, 1);
    last.execution_number = u32::MAX;
    assert_eq!(
        next_attempt(&last, T0),
        Err(RetryError::Exhausted(u32::MAX))
    );
    let a = next_attempt(&state(S::Failed, 1), T0).expect("retry");
    let b = next_attempt(&state(S::Failed, 1), T0).expect("retry");
    assert_ne!(a.task_id, b.task_id, "every attempt has its own task id");
}
