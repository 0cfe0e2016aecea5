//! tollgate: a token verification daemon. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authz;
pub mod cluster;
pub mod config;
pub mod config_schema;
pub mod core;
pub mod demo;
pub mod engine;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod sidecar;
pub mod store;
pub mod tls;
