//! The `tollgate-admin` command line: argument parsing (clap derive), the calls,
//! and the human or `--json` output. `run` does everything but printing and
//! exiting, so tests drive the CLI in-process exactly as `main` does.

use std::fmt::Display;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::{AdminClient, DEFAULT_TIMEOUT};
pub use crate::error::*;
use crate::prompt;
use crate::table::{fields, table};
use crate::types::*;
use crate::units;

/// Operate a tollgate daemon through its admin HTTP API.
#[derive(Debug, Parser)]
#[command(name = "tollgate-admin", version, about, propagate_version = true, after_help = EXIT_CODES_HELP)]
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
    /// The longest each call to the daemon may take, connecting included
    /// (e.g. 30s, 2m; a plain number is seconds).
    #[arg(long, global = true, env = "TOLLGATE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = units::timeout)]
    pub timeout: Duration,
    /// Print JSON instead of tables: the daemon's objects, lists as
    /// {"data", "count", "total", "nextCursor"}, errors as one JSON object on
    /// stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A team's tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum TierArg {
    /// 2 requests a minute, 1 member.
    Free,
    /// 10 requests a minute, 3 members.
    Start,
    /// 50 requests a minute, 15 members.
    Master,
    /// 100 requests a minute, unlimited members.
    Pro,
}

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum RoleArg {
    /// Everything in the team.
    Administrator,
    /// Users and keys.
    Manager,
    /// Writes documents.
    Author,
    /// Reads.
    Reader,
}

/// A user's status (a user is deleted with `users delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum StatusArg {
    /// Waiting for validation.
    Pending,
    /// Can log in.
    Enabled,
    /// Cannot log in.
    Disabled,
    /// Cannot log in.
    Blocked,
}

/// An audit event's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum OutcomeArg {
    /// Admin calls that succeeded.
    Success,
    /// Admin calls that failed.
    Failure,
    /// Denied verifications and refused admin credentials.
    Denied,
}

/// An access token's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum TokenTypeArg {
    /// The default.
    Personal,
    /// A session.
    Session,
    /// A service's.
    Service,
}

/// The name clap shows (and the daemon takes) for a value enum.
fn choice<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_owned()).unwrap_or_default()
}

/// A password from the prompt, stdin or (with a warning) the command line.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The password. On the command line it is visible to other users of this
    /// machine (ps) and stays in the shell history, so a warning is printed:
    /// leave it out to be asked on the terminal, or use --password-stdin or
    /// TOLLGATE_PASSWORD.
    #[arg(long, env = "TOLLGATE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exchange a username and password for a JWT; prints the JWT. Without
    /// --password or --password-stdin, asks on the terminal (no echo).
    Login {
        /// Username (or an API key, with --no-password).
        username: String,
        /// Password.
        #[command(flatten)]
        password: PasswordArgs,
        /// USERNAME is an API key: exchange it with no password.
        #[arg(long, conflicts_with_all = ["password", "password_stdin"])]
        no_password: bool,
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
        /// Only this action: an admin operation (CreateKey, DeleteTeam, Login …)
        /// or `verify` / `admin` for denials.
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome.
        #[arg(long, ignore_case = true)]
        outcome: Option<OutcomeArg>,
        /// Oldest: an RFC 3339 time (2026-11-22T20:41:46Z), a duration before
        /// now (2h, 7d), or milliseconds since the epoch.
        #[arg(long, value_name = "TIME", value_parser = units::instant_ms)]
        since: Option<u64>,
        /// Newest: like --since.
        #[arg(long, value_name = "TIME", value_parser = units::instant_ms)]
        until: Option<u64>,
        /// Page size, 1 to 200 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// From a previous page's nextCursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Every page, to the oldest event.
        #[arg(long)]
        all: bool,
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
    /// Print a shell completion script, e.g. `tollgate-admin completions bash
    /// > /etc/bash_completion.d/tollgate-admin`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `tollgate-admin man | man -l -`.
    Man,
}

/// `teams ...`
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create a team.
    Create {
        /// Display name.
        name: String,
        /// The tier (default Free).
        #[arg(long, ignore_case = true)]
        tier: Option<TierArg>,
    },
    /// List teams (all of them with the admin token; every page).
    List,
    /// Show a team: its tier's limits next to what it uses now (members,
    /// documents, requests this minute).
    #[command(visible_alias = "show")]
    Get {
        /// Team id.
        id: String,
    },
    /// Give back documents of the team's quota (as the socket's
    /// QuotaRelease); prints the documents in use after it.
    ReleaseDocuments {
        /// Team id.
        id: String,
        /// Documents to give back (1 to 4294967295).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        amount: u32,
    },
    /// Change a team's tier.
    SetTier {
        /// Team id.
        id: String,
        /// The new tier.
        #[arg(ignore_case = true)]
        tier: TierArg,
        /// Lower it even below what the team holds (members, documents).
        #[arg(long)]
        force: bool,
    },
    /// Delete a team and everything in it: asks to type the team's name,
    /// unless --yes.
    Delete {
        /// Team id.
        id: String,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. Without --password or --password-stdin, asks for the
    /// password on the terminal (twice, no echo).
    Create {
        /// Login name.
        username: String,
        /// The role.
        #[arg(long, ignore_case = true)]
        role: RoleArg,
        /// Password.
        #[command(flatten)]
        password: PasswordArgs,
        /// Team id (required with the admin token).
        #[arg(long)]
        team: Option<String>,
        /// The status (default Enabled).
        #[arg(long, ignore_case = true)]
        status: Option<StatusArg>,
    },
    /// List a team's users (every page).
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
    /// Change a user's role, status or password (--password or
    /// --password-stdin).
    Update {
        /// User id.
        id: String,
        /// New role.
        #[arg(long, ignore_case = true)]
        role: Option<RoleArg>,
        /// New status.
        #[arg(long, ignore_case = true)]
        status: Option<StatusArg>,
        /// New password.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete (anonymize) a user; every credential of theirs stops working.
    /// Asks to type the username, unless --yes.
    Delete {
        /// User id.
        id: String,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
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
    /// Lifetime from now: 30d, 12h, 90m (a plain number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = units::seconds)]
    pub expires_in: Option<u64>,
    /// Uses allowed.
    #[arg(long)]
    pub remaining: Option<u32>,
    /// Uses restored every --refill-interval.
    #[arg(long)]
    pub refill_amount: Option<u32>,
    /// Time between refills: 1h, 1d (a plain number is milliseconds).
    #[arg(long, value_name = "DURATION", value_parser = units::millis)]
    pub refill_interval: Option<u64>,
    /// Rate limit: requests per window (with --rate-limit-window).
    #[arg(long)]
    pub rate_limit_max: Option<u32>,
    /// Rate limit window: 1m, 10s (a plain number is milliseconds).
    #[arg(long, value_name = "DURATION", value_parser = units::millis)]
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
    /// List API keys: one page, or every page with --all.
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
        /// Keys after this one: a previous page's nextCursor (a key id).
        #[arg(long, visible_alias = "starting-after", conflicts_with = "ending_before")]
        cursor: Option<String>,
        /// Keys before this key id.
        #[arg(long)]
        ending_before: Option<String>,
        /// Every page, following the daemon's next page to the end.
        #[arg(long, conflicts_with = "ending_before")]
        all: bool,
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
    /// Import API keys from a JSONL file: one JSON object a line, with the
    /// fields of `keys create` as the API names them (userId, name,
    /// permissions, expiresIn ...) and, to adopt a key issued elsewhere,
    /// "hash" (SHA-256 of its secret, 64 hex digits) and "start". The whole
    /// file is checked first; the keys made (with the secrets tollgate
    /// generated) are written as JSON lines, in the order of the input.
    Import {
        /// The JSONL file.
        file: std::path::PathBuf,
        /// Entries per request (each request is one atomic write), 1 to 10000.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
        /// Write the keys made here (created with mode 0600, never over an
        /// existing file) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

/// `tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an access token for the calling user; prints its secret, once.
    Create {
        /// 1 to 255 characters.
        name: String,
        /// Lifetime in whole days: 30d, 48h (a plain number is days); never
        /// expires by default.
        #[arg(long, visible_alias = "days", value_name = "DURATION", value_parser = units::days)]
        expires_in: Option<u32>,
        /// Token type (default personal).
        #[arg(long = "type", ignore_case = true)]
        token_type: Option<TokenTypeArg>,
    },
    /// List the calling user's access tokens: one page, or every page with
    /// --all.
    List {
        /// Include revoked tokens.
        #[arg(long)]
        include_revoked: bool,
        /// Only this type.
        #[arg(long = "type", ignore_case = true)]
        token_type: Option<TokenTypeArg>,
        /// Page size, 1 to 200 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// From a previous page's nextCursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Every page.
        #[arg(long)]
        all: bool,
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
    /// For stderr: warnings (e.g. "this secret is shown only once"), each a
    /// `{"warning": …}` line with `--json`.
    pub stderr: String,
}

/// Whether `--json` is among `args` (before a `--`), for the rare errors
/// clap reports before it has parsed it.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
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
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let json = wants_json(&args);
    let parsed = Cli::command().try_get_matches_from(&args).and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(p) => p,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Output { stdout: text, stderr: String::new() })
                }
                _ => {
                    let text = text.trim_end();
                    Err(CliError { json, ..CliError::usage(text.strip_prefix("error: ").unwrap_or(text)) })
                }
            };
        }
    };
    let mut leaf = &matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    let password_in_argv = password_source(leaf) == Some(ValueSource::CommandLine);
    execute_with(cli, password_in_argv)
}

/// Where the leaf command's `--password` came from, if it has one.
fn password_source(m: &ArgMatches) -> Option<ValueSource> {
    m.ids().any(|id| id.as_str() == "password").then(|| m.value_source("password")).flatten()
}

/// Runs parsed arguments (a `--password` is taken to come from the
/// environment: no warning).
pub fn execute(cli: Cli) -> Result<Output, CliError> {
    execute_with(cli, false)
}

fn execute_with(cli: Cli, password_in_argv: bool) -> Result<Output, CliError> {
    let mut out = Out { json: cli.json, warnings: Vec::new() };
    if password_in_argv {
        out.warn(
            "--password on the command line is visible to other users of this machine (ps) and stays in the \
             shell history; leave it out to be asked, or use --password-stdin or TOLLGATE_PASSWORD",
        );
    }
    let flags = command_flags(&cli.command);
    // An import's errors name lines of its file, not flags.
    let import = matches!(cli.command, Command::Keys(KeysCommand::Import { .. }));
    match dispatch(cli, &mut out) {
        Ok(mut o) => {
            o.stderr.insert_str(0, &render_warnings(&out.warnings, out.json));
            Ok(o)
        }
        Err(e) => {
            let e = if import { e } else { e.name_flags(flags) };
            Err(CliError { json: out.json, warnings: out.warnings, ..e })
        }
    }
}

/// The arguments of a command that set an API field under another name than
/// the usual flag ([`CliError::name_flags`]).
fn command_flags(c: &Command) -> &'static [(&'static str, &'static str)] {
    match c {
        Command::Teams(TeamsCommand::Create { .. }) | Command::Tokens(TokensCommand::Create { .. }) => {
            &[("name", "<NAME>")]
        }
        Command::Teams(TeamsCommand::SetTier { .. }) => &[("tier", "<TIER>")],
        Command::Keys(KeysCommand::List { .. }) => &[("status", "--inactive")],
        Command::Login { .. } => &[("username", "<USERNAME>")],
        _ => &[],
    }
}

fn dispatch(cli: Cli, out: &mut Out) -> Result<Output, CliError> {
    // Commands that call nothing.
    match &cli.command {
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "tollgate-admin", &mut buf);
            return Ok(Output { stdout: String::from_utf8_lossy(&buf).into_owned(), stderr: String::new() });
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|e| CliError::new(EXIT_USAGE, "usage", format!("cannot render the manual: {e}")))?;
            return Ok(Output { stdout: String::from_utf8_lossy(&buf).into_owned(), stderr: String::new() });
        }
        _ => {}
    }
    let token = cli.token.clone().or_else(|| std::env::var("TOLLGATE_TOKEN").ok()).filter(|t| !t.trim().is_empty());
    let needs_token = !matches!(cli.command, Command::Login { .. } | Command::Verify { .. });
    if needs_token && token.is_none() {
        return Err(CliError::usage(
            "no credential: pass --token or set TOLLGATE_ADMIN_TOKEN (the daemon writes a generated admin token to <data>/admin-token)",
        ));
    }
    let mut client = AdminClient::new(&cli.url, token.as_deref())?;
    if cli.timeout != DEFAULT_TIMEOUT {
        client = client.with_timeout(cli.timeout);
    }
    if let Some(path) = &cli.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| CliError::usage(format!("--ca-cert {}: cannot read it: {e}", path.display())))?;
        client = client.with_ca_pem(&pem).map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
    }
    match cli.command {
        Command::Login { username, password, no_password } => {
            let password = if no_password { String::new() } else { password_for_login(&password)? };
            let r = client.login(&username, &password)?;
            out.print(&r, || format!("{}\n", r.token))
        }
        Command::Teams(c) => teams(&client, out, c),
        Command::Users(c) => users(&client, out, c),
        Command::Keys(c) => keys(&client, out, c),
        Command::Tokens(c) => tokens(&client, out, c),
        Command::Logs { team, action, outcome, since, until, limit, cursor, all } => {
            let mut q = LogQuery {
                team_id: team,
                action,
                outcome: outcome.map(choice),
                since,
                until,
                limit,
                cursor,
                token: None,
            };
            let mut page = client.list_logs(&q)?;
            while all && page.next_cursor.is_some() {
                q.cursor = page.next_cursor.take();
                let next = client.list_logs(&q)?;
                page.items.extend(next.items);
                page.next_cursor = next.next_cursor;
            }
            let list = ListOut::new(&page.items, None, page.next_cursor.clone());
            out.print(&list, || {
                let rows: Vec<Vec<String>> = page
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
                s.push_str(&list.next_page_hint());
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
                    stdout: printed.stdout,
                    ..CliError::new(EXIT_DENIED, "denied", format!("denied: {} ({})", d.code, d.reason))
                }),
            }
        }
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
}

/// The password to log in with: `--password-stdin`, `--password` (or
/// TOLLGATE_PASSWORD), else asked on the terminal.
fn password_for_login(p: &PasswordArgs) -> Result<String, CliError> {
    if let Some(pw) = given_password(p)? {
        return Ok(pw);
    }
    if !prompt::interactive() {
        return Err(CliError::usage(
            "no password: stdin is not a terminal to ask on; pass --password-stdin (and the password on stdin), \
             set TOLLGATE_PASSWORD, or --no-password to log in with an API key",
        ));
    }
    prompt::password("Password: ").map_err(CliError::usage)
}

/// A new password: given, else asked twice on the terminal.
fn new_password(p: &PasswordArgs) -> Result<String, CliError> {
    if let Some(pw) = given_password(p)? {
        return Ok(pw);
    }
    if !prompt::interactive() {
        return Err(CliError::usage(
            "no password: stdin is not a terminal to ask on; pass --password-stdin (and the password on stdin) \
             or set TOLLGATE_PASSWORD",
        ));
    }
    let first = prompt::password("New password: ").map_err(CliError::usage)?;
    let again = prompt::password("Repeat it: ").map_err(CliError::usage)?;
    if first != again {
        return Err(CliError::usage("the two passwords differ; nothing was sent"));
    }
    Ok(first)
}

/// `--password-stdin` (the first line of stdin) or `--password`, if given.
fn given_password(p: &PasswordArgs) -> Result<Option<String>, CliError> {
    if !p.password_stdin {
        return Ok(p.password.clone());
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("--password-stdin: cannot read stdin: {e}")))?;
    let pw = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if pw.is_empty() {
        return Err(CliError::usage("--password-stdin: stdin held no password"));
    }
    Ok(Some(pw.to_owned()))
}

/// Asks the person at the terminal to type `name` before deleting `what`;
/// refuses when there is no terminal (use `--yes`).
fn confirm(what: &str, name: &str, consequences: &str) -> Result<(), CliError> {
    let answer = prompt::line(&format!(
        "This deletes {what} {name:?}: {consequences}. It cannot be undone.\nType its name to confirm: "
    ))
    .map_err(|e| CliError::new(EXIT_USAGE, "not_confirmed", format!("not deleted: {e}")))?;
    if answer.trim() != name {
        return Err(CliError::new(
            EXIT_USAGE,
            "not_confirmed",
            format!("not deleted: {:?} is not the name of the {what}", answer.trim()),
        ));
    }
    Ok(())
}

/// Refuses a deletion that cannot be confirmed: no `--yes` and no terminal.
fn require_terminal(command: &str) -> Result<(), CliError> {
    if prompt::interactive() {
        return Ok(());
    }
    Err(CliError::new(
        EXIT_USAGE,
        "not_confirmed",
        format!("{command}: not confirmed and stdin is not a terminal to ask on: pass --yes; nothing was deleted"),
    ))
}

/// Every list command's `--json` shape: the page (or every page, with
/// `--all`), how many, how many in all when the daemon says, and the cursor
/// of the next page (`--cursor`), `null` on the last.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListOut<'a, T> {
    data: &'a [T],
    count: usize,
    total: Option<u64>,
    next_cursor: Option<String>,
}

impl<'a, T> ListOut<'a, T> {
    fn new(data: &'a [T], total: Option<u64>, next_cursor: Option<String>) -> ListOut<'a, T> {
        ListOut { data, count: data.len(), total, next_cursor }
    }

    /// The human output's last lines: `N of M`, and how to get the next page.
    fn next_page_hint(&self) -> String {
        self.next_cursor.as_ref().map_or_else(String::new, |c| format!("next page: --cursor {c} (or --all)\n"))
    }
}

/// Chooses between the JSON and the human form of a result, and gathers
/// warnings for stderr.
struct Out {
    json: bool,
    warnings: Vec<String>,
}

impl Out {
    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<Output, CliError> {
        let stdout = if self.json {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::new(EXIT_CONNECTION, "protocol", format!("cannot encode the answer: {e}")))?;
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

    fn warn(&mut self, w: &str) {
        self.warnings.push(w.to_owned());
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

/// `used / limit`, or `used (unlimited)`.
fn of_limit(used: Option<u64>, limit: Option<u64>) -> String {
    match (used, limit) {
        (Some(u), Some(l)) => format!("{u} / {l}"),
        (Some(u), None) => format!("{u} (unlimited)"),
        (None, Some(l)) => format!("- / {l}"),
        (None, None) => "unlimited".to_owned(),
    }
}

fn team_text(t: &Team) -> String {
    let (l, u) = (&t.limits, &t.usage);
    fields(&[
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        ("tier", t.tier.clone()),
        ("members", of_limit(Some(u.members), l.members)),
        ("documents", of_limit(Some(u.documents), l.documents)),
        ("requestsThisMinute", of_limit(u.requests_this_minute, l.requests_per_minute)),
        ("logRetentionDays", l.log_retention_days.map_or("unlimited".to_owned(), |d| d.to_string())),
        ("createdAt", t.created_at.clone()),
        ("updatedAt", t.updated_at.clone()),
    ])
}

fn teams(client: &AdminClient, out: &mut Out, c: TeamsCommand) -> Result<Output, CliError> {
    match c {
        TeamsCommand::Create { name, tier } => {
            let t = client.create_team(&NewTeam { name, tier: tier.map(choice) })?;
            out.print(&t, || team_text(&t))
        }
        TeamsCommand::List => {
            let l = client.list_teams()?;
            let list = ListOut::new(&l.data, Some(l.total), None);
            out.print(&list, || {
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
        TeamsCommand::ReleaseDocuments { id, amount } => {
            let r = client.release_documents(&id, amount)?;
            out.print(&r, || format!("documents: {}\n", of_limit(Some(r.used), r.limit)))
        }
        TeamsCommand::SetTier { id, tier, force } => {
            let t = client.set_team_tier(&id, &choice(tier), force)?;
            out.print(&t, || team_text(&t))
        }
        TeamsCommand::Delete { id, yes } => {
            if !yes {
                require_terminal("teams delete")?;
                let t = client.get_team(&id)?;
                confirm("team", &t.name, "its users, their API keys and access tokens, everything in it")?;
            }
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

fn users(client: &AdminClient, out: &mut Out, c: UsersCommand) -> Result<Output, CliError> {
    match c {
        UsersCommand::Create { username, role, password, team, status } => {
            let password = new_password(&password)?;
            let u = client.create_user(&NewUser {
                team_id: team,
                username,
                password,
                role: choice(role),
                status: status.map(choice),
            })?;
            out.print(&u, || user_text(&u))
        }
        UsersCommand::List { team } => {
            let l = client.list_users(team.as_deref())?;
            let list = ListOut::new(&l.data, Some(l.total), None);
            out.print(&list, || {
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
            let password = given_password(&password)?;
            if role.is_none() && status.is_none() && password.is_none() {
                return Err(CliError::usage(
                    "nothing to change: give --role, --status, --password or --password-stdin",
                ));
            }
            let u = client
                .update_user(&id, &UserUpdate { role: role.map(choice), status: status.map(choice), password })?;
            out.print(&u, || user_text(&u))
        }
        UsersCommand::Delete { id, yes } => {
            if !yes {
                require_terminal("users delete")?;
                let u = client.get_user(&id)?;
                confirm("user", &u.username, "the account is anonymized and every credential of it stops working")?;
            }
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
        (true, Some(max), Some(w)) => format!("{max} per {}", units::show_ms(w)),
        _ => "-".to_owned(),
    };
    let refill = match (k.refill_amount, k.refill_interval) {
        (Some(a), Some(i)) => format!("{a} every {}", units::show_ms(i)),
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

/// The cursor of the page after `l`: its last key's id, when there is one.
fn keys_next_cursor(l: &KeyList) -> Option<String> {
    l.next_url.as_ref().and(l.data.last()).map(|k| k.id.clone())
}

fn keys(client: &AdminClient, out: &mut Out, c: KeysCommand) -> Result<Output, CliError> {
    match c {
        KeysCommand::Create { user, prefix, settings } => {
            let k = client.create_key(&settings_new_key(user, prefix, settings)?)?;
            let secret = k.key.clone().unwrap_or_default();
            out.warn("this is the only time the key's secret is shown; store it now (tollgate keeps only its hash)");
            out.print(&k, || format!("{}\nsecret: {secret}\n", key_text(&k)))
        }
        KeysCommand::Import { file, batch, out: to } => {
            let run =
                crate::import::ImportRun { file: &file, batch: batch as usize, out: to.as_deref(), json: out.json };
            let (n, generated) = crate::import::import(client, &run)?;
            if generated > 0 && to.is_none() {
                out.warn("the generated secrets above are shown this once; store them now (tollgate keeps only their hashes)");
            }
            let stderr = if out.json {
                String::new()
            } else {
                format!("imported {n} keys ({generated} with a generated secret, {} adopted)\n", n - generated)
            };
            Ok(Output { stdout: String::new(), stderr })
        }
        KeysCommand::List { team, inactive, limit, offset, cursor, ending_before, all } => {
            let mut l = client.list_keys(&KeyListQuery {
                team_id: team,
                status: inactive.then(|| "inactive".to_owned()),
                limit,
                offset,
                starting_after: cursor,
                ending_before,
                token: None,
            })?;
            while all && let Some(next) = l.next_url.take() {
                let page: KeyList = client.call("GET", &next, None)?;
                l.data.extend(page.data);
                l.next_url = page.next_url;
            }
            let list = ListOut::new(&l.data, Some(l.total), keys_next_cursor(&l));
            out.print(&list, || {
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
                            or_dash(k.last_request.as_deref()),
                            or_dash(k.expires_at.as_deref()),
                            k.user_id.clone(),
                            k.created_at.clone(),
                        ]
                    })
                    .collect();
                let mut s = table(
                    &[
                        "ID",
                        "NAME",
                        "START",
                        "STATUS",
                        "REMAINING",
                        "REQUESTS",
                        "LAST USED",
                        "EXPIRES",
                        "OWNER",
                        "CREATED",
                    ],
                    &rows,
                );
                s.push_str(&format!("{} of {} keys\n", list.count, l.total));
                s.push_str(&list.next_page_hint());
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

fn tokens(client: &AdminClient, out: &mut Out, c: TokensCommand) -> Result<Output, CliError> {
    match c {
        TokensCommand::Create { name, expires_in, token_type } => {
            let t = client.create_token(&NewToken {
                name,
                expires_in_days: expires_in,
                token_type: token_type.map(choice),
            })?;
            out.warn("this is the only time the token's secret is shown; store it now");
            out.print(&t, || format!("{}\nsecret: {}\n", token_text(&t.token), t.plaintext))
        }
        TokensCommand::List { include_revoked, token_type, limit, cursor, all } => {
            let mut q =
                TokenListQuery { token_type: token_type.map(choice), include_revoked, limit, cursor, token: None };
            let mut p = client.list_tokens(&q)?;
            while all && p.next_cursor.is_some() {
                q.cursor = p.next_cursor.take();
                let next = client.list_tokens(&q)?;
                p.items.extend(next.items);
                p.next_cursor = next.next_cursor;
            }
            let list = ListOut::new(&p.items, None, p.next_cursor.clone());
            out.print(&list, || {
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
                            or_dash(t.last_used_at.as_deref()),
                            or_dash(t.expires_at.as_deref()),
                            or_dash(t.revoked_at.as_deref()),
                        ]
                    })
                    .collect();
                let mut s =
                    table(&["ID", "NAME", "TYPE", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED"], &rows);
                s.push_str(&list.next_page_hint());
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
        r.as_ref().map_or_else(
            || "-".to_owned(),
            |r| format!("{}/{} left, full in {}", r.remaining, r.limit, units::show_ms(r.reset_ms)),
        )
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
            ("retryAfter", or_dash(d.retry_after_ms.map(units::show_ms))),
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
