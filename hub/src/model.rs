//! Domain types (being written).
