//! What the proxy tests (`tests/caddy.rs`, `tests/forward_auth.rs`) share: the
//! real daemon (`server::serve_with_engine`) with `[[auth.routes]]` and the
//! keys each test needs, reached over TCP and over its HTTP Unix socket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tollgate::config::Config;
use tollgate::core::model::{Permissions, RateLimit, Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey};

/// No per-minute team limit: the tests' keys carry their own.
pub const TIERS: &str = r#"
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
"#;

/// The routes the examples' comments show: `GET /files/` needs `files:read`,
/// anything under `/admin/` needs `admin:write`.
pub const ROUTES: &str = r#"
[[auth.routes]]
prefix = "/files/"
methods = ["GET"]
permissions = { files = ["read"] }

[[auth.routes]]
prefix = "/admin/"
permissions = { admin = ["write"] }
"#;

/// A running daemon and the credentials made for the test.
pub struct Fixture {
    pub engine: Arc<Engine>,
    pub port: u16,
    pub http_socket: PathBuf,
    pub team: String,
    pub user: String,
    /// A key with `files:read`: (id, secret).
    pub good: (String, String),
    /// `files:read`, rate limit of 2 a minute.
    pub limited: String,
    /// `files:read`, deleted by the test when it wants.
    pub revoked: (String, String),
    /// `files:read`, only from 127.0.0.1.
    pub local_only: String,
    /// `files:read`, only from 198.51.100.0/24.
    pub elsewhere: String,
    daemon: super::InProcess,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// The daemon with [`ROUTES`].
    pub fn start() -> Fixture {
        Fixture::start_with(ROUTES)
    }

    /// The daemon with `toml` (after [`TIERS`]) as its configuration.
    pub fn start_with(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let http_socket = dir.path().join("tollgate-http.sock");
        let mut config = Config::parse(&format!("{TIERS}\n{toml}")).unwrap();
        config.data = dir.path().join("data");
        config.socket = dir.path().join("tollgate.sock");
        config.http = "127.0.0.1:0".to_owned();
        config.http_socket = Some(http_socket.clone());
        config.validate().unwrap();

        let engine = Arc::new(Engine::open(&config).unwrap());
        let team = engine.create_team("acme", Tier::Pro).unwrap();
        let user = engine.create_user(&team.id, "alice", "correct horse", Role::Reader, UserStatus::Enabled).unwrap();
        let files_read = Permissions(BTreeMap::from([("files".to_owned(), vec!["read".to_owned()])]));
        let key = |rate_limit: Option<RateLimit>, ips: &[&str]| {
            let (k, secret) = engine
                .create_key(NewKey {
                    user_id: user.id.clone(),
                    permissions: files_read.clone(),
                    rate_limit,
                    whitelisted_ips: ips.iter().map(|s| (*s).to_owned()).collect(),
                    ..NewKey::default()
                })
                .unwrap();
            (k.id, secret)
        };
        let good = key(None, &[]);
        let (_, limited) = key(Some(RateLimit { max: 2, window_ms: 60_000 }), &[]);
        let revoked = key(None, &[]);
        let (_, local_only) = key(None, &["127.0.0.1"]);
        let (_, elsewhere) = key(None, &["198.51.100.0/24"]);

        let daemon = super::InProcess::start(config, Some(engine.clone()));
        let port = daemon.addr.port();
        Fixture {
            engine,
            port,
            http_socket,
            team: team.id,
            user: user.id,
            good,
            limited,
            revoked,
            local_only,
            elsewhere,
            daemon,
            dir,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}
