//! End-to-end tests: broker, hub and appliances in one process, every
//! listener on port 0, every wait bounded by a timeout.

mod artifacts;
mod auto_upgrade;
mod edge;
mod fleet;
mod jobs;
mod logs;
mod rest_auth;
mod rest_flow;
mod rest_inputs;
mod rest_refusals;
mod rollout;
mod sim;
mod tags;
mod ui_logs;
mod upgrade;
