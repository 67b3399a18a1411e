//! Fleethub's device simulator: thousands of realistic appliances in one
//! process, for QA and for the benchmarks.
//!
//! Layout:
//! - [`appliance`]: one appliance's decision logic, free of I/O (a state
//!   struct fed events and time, answering with actions), unit-tested.
//! - [`fault`]: fault rates and the per-appliance generator derived from
//!   the run's seed.
//! - [`identity`]: appliance identities and the identities file.
//! - [`mqtt`]: broker URL, rustls configuration (ring), rumqttc options.
//! - [`hub_api`]: the hub's REST API (provisioning, jobs, URL resolution).
//! - [`registration`]: `POST /va/register/` with a register token.
//! - [`transfer`]: cancel-safe HTTP downloads (Range resume, sha256) and
//!   uploads.
//! - [`runner`]: the I/O shell of one appliance (one task).
//! - [`fleet`]: many appliances with a connection ramp-up and one shutdown.
//! - [`stats`]: counters and latency histograms shared by a fleet.
//! - [`rollout`]: a rate-limited rollout's pace as the appliances received
//!   it; [`probe`]: REST latency, idle and under load (`bench job`).
//! - [`cli`], [`launch`], [`bench`], [`progress`], [`report`]: the binary's
//!   command line, `run`, the benchmark scenarios, the live progress bar and
//!   the final report.
//!
//! The decision logic never touches the network: everything below
//! `appliance` is pure, everything else is a thin shell around it.

pub mod appliance;
pub mod bench;
pub mod cli;
pub mod fault;
pub mod fleet;
pub mod hub_api;
pub mod identity;
pub mod launch;
pub mod mqtt;
pub mod probe;
pub mod progress;
pub mod registration;
pub mod report;
pub mod rollout;
pub mod runner;
pub mod stats;
pub mod transfer;
