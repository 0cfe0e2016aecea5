//! The `tollgate` binary: arguments → config → logging → engine → listeners.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::config::Config;

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
        /// TOML configuration file.
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Measures the sidecar socket: an in-process daemon on a temp dir, a key
    /// population, N connections x D requests in flight (build with --release).
    Bench {
        /// Socket path [default: a fresh path in a temp dir].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Connections, one client thread each.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 64)]
        depth: usize,
        /// Seconds measured per server.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Credentials in the population.
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        /// Which server(s) to measure.
        #[arg(long, value_enum, default_value = "both")]
        mode: tollgate::loadgen::Mode,
        /// Which credentials the requests carry.
        #[arg(long, value_enum, default_value = "key")]
        credential_kind: tollgate::loadgen::CredentialKind,
    },
    /// Validates a configuration file and exits.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { data, socket, http, config } => {
            let config = Config::load(config.as_deref()).and_then(|mut c| {
                if let Some(d) = data {
                    c.data = d;
                }
                if let Some(s) = socket {
                    c.socket = s;
                }
                if let Some(h) = http {
                    c.http = h;
                }
                c.validate().map(|()| c)
            });
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tollgate: bad configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            tollgate::server::init_tracing(&config.log);
            match tollgate::server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench { socket, connections, depth, duration, keys, mode, credential_kind } => {
            let Ok(duration) = std::time::Duration::try_from_secs_f64(duration) else {
                eprintln!("tollgate: --duration must be a positive number of seconds");
                return ExitCode::from(2);
            };
            let opts =
                tollgate::loadgen::Options { socket, connections, depth, duration, keys, mode, kind: credential_kind };
            match tollgate::loadgen::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate: {e}");
                ExitCode::from(2)
            }
        },
    }
}
