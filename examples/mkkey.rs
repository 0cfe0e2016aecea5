//! Creates an API key in a data directory, before the daemon starts, and prints
//! its secret on stdout (the only time it is shown). For scripts and benchmarks
//! that need a key on a branch without the admin HTTP API.
//!
//! ```text
//! cargo run --release --example mkkey -- DATA_DIR [CONFIG.toml]
//! ```
//!
//! The key belongs to user `bench` of team `bench` (tier Pro), both created on
//! first use, and holds `files: [read]`. The daemon must not be running on the
//! same data directory (sled locks it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use tollgate::config::Config;
use tollgate::core::model::{Permissions, Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let data = args.next().map(PathBuf::from).context("usage: mkkey DATA_DIR [CONFIG.toml]")?;
    let mut config = Config::load(args.next().map(PathBuf::from).as_deref())?;
    config.data = data;
    config.validate()?;
    let engine = Engine::open(&config).context("cannot open the store")?;
    let user = match engine.user_by_name("bench")? {
        Some(u) => u,
        None => {
            let team = engine.create_team("bench", Tier::Pro)?;
            engine.create_user(&team.id, "bench", "bench-password", Role::Reader, UserStatus::Enabled)?
        }
    };
    let (key, secret) = engine.create_key(NewKey {
        user_id: user.id,
        name: Some("bench".to_owned()),
        permissions: Permissions(BTreeMap::from([("files".to_owned(), vec!["read".to_owned()])])),
        ..NewKey::default()
    })?;
    engine.shutdown()?;
    eprintln!("created key {}", key.id);
    println!("{secret}");
    Ok(())
}
