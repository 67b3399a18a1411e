//! The binary's scenarios as library calls: `bench connect` and `run`
//! against the embedded broker with its internal credentials.

use std::time::Duration;

use clap::Parser;
use device_sim::cli::{Cli, Command, Scenario};
use device_sim::{bench, launch};

use crate::support::embedded_broker;

fn parse(args: &[&str]) -> anyhow::Result<Command> {
    let mut argv = vec!["device-sim"];
    argv.extend_from_slice(args);
    Ok(Cli::try_parse_from(argv)?.command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_connect_reports_every_appliance_subscribed() -> anyhow::Result<()> {
    let broker = embedded_broker().await?;
    let edge = broker.edge_credentials();
    let url = format!("mqtt://{}", broker.addr());
    let command = parse(&[
        "bench",
        "connect",
        "--mqtt-url",
        &url,
        "--username",
        &edge.username,
        "--password",
        &edge.password,
        "--count",
        "200",
        "--connect-rate",
        "0",
        "--seed",
        "99",
        "--json",
        "--timeout",
        "20s",
    ])?;
    let Command::Bench {
        scenario: Scenario::Connect { fleet, timeout },
    } = command
    else {
        anyhow::bail!("not bench connect");
    };
    let report = bench::connect(fleet, timeout).await?;
    assert_eq!(report.seed, 99);
    assert_eq!(report.figures["allSubscribed"], true);
    assert_eq!(report.figures["subscribed"], 200);
    assert_eq!(report.connect_ms.count, 200);
    assert_eq!(report.counts["connect_errors"], 0);
    assert!(report.memory.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_for_a_duration_then_report() -> anyhow::Result<()> {
    let broker = embedded_broker().await?;
    let edge = broker.edge_credentials();
    let url = format!("mqtt://{}", broker.addr());
    let command = parse(&[
        "run",
        "--mqtt-url",
        &url,
        "--username",
        &edge.username,
        "--password",
        &edge.password,
        "--count",
        "20",
        "--duration",
        "1s",
        "--json",
    ])?;
    let Command::Run(args) = command else {
        anyhow::bail!("not run");
    };
    let report = tokio::time::timeout(Duration::from_secs(20), launch::run(args)).await??;
    assert_eq!(report.appliances, 20);
    assert_eq!(report.counts["connections"], 20);
    assert!(report.to_json().contains("\"seed\""));
    Ok(())
}
