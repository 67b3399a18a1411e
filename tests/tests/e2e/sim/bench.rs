//! `device-sim bench job` against the real hub, as the fleet benchmark
//! runs it: appliances provisioned for a customer, a rate-limited job with
//! the REST probe; the report shows how the tasks arrived and the probe's
//! figures, idle and under the job.

use anyhow::{bail, Context};
use clap::Parser;
use device_sim::bench;
use device_sim::cli::{Cli, Command, Scenario};
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::ADMIN_TOKEN;
use tests::{within, TestHub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_job_reports_the_rollout_pace_and_rest_latency() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    let customer = hub.customer("ACME").await?;
    let ca = dir.path().join("bench-ca.pem");
    std::fs::write(&ca, hub.ca_pem()?)?;
    let edge = hub.hub().mqtts_addr().context("device edge")?;
    let mqtt_url = format!("mqtts://localhost:{}", edge.port());
    let ca = ca.to_string_lossy().into_owned();
    let cli = Cli::try_parse_from([
        "device-sim",
        "bench",
        "job",
        "--count",
        "4",
        "--hub-url",
        &hub.base,
        "--mqtt-url",
        &mqtt_url,
        "--ca-file",
        &ca,
        "--admin-token",
        ADMIN_TOKEN,
        "--customer-id",
        &customer.customer_id,
        "--api-key",
        &customer.api_key,
        "--max-per-minute",
        "120",
        "--rest-probe",
        "--probe-idle",
        "500ms",
        "--probe-rate",
        "20",
        "--connect-rate",
        "0",
        "--work-ms",
        "20",
        "--seed",
        "7",
        "--timeout",
        "15s",
        "--json",
    ])?;
    let Command::Bench {
        scenario: Scenario::Job { fleet, job },
    } = cli.command
    else {
        bail!("not bench job");
    };
    let report = within("bench job", bench::job(fleet, job)).await??;
    let figures = serde_json::to_value(&report.figures)?;
    assert_eq!(figures["allSucceeded"], true, "{figures}");
    assert_eq!(
        figures["reportedSucceeded"], 4,
        "the probe's own job left out"
    );
    // 120 a minute: two a second, all four inside the first minute.
    let pace = &figures["rollout"];
    assert_eq!(
        (
            &pace["received"],
            &pace["perWindow"],
            &pace["maxInAnyWindow"]
        ),
        (&json!(4), &json!([4]), &json!(4)),
        "{pace}"
    );
    assert_eq!(pace["perMinute"], Value::Null, "no complete minute");
    // The same four as the hub released them, read back over REST.
    let released = &figures["rolloutReleased"];
    assert_eq!(
        (&released["received"], &released["perWindow"]),
        (&json!(4), &json!([4])),
        "{released}"
    );
    let probe = &figures["restProbe"];
    for phase in ["idle", "load"] {
        for endpoint in ["jobSummary", "uiAppliances"] {
            let seen = &probe[phase]["endpoints"][endpoint];
            assert_eq!(seen["errors"], 0, "{phase} {endpoint}: {probe}");
            assert!(seen["latencyUs"]["count"].as_u64() >= Some(1), "{probe}");
        }
    }
    assert!(probe["p99Ratio"]["uiAppliances"].is_number(), "{probe}");
    // The list the probe read is the customer's four appliances.
    let (status, page) = hub
        .call(Method::GET, "/ui/appliances", Some(&customer.api_key), None)
        .await?;
    assert_eq!((status, &page["total"]), (200, &json!(4)), "{page}");
    hub.stop().await;
    Ok(())
}
