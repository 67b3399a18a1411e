//! Bad input on the REST surface: every route of `/openapi.json` gets a
//! battery of malformed requests and never answers 5xx, and the spec and
//! the interactive docs are served.

use reqwest::Method;
use serde_json::json;
use tests::hub::ADMIN_TOKEN;
use tests::TestHub;

use crate::rest_refusals::fixture;

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
