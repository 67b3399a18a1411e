//! End-to-end tests: broker, hub and appliances in one process, every
//! listener on port 0, every wait bounded by a timeout.

mod edge;
mod fleet;
mod jobs;
mod rollout;
