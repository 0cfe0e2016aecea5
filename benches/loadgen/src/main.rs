//! `tollgate-loadgen`: `tollgate bench` as an executable of its own, for a
//! `tollgate` binary it is pointed at (by default the one next to it, as
//! `cargo build` leaves them).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Measures the sidecar socket of a real `tollgate serve` child (and a bare
/// echo server's): a key population made over the HTTP API, N connections x D
/// requests in flight (build with --release).
#[derive(Parser)]
#[command(name = "tollgate-loadgen", version)]
struct Cli {
    /// The `tollgate` executable to run as the daemon [default: the one next
    /// to this executable].
    #[arg(long, value_name = "FILE")]
    tollgate: Option<PathBuf>,
    #[command(flatten)]
    options: tollgate_loadgen::Options,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tollgate = match cli.tollgate {
        Some(t) => t,
        None => match std::env::current_exe() {
            Ok(me) => me.with_file_name("tollgate"),
            Err(e) => {
                eprintln!("tollgate-loadgen: cannot find this executable ({e}); pass --tollgate FILE");
                return ExitCode::from(2);
            }
        },
    };
    if !tollgate.is_file() {
        eprintln!("tollgate-loadgen: {} is not a file; pass --tollgate FILE", tollgate.display());
        return ExitCode::from(2);
    }
    match tollgate_loadgen::run(&tollgate, &cli.options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
