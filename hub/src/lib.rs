//! Fleethub's hub: the job engine, its SQLite store, jobs over MQTT, the
//! REST API and the schedulers, assembled by `hub serve`.
//!
//! - [`model`]: domain types and ids shared by the layers.
//! - [`engine`]: the execution state machine; pure, no I/O, no clock.
//! - [`store`]: SQLite persistence; the only module that speaks SQL.
//! - [`device`]: what the hub answers to appliances' requests.
//! - [`mqtt`]: the hub's MQTT client, dispatcher, throttle and outbox.
//! - [`edge`]: appliance authentication and presence for the device edge.
//! - [`jobs`], [`scheduler`]: creating, releasing and canceling jobs, and
//!   the periodic duties (rollouts, timeouts, retries, heartbeats, tokens).
//! - [`rollout`], [`presence`]: the pure decisions of those duties.
//! - [`artifacts`]: the artifact store, signed links, log uploads.
//! - [`api`]: the REST API; [`register_token`]: the JWTs appliances
//!   register with.
//! - [`config`], [`app`]: settings and the assembly of a running hub.

pub mod api;
pub mod app;
pub mod artifacts;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod device;
pub mod edge;
pub mod engine;
pub mod jobs;
pub mod model;
pub mod mqtt;
pub mod presence;
pub mod register_token;
pub mod rollout;
pub mod scheduler;
pub mod store;
