//! Bad input on the REST surface: every route of `/openapi.json` gets a
//! battery of malformed requests and never answers 5xx; each endpoint's
//! refusals answer the right status and change nothing in the database.

use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::{TestCustomer, ADMIN_TOKEN};
use tests::TestHub;

use crate::rest_flow::register;

/// A hub with a customer, one registered appliance of it, and a second
/// customer with an appliance of its own.
struct Fixture {
    hub: TestHub,
    customer: TestCustomer,
    appliance: String,
    token: String,
    other: TestCustomer,
    other_appliance: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> anyhow::Result<Fixture> {
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
        _dir: dir,
    })
}

fn deep_nesting() -> String {
    format!("{}{}", "[".repeat(4096), "]".repeat(4096))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_answers_5xx_to_malformed_requests() -> anyhow::Result<()> {
    let f = fixture().await?;
    let (status, spec) = f.hub.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 30, "{} paths documented", paths.len());
    let ids = [
        f.appliance.clone(),
        f.other_appliance.clone(),
        "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
        "NOT-A-UUID".to_owned(),
        "%00%ff".to_owned(),
        "x".repeat(2000),
    ];
    let tokens = [
        None,
        Some(ADMIN_TOKEN.to_owned()),
        Some(f.customer.api_key.clone()),
        Some(f.token.clone()),
        Some("forged.token.value".to_owned()),
    ];
    let bodies: Vec<(Option<&str>, String)> = vec![
        (None, String::new()),
        (Some("application/json"), "{not json".into()),
        (Some("application/json"), "[]".into()),
        (Some("application/json"), "null".into()),
        (
            Some("application/json"),
            json!({"name": 7, "applianceId": [], "count": -1,
            "version": {}, "extend": "x", "entries": [{}], "settings": 1})
            .to_string(),
        ),
        (Some("application/json"), deep_nesting()),
        (Some("text/plain"), "hello".into()),
    ];
    let mut requests = 0;
    for (template, operations) in &paths {
        let methods: Vec<String> = operations
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for (i, id) in ids.iter().enumerate() {
            let path = fill(template, id, i);
            for method in &methods {
                let method: Method = method.to_uppercase().parse()?;
                for token in &tokens {
                    for (content_type, body) in &bodies {
                        let mut request = f.hub.request_as(method.clone(), &path, token.as_deref());
                        if let Some(content_type) = content_type {
                            request = request
                                .header("content-type", *content_type)
                                .body(body.clone());
                        }
                        let status = request.send().await?.status().as_u16();
                        requests += 1;
                        assert!(status < 500, "{method} {path} answered {status}");
                    }
                }
            }
        }
    }
    assert!(requests > 1000, "{requests} requests");
    f.hub.stop().await;
    Ok(())
}

/// The path with every `{param}` replaced: ids by `id`, the rest by a
/// value that varies with `i` (a real word some of the time).
fn fill(template: &str, id: &str, i: usize) -> String {
    let words = ["dns", "enable", "3.2.0.1", "disable", "..", "*"];
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        path.push_str(&rest[..start]);
        let name = &rest[start + 1..start + end];
        if name == "id" || name == "taskId" {
            path.push_str(id);
        } else {
            path.push_str(words[i % words.len()]);
        }
        rest = &rest[start + end + 1..];
    }
    path.push_str(rest);
    path
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
    let cases = vec![
        // Operators.
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
        refusal(
            Method::POST,
            "/api/v1/customers",
            admin,
            Some(json!({"name": 5})),
            400,
        ),
        refusal(
            Method::POST,
            "/api/v1/customers",
            admin,
            Some(json!({"name": ""})),
            400,
        ),
        refusal(
            Method::POST,
            "/api/v1/customers",
            admin,
            Some(json!({"name": "x", "extra": 1})),
            400,
        ),
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
        refusal(
            Method::POST,
            "/api/v1/appliance-versions",
            admin,
            Some(json!({"version": "3.2",
            "firmwarePath": "f", "firmwareSha256": sha})),
            400,
        ),
        refusal(
            Method::POST,
            "/api/v1/appliance-versions",
            admin,
            Some(json!({"version": "3.2.0.1",
            "firmwarePath": "f", "firmwareSha256": "ABC"})),
            400,
        ),
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
        refusal(
            Method::POST,
            "/api/v1/service-versions",
            admin,
            Some(json!({"serviceCode": "a/b",
            "version": "1", "branch": "s", "imagePath": "p", "imageSha256": sha,
            "requestCpu": 1, "requestMemory": 1})),
            400,
        ),
        refusal(
            Method::POST,
            "/api/v1/service-versions",
            admin,
            Some(json!({"serviceCode": "dns",
            "version": "1", "branch": "s", "imagePath": "p", "imageSha256": sha,
            "requestCpu": -1, "requestMemory": 1})),
            400,
        ),
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
        // Registration.
        refusal(Method::POST, "/va/register", None, Some(facts.clone()), 401),
        refusal(
            Method::POST,
            "/va/register",
            Some("a.b.c"),
            Some(facts.clone()),
            401,
        ),
        refusal(Method::POST, "/va/register", key, Some(facts.clone()), 401),
        refusal(
            Method::POST,
            "/va/register",
            Some(&f.customer.registration_token),
            Some(json!({"hostname": "va-9"})),
            400,
        ),
        refusal(
            Method::POST,
            "/va/register",
            Some(&f.customer.registration_token),
            Some(
                json!({"hostname": "va 9", "ipv4Address": "192.0.2.9", "version": "3",
            "totalCpu": 4, "totalMemory": 1, "totalStorage": 1}),
            ),
            400,
        ),
        refusal(
            Method::POST,
            "/va/register",
            Some(&f.customer.registration_token),
            Some(
                json!({"hostname": "va-9", "ipv4Address": "999.0.2.9", "version": "3",
            "totalCpu": 4, "totalMemory": 1, "totalStorage": 1}),
            ),
            400,
        ),
        refusal(
            Method::POST,
            "/va/register",
            Some(&f.customer.registration_token),
            Some(
                json!({"hostname": "va-9", "ipv4Address": "192.0.2.9", "version": "3",
            "totalCpu": 0, "totalMemory": 1, "totalStorage": 1}),
            ),
            400,
        ),
        // Appliances' own endpoints.
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
        refusal(
            Method::POST,
            format!("/va/{a}/tasks"),
            Some(&f.token),
            Some(json!({"taskId": unknown, "status": "done"})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/va/{a}/log"),
            Some(&f.token),
            Some(json!({"entries": []})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/va/{a}/log"),
            Some(&f.token),
            Some(json!({"entries": [{"time": "now", "action": "x"}]})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/va/{a}/a+b/metrics"),
            Some(&f.token),
            Some(json!({})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/va/{a}/dns/metrics"),
            Some(&f.token),
            Some(json!([1])),
            400,
        ),
        // The frontend.
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
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/settings"),
            key,
            Some(json!({})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/settings"),
            key,
            Some(json!({"timeZone": 5})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/settings"),
            key,
            Some(json!({"scheduleUpdateTime": "25:00"})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/settings"),
            key,
            Some(json!({"color": "red"})),
            400,
        ),
        refusal(
            Method::GET,
            format!("/ui/appliances/{b}/storage"),
            key,
            None,
            404,
        ),
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/storage"),
            key,
            Some(json!({"extend": []})),
            400,
        ),
        refusal(
            Method::POST,
            format!("/ui/appliances/{a}/storage"),
            key,
            Some(json!({"extend": [{"targetVolume": "root", "size": 1}]})),
            400,
        ),
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
    ];
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
        assert_eq!(status, case.status, "{} {}: {body}", case.method, case.path);
        assert_eq!(
            body["status"],
            json!(case.status),
            "{} {}",
            case.method,
            case.path
        );
        assert!(
            body["message"].is_string() && body["cause"].is_string(),
            "{body}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_endpoint_and_docs_serve_the_ui() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let (status, spec) = hub.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/healthz", "get"),
        ("/api/v1/jobs", "post"),
        ("/api/v1/jobs/{id}/executions", "get"),
        ("/api/v1/appliances", "post"),
        ("/api/v1/customers", "post"),
        ("/api/v1/appliance-versions", "get"),
        ("/api/v1/tags/{id}/appliances", "post"),
        ("/va/register", "post"),
        ("/va/{id}/tasks", "post"),
        ("/ui/appliances", "get"),
        ("/ui/appliances/{id}", "delete"),
        ("/ui/services/{code}/install", "post"),
        ("/ui/tasks/{taskId}", "get"),
    ] {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(
            operation["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    let schemas = &spec["components"]["schemas"];
    for schema in [
        "ErrorBody",
        "RegisterRequest",
        "RegisterResponse",
        "ApplianceItem",
        "TaskView",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    let metrics = hub.request_as(Method::GET, "/metrics", None).send().await?;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await?;
    assert!(
        text.contains("# TYPE fleethub_store_commands_total counter"),
        "{text}"
    );
    assert!(spec["paths"]["/metrics"]["get"].is_object());
    let page = hub.request_as(Method::GET, "/docs/", None).send().await?;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await?.contains("swagger-ui"));
    let init = hub
        .request_as(Method::GET, "/docs/swagger-initializer.js", None)
        .send()
        .await?
        .text()
        .await?;
    assert!(init.contains("/openapi.json"), "{init}");
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(format!("{}/docs", hub.base))
        .send()
        .await?;
    assert!(redirect.status().is_redirection());
    hub.stop().await;
    Ok(())
}
