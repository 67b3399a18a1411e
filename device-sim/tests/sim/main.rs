//! Integration tests of device-sim: real appliances (runner + state) over
//! the embedded broker of the `broker` crate, with the test playing the hub
//! through a rumqttc client, and a tiny HTTP file server on port 0 for
//! downloads and uploads. Every wait has a timeout; no fixed ports.

mod bench;
mod support;
mod task_flow;
mod transfer;
mod upgrade;
