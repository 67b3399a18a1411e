//! Download links that expire (403) are replaced by asking for the task
//! by id; tasks caught up with `$next` are counted.

use protocol::message::{decode_get, GetTarget};

use super::*;

/// `(request id, target)` of every get published among `actions`.
fn gets_in(actions: &[Action]) -> Vec<(String, GetTarget)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish {
                kind: MessageKind::JobGet,
                payload,
            } => decode_get(payload).ok().map(|r| (r.id, r.params.task_id)),
            _ => None,
        })
        .collect()
}

fn downloads_in(actions: &[Action]) -> Vec<Download> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Download(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

impl Harness {
    fn get_reply(&mut self, id: &str, code: ReplyCode, task: Option<&Task>) -> Vec<Action> {
        let data = (code == ReplyCode::Ok).then(|| GetReplyData::One {
            task: task.cloned().map(Box::new),
        });
        let reply = Reply::new(id, MessageKind::JobGetReply, code, data, "");
        let payload = serde_json::to_vec(&reply).expect("json");
        let mut out = Vec::new();
        self.app
            .on_message(MessageKind::JobGetReply, &payload, self.now, &mut out);
        out
    }

    /// Connects and answers the first `$next` with nothing.
    fn connect_idle(&mut self) {
        let connected = self.connect();
        let (id, target) = gets_in(&connected).remove(0);
        assert_eq!(target, GetTarget::Next);
        self.get_reply(&id, ReplyCode::Ok, None);
    }

    fn expire(&mut self, task: &Task) -> Vec<Action> {
        let mut out = Vec::new();
        let expired = Err(DownloadFailure::Expired);
        self.app
            .on_download_done(&task.task_id, expired, self.now, &mut out);
        out
    }
}

fn install() -> Task {
    task(
        JobDocument::InstallService(package("dns", "1.4.2")),
        Some(file()),
    )
}

fn refreshed(task: &Task) -> Task {
    let mut fresh = task.clone();
    fresh.status = ExecutionStatus::InProgress;
    if let Some(file) = fresh.job_file.as_mut() {
        file.file_url = "/files/fw.img?sig=fresh".into();
    }
    fresh
}

#[test]
fn an_expired_link_is_fetched_again_by_id_and_the_download_resumes() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect_idle();
    let t = install();
    let started = h.deliver(&t);
    assert_eq!(downloads_in(&started).len(), 1);
    assert!(!downloads_in(&started)[0].resume);
    let asked = h.expire(&t);
    let (id, target) = gets_in(&asked).remove(0);
    assert_eq!(target, GetTarget::Task(t.task_id.clone()));
    assert!(updates_in(&asked)
        .iter()
        .all(|u| u.1.status == ReportedStatus::InProgress));

    let resumed = h.get_reply(&id, ReplyCode::Ok, Some(&refreshed(&t)));
    let download = downloads_in(&resumed).remove(0);
    assert!(download.resume, "resumes where it stopped");
    assert_eq!(download.url, "/files/fw.img?sig=fresh");
    assert!(resumed.contains(&Action::Record(Record::LinkRefreshed)));
    let sent = h.run_to_quiet(resumed);
    assert_eq!(
        statuses(&sent, &t.task_id).last(),
        Some(&ReportedStatus::Succeeded)
    );
    assert_eq!(h.app.machine().services.len(), 1);
}

#[test]
fn an_expired_link_while_offline_is_asked_for_on_reconnect_before_next() {
    let mut h = Harness::new(quiet(), 1, 0);
    h.connect_idle();
    let t = install();
    h.deliver(&t);
    h.app.on_disconnected();
    assert!(gets_in(&h.expire(&t)).is_empty(), "nothing sent offline");
    let connected = h.connect();
    let gets = gets_in(&connected);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].1, GetTarget::Task(t.task_id.clone()));
    // The hub forgot the task: the appliance stops working on it.
    let gone = h.get_reply(&gets[0].0, ReplyCode::NotFound, None);
    assert!(gone.contains(&Action::CancelTransfer));
    assert_eq!(h.app.current_task(), None);
}

#[test]
fn a_link_shown_again_by_next_is_kept_for_the_resume_after_a_crash() {
    let behaviour = Behaviour {
        faults: FaultConfig {
            crash_rate: 1.0,
            ..FaultConfig::default()
        },
        ..quiet()
    };
    let mut h = Harness::new(behaviour, 1, 0);
    h.connect_idle();
    let t = install();
    h.deliver(&t);
    let mut out = Vec::new();
    h.app
        .on_download_progress(&t.task_id, 1000, 1000, h.now, &mut out);
    assert!(out.iter().any(|a| matches!(a, Action::GoOffline { .. })));
    let connected = h.connect();
    let stale = downloads_in(&connected).remove(0);
    assert!(stale.resume);
    let (id, _) = gets_in(&connected).remove(0);
    let again = h.get_reply(&id, ReplyCode::Ok, Some(&refreshed(&t)));
    assert_eq!(again, vec![Action::Record(Record::Duplicate)]);
    let expired = h.expire(&t);
    let (id, _) = gets_in(&expired).remove(0);
    let resumed = h.get_reply(&id, ReplyCode::Ok, Some(&refreshed(&t)));
    assert_eq!(downloads_in(&resumed)[0].url, "/files/fw.img?sig=fresh");
}

#[test]
fn tasks_found_with_next_are_counted() {
    let mut h = Harness::new(quiet(), 1, 0);
    let connected = h.connect();
    let (id, _) = gets_in(&connected).remove(0);
    let t = task(JobDocument::CollectMetrics {}, None);
    let started = h.get_reply(&id, ReplyCode::Ok, Some(&t));
    assert!(started.contains(&Action::Record(Record::FromNext)));
    let notified = task(JobDocument::CollectMetrics {}, None);
    assert!(!h
        .deliver(&notified)
        .contains(&Action::Record(Record::FromNext)));
}

#[test]
fn a_throttled_get_is_repeated_unchanged_after_the_back_off() {
    let mut h = Harness::new(quiet(), 1, 0);
    let connected = h.connect();
    let (id, target) = gets_in(&connected).remove(0);
    let refused = h.get_reply(&id, ReplyCode::Throttled, None);
    assert_eq!(
        refused,
        vec![Action::Record(Record::Refused(ReplyCode::Throttled))]
    );
    let timeout = Behaviour::default().reply_timeout_ms;
    assert!(gets_in(&h.advance(timeout - 1)).is_empty());
    let again = gets_in(&h.advance(1));
    assert_eq!(again, vec![(id.clone(), target)]);
    let t = task(JobDocument::CollectMetrics {}, None);
    let started = h.get_reply(&id, ReplyCode::Ok, Some(&t));
    assert!(started.contains(&Action::Record(Record::FromNext)));
}
