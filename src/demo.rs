//! Demo access (seed 003's "Demo access"): `serve --demo` makes, once, a demo
//! team with one Reader and a read-only API key, keeps the key in
//! `<data>/demo-key` (0600), and prints how to exchange it for a token and
//! verify it. A restart with `--demo` reuses the key while it still verifies.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::config::Config;
use crate::core::model::{Permissions, Role, Tier, UserStatus};
use crate::engine::{Engine, EngineError, NewKey};

/// File in the data directory holding the demo key.
pub const DEMO_KEY_FILE: &str = "demo-key";

/// The demo key, and whether this start made it.
pub struct Demo {
    /// The API key (a secret: printed to the terminal that started the daemon
    /// and kept 0600 in the data directory, never logged).
    pub key: String,
    /// Made by this start (else reused).
    pub created: bool,
}

/// Reuses the demo key in `<data>/demo-key` while it is a known, enabled API
/// key of an enabled user, else makes a demo team (Start tier: 10 requests a minute to try
/// things with), a Reader with a random password, and a `{"*": ["read"]}` key.
pub fn ensure(engine: &Engine, data: &Path) -> Result<Demo, EngineError> {
    let path = data.join(DEMO_KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_owned();
        // A look at the index, not a verification: nothing is counted.
        let usable = crate::core::secret::parse(&key).is_some_and(|h| {
            matches!(engine.index().secrets.get(&h), Some(crate::core::index::Secret::Key(k))
                if k.enabled && k.user.status() == UserStatus::Enabled)
        });
        if usable {
            return Ok(Demo { key, created: false });
        }
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let suffix = crate::core::secret::new_id(&rng, "");
    let team = engine.create_team("demo", Tier::Start)?;
    let password = crate::core::secret::generate(&rng, "pw").plaintext;
    let user = engine.create_user(&team.id, &format!("demo-{suffix}"), &password, Role::Reader, UserStatus::Enabled)?;
    let mut read_only = Permissions::default();
    read_only.0.insert("*".to_owned(), vec!["read".to_owned()]);
    let (_, key) = engine.create_key(NewKey {
        user_id: user.id,
        name: Some("demo".to_owned()),
        permissions: read_only,
        ..NewKey::default()
    })?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(key.as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        return Err(crate::store::StoreError::Db(format!("cannot write {}: {e}", path.display())).into());
    }
    Ok(Demo { key, created: true })
}

/// What `serve --demo` prints once the daemon is ready.
pub fn banner(demo: &Demo, config: &Config) -> String {
    let scheme = if config.http_server.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", config.http);
    let key = &demo.key;
    let made = if demo.created { "made now" } else { "kept from an earlier start" };
    format!(
        "\nDemo access ({made}): a read-only API key of the demo team's Reader, also in {file}\n\n  \
         {key}\n\n\
         Exchange it for a token (the key as the Basic username, no password):\n  \
         curl -s -X POST -u '{key}:' {url}/v1/auth/token\n\
         Verify it:\n  \
         curl -s {url}/v1/verify -d '{{\"credential\": \"{key}\", \"permissions\": {{\"docs\": [\"read\"]}}}}'\n\
         Over the socket, with the Python client of this repository:\n  \
         PYTHONPATH=clients/python python3 -c 'import tollgate_client as t; print(t.Client(\"{socket}\").verify(\"{key}\").allowed)'\n\n",
        file = config.data.join(DEMO_KEY_FILE).display(),
        socket = config.socket.display(),
    )
}
