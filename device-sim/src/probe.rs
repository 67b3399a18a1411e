//! `bench job --rest-probe`: the latency of the hub's REST API while it is
//! idle and while a job runs.
//!
//! The probe is open-loop: every endpoint gets one request per tick at a
//! fixed rate, each request on its own (a slow answer never delays the
//! next request), and a request's latency runs from its scheduled instant
//! to the end of its body, so that a stall of the probe itself is counted,
//! never hidden. It runs on its own thread with its own single-threaded
//! runtime and HTTP client, so that its timers and sockets do not queue
//! behind the fleet's thousands of tasks. Latencies go into hdrhistograms
//! in microseconds; a transport error, a timeout or a status other than a
//! success counts as an error and not as a latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::hub_api::{http_client, HubApi};
use crate::stats::Percentiles;

/// Longest wait for one answer before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One endpoint probed.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the report (`jobSummary`, `uiAppliances`).
    pub name: &'static str,
    /// Path and query, relative to the hub's address.
    pub path: String,
    /// The bearer token it needs.
    pub token: String,
}

/// One endpoint's figures over one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Successful requests and their latency, microseconds.
    pub latency_us: Percentiles,
    /// Failed requests.
    pub errors: u64,
}

/// One phase (idle, or under load): every endpoint's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// How long the probe ran, milliseconds.
    pub duration_ms: u64,
    /// By endpoint name.
    pub endpoints: BTreeMap<&'static str, Latency>,
}

/// Idle and load phases side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Requests per second to each endpoint.
    pub rate_per_endpoint: u32,
    /// Before the job.
    pub idle: Phase,
    /// While the job ran.
    pub load: Phase,
    /// p99 under load over p99 idle, by endpoint (None without both).
    pub p99_ratio: BTreeMap<&'static str, Option<f64>>,
}

impl Comparison {
    /// `idle` and `load` compared.
    pub fn new(rate_per_endpoint: u32, idle: Phase, load: Phase) -> Self {
        let p99_ratio = idle
            .endpoints
            .iter()
            .map(|(name, before)| {
                let after = load.endpoints.get(name);
                let ratio = after
                    .filter(|a| a.latency_us.count > 0 && before.latency_us.count > 0)
                    .map(|a| a.latency_us.p99 as f64 / before.latency_us.p99.max(1) as f64)
                    .map(|r| (r * 100.0).round() / 100.0);
                (*name, ratio)
            })
            .collect();
        Self {
            rate_per_endpoint,
            idle,
            load,
            p99_ratio,
        }
    }
}

/// What `bench job --rest-probe` probes, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The hub's REST address.
    pub hub_url: String,
    /// TLS trust of an `https` hub.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// For the job summary (`GET /api/v1/jobs/{id}`).
    pub admin_token: String,
    /// A customer's, for the frontend's list (`GET /ui/appliances`, its
    /// default page); without it the list is not probed.
    pub api_key: Option<String>,
    /// Requests per second to each endpoint.
    pub rate: u32,
    /// How long the idle phase lasts.
    pub idle: Duration,
}

impl Plan {
    /// The endpoints probed while `job_id` is the job to read.
    pub fn targets(&self, job_id: &str) -> Vec<Target> {
        let summary = Target {
            name: "jobSummary",
            path: format!("/api/v1/jobs/{job_id}"),
            token: self.admin_token.clone(),
        };
        let list = self.api_key.as_ref().map(|key| Target {
            name: "uiAppliances",
            path: "/ui/appliances".into(),
            token: key.clone(),
        });
        std::iter::once(summary).chain(list).collect()
    }

    /// Starts probing, with a client of its own.
    pub fn start(&self, job_id: &str) -> anyhow::Result<Probe> {
        let http = http_client(self.tls.as_deref())?;
        let hub = HubApi::new(http, &self.hub_url, None)?;
        Probe::start(hub, self.targets(job_id), self.rate)
    }

    /// Probes for `duration`, then reports.
    pub async fn run_for(&self, job_id: &str, duration: Duration) -> anyhow::Result<Phase> {
        let probe = self.start(job_id)?;
        tokio::time::sleep(duration).await;
        probe.stop().await
    }
}

/// A probe running on its own thread until [`Probe::stop`].
#[derive(Debug)]
pub struct Probe {
    stop: oneshot::Sender<()>,
    result: oneshot::Receiver<Phase>,
    thread: std::thread::JoinHandle<()>,
}

impl Probe {
    /// Starts probing `targets` on `hub` (whose HTTP client is used by the
    /// probe alone), `rate` requests per second each.
    pub fn start(hub: HubApi, targets: Vec<Target>, rate: u32) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the probe's runtime")?;
        let (stop, stopped) = oneshot::channel();
        let (done, result) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("rest-probe".into())
            .spawn(move || {
                let phase = runtime.block_on(run(hub, targets, rate, stopped));
                let _ = done.send(phase);
            })
            .context("starting the probe's thread")?;
        Ok(Self {
            stop,
            result,
            thread,
        })
    }

    /// Stops sending, waits for the requests in flight, and reports.
    pub async fn stop(self) -> anyhow::Result<Phase> {
        let _ = self.stop.send(());
        let phase = self.result.await.context("the probe ended early")?;
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the probe's thread panicked"))?;
        Ok(phase)
    }
}

async fn run(
    hub: HubApi,
    targets: Vec<Target>,
    rate: u32,
    mut stopped: oneshot::Receiver<()>,
) -> Phase {
    let started = Instant::now();
    let mut histograms: Vec<_> = targets.iter().map(|_| histogram()).collect();
    let mut errors = vec![0u64; targets.len()];
    let mut in_flight = JoinSet::new();
    let mut record = |done: Result<(usize, Option<Duration>), _>| {
        if let Ok((i, latency)) = done {
            match latency {
                Some(d) => histograms[i].saturating_record((d.as_micros() as u64).max(1)),
                None => errors[i] += 1,
            }
        }
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            at = ticks.tick() => {
                for (i, target) in targets.iter().enumerate() {
                    let (hub, target) = (hub.clone(), target.clone());
                    in_flight.spawn(async move { (i, request(&hub, &target, at).await) });
                }
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            record(done);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        record(done);
    }
    Phase {
        duration_ms: started.elapsed().as_millis() as u64,
        endpoints: targets
            .iter()
            .zip(histograms.iter().zip(errors))
            .map(|(t, (h, errors))| {
                let latency_us = Percentiles::of(h);
                (t.name, Latency { latency_us, errors })
            })
            .collect(),
    }
}

fn histogram() -> Histogram<u64> {
    // 1 us to 60 s at 3 significant digits: valid bounds, cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One GET scheduled at `at`: its latency, or None when it failed.
async fn request(hub: &HubApi, target: &Target, at: Instant) -> Option<Duration> {
    let url = hub.resolve(&target.path).ok()?;
    let response = hub
        .http()
        .get(url)
        .bearer_auth(&target.token)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.bytes().await.ok()?;
    Some(at.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(p99s: &[(&'static str, u64)]) -> Phase {
        Phase {
            duration_ms: 1000,
            endpoints: p99s
                .iter()
                .map(|(name, p99)| {
                    let latency_us = Percentiles {
                        count: u64::from(*p99 > 0),
                        p99: *p99,
                        ..Percentiles::default()
                    };
                    (
                        *name,
                        Latency {
                            latency_us,
                            errors: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_ratio_is_load_over_idle_p99_where_both_have_samples() {
        let idle = phase(&[("jobSummary", 800), ("uiAppliances", 4000)]);
        let load = phase(&[("jobSummary", 2600), ("uiAppliances", 0)]);
        let compared = Comparison::new(50, idle, load);
        assert_eq!(compared.p99_ratio["jobSummary"], Some(3.25));
        assert_eq!(compared.p99_ratio["uiAppliances"], None, "no load sample");
        let json = serde_json::to_value(&compared).expect("json");
        assert_eq!(
            json["idle"]["endpoints"]["jobSummary"]["latencyUs"]["p99"],
            800
        );
        assert_eq!(json["ratePerEndpoint"], 50);
    }

    #[tokio::test]
    async fn successes_are_timed_and_failures_counted_apart() -> anyhow::Result<()> {
        use std::sync::atomic::{AtomicU64, Ordering};

        use axum::http::StatusCode;
        use axum::routing::get;

        let seen = Arc::new(AtomicU64::new(0));
        let counted = seen.clone();
        let app = axum::Router::new()
            .route("/ok", get(|| async { "{}" }))
            .route("/busy", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    async move { next.run(request).await }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let hub = HubApi::new(http_client(None)?, &base, None)?;
        let target = |name, path: &str| Target {
            name,
            path: path.into(),
            token: "t".into(),
        };
        let targets = vec![target("ok", "/ok"), target("busy", "/busy")];
        let probe = Probe::start(hub, targets, 100)?;
        tokio::time::timeout(Duration::from_secs(10), async {
            while seen.load(Ordering::Relaxed) < 6 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await?;
        let phase = probe.stop().await?;
        server.abort();
        let (ok, busy) = (phase.endpoints["ok"], phase.endpoints["busy"]);
        assert!(ok.latency_us.count >= 3 && ok.errors == 0, "{ok:?}");
        assert!(busy.errors >= 3 && busy.latency_us.count == 0, "{busy:?}");
        assert!(ok.latency_us.max >= ok.latency_us.p50);
        Ok(())
    }
}
