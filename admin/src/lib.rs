//! Operator tooling for tollgate: the admin HTTP API's request and response
//! types ([`types`]), a typed blocking client ([`client::AdminClient`]) and the
//! `tollgate-admin` command line ([`cli::run`]).
//!
//! This crate never depends on the daemon's crate: it is installed where the
//! daemon is not, and its types state the wire contract on their own (the
//! root package's end-to-end tests check them against the real daemon).

pub mod cli;
pub mod client;
pub mod table;
pub mod types;

pub use cli::{CliError, Output, run};
pub use client::{AdminClient, ClientError};
