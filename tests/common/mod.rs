//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::engine::Engine;

/// A config on `dir` from TOML text (data dir and socket filled in).
pub fn config(dir: &Path, toml: &str) -> Config {
    let mut c = Config::parse(toml).expect("test config parses");
    c.data = dir.join("data");
    c.socket = dir.join("tollgate.sock");
    c.validate().expect("test config is valid");
    c
}

/// Opens an engine on `dir`.
pub fn engine(dir: &Path, toml: &str) -> Engine {
    Engine::open(&config(dir, toml)).expect("engine opens")
}

/// Creates a team of `tier` with one enabled Administrator; returns (team, user) ids.
pub fn team_and_user(e: &Engine, tier: Tier, username: &str) -> (String, String) {
    let team = e.create_team(&format!("team of {username}"), tier).unwrap();
    let user =
        e.create_user(&team.id, username, "correct horse battery", Role::Administrator, UserStatus::Enabled).unwrap();
    (team.id, user.id)
}

/// Tier overrides that lift the per-minute limit of the Pro tier, so tests and
/// benches of per-key limits are not capped by the team limit.
pub const PRO_UNLIMITED: &str = r#"
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = 5000
log_retention_days = "unlimited"
"#;
