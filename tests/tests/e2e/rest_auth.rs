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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_tokens_expire_and_the_image_endpoint_renews_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (clock, options) = manual();
    let hub = TestHub::start_with(dir.path(), options).await?;
    let customer = hub.customer("ACME").await?;
    let facts = json!({"hostname": "va-1", "ipv4Address": "192.0.2.10", "version": "3.1.4",
        "totalCpu": 4, "totalMemory": 1024, "totalStorage": 1024});

    // The image endpoint hands out the stored token while it is valid.
    let (status, image) = hub
        .call(
            Method::GET,
            "/ui/appliances/image/",
            Some(&customer.api_key),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{image}");
    assert_eq!(
        image["registrationToken"],
        customer.registration_token.as_str()
    );
    assert_eq!(image["expiresAt"], json!(START + 30 * DAY));

    clock.advance(30 * DAY);
    let before = hub.fingerprint().await?;
    let (status, body) = hub
        .call(
            Method::POST,
            "/va/register",
            Some(&customer.registration_token),
            Some(&facts),
        )
        .await?;
    assert_eq!(
        (status, &body["cause"]),
        (401, &json!("expired register token"))
    );
    assert_eq!(
        hub.fingerprint().await?,
        before,
        "an expired token created something"
    );

    let (_, image) = hub
        .call(
            Method::GET,
            "/ui/appliances/image",
            Some(&customer.api_key),
            None,
        )
        .await?;
    let fresh = image["registrationToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(fresh, customer.registration_token);
    let (status, answer) = hub
        .call(Method::POST, "/va/register", Some(&fresh), Some(&facts))
        .await?;
    assert_eq!(status, 201, "{answer}");

    // A token signed with another secret is forged.
    let other_dir = tempfile::tempdir()?;
    let other = TestHub::start(other_dir.path()).await?;
    let stranger = other.customer("Initech").await?;
    other.stop().await;
    let before = hub.fingerprint().await?;
    let (status, body) = hub
        .call(
            Method::POST,
            "/va/register",
            Some(&stranger.registration_token),
            Some(&facts),
        )
        .await?;
    assert_eq!(
        (status, &body["cause"]),
        (401, &json!("invalid register token"))
    );
    assert_eq!(hub.fingerprint().await?, before);
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
    let (status, body) = hub.call(Method::GET, &health, Some(&old), None).await?;
    assert_eq!(status, 200, "{body}");

    let facts = json!({"applianceId": id, "hostname": "va-1b", "ipv4Address": "192.0.2.11",
        "version": "3.1.5", "totalCpu": 8, "totalMemory": 2048, "totalStorage": 2048});
    let (status, second) = hub
        .call(
            Method::POST,
            "/va/register",
            Some(&customer.registration_token),
            Some(&facts),
        )
        .await?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["applianceId"], id.as_str());
    let new = second["applianceToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(
        hub.call(Method::GET, &health, Some(&old), None).await?.0,
        401
    );
    assert_eq!(
        hub.call(Method::GET, &health, Some(&new), None).await?.0,
        200
    );
    let (_, list) = hub
        .call(Method::GET, "/ui/appliances", Some(&customer.api_key), None)
        .await?;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["hostname"], "va-1b");

    // Another customer sending this id back gets an appliance of its own.
    let other = hub.customer("Globex").await?;
    let (status, theirs) = hub
        .call(
            Method::POST,
            "/va/register",
            Some(&other.registration_token),
            Some(&facts),
        )
        .await?;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["applianceId"], id.as_str());
    assert_eq!(
        hub.call(Method::GET, &health, Some(&new), None).await?.0,
        200
    );
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
    assert_eq!(
        hub.call(Method::GET, &va("healthz"), Some(&token), None)
            .await?
            .0,
        401
    );
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
    let (_, image) = hub
        .call(
            Method::GET,
            "/ui/appliances/image",
            Some(&customer.api_key),
            None,
        )
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
    let before = hub.fingerprint().await?;
    let (status, refused) = hub
        .call(
            Method::POST,
            &format!("/ui/appliances/{}/upgrade", id.as_str().unwrap_or_default()),
            Some(&customer.api_key),
            None,
        )
        .await?;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["cause"].as_str().unwrap_or_default().contains(sha),
        "{refused}"
    );
    assert_eq!(hub.fingerprint().await?, before);
    let ntp = json!({"serviceCode": "ntp", "version": "1.0", "branch": "stable",
        "imagePath": "ntp.tar", "imageSha256": sha, "requestCpu": 0.5, "requestMemory": 1});
    assert_eq!(hub.post("/api/v1/service-versions", &ntp).await?.0, 201);
    let before = hub.fingerprint().await?;
    let (status, refused) = hub
        .call(
            Method::POST,
            "/ui/services/ntp/install",
            Some(&customer.api_key),
            Some(&json!({"applianceId": id})),
        )
        .await?;
    assert_eq!(
        (status, &refused["message"]),
        (400, &json!("unknown artifact"))
    );
    assert_eq!(hub.fingerprint().await?, before);

    // Capacity: a service bigger than the appliance is refused.
    let db = hub.upload_artifact("db.tar", b"db 1.0".to_vec()).await?;
    let big = json!({"serviceCode": "db", "version": "1.0", "branch": "stable",
        "imagePath": "db.tar", "imageSha256": db, "requestCpu": 64, "requestMemory": 1});
    assert_eq!(hub.post("/api/v1/service-versions", &big).await?.0, 201);
    let before = hub.fingerprint().await?;
    let (status, refused) = hub
        .call(
            Method::POST,
            "/ui/services/db/install",
            Some(&customer.api_key),
            Some(&json!({"applianceId": id})),
        )
        .await?;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("cpu"),
        "{refused}"
    );
    assert_eq!(hub.fingerprint().await?, before);
    let (status, _) = hub
        .call(Method::GET, "/api/v1/tags", Some(ADMIN_TOKEN), None)
        .await?;
    assert_eq!(status, 200);
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

    let before = hub.fingerprint().await?;
    let (status, refused) = hub
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&acme.api_key),
            Some(&job(&theirs)),
        )
        .await?;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(hub.fingerprint().await?, before);

    let (status, created) = hub
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&acme.api_key),
            Some(&job(&mine)),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let path = format!(
        "/api/v1/jobs/{}",
        created["jobId"].as_str().unwrap_or_default()
    );
    let (status, summary) = hub
        .call(Method::GET, &path, Some(&acme.api_key), None)
        .await?;
    assert_eq!(
        (status, &summary["customerId"]),
        (200, &json!(acme.customer_id))
    );
    assert_eq!(
        hub.call(Method::GET, &path, Some(&globex.api_key), None)
            .await?
            .0,
        404
    );
    let executions = format!("{path}/executions");
    assert_eq!(
        hub.call(Method::GET, &executions, Some(&globex.api_key), None)
            .await?
            .0,
        404
    );
    let cancel = format!("{path}/cancel");
    assert_eq!(
        hub.call(Method::POST, &cancel, Some(&globex.api_key), None)
            .await?
            .0,
        404
    );
    assert_eq!(
        hub.call(Method::GET, &path, Some(ADMIN_TOKEN), None)
            .await?
            .0,
        200
    );
    assert_eq!(
        hub.call(Method::GET, &path, Some("nobody"), None).await?.0,
        401
    );
    hub.stop().await;
    Ok(())
}
