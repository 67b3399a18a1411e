//! The artifact store end to end: uploads (and what refused ones leave),
//! signed downloads resumed over Range requests, bad links and ranges,
//! the jobFile of tasks, and a 1 GiB download with flat memory.

use hub::artifacts::Sha256Digest;
use hub::clock::{Clock, ManualClock, SystemClock};
use hub::config::{ByteSize, ServeArgs};
use hub::store::Artifact;
use protocol::message::GetReplyData;
use protocol::ExecutionStatus;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{within, HubOptions, TestHub};

/// `n` bytes that are not all alike.
fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn options(args: ServeArgs) -> HubOptions {
    HubOptions {
        args: ServeArgs {
            public_host: Some("127.0.0.1".into()),
            ..args
        },
        ..HubOptions::default()
    }
}

async fn start(dir: &std::path::Path) -> anyhow::Result<TestHub> {
    TestHub::start_with(dir, options(ServeArgs::default())).await
}

/// Uploads `bytes` as `name`, declaring `sha256` when given.
async fn upload(
    hub: &TestHub,
    name: &str,
    bytes: Vec<u8>,
    sha256: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut path = format!("/api/v1/artifacts?name={name}");
    if let Some(sha256) = sha256 {
        path.push_str(&format!("&sha256={sha256}"));
    }
    let response = hub.request(Method::POST, &path).body(bytes).send().await?;
    Ok((response.status(), response.json().await?))
}

/// A response: status, headers, and the body (or its first `stop_after`
/// bytes, the connection then dropped as by an interrupted download).
async fn fetch(
    hub: &TestHub,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    stop_after: Option<usize>,
) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
    let mut request = hub.http().request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send().await?;
    let (status, headers) = (response.status(), response.headers().clone());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if let Some(limit) = stop_after.filter(|l| body.len() >= *l) {
            body.truncate(limit);
            break;
        }
    }
    Ok((status, headers, body))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_with_ranges_to_the_exact_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = start(dir.path()).await?;
    let bytes = payload(1_500_000, 7);
    let sha256 = Sha256Digest::of(&bytes).to_string();
    let (status, artifact) = upload(&hub, "va-3.2.0.img", bytes.clone(), Some(&sha256)).await?;
    assert_eq!(status, StatusCode::CREATED, "{artifact}");
    assert_eq!(artifact["sha256"], sha256);
    assert_eq!(artifact["size"], 1_500_000);
    let url = artifact["downloadUrl"].as_str().expect("a link").to_owned();
    assert!(
        url.contains(&format!("/artifacts/{sha256}/va-3.2.0.img?expires=")),
        "{url}"
    );

    // Interrupted, then resumed: a closed range, an open-ended one that is
    // interrupted again, and a suffix range for the rest.
    let (status, headers, first) = fetch(&hub, Method::GET, &url, &[], Some(400_000)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-length"), "1500000");
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(header(&headers, "etag"), format!("\"{sha256}\""));
    let mut file = first;
    let (status, headers, part) = fetch(
        &hub,
        Method::GET,
        &url,
        &[("range", "bytes=400000-899999")],
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&headers, "content-range"),
        "bytes 400000-899999/1500000"
    );
    assert_eq!(header(&headers, "content-length"), "500000");
    file.extend(part);
    let (status, _, part) = fetch(
        &hub,
        Method::GET,
        &url,
        &[("range", "bytes=900000-")],
        Some(300_000),
    )
    .await?;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    file.extend(part);
    let (status, headers, part) =
        fetch(&hub, Method::GET, &url, &[("range", "bytes=-300000")], None).await?;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&headers, "content-range"),
        "bytes 1200000-1499999/1500000"
    );
    file.extend(part);
    assert_eq!(Sha256Digest::of(&file).to_string(), sha256);

    // HEAD tells the size without a body; a stale If-Range gets it whole.
    let (status, headers, body) = fetch(&hub, Method::HEAD, &url, &[], None).await?;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(header(&headers, "content-length"), "1500000");
    let stale = [("range", "bytes=0-0"), ("if-range", "\"other\"")];
    let (status, _, body) = fetch(&hub, Method::GET, &url, &stale, None).await?;
    assert_eq!((status, body.len()), (StatusCode::OK, 1_500_000));
    let current = format!("\"{sha256}\"");
    let fresh = [("range", "bytes=0-0"), ("if-range", current.as_str())];
    let (status, _, body) = fetch(&hub, Method::GET, &url, &fresh, None).await?;
    assert_eq!(
        (status, body),
        (StatusCode::PARTIAL_CONTENT, bytes[..1].to_vec())
    );

    // The same bytes again: the first entry, 200. The catalogue lists it.
    let (status, again) = upload(&hub, "copy.img", bytes, None).await?;
    assert_eq!(
        (status, &again["name"]),
        (StatusCode::OK, &json!("va-3.2.0.img"))
    );
    let (status, list) = hub
        .get("/api/v1/artifacts?limit=10&sortby=size&order=desc")
        .await?;
    assert_eq!((status, &list["total"]), (200, &json!(1)), "{list}");
    assert_eq!(list["items"][0]["sha256"], sha256);
    let (status, one) = hub.get(&format!("/api/v1/artifacts/{sha256}")).await?;
    assert_eq!((status, &one["name"]), (200, &json!("va-3.2.0.img")));
    for (path, expected) in [
        ("/api/v1/artifacts/abc".to_owned(), 400),
        (format!("/api/v1/artifacts/{}", "0".repeat(64)), 404),
        ("/api/v1/artifacts?limit=0".to_owned(), 400),
        ("/api/v1/artifacts?sortby=color".to_owned(), 400),
    ] {
        let (status, body) = hub.get(&path).await?;
        assert_eq!(
            (status, &body["status"]),
            (expected, &json!(expected)),
            "{path}"
        );
    }
    hub.stop().await;
    Ok(())
}

/// Asserts an error answer: its status and the `{status, message, cause}`
/// body, returning the cause.
async fn error_body(response: reqwest::Response, expected: StatusCode) -> anyhow::Result<String> {
    assert_eq!(response.status(), expected);
    let body: Value = response.json().await?;
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    Ok(body["cause"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_unsatisfiable_requests_get_their_status() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(SystemClock.now());
    let mut options = options(ServeArgs::default());
    options.clock = Some(clock.clone());
    let hub = TestHub::start_with(dir.path(), options).await?;
    let bytes = payload(1000, 3);
    let (_, artifact) = upload(&hub, "pkg.tar", bytes, None).await?;
    let url = artifact["downloadUrl"].as_str().expect("a link").to_owned();
    let http = hub.http();

    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    let cause = error_body(http.get(&tampered).send().await?, StatusCode::FORBIDDEN).await?;
    assert!(cause.contains("signature is invalid"), "{cause}");
    let unsigned = url.split('?').next().unwrap_or_default();
    error_body(http.get(unsigned).send().await?, StatusCode::FORBIDDEN).await?;
    let renamed = url.replace("/pkg.tar?", "/other.tar?");
    error_body(http.get(&renamed).send().await?, StatusCode::FORBIDDEN).await?;
    let head = http.head(&tampered).send().await?;
    assert_eq!(head.status(), StatusCode::FORBIDDEN);

    for range in [
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=0-1,5-6",
        "bytes=x",
    ] {
        let response = http.get(&url).header("range", range).send().await?;
        assert_eq!(
            header(response.headers(), "content-range"),
            "bytes */1000",
            "{range}"
        );
        error_body(response, StatusCode::RANGE_NOT_SATISFIABLE).await?;
    }
    let ignored = http.get(&url).header("range", "lines=1-2").send().await?;
    assert_eq!(ignored.status(), StatusCode::OK);

    let unknown = hub.hub().artifacts().download_url(&Artifact {
        sha256: Sha256Digest::of(b"never uploaded"),
        ..serde_json::from_value(artifact.clone())?
    });
    error_body(http.get(&unknown).send().await?, StatusCode::NOT_FOUND).await?;

    clock.advance(7 * 24 * 3600 * 1000 - 1000);
    assert_eq!(http.get(&url).send().await?.status(), StatusCode::OK);
    clock.advance(1000);
    let cause = error_body(http.get(&url).send().await?, StatusCode::FORBIDDEN).await?;
    assert!(cause.contains("expired"), "{cause}");
    hub.stop().await;
    Ok(())
}

/// POSTs `chunks` chunks of `size` bytes with chunked transfer encoding
/// (no Content-Length: the hub finds the size while streaming) over a raw
/// connection; returns the status code.
pub async fn chunked_upload(
    hub: &TestHub,
    path: &str,
    chunks: u64,
    size: usize,
) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(hub.hub().http_addr()).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        tests::hub::ADMIN_TOKEN
    );
    stream.write_all(head.as_bytes()).await?;
    for i in 0..chunks {
        let mut chunk = format!("{size:x}\r\n").into_bytes();
        chunk.extend(payload(size, i + 10));
        chunk.extend_from_slice(b"\r\n");
        // The hub may answer and close before reading it all.
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    within("the upload's answer", stream.read_to_end(&mut answer)).await??;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap_or_default();
    Ok(status.parse()?)
}

fn files_in(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_leave_no_file_and_no_row() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let args = ServeArgs {
        max_artifact_size: Some(ByteSize(4096)),
        ..ServeArgs::default()
    };
    let hub = TestHub::start_with(dir.path(), options(args)).await?;
    let store_dir = dir.path().join("artifacts");
    let bytes = payload(2000, 5);
    let wrong = Sha256Digest::of(b"something else").to_string();
    let (status, body) = upload(&hub, "a.img", bytes.clone(), Some(&wrong)).await?;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::BAD_REQUEST, &json!(400)),
        "{body}"
    );
    assert!(
        body["cause"].as_str().unwrap_or_default().contains(&wrong),
        "{body}"
    );

    // Over the limit, declared by Content-Length or only found streaming.
    let (status, body) = upload(&hub, "big.img", payload(5000, 1), None).await?;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!(413))
    );
    let status = chunked_upload(&hub, "/api/v1/artifacts?name=streamed.img", 5, 1000).await?;
    assert_eq!(status, 413);

    for (path, expected) in [
        ("/api/v1/artifacts?name=..", StatusCode::BAD_REQUEST),
        ("/api/v1/artifacts?name=a%2Fb", StatusCode::BAD_REQUEST),
        ("/api/v1/artifacts", StatusCode::BAD_REQUEST),
        (
            "/api/v1/artifacts?name=a&sha256=xyz",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/artifacts?name=a&color=red",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = hub.request(Method::POST, path).body("x").send().await?;
        error_body(response, expected).await?;
    }
    let response = hub
        .request(
            Method::POST,
            &format!("/api/v1/artifacts?name=a&sha256={wrong}"),
        )
        .header("x-sha256", Sha256Digest::of(b"x").to_string())
        .body("x")
        .send()
        .await?;
    error_body(response, StatusCode::BAD_REQUEST).await?;
    let anonymous = hub
        .http()
        .post(format!("{}/api/v1/artifacts?name=a", hub.base))
        .body("x")
        .send()
        .await?;
    error_body(anonymous, StatusCode::UNAUTHORIZED).await?;

    assert_eq!(files_in(&store_dir)?, Vec::<String>::new());
    let (_, list) = hub.get("/api/v1/artifacts").await?;
    assert_eq!(list["total"], 0, "{list}");
    hub.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_tasks_carry_a_job_file_that_downloads_the_right_bytes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = start(dir.path()).await?;
    let bytes = payload(300_000, 11);
    let sha256 = Sha256Digest::of(&bytes).to_string();
    upload(&hub, "va-4.0.img", bytes.clone(), Some(&sha256)).await?;
    let ids = hub.provision(1).await?;
    let mut appliance = hub.connect_internal(ids[0].appliance_id).await?;

    let unknown = Sha256Digest::of(b"not an artifact").to_string();
    let document = |sha: &str| {
        json!({"taskType": "upgradeAppliance", "targetVersion": "4.0",
               "firmwarePath": "va-4.0.img", "firmwareSha256": sha})
    };
    let refused = hub.create_job(document(&unknown), &[appliance.id]).await;
    let refused = refused
        .expect_err("an unknown artifact is refused")
        .to_string();
    assert!(
        refused.contains("400") && refused.contains(&unknown),
        "{refused}"
    );

    hub.create_job(document(&sha256), &[appliance.id]).await?;
    let task = appliance.notify().await?.params.task;
    let file = task.job_file.expect("the notify carries a jobFile");
    assert_eq!(
        (file.sign.as_str(), file.file_size),
        (sha256.as_str(), 300_000)
    );
    let (status, _, body) = fetch(&hub, Method::GET, &file.file_url, &[], None).await?;
    assert_eq!(
        (status, Sha256Digest::of(&body).to_string()),
        (StatusCode::OK, sha256.clone())
    );

    let reply = appliance.get("$next").await?;
    let Some(GetReplyData::One { task: Some(next) }) = reply.data else {
        panic!("$next answers the task: {reply:?}");
    };
    assert_eq!(next.task_id, task.task_id);
    let next_file = next.job_file.expect("$next carries a jobFile");
    let (status, _, body) = fetch(
        &hub,
        Method::GET,
        &next_file.file_url,
        &[("range", "bytes=100000-")],
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[100_000..]);

    // An external artifact: the task points at its URL as registered.
    let external = Sha256Digest::of(b"elsewhere").to_string();
    let (status, body) = hub
        .post(
            "/api/v1/artifacts/external",
            &json!({"name": "big.img", "url": "https://cdn.example.com/big.img",
                    "sha256": external, "size": 157_286_400}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (status, _) = hub
        .post(
            "/api/v1/artifacts/external",
            &json!({"name": "big.img", "url": "ftp://x", "sha256": external, "size": 1}),
        )
        .await?;
    assert_eq!(status, 400);
    let second = hub.provision(1).await?;
    let mut other = hub.connect_internal(second[0].appliance_id).await?;
    hub.create_job(document(&external), &[other.id]).await?;
    let task = other.notify().await?.params.task;
    assert_eq!(task.status, ExecutionStatus::Sent);
    let file = task.job_file.expect("a jobFile");
    assert_eq!(file.file_url, "https://cdn.example.com/big.img");
    assert_eq!(file.file_size, 157_286_400);
    hub.stop().await;
    Ok(())
}

fn resident_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// sha256 of 1 GiB of zero bytes.
const ZEROS_1GIB: &str = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_artifact_is_served_whole_with_flat_memory() -> anyhow::Result<()> {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir()?;
    let hub = start(dir.path()).await?;
    // A sparse file: no gigabyte is ever in memory, nor written to disk.
    let file = std::fs::File::create(dir.path().join("artifacts").join(ZEROS_1GIB))?;
    file.set_len(SIZE)?;
    let artifact = Artifact {
        sha256: ZEROS_1GIB.parse()?,
        name: "zeros.img".parse()?,
        size: SIZE,
        content_type: "application/octet-stream".into(),
        external_url: None,
        created_at: 0,
    };
    hub.hub().store().insert_artifact(artifact.clone()).await?;
    let url = hub.hub().artifacts().download_url(&artifact);

    let before = resident_kib()?;
    let mut response = hub.http().get(&url).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let (mut received, mut peak) = (0u64, before);
    within("the 1 GiB download", async {
        while let Some(chunk) = response.chunk().await? {
            received += chunk.len() as u64;
            if received % (64 << 20) < chunk.len() as u64 {
                peak = peak.max(resident_kib()?);
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let after = resident_kib()?;
    peak = peak.max(after);
    assert_eq!(received, SIZE);
    eprintln!("serving 1 GiB: resident {before} KiB before, {peak} KiB at most, {after} KiB after");
    assert!(
        peak < before + 64 * 1024,
        "resident memory grew from {before} KiB to {peak} KiB while serving 1 GiB"
    );
    hub.stop().await;
    Ok(())
}
