//! Credentials of the REST surface with a clock the test moves: register
//! tokens expire and are renewed by the image endpoint, re-registering
//! rotates an appliance's token, `x-customer-id` counts only behind a
//! trusted gateway; the appliances' REST endpoints; operators' catalogs.

use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::{HubOptions, ADMIN_TOKEN};
use tests::TestHub;

use crate::rest_flow::register;

const DAY: i64 = 24 * 3600 * 1000;
const START: i64 = 1_795_000_000_000;

fn manual() -> (hub::clock::ManualClock, HubOptions) {
    let clock = hub::clock::ManualClock::new(START);
    let options = HubOptions {
        clock: Some(clock.clone()),
        ..HubOptions::default()
    };
    (clock, options)
}

/// Sends `facts` to `/va/register` with the register `token`; returns the
/// status and the answer.
async fn register_with(hub: &TestHub, token: &str, facts: &Value) -> anyhow::Result<(u16, Value)> {
    hub.call(Method::POST, "/va/register", Some(token), Some(facts))
        .await
}

/// A request without a body: method, path, bearer token, and the status it
/// must get.
type Case<'a> = (Method, &'a str, Option<&'a str>, u16);

/// Sends each case and checks its status, naming the case when it fails.
async fn check(hub: &TestHub, cases: &[Case<'_>]) -> anyhow::Result<()> {
    for (method, path, token, expected) in cases {
        let (status, body) = hub.call(method.clone(), path, *token, None).await?;
        assert_eq!(status, *expected, "{method} {path} with {token:?}: {body}");
    }
    Ok(())
}

/// Sends a request that must be refused with `expected`, checks that the
/// database is unchanged after it, and returns the error body.
async fn refused(
    hub: &TestHub,
    (method, path, token, expected): Case<'_>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let before = hub.fingerprint().await?;
    let (status, answer) = hub.call(method.clone(), path, token, body).await?;
    assert_eq!(status, expected, "{method} {path}: {answer}");
    let after = hub.fingerprint().await?;
    assert_eq!(after, before, "{method} {path} changed the database");
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_tokens_expire_and_the_image_endpoint_renews_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (clock, options) = manual();
    let hub = TestHub::start_with(dir.path(), options).await?;
    let customer = hub.customer("ACME").await?;
    let key = Some(customer.api_key.as_str());
    let facts = json!({"hostname": "va-1", "ipv4Address": "192.0.2.10", "version": "3.1.4",
        "totalCpu": 4, "totalMemory": 1024, "totalStorage": 1024});

    // The image endpoint hands out the stored token while it is valid.
    let (status, image) = hub
        .call(Method::GET, "/ui/appliances/image/", key, None)
        .await?;
    assert_eq!(status, 200, "{image}");
    assert_eq!(
        image["registrationToken"],
        customer.registration_token.as_str()
    );
    assert_eq!(image["expiresAt"], json!(START + 30 * DAY));

    clock.advance(30 * DAY);
    let expired = Some(customer.registration_token.as_str());
    let register = (Method::POST, "/va/register", expired, 401);
    let body = refused(&hub, register, Some(&facts)).await?;
    assert_eq!(body["cause"], "expired register token");

    let (_, image) = hub
        .call(Method::GET, "/ui/appliances/image", key, None)
        .await?;
    let fresh = image["registrationToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(fresh, customer.registration_token);
    let (status, answer) = register_with(&hub, &fresh, &facts).await?;
    assert_eq!(status, 201, "{answer}");

    // A token signed with another secret is forged.
    let other_dir = tempfile::tempdir()?;
    let other = TestHub::start(other_dir.path()).await?;
    let stranger = other.customer("Initech").await?;
    other.stop().await;
    let forged = Some(stranger.registration_token.as_str());
    let register = (Method::POST, "/va/register", forged, 401);
    let body = refused(&hub, register, Some(&facts)).await?;
    assert_eq!(body["cause"], "invalid register token");
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registering_rotates_the_appliance_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let customer = hub.customer("ACME").await?;
    let first = register(&hub, &customer).await?;
    let id = first["applianceId"].as_str().unwrap_or_default().to_owned();
    let old = first["applianceToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let health = format!("/va/{id}/healthz/");
    check(&hub, &[(Method::GET, &health, Some(&old), 200)]).await?;

    let facts = json!({"applianceId": id, "hostname": "va-1b", "ipv4Address": "192.0.2.11",
        "version": "3.1.5", "totalCpu": 8, "totalMemory": 2048, "totalStorage": 2048});
    let (status, second) = register_with(&hub, &customer.registration_token, &facts).await?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["applianceId"], id.as_str());
    let new = second["applianceToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(new, old);
    let cases = [
        (Method::GET, health.as_str(), Some(old.as_str()), 401),
        (Method::GET, health.as_str(), Some(new.as_str()), 200),
    ];
    check(&hub, &cases).await?;
    let (_, list) = hub
        .call(Method::GET, "/ui/appliances", Some(&customer.api_key), None)
        .await?;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["hostname"], "va-1b");

    // Another customer sending this id back gets an appliance of its own.
    let other = hub.customer("Globex").await?;
    let (status, theirs) = register_with(&hub, &other.registration_token, &facts).await?;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["applianceId"], id.as_str());
    check(&hub, &[(Method::GET, &health, Some(&new), 200)]).await?;
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_customer_id_counts_only_behind_a_trusted_gateway() -> anyhow::Result<()> {
    for trust_gateway in [false, true] {
        let dir = tempfile::tempdir()?;
        let options = HubOptions {
            trust_gateway,
            ..HubOptions::default()
        };
        let hub = TestHub::start_with(dir.path(), options).await?;
        let customer = hub.customer("ACME").await?;
        register(&hub, &customer).await?;
        let response = hub
            .request_as(Method::GET, "/ui/appliances", None)
            .header("x-customer-id", customer.customer_id.as_str())
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        if trust_gateway {
            assert_eq!((status, &body["total"]), (200, &json!(1)), "{body}");
        } else {
            assert_eq!(status, 401, "{body}");
        }
        let forged = hub
            .request_as(Method::GET, "/ui/appliances", None)
            .header("x-customer-id", "0f8fad5b-d9cb-469f-a165-70867728950e")
            .send()
            .await?;
        assert_eq!(forged.status().as_u16(), 401);
        hub.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_report_over_rest_with_their_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (clock, options) = manual();
    let hub = TestHub::start_with(dir.path(), options).await?;
    let customer = hub.customer("ACME").await?;
    let registered = register(&hub, &customer).await?;
    let id = registered["applianceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token = registered["applianceToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let va = |tail: &str| format!("/va/{id}/{tail}");

    let (status, health) = hub
        .call(Method::GET, &va("healthz"), Some(&token), None)
        .await?;
    assert_eq!((status, &health["serverTime"]), (200, &json!(START)));

    // A task created by the frontend, completed over REST.
    let (status, answer) = hub
        .call(
            Method::POST,
            &format!("/ui/appliances/{id}/metrics"),
            Some(&customer.api_key),
            None,
        )
        .await?;
    assert_eq!(status, 202, "{answer}");
    let task = answer["taskId"].as_str().unwrap_or_default().to_owned();
    let report = json!({"taskId": task, "status": "success", "result": {"posted": true}});
    // Not released yet? The scheduler releases it at once; wait for it.
    tests::wait_until("the task delivered", || async {
        let (_, view) = hub
            .call(
                Method::GET,
                &format!("/ui/tasks/{task}"),
                Some(&customer.api_key),
                None,
            )
            .await?;
        Ok(view["delivered"] == json!(true))
    })
    .await?;
    let (status, done) = hub
        .call(Method::POST, &va("tasks/"), Some(&token), Some(&report))
        .await?;
    assert_eq!(
        (status, &done["status"]),
        (200, &json!("SUCCEEDED")),
        "{done}"
    );
    let (status, again) = hub
        .call(Method::POST, &va("tasks"), Some(&token), Some(&report))
        .await?;
    assert_eq!(status, 409, "a finished task cannot finish again: {again}");

    let log = json!({"entries": [{"time": START, "actor": "admin", "action": "login"},
        {"time": START + 1, "action": "reboot", "detail": "requested"}]});
    let (status, recorded) = hub
        .call(Method::POST, &va("log"), Some(&token), Some(&log))
        .await?;
    assert_eq!((status, &recorded["recorded"]), (201, &json!(2)));
    let (status, _) = hub
        .call(
            Method::POST,
            &va("dns/metrics/"),
            Some(&token),
            Some(&json!({"qps": 120})),
        )
        .await?;
    assert_eq!(status, 201);

    // Tokens expire after 60 days.
    clock.advance(60 * DAY);
    check(&hub, &[(Method::GET, &va("healthz"), Some(&token), 401)]).await?;
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_publish_versions_services_and_tags() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for version in ["3.10.0.0", "3.9.0.10", "3.9.0.2", "10.0.0.0"] {
        let body = json!({"version": version, "firmwarePath": format!("fw/{version}.img"),
            "firmwareSha256": sha});
        let (status, answer) = hub.post("/api/v1/appliance-versions", &body).await?;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, _) = hub
        .post(
            "/api/v1/appliance-versions",
            &json!({"version": "3.9.0.2",
            "firmwarePath": "x", "firmwareSha256": sha}),
        )
        .await?;
    assert_eq!(status, 409);
    let (_, page) = hub.get("/api/v1/appliance-versions?limit=3").await?;
    let order: Vec<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(order, ["3.9.0.2", "3.9.0.10", "3.10.0.0"]);
    assert_eq!(page["total"], 4);
    let (_, page) = hub
        .get("/api/v1/appliance-versions?order=desc&offset=1&limit=1")
        .await?;
    assert_eq!(page["items"][0]["version"], "3.10.0.0");

    // Disabling the newest makes the one before it the upgrade target.
    let (status, _) = hub
        .post("/api/v1/appliance-versions/10.0.0.0/disable", &json!({}))
        .await?;
    assert_eq!(status, 200);
    let customer = hub.customer("ACME").await?;
    let key = Some(customer.api_key.as_str());
    let (_, image) = hub
        .call(Method::GET, "/ui/appliances/image", key, None)
        .await?;
    assert_eq!(image["latest"]["version"], "3.10.0.0");
    let (_, enabled) = hub.get("/api/v1/appliance-versions?enabled=true").await?;
    assert_eq!(enabled["total"], 3);

    // Tags with appliance counts.
    let registered = register(&hub, &customer).await?;
    let id = registered["applianceId"].clone();
    let (status, tag) = hub.post("/api/v1/tags", &json!({"name": "berlin"})).await?;
    assert_eq!(status, 201, "{tag}");
    let tag_id = tag["tagId"].as_str().unwrap_or_default().to_owned();
    hub.post("/api/v1/tags", &json!({"name": "empty"})).await?;
    let (status, added) = hub
        .post(
            &format!("/api/v1/tags/{tag_id}/appliances"),
            &json!({"applianceIds": [id, id]}),
        )
        .await?;
    assert_eq!((status, &added["added"]), (200, &json!(1)), "{added}");
    let (_, tags) = hub.get("/api/v1/tags?sortby=appliances&order=desc").await?;
    assert_eq!(tags["items"][0]["name"], "berlin");
    assert_eq!(tags["items"][0]["appliances"], 1);
    assert_eq!(tags["total"], 2);
    let (_, customers) = hub.get("/api/v1/customers").await?;
    assert_eq!(customers["items"][0]["appliances"], 1);

    // Tasks that download need the artifact in the store: these firmware
    // versions name one that was never uploaded.
    let upgrade = format!("/ui/appliances/{}/upgrade", id.as_str().unwrap_or_default());
    let answer = refused(&hub, (Method::POST, &upgrade, key, 400), None).await?;
    assert!(
        answer["cause"].as_str().unwrap_or_default().contains(sha),
        "{answer}"
    );
    let ntp = json!({"serviceCode": "ntp", "version": "1.0", "branch": "stable",
        "imagePath": "ntp.tar", "imageSha256": sha, "requestCpu": 0.5, "requestMemory": 1});
    assert_eq!(hub.post("/api/v1/service-versions", &ntp).await?.0, 201);
    let target = json!({"applianceId": id});
    let install = (Method::POST, "/ui/services/ntp/install", key, 400);
    let answer = refused(&hub, install, Some(&target)).await?;
    assert_eq!(answer["message"], "unknown artifact");

    // Capacity: a service bigger than the appliance is refused.
    let db = hub.upload_artifact("db.tar", b"db 1.0".to_vec()).await?;
    let big = json!({"serviceCode": "db", "version": "1.0", "branch": "stable",
        "imagePath": "db.tar", "imageSha256": db, "requestCpu": 64, "requestMemory": 1});
    assert_eq!(hub.post("/api/v1/service-versions", &big).await?.0, 201);
    let install = (Method::POST, "/ui/services/db/install", key, 409);
    let answer = refused(&hub, install, Some(&target)).await?;
    assert!(
        answer["cause"].as_str().unwrap_or_default().contains("cpu"),
        "{answer}"
    );
    check(
        &hub,
        &[(Method::GET, "/api/v1/tags", Some(ADMIN_TOKEN), 200)],
    )
    .await?;
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_create_jobs_for_their_own_appliances_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let acme = hub.customer("ACME").await?;
    let globex = hub.customer("Globex").await?;
    let mine = register(&hub, &acme).await?["applianceId"].clone();
    let theirs = register(&hub, &globex).await?["applianceId"].clone();
    let job = |target: &Value| json!({"taskType": "collectMetrics", "targets": {"applianceIds": [target]}});

    let key = Some(acme.api_key.as_str());
    let create = (Method::POST, "/api/v1/jobs", key, 400);
    refused(&hub, create, Some(&job(&theirs))).await?;

    let (status, created) = hub
        .call(Method::POST, "/api/v1/jobs", key, Some(&job(&mine)))
        .await?;
    assert_eq!(status, 201, "{created}");
    let path = format!(
        "/api/v1/jobs/{}",
        created["jobId"].as_str().unwrap_or_default()
    );
    let (status, summary) = hub.call(Method::GET, &path, key, None).await?;
    assert_eq!(
        (status, &summary["customerId"]),
        (200, &json!(acme.customer_id))
    );
    let executions = format!("{path}/executions");
    let cancel = format!("{path}/cancel");
    let other = Some(globex.api_key.as_str());
    check(
        &hub,
        &[
            (Method::GET, &path, other, 404),
            (Method::GET, &executions, other, 404),
            (Method::POST, &cancel, other, 404),
            (Method::GET, &path, Some(ADMIN_TOKEN), 200),
            (Method::GET, &path, Some("nobody"), 401),
        ],
    )
    .await?;
    hub.stop().await;
    Ok(())
}
