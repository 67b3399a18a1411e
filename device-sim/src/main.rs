//! The `device-sim` binary: parses the command line, runs the fleet or the
//! benchmark, prints the report (human-readable, or JSON with `--json`).

use clap::Parser;
use device_sim::cli::{Cli, Command, Scenario};
use device_sim::{bench, launch};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (report, json) = match cli.command {
        Command::Run(args) => {
            let json = args.fleet.json;
            (launch::run(args).await?, json)
        }
        Command::Bench { scenario } => match scenario {
            Scenario::Connect { fleet, timeout } => {
                let json = fleet.json;
                (bench::connect(fleet, timeout).await?, json)
            }
            Scenario::Job { fleet, job } => {
                let json = fleet.json;
                (bench::job(fleet, job).await?, json)
            }
        },
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}
