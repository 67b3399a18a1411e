//! Faults: deterministic per seed, crash mid-download, rollback.

use super::*;

#[test]
fn faults_are_deterministic_for_one_seed() {
    let behaviour = || Behaviour {
        faults: FaultConfig {
            fail_rate: 0.2,
            reject_rate: 0.2,
            never_answer_rate: 0.1,
            max_clock_skew: std::time::Duration::from_secs(60),
            ..FaultConfig::default()
        },
        ..quiet()
    };
    let tasks: Vec<Task> = (0..40)
        .map(|_| task(JobDocument::CollectMetrics {}, None))
        .collect();
    let run = |index: u64| {
        let mut h = Harness::new(behaviour(), 42, index);
        let connected = h.connect();
        h.run_to_quiet(connected);
        let mut outcome = Vec::new();
        for t in &tasks {
            let delivered = h.deliver(t);
            outcome.push(statuses(&h.run_to_quiet(delivered), &t.task_id));
        }
        (outcome, h.app.machine().clock_skew_ms)
    };
    let (a, skew_a) = run(5);
    assert_eq!(run(5), (a.clone(), skew_a));
    assert_ne!(run(6).0, a);
    use ReportedStatus::*;
    assert!(a.contains(&vec![Rejected]), "{a:?}");
    assert!(a.contains(&vec![InProgress, Failed]));
    assert!(a.contains(&vec![InProgress, Succeeded]));
    assert!(a.contains(&vec![]), "never-answer leaves no report");
}

#[test]
fn crash_mid_download_resumes_and_rollback_reports_failed() {
    let behaviour = Behaviour {
        faults: FaultConfig {
            crash_rate: 1.0,
            rollback_rate: 1.0,
            ..FaultConfig::default()
        },
        ..quiet()
    };
    let mut h = Harness::new(behaviour, 1, 0);
    let connected = h.connect();
    h.run_to_quiet(connected);
    let t = task(
        JobDocument::UpgradeAppliance {
            target_version: "2.0.0".into(),
            firmware_path: "/fw".into(),
            firmware_sha256: SHA.into(),
        },
        Some(file()),
    );
    let delivered = h.deliver(&t);
    let Some(Action::Download(download)) = delivered
        .iter()
        .find(|a| matches!(a, Action::Download(_)))
        .cloned()
    else {
        panic!("no download: {delivered:?}");
    };
    let mut out = Vec::new();
    h.app
        .on_download_progress(&t.task_id, 999, 1000, h.now, &mut out);
    assert!(out.contains(&Action::GoOffline {
        reason: Offline::Crash,
        for_ms: 1000
    }));
    assert!(out.contains(&Action::Record(Record::Crash)));
    let reconnected = h.connect();
    let resumed = reconnected.iter().find_map(|a| match a {
        Action::Download(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(
        resumed,
        Some(Download {
            resume: true,
            ..download
        })
    );
    let mut rest = h.run_to_quiet(reconnected);
    rest.retain(|u| u.task_id == t.task_id);
    let last = rest.last().expect("a final report");
    assert_eq!(last.status, ReportedStatus::Failed);
    assert_eq!(
        last.result.as_ref().map(|r| r["rolledBack"].clone()),
        Some(json!(true))
    );
    assert_eq!(h.app.machine().version, "1.0.0");
}
