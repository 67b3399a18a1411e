//! The bench's output: one human-readable block per broker, the ratios,
//! the machine before and after, and one JSON line (also written to
//! PUBSUB_JSON when set). A run with any anomaly fails after its report.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use broker::edge::EdgeStats;
use serde_json::{json, Value};

use crate::load::{Paced, Saturation};

/// What must be zero in a correct run.
pub struct Anomalies {
    /// Sent but never delivered (after each phase's drain).
    pub lost: u64,
    pub duplicates: u64,
    /// Sequence numbers skipped over (lost or reordered).
    pub gaps: u64,
    pub misrouted: u64,
    /// Client connections closed mid-run (e.g. a session closed by the
    /// edge as a slow consumer).
    pub closed: u64,
}

impl Anomalies {
    fn none(&self) -> bool {
        self.lost + self.duplicates + self.gaps + self.misrouted + self.closed == 0
    }

    fn json(&self) -> Value {
        json!({
            "lost": self.lost, "duplicates": self.duplicates, "gaps": self.gaps,
            "misrouted": self.misrouted, "closed": self.closed,
        })
    }
}

/// Everything measured for one broker.
pub struct PeerRun {
    pub name: &'static str,
    pub detail: String,
    pub subscribed_in: Duration,
    pub saturation: Saturation,
    pub paced: Paced,
    /// Latency at the rate the other broker's was measured at.
    pub at_peer_rate: Option<Paced>,
    /// Messages sent over both phases.
    pub sent: u64,
    pub anomalies: Anomalies,
    pub edge: Option<EdgeStats>,
}

impl Paced {
    /// A latency quantile in milliseconds.
    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1_000.0
    }

    fn line(&self) -> String {
        format!(
            "at {:.0}/s asked ({:.0}/s sent): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             over {} messages (phase: {} sent, {} delivered)",
            self.target_rate,
            self.sent_rate,
            self.ms(0.5),
            self.ms(0.99),
            self.ms(1.0),
            self.latency.len(),
            self.sent,
            self.delivered
        )
    }

    fn json(&self) -> Value {
        json!({
            "rate_asked": self.target_rate.round(), "rate_sent": self.sent_rate.round(),
            "p50_ms": self.ms(0.5), "p99_ms": self.ms(0.99), "max_ms": self.ms(1.0),
            "count": self.latency.len(),
        })
    }
}

impl PeerRun {
    pub fn print(&self) {
        let (s, a) = (&self.saturation, &self.anomalies);
        println!("== {}: {}", self.name, self.detail);
        println!(
            "   subscribed: {:.2} s; saturation: {:.0} messages/s delivered over {:.1} s \
             (phase: {} sent, {} delivered)",
            self.subscribed_in.as_secs_f64(),
            s.rate,
            s.window.as_secs_f64(),
            s.sent,
            s.delivered
        );
        println!("   latency at half that rate, {}", self.paced.line());
        if let Some(paced) = &self.at_peer_rate {
            println!("   latency at the peer's rate, {}", paced.line());
        }
        println!(
            "   checks: {} sent, {} lost, {} duplicates, {} gaps, {} misrouted, \
             {} connections closed: {}",
            self.sent,
            a.lost,
            a.duplicates,
            a.gaps,
            a.misrouted,
            a.closed,
            if a.none() { "ok" } else { "FAILED" }
        );
        if let Some(e) = &self.edge {
            println!(
                "   edge: messages_queued {}, messages_dropped {}, sessions {}, \
                 refused_rate_limited {}, admission_timeouts {}",
                e.messages_queued,
                e.messages_dropped,
                e.sessions,
                e.refused_rate_limited,
                e.admission_timeouts
            );
        }
    }

    fn json(&self) -> Value {
        let edge = self.edge.map(|e| {
            json!({
                "messages_queued": e.messages_queued, "messages_dropped": e.messages_dropped,
                "sessions": e.sessions,
            })
        });
        json!({
            "detail": self.detail,
            "subscribed_s": self.subscribed_in.as_secs_f64(),
            "saturation_msgs_per_s": self.saturation.rate.round(),
            "latency_at_half": self.paced.json(),
            "latency_at_peer_rate": self.at_peer_rate.as_ref().map(Paced::json),
            "sent": self.sent,
            "anomalies": self.anomalies.json(),
            "edge": edge,
        })
    }
}

/// CPUs, memory and load average.
pub struct Machine {
    cpus: usize,
    memory_gib: f64,
    load: String,
}

impl Machine {
    pub fn now() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: kib / (1024.0 * 1024.0),
            load: loadavg
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPUs, {:.1} GiB, load average {}",
            self.cpus, self.memory_gib, self.load
        )
    }
}

/// Prints the ratios and the JSON line; fails if any run had anomalies.
pub fn finish(
    runs: &[PeerRun],
    before: &Machine,
    after: &Machine,
    json_path: Option<&Path>,
) -> anyhow::Result<()> {
    let find = |name| runs.iter().find(|r| r.name == name);
    let mut ratios = Value::Null;
    if let (Some(f), Some(m)) = (find("fleethub"), find("mosquitto")) {
        let rate = f.saturation.rate / m.saturation.rate;
        let ratio = |a: &Paced, b: &Paced, q| a.ms(q) / b.ms(q);
        let (p50, p99) = (
            ratio(&f.paced, &m.paced, 0.5),
            ratio(&f.paced, &m.paced, 0.99),
        );
        println!(
            "ratios Fleethub / Mosquitto: messages/s {rate:.2}x; latency each at half its own \
             saturation rate: p50 {p50:.2}x, p99 {p99:.2}x"
        );
        ratios = json!({ "msgs_per_s": rate, "half_rate_p50": p50, "half_rate_p99": p99 });
        if let Some(same) = &f.at_peer_rate {
            let (p50, p99) = (ratio(same, &m.paced, 0.5), ratio(same, &m.paced, 0.99));
            println!(
                "   latency at the same rate ({:.0}/s): p50 {p50:.2}x, p99 {p99:.2}x",
                m.paced.target_rate
            );
            ratios["same_rate_p50"] = json!(p50);
            ratios["same_rate_p99"] = json!(p99);
        }
    }
    println!("machine after: load average {}", after.load);
    let mut peers = serde_json::Map::new();
    for run in runs {
        peers.insert(run.name.to_owned(), run.json());
    }
    let line = json!({
        "bench": "pubsub",
        "machine": {
            "cpus": before.cpus, "memory_gib": before.memory_gib,
            "load_before": before.load, "load_after": after.load,
        },
        "peers": peers,
        "ratios": ratios,
    })
    .to_string();
    println!("{line}");
    if let Some(path) = json_path {
        std::fs::write(path, format!("{line}\n"))?;
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|r| !r.anomalies.none())
        .map(|r| r.name)
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "messages lost, duplicated or misrouted, or connections closed: {failed:?}"
    );
    Ok(())
}
