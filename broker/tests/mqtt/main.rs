//! Integration tests of the broker crate, one module per feature. Every
//! listener is bound to port 0 and every wait has a timeout.

mod embedded;
mod raw;
