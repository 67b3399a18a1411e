//! Fleethub's device simulator: thousands of realistic appliances in one
//! process, for QA and for the benchmarks.
//!
//! Layout:
//! - [`appliance`]: one appliance's decision logic, free of I/O (a state
//!   struct fed events and time, answering with actions), unit-tested.
//! - [`fault`]: fault rates and the per-appliance generator derived from
//!   the run's seed.
//! - [`identity`]: appliance identities and the identities file.

pub mod appliance;
pub mod fault;
pub mod identity;
