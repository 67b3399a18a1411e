//! The `device-sim` binary (placeholder until the CLI lands).

fn main() {}
