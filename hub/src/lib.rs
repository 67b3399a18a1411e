//! Fleethub's hub: the job engine, its SQLite store, jobs over MQTT, the
//! REST API and the schedulers, assembled by `hub serve`.
//!
//! - [`model`]: domain types and ids shared by the layers.
//! - [`engine`]: the execution state machine; pure, no I/O, no clock.
//! - [`store`]: SQLite persistence; the only module that speaks SQL.

pub mod engine;
pub mod model;
pub mod store;
