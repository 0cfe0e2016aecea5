//! Operator tooling for tollgate: a typed blocking client of the admin HTTP
//! API ([`client::AdminClient`], over `ureq` with rustls) and the
//! `tollgate-admin` command line ([`cli::run`]).
//!
//! The request and response types are `tollgate-api`'s, the crate the daemon
//! serializes its answers from, re-exported here as [`types`]. This crate
//! never depends on the daemon's crate: it is installed where the daemon is
//! not.

pub mod cli;
pub mod client;
pub mod error;
mod import;
mod prompt;
pub mod table;
pub mod units;

/// The API's request and response types (the `tollgate-api` crate).
pub use tollgate_api as types;

pub use cli::{Output, run};
pub use client::{AdminClient, ClientError};
pub use error::CliError;
