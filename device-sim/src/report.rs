//! The final report of a run or a benchmark: counts per outcome, latency
//! percentiles, the seed (always), memory, and the scenario's own figures;
//! rendered for people or as JSON for machines.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::stats::{Counter, Percentiles, Stats};

/// How tasks ended, as the hub accepted it (or not at all): printed
/// always, zeros included.
const OUTCOMES: [Counter; 6] = [
    Counter::Succeeded,
    Counter::Failed,
    Counter::Rejected,
    Counter::NeverAnswered,
    Counter::Canceled,
    Counter::GaveUp,
];

/// Resident memory of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Growth of the resident set since before the fleet started, per
    /// appliance, bytes.
    pub per_appliance_bytes: u64,
}

impl Memory {
    /// Memory now, given the resident size before the fleet started.
    pub fn measure(before: Option<u64>, appliances: usize) -> Option<Self> {
        let now = rss_bytes()?;
        let grown = now.saturating_sub(before.unwrap_or(0));
        Some(Self {
            rss_bytes: now,
            per_appliance_bytes: grown / appliances.max(1) as u64,
        })
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `run`, `bench connect`, `bench job`.
    pub scenario: String,
    /// The seed every fault was drawn from.
    pub seed: u64,
    /// Appliances in the fleet.
    pub appliances: usize,
    /// Wall time of the whole run, milliseconds.
    pub elapsed_ms: u64,
    /// Every counter, by name.
    pub counts: BTreeMap<&'static str, u64>,
    /// Tasks started per task type.
    pub tasks_by_type: BTreeMap<&'static str, u64>,
    /// TCP + TLS + CONNECT to CONNACK.
    pub connect_ms: Percentiles,
    /// Task arrival (notify or `$next`) to accepted SUCCEEDED.
    pub notify_to_succeeded_ms: Percentiles,
    /// Memory, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// The scenario's own figures.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, Value>,
}

impl Report {
    /// A report of `stats`.
    pub fn new(
        scenario: &str,
        seed: u64,
        appliances: usize,
        elapsed_ms: u64,
        stats: &Stats,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            seed,
            appliances,
            elapsed_ms,
            counts: Counter::ALL
                .iter()
                .map(|c| (c.name(), stats.get(*c)))
                .collect(),
            tasks_by_type: stats
                .tasks_by_type()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| (t.as_str(), n))
                .collect(),
            connect_ms: stats.connect_percentiles(),
            notify_to_succeeded_ms: stats.task_percentiles(),
            memory: None,
            figures: BTreeMap::new(),
        }
    }

    /// Adds a scenario figure.
    pub fn figure(&mut self, name: &'static str, value: impl Into<Value>) {
        self.figures.insert(name, value.into());
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn line(f: &mut fmt::Formatter<'_>, name: &str, p: &Percentiles) -> fmt::Result {
    writeln!(
        f,
        "  {name:<26} p50 {:>6}  p90 {:>6}  p99 {:>6}  max {:>6}  (n={})",
        p.p50, p.p90, p.p99, p.max, p.count
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "device-sim {}: {} appliances, {:.1} s, seed {}",
            self.scenario,
            self.appliances,
            self.elapsed_ms as f64 / 1000.0,
            self.seed
        )?;
        writeln!(f, "latency (ms)")?;
        line(f, "connect", &self.connect_ms)?;
        line(f, "notify -> SUCCEEDED", &self.notify_to_succeeded_ms)?;
        if !self.figures.is_empty() {
            writeln!(f, "figures")?;
            for (name, value) in &self.figures {
                writeln!(f, "  {name:<26} {value}")?;
            }
        }
        if let Some(memory) = &self.memory {
            writeln!(
                f,
                "memory\n  {:<26} {:.1} MiB\n  {:<26} {:.1} KiB",
                "resident",
                memory.rss_bytes as f64 / 1048576.0,
                "per appliance",
                memory.per_appliance_bytes as f64 / 1024.0
            )?;
        }
        writeln!(f, "outcomes (tasks)")?;
        for counter in OUTCOMES {
            let count = self.counts.get(counter.name()).copied().unwrap_or(0);
            writeln!(f, "  {:<26} {count}", counter.name())?;
        }
        writeln!(f, "counts")?;
        let others = self
            .counts
            .iter()
            .filter(|(name, n)| **n > 0 && !OUTCOMES.iter().any(|c| c.name() == **name));
        for (name, count) in others {
            writeln!(f, "  {name:<26} {count}")?;
        }
        if !self.tasks_by_type.is_empty() {
            writeln!(f, "tasks by type")?;
            for (name, count) in &self.tasks_by_type {
                writeln!(f, "  {name:<26} {count}")?;
            }
        }
        Ok(())
    }
}

/// The resident set size of this process (Linux `/proc`), bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_and_json_forms_carry_the_seed() -> anyhow::Result<()> {
        let stats = Stats::new();
        stats.add(Counter::Succeeded, 3);
        let mut report = Report::new("bench job", 4242, 3, 1500, &stats);
        report.figure("timeToLastSuccessMs", 1200);
        let text = report.to_string();
        assert!(text.contains("seed 4242"));
        assert!(text.contains("notify -> SUCCEEDED"));
        assert!(text.contains("connect"));
        assert!(
            text.contains("  rejected                   0"),
            "outcomes always: {text}"
        );
        assert!(
            !text.contains("refused_409"),
            "other zero counts are left out"
        );
        let json: Value = serde_json::from_str(&report.to_json())?;
        assert_eq!(json["seed"], 4242);
        assert_eq!(json["counts"]["succeeded"], 3);
        assert_eq!(json["counts"]["rejected"], 0);
        assert_eq!(json["figures"]["timeToLastSuccessMs"], 1200);
        Ok(())
    }

    #[test]
    fn reads_resident_memory() {
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }
}
