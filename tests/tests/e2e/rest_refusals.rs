//! Each endpoint's refusals: malformed JSON, wrong types, unknown ids,
//! another customer's resources, missing and forged tokens; each answers
//! the right status and the error body, and the database is unchanged.

use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::{TestCustomer, ADMIN_TOKEN};
use tests::TestHub;

use crate::rest_flow::register;

/// A hub with a customer, one registered appliance of it, and a second
/// customer with an appliance of its own.
pub struct Fixture {
    pub hub: TestHub,
    pub customer: TestCustomer,
    pub appliance: String,
    pub token: String,
    pub other: TestCustomer,
    pub other_appliance: String,
    /// The hub's data directory.
    pub dir: tempfile::TempDir,
}

pub async fn fixture() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let customer = hub.customer("ACME").await?;
    let other = hub.customer("Globex").await?;
    let registered = register(&hub, &customer).await?;
    let other_registered = register(&hub, &other).await?;
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Ok(Fixture {
        appliance: text(&registered, "applianceId"),
        token: text(&registered, "applianceToken"),
        other_appliance: text(&other_registered, "applianceId"),
        hub,
        customer,
        other,
        dir,
    })
}

/// One refused request: what is sent and the status it must get.
struct Refusal<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<Value>,
    status: u16,
}

fn refusal<'a>(
    method: Method,
    path: impl Into<String>,
    token: Option<&'a str>,
    body: Option<Value>,
    status: u16,
) -> Refusal<'a> {
    Refusal {
        method,
        path: path.into(),
        token,
        body,
        status,
    }
}

/// One POST to `path` with `token` for each of `bodies`, each refused as
/// invalid (400).
fn invalid_bodies<'a>(
    path: impl Into<String>,
    token: Option<&'a str>,
    bodies: Vec<Value>,
) -> Vec<Refusal<'a>> {
    let path = path.into();
    bodies
        .into_iter()
        .map(|body| refusal(Method::POST, path.clone(), token, Some(body), 400))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_answer_the_right_status_and_change_nothing() -> anyhow::Result<()> {
    let f = fixture().await?;
    let key = Some(f.customer.api_key.as_str());
    let other_key = Some(f.other.api_key.as_str());
    let admin = Some(ADMIN_TOKEN);
    let (a, b) = (f.appliance.as_str(), f.other_appliance.as_str());
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let facts = json!({"hostname": "va-9", "ipv4Address": "192.0.2.9", "version": "3.1.4",
        "totalCpu": 4, "totalMemory": 1024, "totalStorage": 1024});
    let sha = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    let registration = Some(f.customer.registration_token.as_str());
    let cases: Vec<Refusal> = [
        // Operators.
        vec![
            refusal(
                Method::POST,
                "/api/v1/customers",
                None,
                Some(json!({"name": "x"})),
                401,
            ),
            refusal(
                Method::POST,
                "/api/v1/customers",
                key,
                Some(json!({"name": "x"})),
                401,
            ),
        ],
        invalid_bodies(
            "/api/v1/customers",
            admin,
            vec![
                json!({"name": 5}),
                json!({"name": ""}),
                json!({"name": "x", "extra": 1}),
            ],
        ),
        vec![
            refusal(Method::GET, "/api/v1/customers?limit=0", admin, None, 400),
            refusal(
                Method::GET,
                "/api/v1/customers?sortby=id;drop",
                admin,
                None,
                400,
            ),
            refusal(
                Method::GET,
                "/api/v1/customers?order=sideways",
                admin,
                None,
                400,
            ),
        ],
        invalid_bodies(
            "/api/v1/appliance-versions",
            admin,
            vec![
                json!({"version": "3.2", "firmwarePath": "f", "firmwareSha256": sha}),
                json!({"version": "3.2.0.1", "firmwarePath": "f", "firmwareSha256": "ABC"}),
            ],
        ),
        vec![
            refusal(
                Method::POST,
                "/api/v1/appliance-versions/9.9.9.9/enable",
                admin,
                None,
                404,
            ),
            refusal(
                Method::POST,
                "/api/v1/appliance-versions/9.9.9.9/explode",
                admin,
                None,
                404,
            ),
        ],
        invalid_bodies(
            "/api/v1/service-versions",
            admin,
            vec![
                json!({"serviceCode": "a/b", "version": "1", "branch": "s", "imagePath": "p",
                    "imageSha256": sha, "requestCpu": 1, "requestMemory": 1}),
                json!({"serviceCode": "dns", "version": "1", "branch": "s", "imagePath": "p",
                    "imageSha256": sha, "requestCpu": -1, "requestMemory": 1}),
            ],
        ),
        vec![
            refusal(
                Method::POST,
                "/api/v1/service-versions/dns/1.0/enable",
                admin,
                None,
                404,
            ),
            refusal(
                Method::POST,
                "/api/v1/tags",
                admin,
                Some(json!({"name": ["x"]})),
                400,
            ),
            refusal(
                Method::POST,
                format!("/api/v1/tags/{unknown}/appliances"),
                admin,
                Some(json!({"applianceIds": [a]})),
                404,
            ),
            refusal(
                Method::POST,
                "/api/v1/tags/not-a-uuid/appliances",
                admin,
                Some(json!({"applianceIds": [a]})),
                400,
            ),
        ],
        // Registration.
        vec![
            refusal(Method::POST, "/va/register", None, Some(facts.clone()), 401),
            refusal(
                Method::POST,
                "/va/register",
                Some("a.b.c"),
                Some(facts.clone()),
                401,
            ),
            refusal(Method::POST, "/va/register", key, Some(facts.clone()), 401),
        ],
        invalid_bodies(
            "/va/register",
            registration,
            vec![
                json!({"hostname": "va-9"}),
                json!({"hostname": "va 9", "ipv4Address": "192.0.2.9", "version": "3",
                    "totalCpu": 4, "totalMemory": 1, "totalStorage": 1}),
                json!({"hostname": "va-9", "ipv4Address": "999.0.2.9", "version": "3",
                    "totalCpu": 4, "totalMemory": 1, "totalStorage": 1}),
                json!({"hostname": "va-9", "ipv4Address": "192.0.2.9", "version": "3",
                    "totalCpu": 0, "totalMemory": 1, "totalStorage": 1}),
            ],
        ),
        // Appliances' own endpoints.
        vec![
            refusal(Method::GET, format!("/va/{a}/healthz"), None, None, 401),
            refusal(
                Method::GET,
                format!("/va/{b}/healthz"),
                Some(&f.token),
                None,
                401,
            ),
            refusal(
                Method::POST,
                format!("/va/{a}/tasks"),
                Some(&f.token),
                Some(json!({"taskId": unknown, "status": "success"})),
                404,
            ),
        ],
        invalid_bodies(
            format!("/va/{a}/tasks"),
            Some(&f.token),
            vec![json!({"taskId": unknown, "status": "done"})],
        ),
        invalid_bodies(
            format!("/va/{a}/log"),
            Some(&f.token),
            vec![
                json!({"entries": []}),
                json!({"entries": [{"time": "now", "action": "x"}]}),
            ],
        ),
        invalid_bodies(
            format!("/va/{a}/a+b/metrics"),
            Some(&f.token),
            vec![json!({})],
        ),
        invalid_bodies(
            format!("/va/{a}/dns/metrics"),
            Some(&f.token),
            vec![json!([1])],
        ),
        // The frontend.
        vec![
            refusal(Method::GET, "/ui/appliances", None, None, 401),
            refusal(Method::GET, "/ui/appliances", Some("wrong-key"), None, 401),
            refusal(
                Method::GET,
                "/ui/appliances?start=yesterday",
                key,
                None,
                400,
            ),
            refusal(
                Method::GET,
                "/ui/appliances?applianceId=nope",
                key,
                None,
                400,
            ),
            refusal(
                Method::DELETE,
                format!("/ui/appliances/{b}"),
                key,
                None,
                404,
            ),
            refusal(
                Method::DELETE,
                format!("/ui/appliances/{unknown}"),
                key,
                None,
                404,
            ),
            refusal(
                Method::DELETE,
                format!("/ui/appliances/{a}"),
                other_key,
                None,
                404,
            ),
            refusal(
                Method::POST,
                format!("/ui/appliances/{a}/upgrade"),
                key,
                None,
                409,
            ),
            refusal(
                Method::POST,
                format!("/ui/appliances/{b}/upgrade"),
                key,
                None,
                404,
            ),
            refusal(
                Method::GET,
                format!("/ui/appliances/{b}/settings"),
                key,
                None,
                404,
            ),
        ],
        invalid_bodies(
            format!("/ui/appliances/{a}/settings"),
            key,
            vec![
                json!({}),
                json!({"timeZone": 5}),
                json!({"scheduleUpdateTime": "25:00"}),
                json!({"color": "red"}),
            ],
        ),
        vec![refusal(
            Method::GET,
            format!("/ui/appliances/{b}/storage"),
            key,
            None,
            404,
        )],
        invalid_bodies(
            format!("/ui/appliances/{a}/storage"),
            key,
            vec![
                json!({"extend": []}),
                json!({"extend": [{"targetVolume": "root", "size": 1}]}),
            ],
        ),
        vec![
            refusal(
                Method::POST,
                format!("/ui/appliances/{b}/metrics"),
                key,
                None,
                404,
            ),
            refusal(
                Method::GET,
                format!("/ui/appliances/{b}/services"),
                key,
                None,
                404,
            ),
            refusal(
                Method::POST,
                "/ui/services/dns/install",
                key,
                Some(json!({"applianceId": a})),
                404,
            ),
            refusal(
                Method::POST,
                "/ui/services/dns/install",
                key,
                Some(json!({"applianceId": 5})),
                400,
            ),
            refusal(
                Method::POST,
                "/ui/services/dns/uninstall",
                key,
                Some(json!({"applianceId": a})),
                404,
            ),
            refusal(
                Method::POST,
                "/ui/services/dns/upgrade",
                key,
                Some(json!({"applianceId": b})),
                404,
            ),
            refusal(
                Method::POST,
                format!("/ui/services/dns/{a}/toggle"),
                key,
                Some(json!({"action": "enable"})),
                404,
            ),
            refusal(
                Method::POST,
                format!("/ui/services/dns/{a}/toggle"),
                key,
                Some(json!({"action": "restart"})),
                400,
            ),
            refusal(
                Method::GET,
                format!("/ui/services/dns/{b}/settings"),
                key,
                None,
                404,
            ),
            refusal(
                Method::POST,
                format!("/ui/services/dns/{a}/settings"),
                key,
                Some(json!({"settings": []})),
                400,
            ),
            refusal(Method::GET, format!("/ui/tasks/{unknown}"), key, None, 404),
            refusal(Method::GET, "/ui/tasks/$next", key, None, 404),
        ],
    ]
    .into_iter()
    .flatten()
    .collect();
    let before = f.hub.fingerprint().await?;
    for case in &cases {
        let (status, body) = f
            .hub
            .call(
                case.method.clone(),
                &case.path,
                case.token,
                case.body.as_ref(),
            )
            .await?;
        let name = format!("{} {} {:?}", case.method, case.path, case.body);
        assert_eq!(status, case.status, "{name}: {body}");
        assert_eq!(body["status"], json!(case.status), "{name}");
        assert!(
            body["message"].is_string() && body["cause"].is_string(),
            "{name}: {body}"
        );
    }
    assert_eq!(
        f.hub.fingerprint().await?,
        before,
        "a refused request changed the database"
    );

    // Malformed JSON and the wrong content type, on one endpoint of each kind.
    for (path, token) in [
        ("/api/v1/customers", admin),
        ("/ui/services/dns/install", key),
    ] {
        let (status, body) =
            send_raw(&f.hub, path, token, "application/json", "{\"name\":").await?;
        assert_eq!(status, 400, "{body}");
        let (status, _) = send_raw(&f.hub, path, token, "text/plain", "name=x").await?;
        assert_eq!(status, 415);
    }
    assert_eq!(f.hub.fingerprint().await?, before);
    f.hub.stop().await;
    Ok(())
}

async fn send_raw(
    hub: &TestHub,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = hub
        .request_as(Method::POST, path, token)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}
