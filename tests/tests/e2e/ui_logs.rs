//! The frontend's log endpoint, `/ui/appliances/{id}/log`: a customer asks
//! a connected appliance for its logs, the appliance gets collectLog with
//! its own signed upload link and PUTs the archive, and the endpoint shows
//! the task's state, then a link that downloads the exact archive. Asking
//! again while the task waits for its archive answers that task; another
//! customer's appliance is a 404; bad windows are 400 and create nothing.

use hub::artifacts::Sha256Digest;
use hub::clock::ManualClock;
use protocol::message::Task;
use protocol::{JobDocument, ReplyCode};
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::{HubOptions, TestCustomer, ADMIN_TOKEN};
use tests::{wait_until, TestHub};

use crate::rest_flow::{connect, register, settled};
use crate::rest_refusals::fixture;

const HOUR: i64 = 3600 * 1000;
const START: i64 = 1_795_000_000_000;

async fn ui(
    hub: &TestHub,
    customer: &TestCustomer,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    hub.call(method, path, Some(&customer.api_key), body).await
}

/// The window and the upload link of a collectLog task.
fn collect_log(task: &Task) -> (i64, i64, String) {
    match &task.job_document {
        JobDocument::CollectLog {
            start,
            end,
            upload_path,
        } => (*start, *end, upload_path.clone()),
        other => panic!("expected collectLog, got {other:?}"),
    }
}

fn archive() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_asks_for_logs_and_downloads_the_archive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(START);
    let options = HubOptions {
        clock: Some(clock.clone()),
        ..HubOptions::default()
    };
    let hub = TestHub::start_with(dir.path(), options).await?;
    let customer = hub.customer("ACME").await?;
    let registered = register(&hub, &customer).await?;
    let id = registered["applianceId"].as_str().unwrap_or_default();
    let mut appliance = connect(&hub, &registered).await?;
    let path = format!("/ui/appliances/{id}/log/");
    let (status, none) = ui(&hub, &customer, Method::GET, &path, None).await?;
    assert_eq!((status, &none["status"]), (404, &json!(404)), "{none}");

    // The appliance is asked for a window and gets its own upload link.
    let window = json!({"start": START - HOUR, "end": START});
    let (status, asked) = ui(&hub, &customer, Method::POST, &path, Some(&window)).await?;
    assert_eq!(status, 202, "{asked}");
    let task = appliance.notify().await?.params.task;
    assert_eq!(asked["taskId"], task.task_id.as_str());
    let (start, end, upload) = collect_log(&task);
    assert_eq!((start, end), (START - HOUR, START));
    let link = format!("/uploads/logs/{}?expires=", task.task_id);
    assert!(
        upload.contains(&link) && upload.contains("&sig="),
        "{upload}"
    );
    let (status, pending) = ui(&hub, &customer, Method::GET, &path, None).await?;
    assert_eq!(status, 200);
    let mut expected = json!({"taskId": asked["taskId"], "jobId": asked["jobId"],
        "applianceId": id, "state": "pending", "status": "SENT"});
    assert_eq!(pending, expected);

    // Asking again, whatever the window, answers the open task.
    settled(&hub).await?;
    let before = hub.fingerprint().await?;
    for body in [None, Some(json!({})), Some(json!({"start": 0, "end": 1}))] {
        let (status, again) = ui(&hub, &customer, Method::POST, &path, body.as_ref()).await?;
        assert_eq!((status, &again), (200, &asked), "{body:?}");
    }
    assert_eq!(hub.fingerprint().await?, before);

    // The archive is uploaded: the endpoint links it, the link serves it.
    let bytes = archive();
    let put = hub.http().put(&upload).body(bytes.clone()).send().await?;
    assert_eq!(put.status().as_u16(), 200);
    let (_, uploaded) = ui(&hub, &customer, Method::GET, &path, None).await?;
    let url = uploaded["downloadUrl"].as_str().unwrap_or_default();
    expected["state"] = json!("uploaded");
    expected["downloadUrl"] = json!(url);
    expected["size"] = json!(bytes.len());
    expected["sha256"] = json!(Sha256Digest::of(&bytes).to_string());
    expected["uploadedAt"] = json!(START);
    assert_eq!(uploaded, expected);
    assert!(
        url.contains(&format!("/logs/{}?expires=", task.task_id)),
        "{url}"
    );
    let download = hub.http().get(url).send().await?;
    assert_eq!(download.status().as_u16(), 200);
    assert!(
        download.bytes().await?.as_ref() == bytes,
        "the archive's bytes"
    );

    // With the archive in, a request asks anew: the last 24 hours.
    let reply = appliance
        .update(json!({"taskId": task.task_id, "status": "SUCCEEDED"}))
        .await?;
    assert_eq!(reply.code, ReplyCode::Ok, "{}", reply.message);
    clock.advance(HOUR);
    let (status, anew) = ui(&hub, &customer, Method::POST, &path, None).await?;
    assert_eq!(status, 202, "{anew}");
    assert_ne!(anew["taskId"], asked["taskId"]);
    let next = appliance.notify().await?.params.task;
    assert_eq!(anew["taskId"], next.task_id.as_str());
    let (start, end, _) = collect_log(&next);
    assert_eq!((start, end), (START + HOUR - 24 * HOUR, START + HOUR));
    let (_, latest) = ui(&hub, &customer, Method::GET, &path, None).await?;
    assert_eq!(
        (&latest["taskId"], &latest["state"]),
        (&anew["taskId"], &json!("pending"))
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_requests_are_scoped_to_the_customer_and_checked() -> anyhow::Result<()> {
    let f = fixture().await?;
    let (a, b) = (f.appliance.as_str(), f.other_appliance.as_str());
    let log = |id: &str| format!("/ui/appliances/{id}/log");
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let before = f.hub.fingerprint().await?;
    let mut cases = vec![
        (Method::POST, log(b), Some(&f.customer), None, 404),
        (Method::GET, log(b), Some(&f.customer), None, 404),
        (Method::POST, log(a), Some(&f.other), None, 404),
        (Method::POST, log(unknown), Some(&f.customer), None, 404),
        (
            Method::POST,
            log("NOT-A-UUID"),
            Some(&f.customer),
            None,
            400,
        ),
        (Method::POST, log(a), None, None, 401),
        (Method::GET, log(a), None, None, 401),
        (Method::GET, log(a), Some(&f.customer), None, 404),
    ];
    for body in [
        json!({"start": 2, "end": 1}),
        json!({"start": START * 2}),
        json!({"start": "yesterday"}),
        json!({"from": 1}),
        json!([]),
        Value::Null,
    ] {
        cases.push((Method::POST, log(a), Some(&f.customer), Some(body), 400));
    }
    for (method, path, customer, body, expected) in &cases {
        let token = customer.map(|c| c.api_key.as_str());
        let (status, answer) = f
            .hub
            .call(method.clone(), path, token, body.as_ref())
            .await?;
        assert_eq!(status, *expected, "{method} {path} {body:?}: {answer}");
        assert_eq!(answer["status"], json!(expected), "{answer}");
    }
    for (content_type, body) in [("application/json", "{\"start\":"), ("text/plain", "hello")] {
        let response = f
            .hub
            .request_as(Method::POST, &log(a), Some(&f.customer.api_key))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 400, "{content_type} {body}");
    }
    assert_eq!(
        f.hub.fingerprint().await?,
        before,
        "a refusal changed something"
    );

    // Once asked, the log is still not the other customer's to see.
    let (status, asked) = ui(&f.hub, &f.customer, Method::POST, &log(a), None).await?;
    assert_eq!(status, 202, "{asked}");
    let (status, _) = ui(&f.hub, &f.other, Method::GET, &log(a), None).await?;
    assert_eq!(status, 404);
    f.hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_task_that_ended_without_archive_is_asked_again() -> anyhow::Result<()> {
    let f = fixture().await?;
    let path = format!("/ui/appliances/{}/log", f.appliance);
    let (status, first) = ui(&f.hub, &f.customer, Method::POST, &path, None).await?;
    assert_eq!(status, 202, "{first}");
    wait_until("the task released", || async {
        let (_, view) = ui(&f.hub, &f.customer, Method::GET, &path, None).await?;
        Ok(view["status"] == "SENT")
    })
    .await?;

    // The appliance reports failure (over the REST fallback).
    let report = json!({"taskId": first["taskId"], "status": "failed",
        "errorMessage": "journal unreadable"});
    let tasks = format!("/va/{}/tasks", f.appliance);
    let (status, body) = f
        .hub
        .call(Method::POST, &tasks, Some(&f.token), Some(&report))
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, failed) = ui(&f.hub, &f.customer, Method::GET, &path, None).await?;
    assert_eq!(
        (&failed["state"], &failed["status"]),
        (&json!("pending"), &json!("FAILED"))
    );
    let (status, second) = ui(&f.hub, &f.customer, Method::POST, &path, None).await?;
    assert_eq!(status, 202, "{second}");
    assert_ne!(second["taskId"], first["taskId"]);

    // Canceled by an operator: asked anew too.
    let cancel = format!(
        "/api/v1/jobs/{}/cancel",
        second["jobId"].as_str().unwrap_or_default()
    );
    let (status, body) = f
        .hub
        .call(Method::POST, &cancel, Some(ADMIN_TOKEN), Some(&json!({})))
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, third) = ui(&f.hub, &f.customer, Method::POST, &path, None).await?;
    assert_eq!(status, 202, "{third}");
    assert_ne!(third["taskId"], second["taskId"]);
    f.hub.stop().await;
    Ok(())
}
