//! From command-line arguments to a running fleet: identities (saved file,
//! provisioning through the hub's REST, or random ids for a broker with
//! fixed credentials), the fleet configuration, and `device-sim run`.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::cli::{FleetArgs, RunArgs};
use crate::fleet::{Fleet, FleetConfig};
use crate::hub_api::{http_client, HubApi};
use crate::identity::{Identities, Identity};
use crate::mqtt::BrokerTarget;
use crate::progress::Progress;
use crate::report::{rss_bytes, Memory, Report};

/// Appliances provisioned when neither --count nor --identities is given.
const DEFAULT_COUNT: usize = 100;

/// A fleet ready to start.
#[derive(Debug)]
pub struct Prepared {
    /// Its configuration.
    pub config: FleetConfig,
    /// Its appliances, in index order (the index seeds their faults).
    pub identities: Vec<Identity>,
    /// The seed.
    pub seed: u64,
}

/// Builds the configuration and gets the identities.
pub async fn prepare(args: &FleetArgs) -> anyhow::Result<Prepared> {
    let behaviour = args.behaviour()?;
    let seed = args.seed();
    let mut broker = BrokerTarget::from_url(&args.mqtt_url, args.ca_file.as_deref())?;
    broker.keep_alive = Duration::from_secs(args.behaviour.keep_alive_s.max(5));
    if let (Some(user), Some(password)) = (&args.username, &args.password) {
        broker.credentials = Some((user.clone(), password.clone()));
    }
    let http = http_client(broker.tls.as_deref())?;
    let hub = HubApi::new(http, &args.hub_url, args.admin_token.clone())?;
    let identities = identities(args, &hub).await?;
    check_open_files(identities.len())?;
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
    })
}

async fn identities(args: &FleetArgs, hub: &HubApi) -> anyhow::Result<Vec<Identity>> {
    if let Some(path) = &args.identities {
        let mut saved = Identities::load(path)?.appliances;
        if let Some(count) = args.count {
            if count > saved.len() {
                bail!(
                    "--count {count} but {} holds {}",
                    path.display(),
                    saved.len()
                );
            }
            saved.truncate(count);
        }
        return Ok(saved);
    }
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let identities = if args.admin_token.is_some() {
        hub.provision(count)
            .await
            .context("provisioning appliances")?
    } else if args.username.is_some() {
        Identities::random(count, "unused")
    } else {
        bail!("no identities: give --identities FILE, --admin-token, or --username/--password");
    };
    if let Some(path) = &args.save_identities {
        identities.save(path)?;
    }
    Ok(identities.appliances)
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
    let (seed, size) = (prepared.seed, prepared.identities.len());
    if !args.fleet.json {
        eprintln!("device-sim: {size} appliances, seed {seed}");
    }
    let before = rss_bytes();
    let started = Instant::now();
    let fleet = Fleet::start(prepared.config, prepared.identities);
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
    let elapsed = started.elapsed().as_millis() as u64;
    let mut report = Report::new("run", seed, size, elapsed, &stats);
    report.memory = memory;
    Ok(report)
}
