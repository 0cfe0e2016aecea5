//! The `tollgate` binary: arguments → config → logging → engine → listeners.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::config::{Config, LogFormat, Overrides, SecretString, SourceFile};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Token verification daemon: API keys, access tokens and JWTs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon.
    Serve {
        /// Data directory (sled store, generated keys) [default: ./tollgate-data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Unix socket path for the binary protocol [default: ./tollgate.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// HTTP listen address [default: 127.0.0.1:7070].
        #[arg(long)]
        http: Option<String>,
        /// TOML configuration file (read again on SIGHUP and `tollgate reload`).
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Log format, in place of the configuration's `log.format`.
        #[arg(long, value_enum, env = "TOLLGATE_LOG_FORMAT")]
        log_format: Option<LogFormat>,
        /// HTTPS on the TCP listener: PEM certificate chain, leaf first (with --tls-key;
        /// reloaded on SIGHUP) [config: http_server.tls.cert].
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// HTTPS: PEM private key of the certificate [config: http_server.tls.key].
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// HTTPS: require client certificates issued by these PEM CA certificates
        /// [config: http_server.tls.client_ca].
        #[arg(long, value_name = "FILE")]
        tls_client_ca: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address, accepting that credentials cross
        /// the network in clear [config: http_server.insecure].
        #[arg(long)]
        insecure_http: bool,
        /// Demo access (seed 003): make, once, a demo team with a Reader and a read-only
        /// API key (kept in <data>/demo-key), and print how to try it [config: demo].
        #[arg(long)]
        demo: bool,
        /// Cluster mode: this daemon is one node of a cluster whose truth is this
        /// PostgreSQL database, e.g. postgres://tollgate:PASSWORD@db:5432/tollgate
        /// (better given in the environment: it holds a password) [config: cluster.postgres_url].
        #[arg(long, value_name = "URL", env = "TOLLGATE_POSTGRES_URL", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Applies the cluster schema's migrations (migrations/*.sql) to the
    /// PostgreSQL database and exits; `serve --postgres` also does at start.
    /// Safe to run while nodes run and from several hosts at once (an
    /// advisory lock serializes it).
    Migrate {
        /// TOML configuration file (for `[cluster]`).
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The database [config: cluster.postgres_url].
        #[arg(long, value_name = "URL", env = "TOLLGATE_POSTGRES_URL", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Asks the running daemon to reload its configuration file (as SIGHUP
    /// does) and reports what changed, or why the new configuration was
    /// refused (exit status 1; the old one stays in force). Uses the admin
    /// token from TOLLGATE_ADMIN_TOKEN, else <data>/admin-token. When the
    /// configuration turns HTTPS on, the request goes through its
    /// `http_socket` (plain HTTP on a Unix socket).
    Reload {
        /// The daemon's configuration file: where to find its HTTP address and data directory.
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The daemon's HTTP address [default: the configuration's `http`].
        #[arg(long)]
        http: Option<String>,
        /// The daemon's data directory [default: the configuration's `data`].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Measures the sidecar socket: this executable's `serve` as a child
    /// process on a temp dir, a key population made over its HTTP API, N
    /// connections x D requests in flight, and a bare echo server's ceiling
    /// (build with --release).
    Bench(tollgate_loadgen::Options),
    /// Validates a configuration file, and the JWT key files it names, and
    /// exits: 0 if the daemon would accept it, 2 with every problem located
    /// (file:line:column, key) otherwise.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Prints the configuration reference (Markdown: every key, its type,
    /// default, and whether a reload applies it), as in docs/configuration.md.
    ConfigReference,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        fix_mmap_threshold();
    }
    match cli.command {
        Command::Serve {
            data,
            socket,
            http,
            config,
            log_format,
            tls_cert,
            tls_key,
            tls_client_ca,
            insecure_http,
            demo,
            postgres,
        } => {
            let overrides = Overrides {
                data,
                socket,
                http,
                log_format,
                tls_cert,
                tls_key,
                tls_client_ca,
                insecure_http,
                demo,
                postgres: postgres.map(SecretString),
            };
            let config = Config::load_with(config.as_deref(), overrides);
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tollgate: bad configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            tollgate::server::init_tracing(&config.log);
            let outcome = tollgate::server::run(config);
            // INFO lines wait in a buffer for up to 100 ms: write them before exiting.
            tollgate::logging::flush();
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, where the operator reads the log; on stderr when
                    // the log filter hides errors.
                    if tracing::enabled!(tracing::Level::ERROR) {
                        tracing::error!("{e:#}");
                    } else {
                        eprintln!("tollgate: {e:#}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(opts) => {
            let me = match std::env::current_exe() {
                Ok(me) => me,
                Err(e) => {
                    eprintln!("tollgate bench: cannot find this executable to run as the daemon: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match tollgate_loadgen::run(&me, &opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => {
            let checked = SourceFile::read(&file).map_err(|e| vec![e]).and_then(|s| tollgate::reload::check_file(&s));
            match checked {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(errs) => {
                    for e in &errs {
                        eprintln!("error: {e}");
                    }
                    eprintln!("tollgate: {}: {} problem(s)", file.display(), errs.len());
                    ExitCode::from(2)
                }
            }
        }
        Command::ConfigReference => {
            print!("{}", tollgate::config_schema::markdown());
            ExitCode::SUCCESS
        }
        Command::Reload { config, http, data } => reload(config, http, data),
        Command::Migrate { config, postgres } => migrate(config, postgres),
    }
}

/// `tollgate migrate`: applies the cluster schema's migrations.
fn migrate(config: Option<PathBuf>, postgres: Option<String>) -> ExitCode {
    // Only `[cluster]` matters here: the rest of the file is the daemon's.
    let mut config = match &config {
        None => Config::default(),
        Some(p) => match SourceFile::read(p).and_then(|s| s.parse()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tollgate migrate: bad configuration: {e}");
                return ExitCode::from(2);
            }
        },
    };
    config.apply_overrides(Overrides { postgres: postgres.map(SecretString), ..Overrides::default() });
    if let Some(e) = config.cluster.problems(None).first() {
        eprintln!("tollgate migrate: bad configuration: {e}");
        return ExitCode::from(2);
    }
    if config.cluster.postgres_url.is_none() {
        eprintln!(
            "tollgate migrate: no database: pass --postgres URL, set TOLLGATE_POSTGRES_URL, or cluster.postgres_url"
        );
        return ExitCode::from(2);
    }
    let done = tollgate::cluster::Cluster::connect(&config.cluster, "migrate".to_owned()).and_then(|c| c.migrate());
    match done {
        Ok(applied) => {
            for name in &applied {
                println!("applied {name}");
            }
            println!("schema at version {} ({} applied now)", tollgate::cluster::schema_version(), applied.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tollgate reload`: finds the daemon's address and admin token, asks it to reload.
fn reload(config: Option<PathBuf>, http: Option<String>, data: Option<PathBuf>) -> ExitCode {
    // The file is read here only for the daemon's address and data directory,
    // when they are not given; the daemon checks the rest. A file that does
    // not even parse is refused right away.
    let env_token = std::env::var(tollgate::http::admin::ADMIN_TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
    let needs_file = http.is_none() || (env_token.is_none() && data.is_none());
    let file_config = match &config {
        Some(p) if needs_file => match SourceFile::read(p).and_then(|s| s.parse()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tollgate reload: refused, the daemon was not asked: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => Config::default(),
    };
    // An HTTPS listener is reached through the plain HTTP Unix socket, if any
    // (the client here has no certificate to check the daemon's against).
    let unix = match (&http, &file_config.http_server.tls, &file_config.http_socket) {
        (None, Some(_), Some(path)) => Some(path.clone()),
        (None, Some(_), None) => {
            eprintln!(
                "tollgate reload: the daemon's HTTP listener speaks TLS and the configuration names no http_socket: \
                 set http_socket (tollgate reload then uses it), pass --http for a plain listener, or send SIGHUP"
            );
            return ExitCode::from(2);
        }
        _ => None,
    };
    let http = http.unwrap_or(file_config.http);
    let Ok(mut addr) = http.parse::<std::net::SocketAddr>() else {
        eprintln!("tollgate reload: {http:?} is not an address like 127.0.0.1:7070");
        return ExitCode::from(2);
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let data = data.unwrap_or(file_config.data);
    let token = match env_token {
        Some(t) => t.trim().to_owned(),
        None => {
            let path = data.join(tollgate::http::admin::ADMIN_TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(t) => t.trim().to_owned(),
                Err(e) => {
                    eprintln!(
                        "tollgate reload: no admin token: {} is not set and {} cannot be read ({e})",
                        tollgate::http::admin::ADMIN_TOKEN_ENV,
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let outcome = match &unix {
        Some(path) => tollgate::reload::request_reload_unix(path, &token),
        None => tollgate::reload::request_reload(addr, &token),
    };
    match outcome {
        Ok(tollgate::reload::RemoteOutcome::Reloaded(report)) => {
            println!("reloaded {}", report["file"].as_str().unwrap_or("the configuration"));
            let list = |v: &serde_json::Value| -> Vec<String> {
                v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
            };
            let applied = list(&report["applied"]);
            if applied.is_empty() {
                println!("  nothing changed");
            }
            for a in applied {
                println!("  applied: {a}");
            }
            for k in list(&report["needsRestart"]) {
                println!("  not applied, needs a restart: {k}");
            }
            ExitCode::SUCCESS
        }
        Ok(tollgate::reload::RemoteOutcome::Refused(message)) => {
            eprintln!("tollgate reload: refused; the configuration in force is unchanged:\n{message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tollgate reload: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The environment variable that fixes glibc's mmap threshold.
const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";

/// Runs the daemon again, in place (same process, arguments and
/// environment), with glibc's mmap threshold fixed at its default 128 KiB,
/// unless the environment already tunes glibc's malloc.
///
/// glibc raises the threshold each time it frees a block it had mapped (up
/// to 32 MiB); sled frees an 8 MiB one while it opens, so the start's
/// temporaries (sorted listing ids, decoded image sections: megabytes each)
/// then come from the heap, below the index built after them, and their
/// pages stay resident once freed: 24 MB at a million keys (ARCHITECTURE.md,
/// "A million keys"). A fixed threshold maps them and unmaps them when
/// freed. glibc reads it from the environment only when a process starts,
/// and setting it from within would take `unsafe` (`mallopt`), which the
/// workspace forbids: hence the `exec`, before any thread is started. If it
/// fails, the daemon runs on as it is.
fn fix_mmap_threshold() {
    use std::os::unix::process::CommandExt as _;
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os(MMAP_THRESHOLD_VAR).is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let err =
        std::process::Command::new("/proc/self/exe").arg0(arg0).args(args).env(MMAP_THRESHOLD_VAR, "131072").exec();
    eprintln!("tollgate: could not run again with {MMAP_THRESHOLD_VAR} set ({err}); going on without it");
}
