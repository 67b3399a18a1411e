//! From command-line arguments to a running fleet: identities (saved file,
//! registration with a register token, provisioning by an operator, or
//! random ids for a broker with fixed credentials), where to connect and
//! which CA to trust, the fleet configuration, and `device-sim run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::cli::{FleetArgs, RunArgs};
use crate::fleet::{Fleet, FleetConfig};
use crate::hub_api::{http_client, HubApi};
use crate::identity::Identities;
use crate::mqtt::{tls_config, BrokerTarget};
use crate::progress::Progress;
use crate::report::{rss_bytes, Memory, Report};
use crate::stats::Stats;

/// Appliances registered or provisioned when neither --count nor
/// --identities is given.
const DEFAULT_COUNT: usize = 100;
/// The MQTT endpoint when nothing else says where.
const DEFAULT_MQTT_URL: &str = "mqtts://127.0.0.1:8883";

/// A fleet ready to start.
#[derive(Debug)]
pub struct Prepared {
    /// Its configuration.
    pub config: FleetConfig,
    /// Its appliances, in index order (the index seeds their faults), with
    /// where registration said to connect.
    pub identities: Identities,
    /// The seed.
    pub seed: u64,
    /// Where to save the identities when the fleet stops.
    pub save_to: Option<PathBuf>,
}

impl Prepared {
    /// Starts the fleet; returns it with the identities to save when it
    /// stops (see [`Prepared::save`]).
    pub fn start(self) -> (Fleet, Saved) {
        let saved = Saved {
            identities: self.save_to.as_ref().map(|_| self.identities.clone()),
            path: self.save_to,
        };
        let fleet = Fleet::start(self.config, self.identities.appliances);
        (fleet, saved)
    }
}

/// The identities a fleet started with, to save again when it stops.
#[derive(Debug)]
pub struct Saved {
    identities: Option<Identities>,
    path: Option<PathBuf>,
}

impl Saved {
    /// Saves the identities with what changed while the fleet ran (rotated
    /// tokens, unregistered appliances), when --save-identities was given.
    pub fn save(&self, stats: &Stats) -> anyhow::Result<()> {
        if let (Some(identities), Some(path)) = (&self.identities, &self.path) {
            identities
                .with_changes(&stats.identity_changes())
                .save(path)?;
        }
        Ok(())
    }
}

/// Builds the configuration and gets the identities.
pub async fn prepare(args: &FleetArgs) -> anyhow::Result<Prepared> {
    let behaviour = args.behaviour()?;
    let seed = args.seed();
    let ca_file = args.ca_file.as_deref().map(read_ca).transpose()?;
    let http = http_client(ca_file.as_deref().map(tls_config).transpose()?.as_deref())?;
    let hub = HubApi::new(http, &args.hub_url, args.admin_token.clone())?;
    let identities = identities(args, &hub).await?;
    check_open_files(identities.appliances.len())?;
    let ca = ca_file.or_else(|| identities.ca_cert.clone().map(String::into_bytes));
    let mut broker = broker_target(&identities, args.mqtt_url.as_deref(), ca.as_deref())?;
    broker.keep_alive = Duration::from_secs(args.behaviour.keep_alive_s.max(5));
    if let (Some(user), Some(password)) = (&args.username, &args.password) {
        broker.credentials = Some((user.clone(), password.clone()));
    }
    // Downloads over HTTPS trust the hub's CA too, once it is known.
    let http = http_client(broker.tls.as_deref())?;
    let hub = HubApi::new(http, &args.hub_url, args.admin_token.clone())?;
    let config = FleetConfig {
        broker,
        hub,
        behaviour,
        seed,
        connect_rate: args.connect_rate,
    };
    Ok(Prepared {
        config,
        identities,
        seed,
        save_to: args.save_identities.clone(),
    })
}

/// Where a fleet of `identities` connects: `mqtt_url` when given, else the
/// endpoint registration gave (`iotHost`, `iotPort`), else
/// `mqtts://127.0.0.1:8883`; TLS trusts `ca_pem` (from `--ca-file`, or
/// registration's `caCert`).
pub fn broker_target(
    identities: &Identities,
    mqtt_url: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<BrokerTarget> {
    BrokerTarget::from_url(&endpoint(identities, mqtt_url), ca_pem)
}

fn endpoint(identities: &Identities, mqtt_url: Option<&str>) -> String {
    match (mqtt_url, &identities.iot_host, identities.iot_port) {
        (Some(url), _, _) => url.to_owned(),
        (None, Some(host), Some(port)) if host.contains(':') => format!("mqtts://[{host}]:{port}"),
        (None, Some(host), Some(port)) => format!("mqtts://{host}:{port}"),
        _ => DEFAULT_MQTT_URL.to_owned(),
    }
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the CA certificate {}", path.display()))
}

async fn identities(args: &FleetArgs, hub: &HubApi) -> anyhow::Result<Identities> {
    if let Some(path) = &args.identities {
        let mut saved = Identities::load(path)?;
        if let Some(count) = args.count {
            if count > saved.appliances.len() {
                bail!(
                    "--count {count} but {} holds {}",
                    path.display(),
                    saved.appliances.len()
                );
            }
            saved.appliances.truncate(count);
        }
        if saved.appliances.is_empty() {
            bail!("{} holds no identity", path.display());
        }
        return Ok(saved);
    }
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let version = &args.behaviour.initial_version;
    let identities = if let Some(token) = &args.register_token {
        hub.register_fleet(token, count, version)
            .await
            .context("registering appliances")?
    } else if args.admin_token.is_some() {
        hub.provision(count, args.customer_id.as_deref())
            .await
            .context("provisioning appliances")?
    } else if args.username.is_some() {
        Identities::random(count, "unused")
    } else {
        bail!(
            "no identities: give --identities FILE, --register-token, --admin-token, \
             or --username/--password"
        );
    };
    if let Some(path) = &args.save_identities {
        identities.save(path)?;
    }
    Ok(identities)
}

/// Sockets beyond the appliances' own: HTTP, stdio, the runtime.
const SPARE_FILES: u64 = 64;

/// Refuses to start a fleet that cannot open a socket per appliance
/// (Linux; elsewhere it is not checked).
fn check_open_files(appliances: usize) -> anyhow::Result<()> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<u64>().ok());
    match soft {
        Some(limit) if limit < appliances as u64 + SPARE_FILES => bail!(
            "{appliances} appliances need about {} open files, the limit is {limit}: \
             raise it first (ulimit -n {})",
            appliances as u64 + SPARE_FILES,
            appliances as u64 + 1024
        ),
        _ => Ok(()),
    }
}

/// `device-sim run`: the fleet until Ctrl-C or --duration, then the report.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    let prepared = prepare(&args.fleet).await?;
    let (seed, size) = (prepared.seed, prepared.identities.appliances.len());
    if !args.fleet.json {
        eprintln!("device-sim: {size} appliances, seed {seed}");
    }
    let before = rss_bytes();
    let started = Instant::now();
    let (fleet, saved) = prepared.start();
    let progress = Progress::start(fleet.stats().clone(), size, args.fleet.json);
    let stop = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
    }
    let memory = Memory::measure(before, size);
    progress.finish().await;
    let stats = fleet.stop().await;
    saved.save(&stats)?;
    let elapsed = started.elapsed().as_millis() as u64;
    let mut report = Report::new("run", seed, size, elapsed, &stats);
    report.memory = memory;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_flag_then_registration() -> anyhow::Result<()> {
        let mut identities = Identities::random(1, "t");
        assert_eq!(endpoint(&identities, None), "mqtts://127.0.0.1:8883");
        let target = broker_target(&identities, Some("mqtt://127.0.0.1:1884"), None)?;
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 1884));
        identities.iot_host = Some("hub.example".into());
        identities.iot_port = Some(18883);
        assert_eq!(endpoint(&identities, None), "mqtts://hub.example:18883");
        assert_eq!(endpoint(&identities, Some("mqtt://h:1")), "mqtt://h:1");
        identities.iot_host = Some("::1".into());
        assert_eq!(endpoint(&identities, None), "mqtts://[::1]:18883");
        let refused = broker_target(&identities, None, None).err();
        let message = format!("{:#}", refused.context("refused without a CA")?);
        assert!(message.contains("CA certificate"), "{message}");
        Ok(())
    }
}
