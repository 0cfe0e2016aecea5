//! The `tollgate-admin` command line: argument parsing (clap derive), the calls,
//! and the human or `--json` output. `run` does everything but printing and
//! exiting, so tests drive the CLI in-process exactly as `main` does.

use std::fmt::Display;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::client::{AdminClient, ClientError};
use crate::table::{fields, table};
use crate::types::*;

/// Exit code when the daemon refused the call (4xx, 5xx) or a credential was
/// denied by `verify`.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code for bad arguments.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the daemon could not be reached or answered nonsense.
pub const EXIT_CONNECTION: i32 = 3;

/// Operate a tollgate daemon through its admin HTTP API.
#[derive(Debug, Parser)]
#[command(name = "tollgate-admin", version, about, propagate_version = true)]
pub struct Cli {
    /// Base URL of the daemon's HTTP API.
    #[arg(long, global = true, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// Credential for admin calls: the bootstrap admin token, a JWT, an API key
    /// or an access token. Falls back to TOLLGATE_TOKEN.
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust only the CA certificate(s) in this PEM file for an https:// URL
    /// (a daemon whose certificate a private CA signed), instead of Mozilla's
    /// roots.
    #[arg(long, global = true, env = "TOLLGATE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Print the daemon's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exchange a username and password for a JWT (an API key as the username
    /// with no password also works). Prints the JWT.
    Login {
        /// Username, or an API key.
        username: String,
        /// Password.
        #[arg(long, env = "TOLLGATE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Teams (create, set-tier and delete need the admin token).
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Users of a team.
    #[command(subcommand)]
    Users(UsersCommand),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The calling user's personal access tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The team's audit log, newest first: admin calls and denied verifications.
    Logs {
        /// Team id (required with the admin token; `_global` for events of no team).
        #[arg(long)]
        team: Option<String>,
        /// Only this action, e.g. CreateKey or verify.
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome: success, failure or denied.
        #[arg(long)]
        outcome: Option<String>,
        /// Oldest, milliseconds since the epoch.
        #[arg(long, value_name = "MS")]
        since: Option<u64>,
        /// Newest, milliseconds since the epoch.
        #[arg(long, value_name = "MS")]
        until: Option<u64>,
        /// Page size, 1 to 200 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// From a previous page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Verify a credential like a protected service would (exit 1 if denied).
    Verify {
        /// API key, access token or JWT.
        credential: String,
        /// Required permission, `resource:action`; repeat for several.
        #[arg(long = "permission", value_name = "RESOURCE:ACTION")]
        permissions: Vec<String>,
        /// The end client's address (defaults to this machine's).
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// Uses to spend (default 1).
        #[arg(long)]
        cost: Option<u32>,
    },
}

/// `teams ...`
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create a team.
    Create {
        /// Display name.
        name: String,
        /// Free (default), Start, Master or Pro.
        #[arg(long)]
        tier: Option<String>,
    },
    /// List teams (all of them with the admin token).
    List,
    /// Show a team.
    Get {
        /// Team id.
        id: String,
    },
    /// Change a team's tier.
    SetTier {
        /// Team id.
        id: String,
        /// Free, Start, Master or Pro.
        tier: String,
        /// Lower it even below what the team holds (members, documents).
        #[arg(long)]
        force: bool,
    },
    /// Delete a team and everything in it.
    Delete {
        /// Team id.
        id: String,
    },
}

/// `users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// Login name.
        username: String,
        /// Administrator, Manager, Author or Reader.
        #[arg(long)]
        role: String,
        /// Password.
        #[arg(long, env = "TOLLGATE_PASSWORD", hide_env_values = true)]
        password: String,
        /// Team id (required with the admin token).
        #[arg(long)]
        team: Option<String>,
        /// Pending, Enabled (default), Disabled or Blocked.
        #[arg(long)]
        status: Option<String>,
    },
    /// List a team's users.
    List {
        /// Team id (required with the admin token).
        #[arg(long)]
        team: Option<String>,
    },
    /// Show a user.
    Get {
        /// User id.
        id: String,
    },
    /// Change a user's role, status or password.
    Update {
        /// User id.
        id: String,
        /// New role.
        #[arg(long)]
        role: Option<String>,
        /// New status.
        #[arg(long)]
        status: Option<String>,
        /// New password.
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete (anonymize) a user.
    Delete {
        /// User id.
        id: String,
    },
    /// Revoke every JWT issued to the user so far (log out everywhere).
    Logout {
        /// User id.
        id: String,
    },
    /// Revoke one JWT by its jti (the caller's own; any of the team's for an
    /// Administrator or the admin token).
    RevokeSession {
        /// The JWT's `jti`.
        jti: String,
    },
}

/// Settings shared by `keys create` and `keys update`.
#[derive(Debug, Args)]
pub struct KeySettings {
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime from now, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub expires_in: Option<u64>,
    /// Uses allowed.
    #[arg(long)]
    pub remaining: Option<u32>,
    /// Uses restored every --refill-interval.
    #[arg(long)]
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    #[arg(long, value_name = "MS")]
    pub refill_interval: Option<u64>,
    /// Rate limit: requests per window (with --rate-limit-window).
    #[arg(long)]
    pub rate_limit_max: Option<u32>,
    /// Rate limit window in milliseconds.
    #[arg(long, value_name = "MS")]
    pub rate_limit_window: Option<u64>,
    /// Permission `resource:action`; repeat for several (replaces them all on update).
    #[arg(long = "permission", value_name = "RESOURCE:ACTION")]
    pub permissions: Vec<String>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Allowed address or CIDR block; repeat for several (replaces them all on update).
    #[arg(long = "ip", value_name = "IP_OR_CIDR")]
    pub ips: Vec<String>,
}

/// `keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; prints its secret, once.
    Create {
        /// Owner's user id (defaults to the caller; required with the admin token).
        #[arg(long)]
        user: Option<String>,
        /// The secret's prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Settings.
        #[command(flatten)]
        settings: KeySettings,
    },
    /// List API keys, one page.
    List {
        /// Team id (required with the admin token).
        #[arg(long)]
        team: Option<String>,
        /// List disabled and expired keys instead of active ones.
        #[arg(long)]
        inactive: bool,
        /// Page size, 1 to 100 (default 25).
        #[arg(long)]
        limit: Option<u32>,
        /// Skip this many keys.
        #[arg(long)]
        offset: Option<u32>,
        /// Keys after this key id.
        #[arg(long, conflicts_with = "ending_before")]
        starting_after: Option<String>,
        /// Keys before this key id.
        #[arg(long)]
        ending_before: Option<String>,
    },
    /// Show an API key.
    Get {
        /// Key id.
        id: String,
    },
    /// Change an API key.
    Update {
        /// Key id.
        id: String,
        /// Enable the key.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the key (it verifies as DISABLED).
        #[arg(long)]
        disable: bool,
        /// Remove the expiry.
        #[arg(long, conflicts_with = "expires_in")]
        no_expiry: bool,
        /// Remove the use limit.
        #[arg(long, conflicts_with = "remaining")]
        unlimited: bool,
        /// Remove the rate limit.
        #[arg(long, conflicts_with_all = ["rate_limit_max", "rate_limit_window"])]
        no_rate_limit: bool,
        /// Allow any address.
        #[arg(long, conflicts_with = "ips")]
        any_ip: bool,
        /// Settings.
        #[command(flatten)]
        settings: KeySettings,
    },
    /// Delete an API key.
    Delete {
        /// Key id.
        id: String,
    },
}

/// `tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an access token for the calling user; prints its secret, once.
    Create {
        /// 1 to 255 characters.
        name: String,
        /// Lifetime in days (never expires by default).
        #[arg(long)]
        days: Option<u32>,
        /// Token type (default personal).
        #[arg(long = "type")]
        token_type: Option<String>,
    },
    /// List the calling user's access tokens.
    List {
        /// Include revoked tokens.
        #[arg(long)]
        include_revoked: bool,
        /// Only this type.
        #[arg(long = "type")]
        token_type: Option<String>,
        /// Page size, 1 to 200 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// From a previous page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show an access token.
    Get {
        /// Token id.
        id: String,
    },
    /// Revoke an access token.
    Revoke {
        /// Token id.
        id: String,
    },
    /// Revoke all of the calling user's access tokens.
    RevokeAll {
        /// Also revoke the token making this call.
        #[arg(long)]
        include_current: bool,
    },
}

/// What a successful run prints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For stdout: the result.
    pub stdout: String,
    /// For stderr: warnings (e.g. "this secret is shown only once").
    pub stderr: String,
}

/// A failed run: what to print and the process exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// 1 refused, 2 usage, 3 connection.
    pub code: i32,
    /// For stderr.
    pub message: String,
    /// For stdout, e.g. a denied verdict (empty for most errors).
    pub stdout: String,
}

impl CliError {
    fn usage(message: impl Into<String>) -> CliError {
        CliError { code: EXIT_USAGE, message: message.into(), stdout: String::new() }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        let code = match e {
            ClientError::Status { .. } => EXIT_REFUSED,
            ClientError::Url(_) | ClientError::Config(_) => EXIT_USAGE,
            ClientError::Connection(_) | ClientError::Protocol(_) => EXIT_CONNECTION,
        };
        CliError { code, message: e.to_string(), stdout: String::new() }
    }
}

/// Parses `args` (the program name first) and runs the command.
///
/// `--help` and `--version` come back as `Ok` with the text on stdout; bad
/// arguments as `Err` with code 2 and clap's message.
pub fn run<I, S>(args: I) -> Result<Output, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Output { stdout: text, stderr: String::new() })
                }
                _ => Err(CliError::usage(text.trim_end())),
            };
        }
    };
    execute(cli)
}

/// Runs parsed arguments.
pub fn execute(cli: Cli) -> Result<Output, CliError> {
    let token = cli.token.clone().or_else(|| std::env::var("TOLLGATE_TOKEN").ok()).filter(|t| !t.trim().is_empty());
    let needs_token = !matches!(cli.command, Command::Login { .. } | Command::Verify { .. });
    if needs_token && token.is_none() {
        return Err(CliError::usage(
            "no credential: pass --token or set TOLLGATE_ADMIN_TOKEN (the daemon writes a generated admin token to <data>/admin-token)",
        ));
    }
    let mut client = AdminClient::new(&cli.url, token.as_deref())?;
    if let Some(path) = &cli.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| CliError::usage(format!("--ca-cert {}: cannot read it: {e}", path.display())))?;
        client = client.with_ca_pem(&pem).map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
    }
    let out = Out { json: cli.json };
    match cli.command {
        Command::Login { username, password } => {
            let r = client.login(&username, password.as_deref().unwrap_or(""))?;
            out.print(&r, || format!("{}\n", r.token))
        }
        Command::Teams(c) => teams(&client, &out, c),
        Command::Users(c) => users(&client, &out, c),
        Command::Keys(c) => keys(&client, &out, c),
        Command::Tokens(c) => tokens(&client, &out, c),
        Command::Logs { team, action, outcome, since, until, limit, cursor } => {
            let p = client.list_logs(&LogQuery {
                team_id: team,
                action,
                outcome,
                since,
                until,
                limit,
                cursor,
                token: None,
            })?;
            out.print(&p, || {
                let rows: Vec<Vec<String>> = p
                    .items
                    .iter()
                    .map(|e| {
                        vec![
                            e.at.clone(),
                            e.action.clone(),
                            e.outcome.clone(),
                            e.detail.clone(),
                            e.actor.clone(),
                            or_dash(Some(&e.target).filter(|t| !t.is_empty())),
                        ]
                    })
                    .collect();
                let mut s = table(&["AT", "ACTION", "OUTCOME", "DETAIL", "ACTOR", "TARGET"], &rows);
                if let Some(c) = &p.next_cursor {
                    s.push_str(&format!("next page: --cursor {c}\n"));
                }
                s
            })
        }
        Command::Verify { credential, permissions, ip, cost } => {
            let req = VerifyRequest {
                cost: cost.unwrap_or(1),
                credential,
                ip,
                permissions: parse_permissions(&permissions)?,
                quota: None,
            };
            let v = client.verify(&req)?;
            let printed = out.print(&v, || verdict_text(&v))?;
            match v {
                Verdict::Allow(_) => Ok(printed),
                Verdict::Deny(d) => Err(CliError {
                    code: EXIT_REFUSED,
                    message: format!("denied: {} ({})", d.code, d.reason),
                    stdout: printed.stdout,
                }),
            }
        }
    }
}

/// Chooses between the JSON and the human form of a result.
struct Out {
    json: bool,
}

impl Out {
    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<Output, CliError> {
        let stdout = if self.json {
            let mut s = serde_json::to_string_pretty(value).map_err(|e| CliError {
                code: EXIT_CONNECTION,
                message: format!("cannot encode the answer: {e}"),
                stdout: String::new(),
            })?;
            s.push('\n');
            s
        } else {
            human()
        };
        Ok(Output { stdout, stderr: String::new() })
    }

    /// For calls answered with 204: nothing in JSON mode (there is no body).
    fn done(&self, what: String) -> Result<Output, CliError> {
        Ok(Output { stdout: if self.json { String::new() } else { what }, stderr: String::new() })
    }
}

fn parse_permissions(list: &[String]) -> Result<Permissions, CliError> {
    let mut p = Permissions::new();
    for item in list {
        let Some((resource, action)) = item.split_once(':') else {
            return Err(CliError::usage(format!("--permission {item:?}: expected RESOURCE:ACTION, e.g. docs:read")));
        };
        if resource.is_empty() || action.is_empty() {
            return Err(CliError::usage(format!("--permission {item:?}: resource and action must not be empty")));
        }
        let actions = p.entry(resource.to_owned()).or_default();
        if !actions.iter().any(|a| a == action) {
            actions.push(action.to_owned());
        }
    }
    Ok(p)
}

fn parse_metadata(m: Option<&str>) -> Result<Option<serde_json::Value>, CliError> {
    m.map(|m| match serde_json::from_str::<serde_json::Value>(m) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(CliError::usage("--metadata: expected a JSON object")),
    })
    .transpose()
}

fn or_dash<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn permissions_text(p: &Permissions) -> String {
    if p.is_empty() {
        return "-".to_owned();
    }
    p.iter().map(|(r, a)| format!("{r}:{}", a.join(","))).collect::<Vec<_>>().join(" ")
}

// ---- teams ----

fn team_text(t: &Team) -> String {
    fields(&[
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        ("tier", t.tier.clone()),
        ("createdAt", t.created_at.clone()),
        ("updatedAt", t.updated_at.clone()),
    ])
}

fn teams(client: &AdminClient, out: &Out, c: TeamsCommand) -> Result<Output, CliError> {
    match c {
        TeamsCommand::Create { name, tier } => {
            let t = client.create_team(&NewTeam { name, tier })?;
            out.print(&t, || team_text(&t))
        }
        TeamsCommand::List => {
            let l = client.list_teams()?;
            out.print(&l, || {
                let rows: Vec<Vec<String>> = l
                    .data
                    .iter()
                    .map(|t| vec![t.id.clone(), t.name.clone(), t.tier.clone(), t.created_at.clone()])
                    .collect();
                table(&["ID", "NAME", "TIER", "CREATED"], &rows)
            })
        }
        TeamsCommand::Get { id } => {
            let t = client.get_team(&id)?;
            out.print(&t, || team_text(&t))
        }
        TeamsCommand::SetTier { id, tier, force } => {
            let t = client.set_team_tier(&id, &tier, force)?;
            out.print(&t, || team_text(&t))
        }
        TeamsCommand::Delete { id } => {
            client.delete_team(&id)?;
            out.done(format!("deleted team {id}\n"))
        }
    }
}

// ---- users ----

fn user_text(u: &User) -> String {
    fields(&[
        ("id", u.id.clone()),
        ("teamId", u.team_id.clone()),
        ("username", u.username.clone()),
        ("role", u.role.clone()),
        ("status", u.status.clone()),
        ("createdAt", u.created_at.clone()),
        ("updatedAt", u.updated_at.clone()),
    ])
}

fn users(client: &AdminClient, out: &Out, c: UsersCommand) -> Result<Output, CliError> {
    match c {
        UsersCommand::Create { username, role, password, team, status } => {
            let u = client.create_user(&NewUser { team_id: team, username, password, role, status })?;
            out.print(&u, || user_text(&u))
        }
        UsersCommand::List { team } => {
            let l = client.list_users(team.as_deref())?;
            out.print(&l, || {
                let rows: Vec<Vec<String>> = l
                    .data
                    .iter()
                    .map(|u| {
                        vec![u.id.clone(), u.username.clone(), u.role.clone(), u.status.clone(), u.created_at.clone()]
                    })
                    .collect();
                table(&["ID", "USERNAME", "ROLE", "STATUS", "CREATED"], &rows)
            })
        }
        UsersCommand::Get { id } => {
            let u = client.get_user(&id)?;
            out.print(&u, || user_text(&u))
        }
        UsersCommand::Update { id, role, status, password } => {
            if role.is_none() && status.is_none() && password.is_none() {
                return Err(CliError::usage("nothing to change: give --role, --status or --password"));
            }
            let u = client.update_user(&id, &UserUpdate { role, status, password })?;
            out.print(&u, || user_text(&u))
        }
        UsersCommand::Delete { id } => {
            client.delete_user(&id)?;
            out.done(format!("deleted user {id}\n"))
        }
        UsersCommand::Logout { id } => {
            client.revoke_user_sessions(&id)?;
            out.done(format!("revoked every session of user {id}\n"))
        }
        UsersCommand::RevokeSession { jti } => {
            client.revoke_session(&jti)?;
            out.done(format!("revoked session {jti}\n"))
        }
    }
}

// ---- keys ----

fn key_text(k: &ApiKey) -> String {
    let rate = match (k.rate_limit_enabled, k.rate_limit_max, k.rate_limit_time_window) {
        (true, Some(max), Some(w)) => format!("{max} per {w} ms"),
        _ => "-".to_owned(),
    };
    let refill = match (k.refill_amount, k.refill_interval) {
        (Some(a), Some(i)) => format!("{a} every {i} ms"),
        _ => "-".to_owned(),
    };
    let ips = if k.whitelisted_ips.is_empty() { "any".to_owned() } else { k.whitelisted_ips.join(", ") };
    fields(&[
        ("id", k.id.clone()),
        ("name", or_dash(k.name.as_deref())),
        ("teamId", k.team_id.clone()),
        ("userId", k.user_id.clone()),
        ("start", k.start.clone()),
        ("status", k.status.clone()),
        ("enabled", k.enabled.to_string()),
        ("expiresAt", or_dash(k.expires_at.as_deref())),
        ("remaining", or_dash(k.remaining)),
        ("refill", refill),
        ("rateLimit", rate),
        ("permissions", permissions_text(&k.permissions)),
        ("whitelistedIPs", ips),
        ("metadata", k.metadata.to_string()),
        ("requestCount", k.request_count.to_string()),
        ("lastRequest", or_dash(k.last_request.as_deref())),
        ("createdAt", k.created_at.clone()),
        ("updatedAt", k.updated_at.clone()),
    ])
}

fn settings_new_key(user: Option<String>, prefix: Option<String>, s: KeySettings) -> Result<NewKey, CliError> {
    let rate = s.rate_limit_max.is_some() || s.rate_limit_window.is_some();
    Ok(NewKey {
        user_id: user,
        name: s.name,
        prefix,
        expires_in: s.expires_in,
        remaining: s.remaining,
        refill_amount: s.refill_amount,
        refill_interval: s.refill_interval,
        rate_limit_enabled: rate.then_some(true),
        rate_limit_time_window: s.rate_limit_window,
        rate_limit_max: s.rate_limit_max,
        permissions: (!s.permissions.is_empty()).then(|| parse_permissions(&s.permissions)).transpose()?,
        metadata: parse_metadata(s.metadata.as_deref())?,
        whitelisted_ips: (!s.ips.is_empty()).then_some(s.ips),
    })
}

fn keys(client: &AdminClient, out: &Out, c: KeysCommand) -> Result<Output, CliError> {
    match c {
        KeysCommand::Create { user, prefix, settings } => {
            let k = client.create_key(&settings_new_key(user, prefix, settings)?)?;
            let secret = k.key.clone().unwrap_or_default();
            let mut o = out.print(&k, || format!("{}\nsecret: {secret}\n", key_text(&k)))?;
            o.stderr = "warning: this is the only time the key's secret is shown; store it now (tollgate keeps only its hash)\n".to_owned();
            Ok(o)
        }
        KeysCommand::List { team, inactive, limit, offset, starting_after, ending_before } => {
            let l = client.list_keys(&KeyListQuery {
                team_id: team,
                status: inactive.then(|| "inactive".to_owned()),
                limit,
                offset,
                starting_after,
                ending_before,
                token: None,
            })?;
            out.print(&l, || {
                let rows: Vec<Vec<String>> = l
                    .data
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            or_dash(k.name.as_deref()),
                            format!("{}...", k.start),
                            k.status.clone(),
                            or_dash(k.remaining),
                            k.request_count.to_string(),
                            or_dash(k.expires_at.as_deref()),
                        ]
                    })
                    .collect();
                let mut s = table(&["ID", "NAME", "START", "STATUS", "REMAINING", "REQUESTS", "EXPIRES"], &rows);
                s.push_str(&format!("{} of {} keys\n", l.count, l.total));
                if let Some(last) = l.data.last().filter(|_| l.next_url.is_some()) {
                    s.push_str(&format!("next page: --starting-after {}\n", last.id));
                }
                s
            })
        }
        KeysCommand::Get { id } => {
            let k = client.get_key(&id)?;
            out.print(&k, || key_text(&k))
        }
        KeysCommand::Update { id, enable, disable, no_expiry, unlimited, no_rate_limit, any_ip, settings: s } => {
            let rate = s.rate_limit_max.is_some() || s.rate_limit_window.is_some();
            let up = KeyUpdate {
                name: s.name.map(Some),
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                expires_in: if no_expiry { Some(None) } else { s.expires_in.map(Some) },
                remaining: if unlimited { Some(None) } else { s.remaining.map(Some) },
                refill_amount: s.refill_amount.map(Some),
                refill_interval: s.refill_interval.map(Some),
                rate_limit_enabled: if no_rate_limit { Some(false) } else { rate.then_some(true) },
                rate_limit_time_window: s.rate_limit_window,
                rate_limit_max: s.rate_limit_max,
                permissions: (!s.permissions.is_empty()).then(|| parse_permissions(&s.permissions)).transpose()?,
                metadata: parse_metadata(s.metadata.as_deref())?,
                whitelisted_ips: if any_ip { Some(Vec::new()) } else { (!s.ips.is_empty()).then_some(s.ips) },
            };
            if up == KeyUpdate::default() {
                return Err(CliError::usage("nothing to change; see keys update --help"));
            }
            let k = client.update_key(&id, &up)?;
            out.print(&k, || key_text(&k))
        }
        KeysCommand::Delete { id } => {
            client.delete_key(&id)?;
            out.done(format!("deleted key {id}\n"))
        }
    }
}

// ---- access tokens ----

fn token_text(t: &AccessToken) -> String {
    fields(&[
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        ("tokenType", t.token_type.clone()),
        ("tokenPrefix", t.token_prefix.clone()),
        ("createdAt", t.created_at.clone()),
        ("expiresAt", or_dash(t.expires_at.as_deref())),
        ("lastUsedAt", or_dash(t.last_used_at.as_deref())),
        ("revokedAt", or_dash(t.revoked_at.as_deref())),
    ])
}

fn tokens(client: &AdminClient, out: &Out, c: TokensCommand) -> Result<Output, CliError> {
    match c {
        TokensCommand::Create { name, days, token_type } => {
            let t = client.create_token(&NewToken { name, expires_in_days: days, token_type })?;
            let mut o = out.print(&t, || format!("{}\nsecret: {}\n", token_text(&t.token), t.plaintext))?;
            o.stderr = "warning: this is the only time the token's secret is shown; store it now\n".to_owned();
            Ok(o)
        }
        TokensCommand::List { include_revoked, token_type, limit, cursor } => {
            let p = client.list_tokens(&TokenListQuery { token_type, include_revoked, limit, cursor, token: None })?;
            out.print(&p, || {
                let rows: Vec<Vec<String>> = p
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.token_type.clone(),
                            format!("{}...", t.token_prefix),
                            t.created_at.clone(),
                            or_dash(t.expires_at.as_deref()),
                            or_dash(t.revoked_at.as_deref()),
                        ]
                    })
                    .collect();
                let mut s = table(&["ID", "NAME", "TYPE", "PREFIX", "CREATED", "EXPIRES", "REVOKED"], &rows);
                if let Some(c) = &p.next_cursor {
                    s.push_str(&format!("next page: --cursor {c}\n"));
                }
                s
            })
        }
        TokensCommand::Get { id } => {
            let t = client.get_token(&id)?;
            out.print(&t, || token_text(&t))
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id)?;
            out.done(format!("revoked token {id}\n"))
        }
        TokensCommand::RevokeAll { include_current } => {
            let r = client.revoke_all_tokens(!include_current)?;
            out.print(&r, || format!("revoked {} tokens\n", r.revoked_count))
        }
    }
}

// ---- verify ----

fn verdict_text(v: &Verdict) -> String {
    let rate = |r: &Option<RateLimitInfo>| {
        r.as_ref()
            .map_or_else(|| "-".to_owned(), |r| format!("{}/{} left, full in {} ms", r.remaining, r.limit, r.reset_ms))
    };
    match v {
        Verdict::Allow(a) => fields(&[
            ("verdict", "ALLOW".to_owned()),
            ("kind", a.kind.as_str().to_owned()),
            ("subject", a.subject.clone()),
            ("team", a.team.clone()),
            ("credentialId", a.credential_id.clone()),
            ("roles", a.roles.join(", ")),
            ("permissions", permissions_text(&a.permissions)),
            ("remaining", or_dash(a.remaining)),
            ("rateLimit", rate(&a.rate_limit)),
        ]),
        Verdict::Deny(d) => fields(&[
            ("verdict", "DENY".to_owned()),
            ("code", d.code.clone()),
            ("reason", d.reason.clone()),
            ("retryAfterMs", or_dash(d.retry_after_ms)),
            ("rateLimit", rate(&d.rate_limit)),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2() {
        let e = run(["tollgate-admin", "keys", "frobnicate"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        let e = run(["tollgate-admin", "--token", "t", "verify", "x", "--permission", "nocolon"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        assert!(e.message.contains("RESOURCE:ACTION"), "{}", e.message);
        let e = run(["tollgate-admin", "--url", "ftp://x", "--token", "t", "teams", "get", "a"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        let e = run(["tollgate-admin", "--token", "t\r\nX-Injected: 1", "teams", "get", "a"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        assert!(e.message.contains("control character"), "{}", e.message);
        let e = run(["tollgate-admin", "verify", "x", "--ip", "10.0.0.300"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        let missing = "/nonexistent/tollgate-ca.pem";
        let e = run(["tollgate-admin", "--ca-cert", missing, "--token", "t", "teams", "get", "a"]).unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        assert!(e.message.contains(missing), "{}", e.message);
    }

    #[test]
    fn help_is_not_an_error() {
        let o = run(["tollgate-admin", "--help"]).unwrap();
        assert!(o.stdout.contains("keys"), "{}", o.stdout);
    }

    #[test]
    fn permissions_merge_by_resource() {
        let p = parse_permissions(&["docs:read".into(), "docs:write".into(), "*:*".into()]).unwrap();
        assert_eq!(p["docs"], vec!["read", "write"]);
        assert_eq!(p["*"], vec!["*"]);
    }
}
