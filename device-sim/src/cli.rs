//! Command-line configuration of the `device-sim` binary (clap), with
//! defaults built in and validation before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::appliance::Behaviour;
use crate::fault::FaultConfig;

/// Simulated Fleethub appliances for QA and load.
#[derive(Debug, Parser)]
#[command(name = "device-sim", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a fleet against a running hub until Ctrl-C or --duration.
    Run(RunArgs),
    /// Run one benchmark scenario and report it.
    Bench {
        /// The scenario.
        #[command(subcommand)]
        scenario: Scenario,
    },
}

/// `device-sim run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The fleet.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Stop after this long (e.g. 90s, 5m, 1h); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// Benchmark scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N appliances connect and subscribe: time until all are subscribed,
    /// connection rate, connect-time percentiles, memory per appliance.
    Connect {
        /// The fleet.
        #[command(flatten)]
        fleet: FleetArgs,
        /// Give up waiting after this long.
        #[arg(long, value_parser = parse_duration, default_value = "120s")]
        timeout: Duration,
    },
    /// Provision N, connect them, create one job for all through REST and
    /// wait until every execution is SUCCEEDED.
    Job {
        /// The fleet.
        #[command(flatten)]
        fleet: FleetArgs,
        /// The job and what is measured.
        #[command(flatten)]
        job: JobArgs,
    },
}

/// `bench job`: the job, its rollout, and the REST probe.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Task type of the job.
    #[arg(long, default_value = "collectMetrics")]
    pub task_type: String,
    /// The job document's other fields, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub document: String,
    /// Give up waiting after this long (with --max-per-minute, on top of
    /// the rollout's own duration: count / N minutes).
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    pub timeout: Duration,
    /// Create the job with `"rollout": {"maxPerMinute": N}` and report how
    /// the appliances received their tasks, per 60 s window.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_minute: Option<u32>,
    /// Measure REST latency (the job summary, and the frontend's appliance
    /// list with --api-key) while idle before the job, then while it runs.
    #[arg(long)]
    pub rest_probe: bool,
    /// A customer's api key, for the probe's `GET /ui/appliances` (the
    /// `apiKey` of `POST /api/v1/customers`).
    #[arg(long, env = "FLEETHUB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests per second to each probed endpoint, idle and under load.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_rate: u32,
    /// How long the idle phase of the probe lasts.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub probe_idle: Duration,
}

/// Where the fleet connects, who its appliances are, how they behave.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Appliances (default: all of --identities, else 100).
    #[arg(long)]
    pub count: Option<usize>,
    /// The hub's REST address (provisioning, jobs, relative file URLs).
    #[arg(
        long,
        env = "DEVICE_SIM_HUB_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub hub_url: String,
    /// The MQTT endpoint: mqtts://host:port or mqtt://host:port [default:
    /// what registration or the identities file says, else
    /// mqtts://127.0.0.1:8883].
    #[arg(long, env = "DEVICE_SIM_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// CA certificate (PEM) of the hub's TLS listener [default: the one
    /// registration gave].
    #[arg(long, env = "DEVICE_SIM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Register the appliances through `POST /va/register/` with this
    /// register token of a customer (the `registrationToken` of
    /// `POST /api/v1/customers`).
    #[arg(long, env = "FLEETHUB_REGISTER_TOKEN", hide_env_values = true)]
    pub register_token: Option<String>,
    /// The hub's admin token, to provision appliances as an operator (and
    /// for `bench job` to create its job).
    #[arg(long, env = "FLEETHUB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Provision the appliances (with --admin-token) for this customer.
    #[arg(long)]
    pub customer_id: Option<String>,
    /// Reuse identities saved in this file instead of registering or
    /// provisioning.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// Save the identities to this file when the fleet starts, and again
    /// when it stops (rotated tokens applied, unregistered appliances left
    /// out), ready for --identities.
    #[arg(long)]
    pub save_identities: Option<PathBuf>,
    /// MQTT username for every appliance instead of its own id.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// MQTT password for every appliance instead of its token.
    #[arg(
        long,
        env = "DEVICE_SIM_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// Appliances started per second (0: all at once).
    #[arg(long, default_value_t = 1000)]
    pub connect_rate: u32,
    /// Seed of every fault decision (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the final report as JSON (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Behaviour.
    #[command(flatten)]
    pub behaviour: BehaviourArgs,
    /// Faults.
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// How each appliance behaves.
#[derive(Debug, Clone, Args)]
pub struct BehaviourArgs {
    /// Simulated work per task without a transfer, milliseconds.
    #[arg(long, default_value_t = 50)]
    pub work_ms: u64,
    /// Wait for update_reply/get_reply before repeating, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub reply_timeout_ms: u64,
    /// Offline time of a reboot or crash, milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub reboot_ms: u64,
    /// Metrics period in seconds (0: only on collectMetrics).
    #[arg(long, default_value_t = 300)]
    pub metrics_interval_s: u64,
    /// Firmware version the appliances start with.
    #[arg(long, default_value = "1.0.0")]
    pub initial_version: String,
    /// MQTT keep-alive, seconds.
    #[arg(long, default_value_t = 60)]
    pub keep_alive_s: u64,
}

/// Fault injection; every rate is a probability per task.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Tasks that end FAILED.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Tasks REJECTED without running.
    #[arg(long, default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Tasks never answered (the hub's timeout must catch them).
    #[arg(long, default_value_t = 0.0)]
    pub never_answer_rate: f64,
    /// Downloads cut by a crash, resumed after the restart.
    #[arg(long, default_value_t = 0.0)]
    pub crash_rate: f64,
    /// Upgrades that come back on the old version.
    #[arg(long, default_value_t = 0.0)]
    pub rollback_rate: f64,
    /// Offline churn: disconnections per appliance per minute.
    #[arg(long, default_value_t = 0.0)]
    pub churn_per_minute: f64,
    /// Longest offline time of a churn, seconds.
    #[arg(long, default_value_t = 30)]
    pub churn_max_offline_s: u64,
    /// Downloads throttled to --slow-download-bps.
    #[arg(long, default_value_t = 0.0)]
    pub slow_download_rate: f64,
    /// Throughput of a slow download, bytes per second.
    #[arg(long, default_value_t = 256 * 1024)]
    pub slow_download_bps: u64,
    /// Largest clock skew of an appliance, either way, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub max_clock_skew_ms: u64,
}

impl FleetArgs {
    /// The behaviour of every appliance, validated.
    pub fn behaviour(&self) -> anyhow::Result<Behaviour> {
        let faults = self.faults.config();
        faults.validate().map_err(anyhow::Error::msg)?;
        let b = &self.behaviour;
        if b.reply_timeout_ms == 0 {
            bail!("--reply-timeout-ms must be > 0");
        }
        Ok(Behaviour {
            work_ms: b.work_ms,
            reply_timeout_ms: b.reply_timeout_ms,
            max_tries: 3,
            reboot_ms: b.reboot_ms,
            metrics_interval_ms: (b.metrics_interval_s > 0).then(|| b.metrics_interval_s * 1000),
            seen_ttl_ms: 7 * 24 * 3_600_000,
            initial_version: b.initial_version.clone(),
            faults,
        })
    }

    /// The seed given, or a fresh one.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        })
    }
}

impl FaultArgs {
    /// The fault configuration.
    pub fn config(&self) -> FaultConfig {
        FaultConfig {
            fail_rate: self.fail_rate,
            reject_rate: self.reject_rate,
            never_answer_rate: self.never_answer_rate,
            crash_rate: self.crash_rate,
            rollback_rate: self.rollback_rate,
            churn_per_minute: self.churn_per_minute,
            churn_max_offline: Duration::from_secs(self.churn_max_offline_s),
            slow_download_rate: self.slow_download_rate,
            slow_download_bytes_per_sec: self.slow_download_bps,
            max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
        }
    }
}

/// `90`, `90s`, `1500ms`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("invalid duration {text}"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("invalid duration unit in {text}: use ms, s, m or h"),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent_and_parses() -> anyhow::Result<()> {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "device-sim",
            "run",
            "--count",
            "5",
            "--mqtt-url",
            "mqtt://127.0.0.1:1883",
            "--fail-rate",
            "0.1",
            "--seed",
            "42",
            "--duration",
            "2m",
        ])?;
        let Command::Run(run) = cli.command else {
            bail!("not run");
        };
        assert_eq!(run.duration, Some(Duration::from_secs(120)));
        assert_eq!(run.fleet.seed(), 42);
        assert_eq!(run.fleet.behaviour()?.faults.fail_rate, 0.1);
        assert_eq!(run.fleet.register_token, None);
        let registering = Cli::try_parse_from([
            "device-sim",
            "bench",
            "connect",
            "--register-token",
            "jwt",
            "--save-identities",
            "ids.json",
        ])?;
        let Command::Bench {
            scenario: Scenario::Connect { fleet, .. },
        } = registering.command
        else {
            bail!("not bench connect");
        };
        assert_eq!(fleet.register_token.as_deref(), Some("jwt"));
        assert_eq!(fleet.mqtt_url, None, "registration says where");
        let job = Cli::try_parse_from([
            "device-sim",
            "bench",
            "job",
            "--max-per-minute",
            "1000",
            "--rest-probe",
            "--probe-idle",
            "2s",
        ])?;
        let Command::Bench {
            scenario: Scenario::Job { job, .. },
        } = job.command
        else {
            bail!("not bench job");
        };
        assert_eq!(job.max_per_minute, Some(1000));
        assert!(job.rest_probe);
        assert_eq!(
            (job.probe_rate, job.probe_idle),
            (50, Duration::from_secs(2))
        );
        assert!(
            Cli::try_parse_from(["device-sim", "bench", "job", "--max-per-minute", "0"]).is_err()
        );
        let bad = Cli::try_parse_from(["device-sim", "run", "--fail-rate", "2"])?;
        let Command::Run(bad) = bad.command else {
            bail!("not run");
        };
        assert!(bad.fleet.behaviour().is_err());
        Ok(())
    }

    #[test]
    fn durations() -> anyhow::Result<()> {
        assert_eq!(parse_duration("90")?, Duration::from_secs(90));
        assert_eq!(parse_duration("1500ms")?, Duration::from_millis(1500));
        assert_eq!(parse_duration("5m")?, Duration::from_secs(300));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        Ok(())
    }
}
