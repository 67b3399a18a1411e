//! Duplicate suppression, retries by client token, cancel and conflicts.

use super::*;

#[test]
fn duplicate_task_id_is_never_run_twice() {
    let mut h = Harness::new(quiet(), 1, 0);
    let connected = h.connect();
    h.run_to_quiet(connected);
    let t = task(
        JobDocument::ExtendStorage {
            storage: StorageExtension {
                extend: vec![VolumeExtension {
                    target_volume: Volume::Data,
                    size: 10,
                }],
            },
        },
        None,
    );
    let first = h.deliver(&t);
    let again = h.deliver(&t);
    assert_eq!(again, vec![Action::Record(Record::Duplicate)]);
    let sent = h.run_to_quiet(first);
    let before = h.app.machine().data_bytes;
    assert_eq!(
        statuses(&sent, &t.task_id).last(),
        Some(&ReportedStatus::Succeeded)
    );
    // Redelivered after it finished (broker redelivery): not run again, its
    // recorded final report goes out again with the same client token.
    let later = h.deliver(&t);
    assert!(later.contains(&Action::Record(Record::Duplicate)));
    let repeated = updates_in(&later);
    assert_eq!(repeated.len(), 1);
    assert_eq!(Some(&repeated[0].1), sent.last());
    assert_eq!(h.app.machine().data_bytes, before);
}

#[test]
fn hub_still_offering_a_finished_task_gets_the_same_final_report() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect();
    let t = task(JobDocument::CollectMetrics {}, None);
    let started = updates_in(&h.deliver(&t));
    let after_reply = updates_in(&h.reply(&started[0], ReplyCode::Ok));
    let timeout = Behaviour::default().reply_timeout_ms;
    let final_update = after_reply.first().cloned().or_else(|| {
        updates_in(&h.advance(Behaviour::default().work_ms))
            .first()
            .cloned()
    });
    let final_update = final_update.expect("final report sent");
    assert_eq!(final_update.1.status, ReportedStatus::Succeeded);
    for tries in 1..=3 {
        h.advance(updates::retry_delay(timeout, tries));
    }
    assert!(h.app.in_flight().is_none(), "final report given up");
    // The final report got no reply; the hub offers the task again.
    let mut in_progress = t.clone();
    in_progress.status = ExecutionStatus::InProgress;
    let resent = updates_in(&h.deliver(&in_progress));
    assert_eq!(resent, vec![final_update.clone()]);
    // While that repeat awaits its reply, another offer adds nothing.
    let again = h.deliver(&in_progress);
    assert_eq!(again, vec![Action::Record(Record::Duplicate)]);
}

#[test]
fn missing_reply_resends_same_update_then_gives_up() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect();
    let t = task(JobDocument::CollectMetrics {}, None);
    let first = updates_in(&h.deliver(&t));
    assert_eq!(first.len(), 1);
    let timeout = Behaviour::default().reply_timeout_ms;
    for try_number in 2..=3 {
        // The wait doubles: 10 s, then 20 s.
        let early = h.advance(updates::retry_delay(timeout, try_number - 1) - 1);
        assert!(updates_in(&early).is_empty());
        let retry = h.advance(1);
        let again = updates_in(&retry);
        assert_eq!(
            again, first,
            "try {try_number} must repeat the same request"
        );
        assert!(retry.contains(&Action::Record(Record::Retry)));
    }
    let gave_up = h.advance(updates::retry_delay(timeout, 3));
    assert!(gave_up.contains(&Action::Record(Record::GaveUp)));
    // The next report (the terminal one) goes out once the first is given up.
    let next = updates_in(&gave_up);
    assert_eq!(
        next.first().map(|u| u.1.status),
        Some(ReportedStatus::Succeeded)
    );
    assert_ne!(next[0].1.client_token, first[0].1.client_token);
}

#[test]
fn late_reply_to_an_earlier_try_still_settles() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect();
    let t = task(JobDocument::CollectMetrics {}, None);
    let first = updates_in(&h.deliver(&t));
    h.advance(Behaviour::default().reply_timeout_ms);
    let out = h.reply(&first[0], ReplyCode::Ok);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Record(Record::Accepted { .. }))));
}

#[test]
fn cancel_stops_the_download_and_conflict_abandons() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect();
    let t = task(
        JobDocument::InstallService(package("web", "1")),
        Some(file()),
    );
    let started = h.deliver(&t);
    let mut canceled = t.clone();
    canceled.status = ExecutionStatus::Canceled;
    let out = h.deliver(&canceled);
    assert!(out.contains(&Action::CancelTransfer));
    assert!(out.contains(&Action::Record(Record::Canceled)));
    assert_eq!(h.app.current_task(), None);
    // The IN_PROGRESS report sent before the cancel meets a 409.
    let first = updates_in(&started);
    let refused = h.reply(&first[0], ReplyCode::Conflict);
    assert!(refused.contains(&Action::Record(Record::Refused(ReplyCode::Conflict))));
    assert!(h.app.machine().services.is_empty());
}

#[test]
fn unsupported_task_type_is_rejected_once() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect();
    let payload = br#"{"id":"n-1","version":"1.0","method":"thing.job.notify","params":{"task":{
        "taskId":"t-unknown","status":"SENT","executionNumber":1,"versionNumber":2,"queuedAt":1,
        "jobDocument":{"taskType":"reboot"}}}}"#;
    let mut out = Vec::new();
    h.app
        .on_message(MessageKind::JobNotify, payload, h.now, &mut out);
    let sent = updates_in(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.status, ReportedStatus::Rejected);
    assert!(sent[0]
        .1
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("reboot")));
    let mut again = Vec::new();
    h.app
        .on_message(MessageKind::JobNotify, payload, h.now, &mut again);
    assert!(updates_in(&again).is_empty());
}
