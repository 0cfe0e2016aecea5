//! Logging: `tracing` to stderr, human-readable or one JSON object per line,
//! with a filter that a configuration reload can change while the daemon runs.
//!
//! Lines at INFO and below (the access line of every request among them) are
//! gathered in a buffer written to stderr every [`FLUSH_INTERVAL`] or when it
//! holds [`BUFFER_BYTES`], so a busy daemon does not pay one `write(2)` per
//! request (it cost /auth about 11% of its throughput); a WARN or ERROR line
//! writes the buffer and itself at once, so the order of lines is kept and a
//! problem is never late. A `kill -9` loses at most the last interval's INFO
//! lines; a normal exit, and a panic, write everything ([`flush`]).
//!
//! What may be logged: ids (team, user, key, token, request), key `start`s,
//! paths with credential-looking segments replaced, deny codes. Never a
//! secret, an API key, an access token, a JWT, a password or the admin token:
//! `tests/it/logs.rs` runs a full session at trace level and searches the output
//! for every one it created.

use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

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
    let human =
        (log.format == LogFormat::Human).then(|| tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(Stderr));
    let json = (log.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(Stderr)
    });
    if tracing_subscriber::registry().with(filter).with(human).with(json).try_init().is_ok() {
        let _ = FILTER.set(handle);
        if !ansi {
            let _ = DIRECT.set(log.format);
        }
        let _ = std::thread::Builder::new().name("log-flush".into()).spawn(|| {
            loop {
                std::thread::sleep(FLUSH_INTERVAL);
                flush();
            }
        });
        // A panic's own message goes straight to stderr: what was logged
        // before it must not be left behind in the buffer.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    }
}

/// Set when this process installed the subscriber without colours: the
/// access line is then formatted here, in the subscriber's own layout, and
/// put straight into the buffer (a tenth of what `tracing_subscriber::fmt`
/// spends on it).
static DIRECT: OnceLock<LogFormat> = OnceLock::new();

/// One request, for the access line (target `tollgate::access`, INFO).
pub struct Access<'a> {
    /// The method.
    pub method: &'a str,
    /// The route template, never the raw path.
    pub route: &'a str,
    /// The status answered.
    pub status: u16,
    /// The time taken, in µs.
    pub micros: u64,
    /// The peer's address; `None` on the HTTP Unix socket (`unix`).
    pub client: Option<std::net::IpAddr>,
    /// The request id (letters, digits, `.`, `_`, `-` only).
    pub request_id: &'a str,
    /// A verification's verdict code.
    pub verdict: Option<&'a str>,
    /// The path, at debug level only (credential-like segments replaced).
    pub path: Option<&'a str>,
}

/// Writes the access line of one request, if `tollgate::access` is enabled at
/// INFO.
pub fn access(a: &Access<'_>) {
    if !tracing::enabled!(target: "tollgate::access", tracing::Level::INFO) {
        return;
    }
    // Every field but the path is made of characters that need no escaping
    // in either layout (a method is an HTTP token, an id is checked when
    // read); the path, shown at debug level only, goes through tracing.
    let format = match DIRECT.get() {
        Some(f) if a.path.is_none() && a.method.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') => *f,
        _ => {
            let client = a.client.map_or_else(|| "unix".to_owned(), |ip| ip.to_string());
            tracing::info!(
                target: "tollgate::access",
                method = %a.method,
                route = %a.route,
                status = a.status,
                micros = a.micros,
                client = %client,
                request_id = %a.request_id,
                verdict = a.verdict.map(tracing::field::display),
                path = a.path.map(tracing::field::display),
                "request"
            );
            return;
        }
    };
    let mut line = [0u8; 512];
    let mut w = std::io::Cursor::new(&mut line[..]);
    let ts = Timestamp(std::time::SystemTime::now());
    let client = ClientAddr(a.client);
    let written = match format {
        LogFormat::Human => {
            let r = write!(
                w,
                "{ts}  INFO tollgate::access: request method={} route={} status={} micros={} client={client} request_id={}",
                a.method, a.route, a.status, a.micros, a.request_id
            );
            r.and_then(|()| a.verdict.map_or(Ok(()), |v| write!(w, " verdict={v}"))).and_then(|()| w.write_all(b"\n"))
        }
        LogFormat::Json => {
            let r = write!(
                w,
                "{{\"timestamp\":\"{ts}\",\"level\":\"INFO\",\"fields\":{{\"message\":\"request\",\"method\":\"{}\",\
                 \"route\":\"{}\",\"status\":{},\"micros\":{},\"client\":\"{client}\",\"request_id\":\"{}\"",
                a.method, a.route, a.status, a.micros, a.request_id
            );
            r.and_then(|()| a.verdict.map_or(Ok(()), |v| write!(w, ",\"verdict\":\"{v}\"")))
                .and_then(|()| w.write_all(b"},\"target\":\"tollgate::access\"}\n"))
        }
    };
    // 512 bytes hold every line (an id is at most 64 characters); a method
    // long enough to overflow it is cut, and the line still ends.
    let n = w.position() as usize;
    if written.is_err() {
        line[n.min(511)] = b'\n';
    }
    let mut pending = PENDING.lock();
    pending.extend_from_slice(&line[..(n + usize::from(written.is_err())).min(512)]);
    if pending.len() >= BUFFER_BYTES {
        write_out(&mut pending);
    }
}

struct ClientAddr(Option<std::net::IpAddr>);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unix"),
        }
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber` writes it:
/// `2026-12-01T06:34:57.389337Z`.
struct Timestamp(std::time::SystemTime);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_micros()
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The longest an INFO line waits in the buffer before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The buffer is written as soon as it holds this much.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// Lines not yet written; `write(2)`s happen under this lock, so lines keep
/// their order.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Writes the buffered lines to stderr now (the daemon calls it on exit).
pub fn flush() {
    let mut pending = PENDING.lock();
    write_out(&mut pending);
}

fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        // Nothing sensible to do when stderr is gone: the lines are dropped.
        let _ = std::io::stderr().lock().write_all(pending);
        pending.clear();
    }
}

/// The log writer: one formatted line per `write` call.
struct Stderr;

/// A line on its way to stderr; `now` for WARN and ERROR.
struct Line {
    now: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { now: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line { now: *meta.level() <= tracing::Level::WARN }
    }
}

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = PENDING.lock();
        pending.extend_from_slice(buf);
        if self.now || pending.len() >= BUFFER_BYTES {
            write_out(&mut pending);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    fn timestamps_are_rfc3339_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |s: u64, us: u32| Timestamp(UNIX_EPOCH + Duration::new(s, us * 1000)).to_string();
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_796_107_297, 389_337), "2026-12-01T06:41:37.389337Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
        // Every day for 400 years agrees with the day after it.
        let mut prev = civil_from_days(-1);
        for day in 0..146_097 {
            let (y, m, d) = civil_from_days(day);
            assert!((y, m, d) > prev && (1..=12).contains(&m) && (1..=31).contains(&d), "{day}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn bad_levels_are_refused() {
        assert!(parse_level("debug").is_ok());
        assert!(parse_level("tollgate=trace,hyper=info").is_ok());
        assert!(parse_level("tollgate=loud").is_err());
    }
}
