//! Every task type, the connect sequence and heartbeats.

use super::*;

#[test]
fn connect_subscribes_and_pulls_next() {
    let mut h = Harness::new(quiet(), 1, 0);
    let out = h.connect();
    let Action::Subscribe(filters) = &out[0] else {
        panic!("first action is not a subscribe: {out:?}");
    };
    assert_eq!(filters.len(), 3);
    assert!(out.iter().any(|a| matches!(a,
        Action::Publish { kind: MessageKind::JobGet, payload }
            if String::from_utf8_lossy(payload).contains("$next"))));
}

#[test]
fn every_task_type_reports_in_progress_then_terminal() {
    let mut h = Harness::new(quiet(), 1, 0);
    let connected = h.connect();
    h.run_to_quiet(connected);
    let body = json!({"timezone": "UTC", "applianceToken": "rotated"});
    let documents = vec![
        (JobDocument::InstallService(package("dns", "1.0")), None),
        (
            JobDocument::UpgradeService(package("dns", "1.1")),
            Some(file()),
        ),
        (
            JobDocument::ToggleService {
                service_code: "dns".into(),
                action: ToggleAction::Disable,
            },
            None,
        ),
        (
            JobDocument::ConfigureService {
                service_code: "dns".into(),
                settings: serde_json::Map::new(),
                setting_version: 3,
            },
            None,
        ),
        (
            JobDocument::UpdateApplianceConfig {
                body: body.as_object().cloned().unwrap_or_default(),
            },
            None,
        ),
        (
            JobDocument::CollectLog {
                start: 0,
                end: 64_000,
                upload_path: "/upload/1".into(),
            },
            None,
        ),
        (JobDocument::CollectMetrics {}, None),
        (
            JobDocument::ExtendStorage {
                storage: StorageExtension {
                    extend: vec![VolumeExtension {
                        target_volume: Volume::Image,
                        size: 1 << 30,
                    }],
                },
            },
            None,
        ),
        (JobDocument::Heartbeat { server_time: 42 }, None),
        (
            JobDocument::UpgradeAppliance {
                target_version: "2.0.0".into(),
                firmware_path: "/fw".into(),
                firmware_sha256: SHA.into(),
            },
            Some(file()),
        ),
        (
            JobDocument::UninstallService {
                service_code: "dns".into(),
            },
            None,
        ),
        (JobDocument::Unregister {}, None),
    ];
    let mut seen_types = Vec::new();
    for (document, job_file) in documents {
        seen_types.push(document.task_type());
        let t = task(document, job_file);
        let delivered = h.deliver(&t);
        let sent = h.run_to_quiet(delivered);
        let got = statuses(&sent, &t.task_id);
        if t.job_document.task_type() == protocol::TaskType::Heartbeat {
            // topics.md 5.3: a heartbeat is answered with one SUCCEEDED.
            assert_eq!(got, vec![ReportedStatus::Succeeded]);
            continue;
        }
        assert_eq!(
            got.first(),
            Some(&ReportedStatus::InProgress),
            "{:?}",
            t.job_document
        );
        assert_eq!(
            got.last(),
            Some(&ReportedStatus::Succeeded),
            "{:?}: {sent:?}",
            t.job_document
        );
        assert!(sent.iter().all(|u| u.client_token.is_some()));
    }
    seen_types.sort();
    seen_types.dedup();
    assert_eq!(seen_types.len(), protocol::TaskType::ALL.len());
    assert_eq!(h.app.machine().version, "2.0.0");
    assert_eq!(h.app.identity().token, "rotated");
    assert!(h.app.is_forgotten());
}

#[test]
fn heartbeat_carries_version_clock_and_services() {
    let behaviour = Behaviour {
        faults: FaultConfig {
            max_clock_skew: std::time::Duration::from_secs(5),
            ..FaultConfig::default()
        },
        ..quiet()
    };
    let mut h = Harness::new(behaviour, 3, 7);
    let connected = h.connect();
    h.run_to_quiet(connected);
    let t = task(JobDocument::Heartbeat { server_time: 1 }, None);
    let answered_at = h.now.wall;
    let delivered = h.deliver(&t);
    let sent = h.run_to_quiet(delivered);
    let result = sent
        .last()
        .and_then(|u| u.result.clone())
        .expect("heartbeat result");
    let hb: protocol::message::HeartbeatResult =
        serde_json::from_value(serde_json::Value::Object(result)).expect("HeartbeatResult");
    assert_eq!(hb.version, "1.0.0");
    assert_eq!(hb.clock, answered_at + h.app.machine().clock_skew_ms);
    assert!(h.app.machine().clock_skew_ms.abs() <= 5000);
    // Redelivery of the same heartbeat is ignored; a new one is answered.
    let again = h.deliver(&t);
    assert!(again.contains(&Action::Record(Record::Duplicate)));
    let next = task(JobDocument::Heartbeat { server_time: 2 }, None);
    let delivered = h.deliver(&next);
    assert_eq!(statuses(&h.run_to_quiet(delivered), &next.task_id).len(), 1);
}
