//! The integration tests: one binary (each `tests/*.rs` would be its own,
//! each linking the whole daemon), one module per interface or area.
//! `cargo test --test it MODULE::` runs one module, e.g. `--test it nginx::`.

mod common;

mod admin_api;
mod admin_cli;
mod admin_isolation;
mod admin_props;
mod audit_bounds;
mod audit_log;
mod authz;
mod caddy;
mod cli;
mod cluster;
mod config_reference;
mod crash;
mod engine;
mod forward_auth;
mod import;
mod import_api;
mod key_image;
mod listener;
mod logs;
mod memory;
mod model;
mod nginx;
mod node_client;
mod ops;
mod python_client;
mod readme_session;
mod reload;
mod sidecar;
mod team_standing;
