//! Configuration reload while the daemon runs (SIGHUP, `POST /v1/admin/reload`,
//! `tollgate reload`), and the checks `tollgate check-config` shares with it.
//!
//! A reload reads the configuration file again and prepares everything that
//! can fail (parsing, validation, key files, the JWT key set, the log filter)
//! before it changes anything; a new configuration with any problem is
//! refused whole and the one in force stays. What it can change in place:
//!
//! - `[jwt]`: keys, signing key, issuer, audience, leeway, TTL, cache. The key
//!   set is swapped atomically: each verification sees the old set or the new
//!   one, so a token signed by a key present in both verifies throughout.
//!   Rotation is therefore: add the new key and keep the old one as a
//!   verification key (public key file is enough) while its tokens live.
//! - `[tiers.*]`: the next verification uses the new limits.
//! - `[auth]`: route rules, cookie name, trusted proxies of `/auth`.
//! - `[metrics]`, and `log.level` (unless `RUST_LOG` pins it).
//! - `[http_server.tls]`: the certificate, key and client CA files are read
//!   again (a certificate renewed under the same name is a change) and the
//!   new TLS configuration is used by new connections; open ones keep theirs.
//!
//! Settings bound at start (listeners, data directory, durability, store cache, admin API,
//! log format, `[http_server]` limits, turning TLS on or off) are kept as
//! they are; a reload that changes them says so and applies the rest. Socket
//! and HTTP connections are never touched.

use std::sync::Arc;

use arc_swap::ArcSwap;

use serde::Serialize;

use crate::config::{Config, ConfigError, SourceFile};
use crate::core::jwt::{JwtConfigError, JwtKeys, JwtSettings};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::tls::Tls;

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The configuration file read.
    pub file: String,
    /// What changed and is now in force, one line per section.
    pub applied: Vec<String>,
    /// Keys whose new value needs a restart; the old value stays in force.
    pub needs_restart: Vec<String>,
}

/// Why a reload did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The daemon was started without a configuration file.
    #[error(
        "the daemon was started without a configuration file (--config or TOLLGATE_CONFIG); there is nothing to reload"
    )]
    NoFile,
    /// The new configuration has problems; every one is listed, located.
    #[error("{0}")]
    Refused(String),
}

/// Checks a configuration file as a reload or a start would: the file's own
/// problems, the TLS certificate and key files, and the JWT key files it names (read, parsed, matched to
/// their algorithm). Without `[[jwt.keys]]` the daemon generates a key in its
/// data directory at start; that is not checked here (nothing is created).
///
/// The key files are checked even when other settings have problems, unless
/// the `[jwt]` section itself has some, so one run lists as much as it can.
pub fn check_file(source: &SourceFile) -> Result<Config, Vec<ConfigError>> {
    let (mut config, mut problems) = source.parse_lenient().map_err(|e| vec![e])?;
    config.file = Some(source.path.clone());
    problems.extend(config.problems());
    if !config.jwt.keys.is_empty()
        && !problems.iter().any(|p| p.0.starts_with("jwt"))
        && let Err(e) = build_jwt(&config)
    {
        problems.push(e);
    }
    if let Some(t) = &config.http_server.tls
        && !problems.iter().any(|p| p.0.starts_with("http_server.tls"))
        && let Err(e) = crate::tls::load_tls(t)
    {
        problems.push(e);
    }
    if problems.is_empty() { Ok(config) } else { Err(source.locate_all(&problems)) }
}

/// The JWT settings and key set `config` asks for; errors name the key path.
fn build_jwt(config: &Config) -> Result<(JwtSettings, JwtKeys), ConfigError> {
    let settings = crate::engine::jwt_settings(config).map_err(|e| match e {
        crate::engine::EngineError::Config(c) => c,
        other => ConfigError(format!("jwt.keys: {other}")),
    })?;
    let keys = JwtKeys::new(&settings).map_err(|e| jwt_error(config, &e))?;
    Ok((settings, keys))
}

fn jwt_error(config: &Config, e: &JwtConfigError) -> ConfigError {
    let index_of = |kid: &str| config.jwt.keys.iter().rposition(|k| k.kid == kid);
    let key = match e {
        JwtConfigError::Key { kid, .. } | JwtConfigError::DuplicateKid(kid) => {
            index_of(kid).map_or_else(|| "jwt.keys".to_owned(), |i| format!("jwt.keys[{i}]"))
        }
        JwtConfigError::SigningKeyMissing(_) | JwtConfigError::SigningKeyCannotSign(_) => "jwt.signing_kid".to_owned(),
        JwtConfigError::Settings(_) => "jwt".to_owned(),
    };
    ConfigError(format!("{key}: {e}"))
}

/// What a reload reads and replaces, borrowed from the server's state.
pub struct Live<'a> {
    /// The configuration in force.
    pub config: &'a ArcSwap<Config>,
    /// The engine (JWT keys and tier limits are replaced in it).
    pub engine: &'a Engine,
    /// The reload counters.
    pub metrics: &'a Metrics,
    /// The HTTPS certificate in force, if the TCP listener speaks TLS.
    pub tls: Option<&'a Tls>,
    /// One reload at a time (SIGHUP and the admin endpoint may race).
    pub lock: &'a parking_lot::Mutex<()>,
}

/// Reloads the configuration file of a running daemon. Logs the outcome
/// either way; on error nothing changed.
pub fn reload(shared: &Live<'_>) -> Result<Report, ReloadError> {
    let _one_at_a_time = shared.lock.lock();
    let result = reload_locked(shared);
    shared.metrics.reloaded(result.is_ok());
    match &result {
        Ok(r) => tracing::info!(
            file = %r.file,
            applied = %if r.applied.is_empty() { "nothing changed".to_owned() } else { r.applied.join("; ") },
            needs_restart = %r.needs_restart.join(", "),
            "configuration reloaded"
        ),
        Err(e) => tracing::error!("configuration reload refused; the configuration in force is unchanged: {e}"),
    }
    result
}

/// Puts back into `new` the settings bound at start that it changes, keeping
/// `old`'s, and returns their names. `tls_on`: HTTPS is being served (it is
/// turned on or off only at start; its files are read again on every reload).
/// `src/config_schema.rs`'s reload column is tested against this.
pub fn keep_bound_at_start(old: &Config, new: &mut Config, tls_on: bool) -> Vec<String> {
    let mut needs_restart = Vec::new();
    macro_rules! keep {
        ($($field:ident).+) => {
            if new.$($field).+ != old.$($field).+ {
                needs_restart.push(stringify!($($field).+).to_owned());
                new.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    keep!(data);
    keep!(socket);
    keep!(socket_mode);
    keep!(socket_allowed_uids);
    keep!(max_connections);
    keep!(socket_handshake_timeout_ms);
    keep!(socket_frame_timeout_ms);
    keep!(socket_write_timeout_ms);
    keep!(socket_drain_grace_ms);
    keep!(http);
    keep!(http_socket);
    keep!(http_socket_mode);
    // The demo key is made (or found) at start.
    keep!(demo);
    keep!(http_server.header_read_timeout_ms);
    keep!(http_server.idle_timeout_ms);
    keep!(http_server.body_timeout_ms);
    keep!(http_server.max_connections);
    keep!(http_server.drain_grace_ms);
    keep!(http_server.insecure);
    // TLS is turned on or off at start; its files are read again.
    if tls_on != new.http_server.tls.is_some() {
        needs_restart.push("http_server.tls".to_owned());
        new.http_server.tls.clone_from(&old.http_server.tls);
    }
    keep!(durability);
    keep!(store);
    keep!(cluster);
    keep!(admin_api);
    keep!(audit);
    keep!(log.format);
    needs_restart
}

fn refused(errs: &[ConfigError]) -> ReloadError {
    ReloadError::Refused(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join("\n"))
}

fn reload_locked(shared: &Live<'_>) -> Result<Report, ReloadError> {
    let old = shared.config.load_full();
    let Some(path) = old.file.clone() else {
        return Err(ReloadError::NoFile);
    };
    let source = SourceFile::read(&path).map_err(|e| refused(&[e]))?;
    let mut new = source.config_with(old.overrides.clone()).map_err(|errs| refused(&errs))?;
    new.admin_token.clone_from(&old.admin_token);

    // Settings bound at start: keep the ones in force, and say which changed.
    let needs_restart = keep_bound_at_start(&old, &mut new, shared.tls.is_some());
    let problems = new.problems();
    if !problems.is_empty() {
        return Err(refused(&problems));
    }

    // Everything that can fail, before anything changes.
    let current_jwt = shared.engine.jwt();
    // The key files are read again even when the file names did not change:
    // a rotated file under the same name is a change. An unchanged key set is
    // kept, with its cache of verified tokens.
    let (settings, keys) = build_jwt(&new).map_err(|e| refused(&[source.locate(&e)]))?;
    let jwt = (settings != *current_jwt.settings()).then_some(keys);
    // The certificate files are read again even when their names did not
    // change: renewing a certificate in place is the usual rotation.
    let tls = match (&shared.tls, &new.http_server.tls) {
        (Some(_), Some(t)) => Some(crate::tls::load_tls(t).map_err(|e| refused(&[source.locate(&e)]))?),
        _ => None,
    };
    let mut applied = Vec::new();
    let filter = if new.log.level == old.log.level {
        None
    } else if crate::logging::level_pinned_by_env() {
        applied.push(format!("log.level: {:?} noted, but RUST_LOG decides the level", new.log.level));
        None
    } else {
        let f = crate::logging::parse_level(&new.log.level)
            .map_err(|m| refused(&[source.locate(&ConfigError(format!("log.level: {m}")))]))?;
        Some(f)
    };

    // Apply. Only the log filter can still fail; it goes first.
    if let Some(f) = filter {
        crate::logging::set_filter(f).map_err(|m| ReloadError::Refused(format!("log.level: {m}")))?;
        applied.push(format!("log.level: {:?} -> {:?}", old.log.level, new.log.level));
    }
    if let Some(keys) = jwt {
        let before: Vec<String> = current_jwt.settings().keys.iter().map(|k| k.kid.clone()).collect();
        let after: Vec<String> = keys.settings().keys.iter().map(|k| k.kid.clone()).collect();
        let added: Vec<&str> = after.iter().filter(|k| !before.contains(k)).map(String::as_str).collect();
        let removed: Vec<&str> = before.iter().filter(|k| !after.contains(k)).map(String::as_str).collect();
        let mut line =
            format!("jwt: signing key {}, verification keys [{}]", keys.settings().signing_kid, after.join(", "));
        if !added.is_empty() {
            line.push_str(&format!(", added [{}]", added.join(", ")));
        }
        if !removed.is_empty() {
            line.push_str(&format!(", removed [{}] (tokens they signed no longer verify)", removed.join(", ")));
        }
        let retired = shared.engine.replace_jwt(keys);
        shared.metrics.retire_jwt_cache(retired.cache_stats());
        applied.push(line);
    }
    if let (Some(state), Some(loaded)) = (&shared.tls, tls) {
        let summary = loaded.summary.clone();
        if state.replace(loaded) {
            applied.push(format!("http_server.tls: certificate {summary} for new connections"));
        }
    }
    if new.tiers != old.tiers {
        shared.engine.replace_tiers(new.tiers.table());
        applied.push("tiers".to_owned());
    }
    if new.auth != old.auth {
        applied.push(format!("auth: {} route rule(s)", new.auth.routes.len()));
    }
    if new.metrics != old.metrics {
        applied.push(format!("metrics.require_admin_token = {}", new.metrics.require_admin_token));
    }
    shared.config.store(Arc::new(new));
    Ok(Report { file: path.display().to_string(), applied, needs_restart })
}

/// What `tollgate reload` learned from the daemon.
#[derive(Debug)]
pub enum RemoteOutcome {
    /// Reloaded; the answer's report.
    Reloaded(serde_json::Value),
    /// Refused (or not possible); the daemon's message.
    Refused(String),
}

/// `tollgate reload`: asks the daemon at `addr` to reload, with the admin
/// token, over one HTTP/1.1 request. An error means the daemon could not be
/// asked or did not answer sensibly.
pub fn request_reload(addr: std::net::SocketAddr, token: &str) -> Result<RemoteOutcome, String> {
    let timeout = std::time::Duration::from_secs(30);
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to the daemon at {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    request_reload_on(s, &addr.to_string(), token)
}

/// Like [`request_reload`], over the daemon's HTTP Unix socket (`http_socket`).
pub fn request_reload_unix(path: &std::path::Path, token: &str) -> Result<RemoteOutcome, String> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to the daemon at {}: {e}", path.display()))?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    request_reload_on(s, &path.display().to_string(), token)
}

fn request_reload_on(
    mut s: impl std::io::Read + std::io::Write,
    addr: &str,
    token: &str,
) -> Result<RemoteOutcome, String> {
    let req = format!(
        "POST /v1/admin/reload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("no answer from {addr}: {e}"))?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the daemon's answer is not HTTP")?;
    let head = String::from_utf8_lossy(buf.get(..split).unwrap_or_default()).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("the daemon's answer is not HTTP")?;
    let body: serde_json::Value = serde_json::from_slice(buf.get(split + 4..).unwrap_or_default())
        .map_err(|_| format!("the daemon answered {status} without a JSON body"))?;
    let message = || body["error"]["message"].as_str().unwrap_or("no message").to_owned();
    match status {
        200 => Ok(RemoteOutcome::Reloaded(body["report"].clone())),
        409 | 422 => Ok(RemoteOutcome::Refused(message())),
        401 | 403 => Err(format!("the daemon refused the admin token: {}", message())),
        404 => Err("the daemon has no reload endpoint (an older version?)".to_owned()),
        _ => Err(format!("the daemon answered {status}: {}", message())),
    }
}
