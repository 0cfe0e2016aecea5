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
