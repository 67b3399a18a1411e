//! The `hub` binary: `hub serve` runs Fleethub with its embedded defaults.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hub::app::Hub;
use hub::clock::SystemClock;
use hub::config::{Config, ServeArgs};
use protocol::ApplianceId;
use std::path::PathBuf;
use std::sync::Arc;

/// Fleethub: an MQTT-first hub for fleets of on-premise appliances.
#[derive(Debug, Parser)]
#[command(name = "hub", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: REST API, device MQTT, job engine and schedulers.
    Serve(Box<ServeArgs>),
    /// Development certificates: the CA, the server certificate, client
    /// certificates for appliances.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create the dev CA and server certificate where absent.
    Init {
        /// Where the certificates live.
        #[arg(long, env = "HUB_CERTS_DIR", default_value = "certs/dev")]
        certs_dir: PathBuf,
        /// Extra host names for the server certificate (localhost,
        /// 127.0.0.1 and ::1 are always in it).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Issue a client certificate (CN = appliance id) signed by the dev CA.
    Client {
        /// The appliance.
        appliance_id: ApplianceId,
        /// Where the CA lives.
        #[arg(long, env = "HUB_CERTS_DIR", default_value = "certs/dev")]
        certs_dir: PathBuf,
        /// Where to write `<id>.pem` and `<id>-key.pem`.
        #[arg(long, default_value = "certs/dev/clients")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        // Colours only for a person at a terminal, never in a log file or
        // a pipe that another program reads.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Certs(CertsCommand::Init { certs_dir, hosts }) => {
            let paths = broker::certs::ensure_dev_certs(&certs_dir, &hosts)?;
            println!("CA certificate:     {}", paths.ca_cert.display());
            println!("server certificate: {}", paths.server_cert.display());
            Ok(())
        }
        Command::Certs(CertsCommand::Client {
            appliance_id,
            certs_dir,
            out,
        }) => {
            let cert = broker::certs::issue_client_cert(&certs_dir, &appliance_id)?;
            let (cert_path, key_path) = cert.write_to(&out)?;
            println!("certificate: {}", cert_path.display());
            println!("key:         {}", key_path.display());
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args)?;
    let hub = Hub::start(config, Arc::new(SystemClock)).await?;
    if let Some(token) = hub.new_admin_token() {
        println!(
            "admin token (shown once, also in the data directory's admin-token file): {token}"
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    hub.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
