//! The artifact catalogue, the links tasks carry (jobFile, uploadPath) at
//! release and in `$next` / by-id reads, and log upload records.

use std::sync::Arc;

use protocol::document::ServicePackage;
use protocol::{ExecutionStatus as S, JobDocument, ReportedStatus as R, TaskId};
use rusqlite::Connection;

use super::*;
use crate::artifacts::{FileName, Sha256Digest};
use crate::store::{
    Artifact, ArtifactQuery, ArtifactSort, LogRecorded, LogUpload, TaskLinks, UpdateResult,
};

/// Links that show what they were asked to sign.
struct FakeLinks;

impl TaskLinks for FakeLinks {
    fn download_url(&self, artifact: &Artifact) -> String {
        format!("https://dl/{}/{}", artifact.sha256, artifact.name)
    }

    fn log_upload_url(&self, task: &TaskId) -> String {
        format!("https://up/{task}")
    }
}

fn linked() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with_links(
        &dir.path().join("hub.db"),
        Fixture::options(),
        Some(Arc::new(FakeLinks)),
    )
    .expect("open");
    Fixture { dir, store }
}

fn artifact(bytes: &[u8], name: &str, created_at: i64) -> Artifact {
    Artifact {
        sha256: Sha256Digest::of(bytes),
        name: name.parse::<FileName>().expect("name"),
        size: bytes.len() as u64,
        content_type: "application/octet-stream".into(),
        external_url: None,
        created_at,
    }
}

async fn job_of(fx: &Fixture, document: JobDocument, targets: &[ApplianceId]) -> JobId {
    let job_id = JobId::new_random();
    let created = fx.store.create_job(NewJob {
        job_id,
        customer_id: None,
        document,
        targets: targets.to_vec(),
        now: T0,
    });
    within(created).await.expect("job");
    job_id
}

fn upgrade(sha256: &Sha256Digest) -> JobDocument {
    JobDocument::UpgradeAppliance {
        target_version: "3.2.0".into(),
        firmware_path: "va-3.2.0.img".into(),
        firmware_sha256: sha256.to_string(),
    }
}

fn collect_log() -> JobDocument {
    JobDocument::CollectLog {
        start: 0,
        end: 1,
        upload_path: crate::store::UPLOAD_PATH_PLACEHOLDER.into(),
    }
}

#[tokio::test]
async fn the_catalogue_keeps_the_first_entry_of_a_digest_and_pages() {
    let fx = Fixture::new();
    let a = artifact(b"a", "a.img", T0 + 2);
    let b = artifact(b"bb", "b.img", T0 + 1);
    let (row, created) = within(fx.store.insert_artifact(a.clone()))
        .await
        .expect("a");
    assert!(created);
    assert_eq!(row, a);
    let again = Artifact {
        name: "other.img".parse().expect("name"),
        ..a.clone()
    };
    let (row, created) = within(fx.store.insert_artifact(again))
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(row, a, "the first entry is kept");
    within(fx.store.insert_artifact(b.clone()))
        .await
        .expect("b");

    let page = |sort, descending, offset, limit| {
        fx.store.list_artifacts(ArtifactQuery {
            offset,
            limit,
            sort,
            descending,
        })
    };
    let oldest = within(page(ArtifactSort::CreatedAt, false, 0, 1))
        .await
        .expect("page");
    assert_eq!((oldest.total, oldest.items), (2, vec![b.clone()]));
    let largest = within(page(ArtifactSort::Size, true, 0, 10))
        .await
        .expect("page");
    assert_eq!(largest.items, vec![b.clone(), a.clone()]);
    let by_name = within(page(ArtifactSort::Name, false, 1, 10))
        .await
        .expect("page");
    assert_eq!(by_name.items, vec![b.clone()]);
    let unknown = Sha256Digest::of(b"c");
    assert_eq!(
        within(fx.store.artifact(&unknown)).await.expect("get"),
        None
    );
    assert_eq!(
        within(fx.store.artifact(&a.sha256)).await.expect("get"),
        Some(a)
    );
}

#[tokio::test]
async fn released_tasks_carry_a_job_file_and_their_own_upload_link() {
    let fx = linked();
    let image = artifact(b"firmware", "va.img", T0);
    within(fx.store.insert_artifact(image.clone()))
        .await
        .expect("artifact");
    let appliances = fx.appliances(None, 2).await;
    let job = job_of(&fx, upgrade(&image.sha256), &appliances[..1]).await;
    let messages = within(fx.store.release(Some(job), 10, T0 + 10))
        .await
        .expect("release");
    let notify = decode_notify(&messages[0].payload).expect("notify");
    let file = notify.params.task.job_file.clone().expect("a jobFile");
    assert_eq!(file.sign, image.sha256.to_string());
    assert_eq!(file.file_size, 8);
    assert_eq!(file.file_url, format!("https://dl/{}/va.img", image.sha256));
    let task = notify.params.task.task_id;
    let next = within(fx.store.next_task(appliances[0]))
        .await
        .expect("next");
    assert_eq!(next.expect("a task").job_file, Some(file));

    let mut done = update(&task, R::Succeeded);
    done.result = serde_json::json!({"version": "3.2.0"}).as_object().cloned();
    let reply = fx.store.record_update(appliances[0], done, T0 + 20);
    assert!(matches!(within(reply).await, Ok(UpdateResult::Accepted(_))));
    let done = within(fx.store.get_task(appliances[0], &task))
        .await
        .expect("get");
    assert_eq!(
        done.expect("the task").job_file,
        None,
        "no jobFile once terminal"
    );

    let logs = job_of(&fx, collect_log(), &appliances).await;
    let messages = within(fx.store.release(Some(logs), 10, T0 + 30))
        .await
        .expect("release");
    assert_eq!(messages.len(), 2);
    for message in &messages {
        let task = decode_notify(&message.payload).expect("notify").params.task;
        let JobDocument::CollectLog { upload_path, .. } = &task.job_document else {
            panic!("a collectLog document");
        };
        assert_eq!(*upload_path, format!("https://up/{}", task.task_id));
        assert_eq!(task.job_file, None);
    }
    let canceled = within(fx.store.cancel_job(logs, false, T0 + 40))
        .await
        .expect("cancel");
    for message in canceled.expect("a job") {
        let task = decode_notify(&message.payload).expect("notify").params.task;
        assert_eq!((task.status, task.job_file), (S::Canceled, None));
    }
}

#[tokio::test]
async fn a_store_without_links_sends_tasks_as_stored() {
    let fx = Fixture::new();
    let image = artifact(b"pkg", "dns.tar", T0);
    within(fx.store.insert_artifact(image.clone()))
        .await
        .expect("artifact");
    let appliances = fx.appliances(None, 1).await;
    let package = ServicePackage {
        service_code: "dns".into(),
        target_version: "1.0".into(),
        branch: "stable".into(),
        image_path: "dns.tar".into(),
        image_sha256: image.sha256.to_string(),
    };
    let job = job_of(&fx, JobDocument::InstallService(package), &appliances).await;
    let messages = within(fx.store.release(Some(job), 10, T0 + 10))
        .await
        .expect("release");
    let notify = decode_notify(&messages[0].payload).expect("notify");
    assert_eq!(notify.params.task.job_file, None);
}

#[tokio::test]
async fn log_uploads_are_recorded_only_for_released_live_collect_log_tasks() {
    let fx = linked();
    let appliances = fx.appliances(None, 1).await;
    let a = appliances[0];
    let upload = |bytes: &[u8], at| LogUpload {
        sha256: Sha256Digest::of(bytes),
        size: bytes.len() as u64,
        uploaded_at: at,
    };
    let unknown = TaskId::new_random();
    let recorded = fx.store.record_log_upload(&unknown, upload(b"x", T0));
    assert_eq!(
        within(recorded).await.expect("record"),
        LogRecorded::NotFound
    );
    assert_eq!(
        within(fx.store.latest_log_task(a)).await.expect("latest"),
        None
    );

    let first = job_of(&fx, collect_log(), &appliances).await;
    let queued = within(fx.store.latest_log_task(a))
        .await
        .expect("latest")
        .expect("task");
    assert_eq!(
        (queued.job_id, queued.status, queued.upload),
        (first, S::Queued, None)
    );
    let recorded = fx
        .store
        .record_log_upload(&queued.task_id, upload(b"x", T0));
    assert_eq!(
        within(recorded).await.expect("record"),
        LogRecorded::Refused(S::Queued)
    );

    let task = fx.release(first, 1).await[&a].clone();
    let recorded = fx.store.record_log_upload(&task, upload(b"one", T0 + 1));
    let recorded = within(recorded).await.expect("record");
    assert_eq!(recorded, LogRecorded::Recorded { replaced: None });
    let recorded = fx.store.record_log_upload(&task, upload(b"two", T0 + 2));
    let replaced = Some(Sha256Digest::of(b"one"));
    assert_eq!(
        within(recorded).await.expect("record"),
        LogRecorded::Recorded { replaced }
    );
    let seen = within(fx.store.log_task(&task))
        .await
        .expect("read")
        .expect("task");
    assert_eq!(seen.upload, Some(upload(b"two", T0 + 2)));

    // Another, newer collectLog task becomes the latest; a metrics job
    // is not a log task at all.
    let second = job_of(&fx, collect_log(), &appliances).await;
    let metrics = fx.job(&appliances).await;
    let metrics_task = fx.release(metrics, 10).await;
    let latest = within(fx.store.latest_log_task(a))
        .await
        .expect("latest")
        .expect("task");
    assert_eq!(latest.job_id, second);
    let not_a_log = within(fx.store.log_task(&metrics_task[&a]))
        .await
        .expect("read");
    assert_eq!(not_a_log, None);

    within(fx.store.cancel_job(first, true, T0 + 3))
        .await
        .expect("cancel");
    let recorded = fx.store.record_log_upload(&task, upload(b"three", T0 + 4));
    assert_eq!(
        within(recorded).await.expect("record"),
        LogRecorded::Refused(S::Canceled)
    );
}

#[test]
fn the_latest_log_task_is_found_through_the_appliance_index() {
    let fx = Fixture::new();
    let conn = Connection::open(fx.path()).expect("open file");
    let sql = format!("EXPLAIN QUERY PLAN {}", *crate::store::logs::LATEST);
    let plan: Vec<String> = conn
        .prepare(&sql)
        .expect("plan")
        .query_map(["x"], |row| row.get(3))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let plan = plan.join("\n");
    assert!(plan.contains("executions_by_appliance"), "{plan}");
}
