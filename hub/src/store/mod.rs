//! SQLite persistence (being written).
