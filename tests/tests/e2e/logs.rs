//! Log collection end to end: a collectLog task carries its own signed
//! upload link, the appliance PUTs its archive (a second upload replaces
//! the first, refused ones change nothing), and the log service answers
//! the task's state, then a download link.

use hub::artifacts::logs::LogStatus;
use hub::artifacts::Sha256Digest;
use hub::config::{ByteSize, ServeArgs};
use protocol::{ExecutionStatus, JobDocument};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::{HubOptions, TestHub};

fn archive(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(
    hub: &TestHub,
    url: &str,
    body: Vec<u8>,
    sha: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = hub.http().put(url).body(body);
    if let Some(sha) = sha {
        request = request.header("x-sha256", sha);
    }
    let response = request.send().await?;
    Ok((response.status(), response.json().await?))
}

async fn download(hub: &TestHub, url: &str) -> anyhow::Result<(StatusCode, Vec<u8>)> {
    let response = hub.http().get(url).send().await?;
    Ok((response.status(), response.bytes().await?.to_vec()))
}

fn upload_path(document: &JobDocument) -> String {
    match document {
        JobDocument::CollectLog { upload_path, .. } => upload_path.clone(),
        other => panic!("not a collectLog document: {other:?}"),
    }
}

fn log_files(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs"))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_requested_uploaded_replaced_and_downloaded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let args = ServeArgs {
        public_host: Some("127.0.0.1".into()),
        max_log_size: Some(ByteSize(64 * 1024)),
        ..ServeArgs::default()
    };
    let hub = TestHub::start_with(
        dir.path(),
        HubOptions {
            args,
            ..HubOptions::default()
        },
    )
    .await?;
    let logs = hub.hub().logs();
    let ids = hub.provision(1).await?;
    let mut appliance = hub.connect_internal(ids[0].appliance_id).await?;
    assert_eq!(logs.latest(appliance.id).await?, None);

    let requested = logs.request(appliance.id, None, 1_000, 2_000).await?;
    let task = appliance.notify().await?.params.task;
    assert_eq!(task.task_id, requested.task_id);
    let url = upload_path(&task.job_document);
    assert!(
        url.contains(&format!("/uploads/logs/{}?expires=", task.task_id)),
        "{url}"
    );
    assert!(upload_path(&requested.document).contains(&format!("/uploads/logs/{}?", task.task_id)));
    let pending = logs.status(&task.task_id).await?;
    assert_eq!(
        pending.status,
        LogStatus::Pending {
            status: ExecutionStatus::Sent
        }
    );

    // The upload link is no download link, and a tampered one is refused.
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let as_download = format!("{}/logs/{}?{query}", hub.base, task.task_id);
    assert_eq!(download(&hub, &as_download).await?.0, StatusCode::FORBIDDEN);
    let tampered = url.replace("expires=", "expires=1");
    let (status, body) = put(&hub, &tampered, archive(10, 0), None).await?;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::FORBIDDEN, &json!(403))
    );

    let first = archive(20_000, 1);
    let (status, body) = put(&hub, &url, first.clone(), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sha256"], Sha256Digest::of(&first).to_string());
    let LogStatus::Uploaded {
        download_url, size, ..
    } = logs.status(&task.task_id).await?.status
    else {
        panic!("the archive is in");
    };
    assert_eq!(size, 20_000);
    assert_eq!(
        download(&hub, &download_url).await?,
        (StatusCode::OK, first.clone())
    );

    // A second upload replaces the first; refused ones change nothing.
    let second = archive(30_000, 2);
    let sha = Sha256Digest::of(&second).to_string();
    let (status, _) = put(&hub, &url, second.clone(), Some(&sha)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        download(&hub, &download_url).await?,
        (StatusCode::OK, second.clone())
    );
    let (status, _) = put(&hub, &url, archive(70_000, 3), None).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = put(&hub, &url, archive(100, 4), Some(&sha)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        download(&hub, &download_url).await?,
        (StatusCode::OK, second)
    );
    assert_eq!(
        log_files(dir.path())?,
        vec![format!("{}-{sha}", task.task_id)]
    );
    let latest = logs.latest(appliance.id).await?.expect("a log task");
    assert_eq!(latest.task_id, task.task_id);
    assert!(matches!(latest.status, LogStatus::Uploaded { .. }));

    // Through the jobs API, without an uploadPath: each task gets its own.
    let job = hub
        .create_job(
            json!({"taskType": "collectLog", "start": 0, "end": 1}),
            &[appliance.id],
        )
        .await?;
    let other = appliance.notify().await?.params.task;
    let other_url = upload_path(&other.job_document);
    assert!(
        other_url.contains(&format!("/uploads/logs/{}?", other.task_id)),
        "{other_url}"
    );
    let (status, _) = hub
        .post(&format!("/api/v1/jobs/{job}/cancel"), &json!({}))
        .await?;
    assert_eq!(status, 200);
    let (status, body) = put(&hub, &other_url, archive(10, 5), None).await?;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::CONFLICT, &json!(409)),
        "{body}"
    );
    assert_eq!(log_files(dir.path())?.len(), 1);
    hub.stop().await;
    Ok(())
}
