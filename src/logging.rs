//! Logging: `tracing` to stderr, human-readable or one JSON object per line,
//! with a filter that a configuration reload can change while the daemon runs.
//!
//! What may be logged: ids (team, user, key, token, request), key `start`s,
//! paths with credential-looking segments replaced, deny codes. Never a
//! secret, an API key, an access token, a JWT, a password or the admin token:
//! `tests/logs.rs` runs a full session at trace level and searches the output
//! for every one it created.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogConfig, LogFormat};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Environment variable that overrides `log.level` (and pins it: a reload
/// does not change a level set here).
pub const RUST_LOG: &str = "RUST_LOG";

/// Installs the global subscriber. `RUST_LOG`, when set and valid, takes the
/// place of `log.level`. Does nothing if a subscriber is already installed
/// (tests that start several daemons in one process).
pub fn init(log: &LogConfig) {
    let filter = match env_filter() {
        Some(f) => f,
        None => EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (filter, handle) = reload::Layer::new(filter);
    // Colors only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let human = (log.format == LogFormat::Human)
        .then(|| tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr));
    let json = (log.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    if tracing_subscriber::registry().with(filter).with(human).with(json).try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

fn env_filter() -> Option<EnvFilter> {
    std::env::var(RUST_LOG).ok().filter(|v| !v.trim().is_empty()).and_then(|v| EnvFilter::try_new(v).ok())
}

/// Whether `RUST_LOG` decides the level (a reload leaves it alone then).
pub fn level_pinned_by_env() -> bool {
    env_filter().is_some()
}

/// Checks a `log.level` filter without applying it.
pub fn parse_level(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level).map_err(|e| format!("{level:?} is not a tracing filter: {e}"))
}

/// Replaces the filter in force. Returns `false` when this process did not
/// install the subscriber (an embedding test did), so there is nothing to change.
pub fn set_filter(filter: EnvFilter) -> Result<bool, String> {
    match FILTER.get() {
        None => Ok(false),
        Some(h) => h.reload(filter).map(|()| true).map_err(|e| format!("cannot change the log filter: {e}")),
    }
}

/// `path` fit for a log line: the query string is dropped (it may carry
/// `?token=`) and a segment that looks like a credential (a JWT, or a
/// `prefix_` secret that passes the checksum) is replaced by `<credential>`.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let path = path.split('?').next().unwrap_or_default();
    let looks_secret = |seg: &str| seg.starts_with("eyJ") || crate::core::secret::parse(seg).is_some();
    if !path.split('/').any(looks_secret) {
        return std::borrow::Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path.split('/').map(|seg| if looks_secret(seg) { "<credential>" } else { seg }).collect();
    std::borrow::Cow::Owned(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_paths_are_replaced() {
        let key = crate::core::secret::generate(&aws_lc_rs::rand::SystemRandom::new(), "tg").plaintext;
        assert_eq!(loggable_path("/v1/keys/key_abc"), "/v1/keys/key_abc");
        assert_eq!(loggable_path(&format!("/v1/keys/{key}")), "/v1/keys/<credential>");
        assert_eq!(loggable_path("/v1/x/eyJhbGciOi.e30.sig/y"), "/v1/x/<credential>/y");
        assert_eq!(loggable_path("/v1/keys?token=secret"), "/v1/keys");
    }

    #[test]
    fn bad_levels_are_refused() {
        assert!(parse_level("debug").is_ok());
        assert!(parse_level("tollgate=trace,hyper=info").is_ok());
        assert!(parse_level("tollgate=loud").is_err());
    }
}
