//! `cargo bench -p broker --bench pubsub`: raw QoS 1 pub/sub through
//! Fleethub's embedded broker and device edge, against Mosquitto on the
//! same machine in the same run (design section 8).
//!
//! For each broker: PUBSUB_PAIRS (default 1,000) subscribers connect over
//! TLS as appliances (dev certificates in a temp dir) and subscribe QoS 1
//! to their own `job/notify` topic; as many publishers connect on
//! plaintext loopback (Fleethub: the embedded rumqttd's listeners with the
//! hub's credentials; Mosquitto: a plaintext listener beside its TLS one)
//! and publisher i sends 128-byte QoS 1 messages to subscriber i. Then:
//! - saturation: closed loop, PUBSUB_WINDOW (16) messages in flight per
//!   pair end to end; PUBSUB_WARMUP_SECS (3) of warm-up, then delivered
//!   messages per second over PUBSUB_SECS (10);
//! - latency: open loop at half the saturation rate measured for that
//!   broker, PUBSUB_WARMUP_SECS then PUBSUB_LATENCY_SECS (10) recorded;
//!   p50 / p99 / max from the send instant in the payload
//!   (PUBSUB_LATENCY_RATE=n messages/s in all sets the rate instead);
//! - Fleethub runs after Mosquitto and also measures its latency at the
//!   rate Mosquitto's was measured at, so the two compare at one load.
//!
//! Every message is checked: lost, duplicated, skipped, misrouted ones
//! and connections closed mid-run make the bench fail after its report.
//! The load generator runs on its own runtime (PUBSUB_LOAD_THREADS, 2);
//! Fleethub's broker and edge on another with 2 workers, as `hub serve`
//! has on a 2-core machine. PUBSUB_ONLY=fleethub|mosquitto runs one;
//! PUBSUB_JSON=path also writes the JSON line there.

#[path = "pubsub/load.rs"]
mod load;
#[path = "pubsub/peers.rs"]
mod peers;
#[path = "pubsub/report.rs"]
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::certs::{ensure_dev_certs, DevCertPaths};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::runtime::{Builder, Handle, Runtime};

use load::{Counters, Load, Pair, Target};
use peers::{Fleethub, Mosquitto};
use report::{Anomalies, Machine, PeerRun};

/// What the environment asks for.
struct Settings {
    pairs: usize,
    window: usize,
    warmup: Duration,
    measure: Duration,
    latency: Duration,
    /// Rate of the latency phase instead of half the saturation rate.
    latency_rate: Option<f64>,
    connect_rate: u32,
    load_threads: usize,
    only: Option<String>,
    json: Option<PathBuf>,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let secs = |name, default| Duration::from_secs(env_or(name, default));
        Settings {
            pairs: env_or("PUBSUB_PAIRS", 1_000).max(1) as usize,
            window: env_or("PUBSUB_WINDOW", 16).max(1) as usize,
            warmup: secs("PUBSUB_WARMUP_SECS", 3),
            measure: secs("PUBSUB_SECS", 10),
            latency: secs("PUBSUB_LATENCY_SECS", 10),
            latency_rate: std::env::var("PUBSUB_LATENCY_RATE")
                .ok()
                .and_then(|v| v.parse().ok()),
            // Below the edge's 2,500 new connections per second.
            connect_rate: env_or("PUBSUB_CONNECT_RATE", 1_000).max(1) as u32,
            load_threads: env_or("PUBSUB_LOAD_THREADS", 2).max(1) as usize,
            only: std::env::var("PUBSUB_ONLY").ok(),
            json: std::env::var_os("PUBSUB_JSON").map(PathBuf::from),
        }
    }

    fn runs(&self, peer: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == peer)
    }
}

fn runtime(threads: usize, name: &str) -> anyhow::Result<Runtime> {
    Ok(Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let settings = Settings::from_env();
    let before = Machine::now();
    println!(
        "pubsub: {} publishers -> {} subscribers, QoS 1, {} bytes, window {} per pair; \
         warm-up {:?}, saturation {:?}, latency {:?}",
        settings.pairs,
        settings.pairs,
        load::PAYLOAD,
        settings.window,
        settings.warmup,
        settings.measure,
        settings.latency
    );
    println!("machine: {before}");
    let load_runtime = runtime(settings.load_threads, "pubsub-load")?;
    let broker_runtime = runtime(2, "fleethub")?;
    let dir = tempfile::tempdir()?;
    let certs = ensure_dev_certs(&dir.path().join("certs"), &[])?;
    let tls = tls_config(&certs.ca_cert)?;

    // Mosquitto first: Fleethub then also measures its latency at the rate
    // Mosquitto's was measured at (rumqttd's threads outlive a run, idle).
    let mut runs = Vec::new();
    if settings.runs("mosquitto") {
        match Mosquitto::start(dir.path(), &certs)? {
            Some(mosquitto) => {
                let run = load_runtime.block_on(measure_mosquitto(&settings, &mosquitto, &tls));
                drop(mosquitto); // killed, also when the run failed
                let run = run?;
                run.print();
                runs.push(run);
            }
            None => println!(
                "mosquitto: not installed (apt-get install mosquitto): measuring Fleethub alone"
            ),
        }
    }
    if settings.runs("fleethub") {
        let handle = broker_runtime.handle().clone();
        let peer_rate = runs.first().map(|r: &PeerRun| r.paced.target_rate);
        let run = load_runtime.block_on(fleethub(&settings, handle, &certs, &tls, peer_rate))?;
        run.print();
        runs.push(run);
    }
    drop(load_runtime);
    drop(broker_runtime);
    let after = Machine::now();
    report::finish(&runs, &before, &after, settings.json.as_deref())
}

async fn fleethub(
    settings: &Settings,
    runtime: Handle,
    certs: &DevCertPaths,
    tls: &Arc<rustls::ClientConfig>,
    peer_rate: Option<f64>,
) -> anyhow::Result<PeerRun> {
    let pairs = Pair::generate(settings.pairs);
    let fleethub = Fleethub::start(runtime, certs, &pairs).await?;
    let detail = "embedded rumqttd 0.20 (BrokerLimits::default) + device edge \
                  (EdgeConfig::default), broker and edge on a 2-worker runtime";
    let target = fleethub.target(tls.clone())?;
    let run = measure(settings, "fleethub", detail, &target, &pairs, peer_rate).await;
    let stats = fleethub.stats();
    fleethub.stop().await?;
    let mut run = run?;
    run.edge = Some(stats);
    Ok(run)
}

async fn measure_mosquitto(
    settings: &Settings,
    mosquitto: &Mosquitto,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<PeerRun> {
    let pairs = Pair::generate(settings.pairs);
    let detail = format!(
        "{} (pid {}), {}",
        mosquitto.version,
        mosquitto.pid(),
        peers::MOSQUITTO_SETTINGS
    );
    let target = mosquitto.target(tls.clone());
    measure(settings, "mosquitto", &detail, &target, &pairs, None).await
}

/// Connects the load to `target`, saturates it, then paces it at half the
/// rate it reached, and at `peer_rate` if given.
async fn measure(
    settings: &Settings,
    name: &'static str,
    detail: &str,
    target: &Target,
    pairs: &[Pair],
    peer_rate: Option<f64>,
) -> anyhow::Result<PeerRun> {
    println!("{name}: connecting {} subscribers over TLS...", pairs.len());
    let load = Load::connect(target, pairs, settings.connect_rate).await?;
    println!(
        "{name}: all subscribed in {:.2} s; saturating...",
        load.subscribed_in.as_secs_f64()
    );
    let saturation = load
        .saturate(settings.window, settings.warmup, settings.measure)
        .await?;
    println!(
        "{name}: {:.0} messages/s at saturation; latency at half that rate...",
        saturation.rate
    );
    let rate = settings.latency_rate.unwrap_or(saturation.rate / 2.0);
    let paced = load.paced(rate, settings.warmup, settings.latency).await?;
    let mut at_peer_rate = None;
    if let Some(rate) = peer_rate {
        println!("{name}: latency at the peer's rate, {rate:.0}/s...");
        let paced = load.paced(rate, settings.warmup, settings.latency);
        at_peer_rate = Some(paced.await?);
    }
    let c = load.counters();
    let (sent, delivered) = (Counters::get(&c.sent), Counters::get(&c.delivered));
    let anomalies = Anomalies {
        lost: sent.saturating_sub(delivered),
        duplicates: Counters::get(&c.duplicates),
        gaps: Counters::get(&c.gaps),
        misrouted: Counters::get(&c.misrouted),
        closed: Counters::get(&c.closed),
    };
    let subscribed_in = load.subscribed_in;
    load.close().await;
    Ok(PeerRun {
        name,
        detail: detail.to_owned(),
        subscribed_in,
        saturation,
        paced,
        at_peer_rate,
        sent,
        anomalies,
        edge: None,
    })
}

/// A rustls client configuration (ring) trusting the dev CA, as
/// device-sim builds it for its appliances.
fn tls_config(ca: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the dev CA")? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
