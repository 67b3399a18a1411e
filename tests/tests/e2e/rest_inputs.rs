//! Bad input on the REST surface: every route of `/openapi.json` gets a
//! battery of malformed requests and never answers 5xx (the routes of
//! signed links once more with a valid signature, so that the battery
//! reaches past the link check), refused uploads leave no file, and the
//! spec and the interactive docs are served.

use std::collections::BTreeSet;
use std::path::Path;

use hub::artifacts::Sha256Digest;
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::ADMIN_TOKEN;
use tests::TestHub;

use crate::rest_refusals::fixture;

fn deep_nesting() -> String {
    format!("{}{}", "[".repeat(4096), "]".repeat(4096))
}

/// What fills a path's parameters: appliance and task ids (real, another
/// customer's, unknown, malformed), and sha256s (an artifact's, unknown).
struct Ids {
    ids: Vec<String>,
    sha256s: Vec<String>,
}

/// Extra headers of the requests to signed links.
const LINK_HEADERS: &[&[(&str, &str)]] = &[
    &[],
    &[("range", "bytes=5-1")],
    &[("range", "bytes=0-0")],
    &[("range", "bytes=-999999999999999999999")],
    &[("range", "bytes=0-"), ("if-range", "\"elsewhere\"")],
    &[(
        "x-sha256",
        "0000000000000000000000000000000000000000000000000000000000000000",
    )],
    &[("x-sha256", "not hex")],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_answers_5xx_to_malformed_requests() -> anyhow::Result<()> {
    let f = fixture().await?;
    let (status, spec) = f.hub.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 40, "{} paths documented", paths.len());
    let artifact = f
        .hub
        .upload_artifact("package.tar", b"a package".to_vec())
        .await?;
    let log_path = format!("/ui/appliances/{}/log", f.appliance);
    let (status, log) = f
        .hub
        .call(Method::POST, &log_path, Some(&f.customer.api_key), None)
        .await?;
    assert_eq!(status, 202, "{log}");
    let values = Ids {
        ids: vec![
            f.appliance.clone(),
            f.other_appliance.clone(),
            log["taskId"].as_str().unwrap_or_default().to_owned(),
            "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
            "NOT-A-UUID".to_owned(),
            "%00%ff".to_owned(),
            "x".repeat(2000),
        ],
        sha256s: vec![artifact, Sha256Digest::of(b"unknown").to_string()],
    };
    let tokens = [
        None,
        Some(ADMIN_TOKEN.to_owned()),
        Some(f.customer.api_key.clone()),
        Some(f.token.clone()),
        Some("forged.token.value".to_owned()),
    ];
    let mut requests = 0;
    let mut past_the_link = BTreeSet::new();
    for (template, operations) in &paths {
        let operations = operations.as_object().cloned().unwrap_or_default();
        for i in 0..values.ids.len() {
            let path = fill(template, &values, i);
            for (method, operation) in &operations {
                let method: Method = method.to_uppercase().parse()?;
                for token in &tokens {
                    let statuses = batter(&f.hub, &method, &path, token.as_deref(), &[]).await?;
                    requests += statuses.len();
                }
                if signed_link(operation) {
                    let signed = sign(&f.hub, &path);
                    for headers in LINK_HEADERS {
                        let statuses = batter(&f.hub, &method, &signed, None, headers).await?;
                        requests += statuses.len();
                        past_the_link.extend(statuses.into_iter().filter(|s| *s != 403));
                    }
                }
            }
        }
    }
    assert!(requests > 10_000, "{requests} requests");
    for status in [200, 206, 400, 404, 416] {
        assert!(past_the_link.contains(&status), "{past_the_link:?}");
    }
    for store in ["logs", "artifacts"] {
        let left = temporary_files(&f.dir.path().join(store))?;
        assert!(left.is_empty(), "{store}: {left:?}");
    }
    // The signed PUTs that were accepted replaced each other; refused ones
    // left nothing: the one file is the archive the task records.
    let (_, uploaded) = f
        .hub
        .call(Method::GET, &log_path, Some(&f.customer.api_key), None)
        .await?;
    assert_eq!(uploaded["state"], "uploaded", "{uploaded}");
    let archive = format!(
        "{}-{}",
        uploaded["taskId"].as_str().unwrap_or_default(),
        uploaded["sha256"].as_str().unwrap_or_default()
    );
    let mut archives = Vec::new();
    for entry in std::fs::read_dir(f.dir.path().join("logs"))? {
        archives.push(entry?.file_name().to_string_lossy().into_owned());
    }
    assert_eq!(archives, [archive]);
    f.hub.stop().await;
    Ok(())
}

/// Sends `method path` with `token` and `headers` once per malformed body;
/// fails on any 5xx. Returns the statuses.
async fn batter(
    hub: &TestHub,
    method: &Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> anyhow::Result<Vec<u16>> {
    let bodies: [(Option<&str>, String); 7] = [
        (None, String::new()),
        (Some("application/json"), "{not json".into()),
        (Some("application/json"), "[]".into()),
        (Some("application/json"), "null".into()),
        (
            Some("application/json"),
            json!({"name": 7, "applianceId": [], "count": -1, "start": "now",
            "version": {}, "extend": "x", "entries": [{}], "settings": 1})
            .to_string(),
        ),
        (Some("application/json"), deep_nesting()),
        (Some("text/plain"), "hello".into()),
    ];
    let mut statuses = Vec::new();
    for (content_type, body) in &bodies {
        let mut request = hub.request_as(method.clone(), path, token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(content_type) = content_type {
            request = request
                .header("content-type", *content_type)
                .body(body.clone());
        }
        let status = request.send().await?.status().as_u16();
        assert!(
            status < 500,
            "{method} {path} {headers:?} answered {status}"
        );
        statuses.push(status);
    }
    Ok(statuses)
}

/// Whether the operation is reached through a signed link (it documents
/// the `sig` query parameter).
fn signed_link(operation: &Value) -> bool {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["in"] == "query" && p["name"] == "sig")
}

/// `path` with a valid signature, as the hub's links carry.
fn sign(hub: &TestHub, path: &str) -> String {
    let signer = hub.hub().logs().signer();
    let url = signer.url(path);
    url.strip_prefix(signer.base()).unwrap_or(&url).to_owned()
}

/// The temporary files a receiving store directory holds.
fn temporary_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            names.push(name);
        }
    }
    Ok(names)
}

/// The path with every `{param}` replaced: ids by the `i`th id, sha256s by
/// one of `values.sha256s` or a word, the rest by a word that varies with
/// `i` (a real one some of the time).
fn fill(template: &str, values: &Ids, i: usize) -> String {
    let words = [
        "dns",
        "enable",
        "3.2.0.1",
        "disable",
        "..",
        "*",
        "package.tar",
    ];
    let word = words[i % words.len()];
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        path.push_str(&rest[..start]);
        let value = match &rest[start + 1..start + end] {
            "id" | "taskId" | "task" => values.ids[i].as_str(),
            "sha256" => values.sha256s.get(i).map_or(word, String::as_str),
            _ => word,
        };
        path.push_str(value);
        rest = &rest[start + end + 1..];
    }
    path.push_str(rest);
    path
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
        ("/ui/appliances/{id}/log", "get"),
        ("/ui/appliances/{id}/log", "post"),
        ("/api/v1/artifacts", "post"),
        ("/api/v1/artifacts", "get"),
        ("/api/v1/artifacts/external", "post"),
        ("/api/v1/artifacts/{sha256}", "get"),
        ("/artifacts/{sha256}/{name}", "get"),
        ("/artifacts/{sha256}/{name}", "head"),
        ("/logs/{task}", "get"),
        ("/uploads/logs/{task}", "put"),
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
        "ArtifactView",
        "LogTaskView",
        "LogWindow",
        "LogUploaded",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    // Signed links document their query, the Range header and the
    // statuses of partial and refused requests.
    for (path, method, statuses) in [
        (
            "/artifacts/{sha256}/{name}",
            "get",
            &["200", "206", "403", "404", "416"][..],
        ),
        ("/logs/{task}", "head", &["200", "206", "403", "404", "416"]),
        ("/uploads/logs/{task}", "put", &["200", "403", "404", "413"]),
    ] {
        let operation = &spec["paths"][path][method];
        let names: Vec<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in ["expires", "sig"] {
            assert!(names.contains(&name), "{method} {path}: {names:?}");
        }
        assert_eq!(names.contains(&"Range"), method != "put", "{names:?}");
        for status in statuses {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} {status}"
            );
        }
    }
    let (status, body) = hub.call(Method::PUT, "/ui/appliances/", None, None).await?;
    assert_eq!((status, &body["status"]), (405, &json!(405)), "{body}");
    let (status, body) = hub.call(Method::GET, "/nowhere", None, None).await?;
    assert_eq!((status, &body["status"]), (404, &json!(404)), "{body}");
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
