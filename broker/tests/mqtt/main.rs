//! Integration tests of the broker crate, one module per feature. Every
//! listener is bound to port 0 and every wait has a timeout. The edge tests
//! drive it with clients nobody here wrote (Debian's mosquitto-clients and
//! python3-paho-mqtt) as well as with a minimal raw client for exact bytes.

mod edge_acl;
mod edge_connect;
mod edge_delivery;
mod edge_resilience;
mod edge_traffic;
mod embedded;
mod fleet;
mod raw;
mod tools;
