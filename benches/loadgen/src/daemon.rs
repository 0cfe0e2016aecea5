//! The daemon under test: the real `tollgate serve` in a child process, set
//! up over its HTTP API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tollgate_admin::AdminClient;
use tollgate_admin::types::{ImportKey, KeyImport, MAX_IMPORT_KEYS, NewTeam, NewUser};

use crate::{CredentialKind, PRO_UNLIMITED};

/// How long the daemon may take to say it is ready (a fresh, empty data
/// directory: normally well under a second).
const READY_WAIT: Duration = Duration::from_secs(120);
/// How long the daemon may take to drain and exit after SIGTERM before it is
/// killed.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// The bench user's password (for `--credential-kind jwt`'s logins).
const PASSWORD: &str = "bench password 1234";
/// The bench user's name.
const USERNAME: &str = "bench";

/// A running `tollgate serve` child on a data directory of its own; killed
/// on drop if [`Daemon::stop`] was not called.
pub struct Daemon {
    child: Child,
    /// Where its HTTP API listens (a port the kernel picked).
    pub addr: SocketAddr,
    /// The bootstrap admin token it generated in its data directory.
    token: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `<tollgate> serve` with [`PRO_UNLIMITED`] as its configuration,
    /// its configuration, data and log in `dir` (created), its socket on
    /// `socket` and its HTTP API on a port the kernel picks; returns once it
    /// says `READY=1` on `NOTIFY_SOCKET`.
    pub fn start(tollgate: &Path, dir: &Path, socket: &Path) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("tollgate.toml");
        std::fs::write(&config, PRO_UNLIMITED).with_context(|| format!("cannot write {}", config.display()))?;
        let notify_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)
            .with_context(|| format!("cannot bind the readiness socket {}", notify_path.display()))?;
        notify.set_read_timeout(Some(Duration::from_millis(100)))?;
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let data = dir.join("data");
        let child = Command::new(tollgate)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .arg("--socket")
            .arg(socket)
            .args(["--http", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &notify_path)
            // The daemon generates its own admin token (in the data directory)
            // and runs alone: not against a cluster database of this shell's.
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env_remove("TOLLGATE_POSTGRES_URL")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", tollgate.display()))?;
        let mut d = Daemon { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), token: String::new(), log };
        d.addr = d.wait_ready(&notify)?;
        let _ = std::fs::remove_file(&notify_path);
        let token_file = data.join("admin-token");
        d.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read the daemon's admin token in {}", token_file.display()))?
            .trim()
            .to_owned();
        Ok(d)
    }

    /// Waits for `READY=1` (which names the HTTP address) on `notify`.
    fn wait_ready(&mut self, notify: &UnixDatagram) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + READY_WAIT;
        let mut buf = [0u8; 1024];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    if !msg.starts_with("READY=1\n") {
                        continue;
                    }
                    let addr = msg.split_once("HTTP on ").and_then(|(_, a)| a.lines().next()?.trim().parse().ok());
                    return addr.with_context(|| format!("no HTTP address in the daemon's READY=1: {msg:?}"));
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("cannot read the readiness socket"),
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("the daemon was not ready after {} s:\n{}", READY_WAIT.as_secs(), self.log_tail());
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's CPU time so far (user + system, all its threads).
    pub fn cpu(&self) -> Option<Duration> {
        crate::cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// A client of its HTTP API with the admin token.
    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        // An import of 10,000 keys is one durable write: give it time on a busy host.
        Ok(AdminClient::new(&format!("http://{}", self.addr), Some(&self.token))?
            .with_timeout(Duration::from_secs(300)))
    }

    /// Makes a Pro team with one Administrator and `n` credentials of `kind`
    /// for them, over the HTTP API; returns the credentials' secrets. Keys
    /// hold `documents: [read, write, share]` and `invoices: [read]` and are
    /// imported 10,000 a request (`POST /v1/keys/import`, the daemon
    /// generating the secrets); JWTs come from logging in as the user
    /// (`POST /v1/auth/token`, several logins at a time).
    pub fn population(&self, n: usize, kind: CredentialKind) -> anyhow::Result<Vec<String>> {
        let admin = self.admin()?;
        let team = admin
            .create_team(&NewTeam { name: "bench".to_owned(), tier: Some("Pro".to_owned()) })
            .context("POST /v1/teams")?;
        let user = admin
            .create_user(&NewUser {
                password: PASSWORD.to_owned(),
                role: "Administrator".to_owned(),
                status: None,
                team_id: Some(team.id),
                username: USERNAME.to_owned(),
            })
            .context("POST /v1/users")?;
        match kind {
            CredentialKind::Key => {
                let mut perms = BTreeMap::new();
                perms.insert("documents".to_owned(), vec!["read".to_owned(), "write".to_owned(), "share".to_owned()]);
                perms.insert("invoices".to_owned(), vec!["read".to_owned()]);
                let entry =
                    ImportKey { user_id: Some(user.id.clone()), permissions: Some(perms), ..ImportKey::default() };
                let mut secrets = Vec::with_capacity(n);
                while secrets.len() < n {
                    let batch = KeyImport { keys: vec![entry.clone(); (n - secrets.len()).min(MAX_IMPORT_KEYS)] };
                    let done = admin.import_keys(&batch).context("POST /v1/keys/import")?;
                    for k in done.keys {
                        secrets.push(k.key.context("POST /v1/keys/import answered a key without its secret")?);
                    }
                }
                Ok(secrets)
            }
            CredentialKind::Jwt => {
                // Each login hashes the password (argon2id) in the daemon.
                let workers = n.min(4);
                let per = n.div_ceil(workers);
                std::thread::scope(|s| {
                    let logins: Vec<_> = (0..workers)
                        .map(|w| {
                            let admin = admin.clone();
                            let count = per.min(n.saturating_sub(w * per));
                            s.spawn(move || {
                                (0..count)
                                    .map(|_| Ok(admin.login(USERNAME, PASSWORD).context("POST /v1/auth/token")?.token))
                                    .collect::<anyhow::Result<Vec<String>>>()
                            })
                        })
                        .collect();
                    let mut tokens = Vec::with_capacity(n);
                    for l in logins {
                        tokens.extend(l.join().map_err(|_| anyhow::anyhow!("a login thread panicked"))??);
                    }
                    Ok(tokens)
                })
            }
        }
    }

    /// SIGTERM, then waits for the daemon to drain and exit; an error if it
    /// does not exit cleanly (with the end of its log).
    pub fn stop(mut self) -> anyhow::Result<()> {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), rustix::process::Signal::TERM)
            .context("cannot send SIGTERM to the daemon")?;
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("the daemon exited with {status}:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the daemon did not stop within {} s of SIGTERM; killed:\n{}",
                    STOP_WAIT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the daemon's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines.get(lines.len().saturating_sub(20)..).unwrap_or_default().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
