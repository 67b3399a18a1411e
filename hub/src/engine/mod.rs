//! The execution state machine (being written).
