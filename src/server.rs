//! Wiring of a running daemon: the engine, the listeners, the signals. The
//! listeners get the shutdown signal from here and drain on it; the engine is
//! flushed last.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::{Config, LogConfig, LogFormat};
use crate::engine::Engine;

/// Handles shared by the listeners.
pub struct Shared {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The configuration in force.
    pub config: Config,
    /// Set once every listener is bound and the index is loaded.
    pub ready: AtomicBool,
    /// The admin API's state: the bootstrap token, login limiters.
    pub admin: crate::http::admin::AdminState,
    /// The audit log of admin calls and denied verifications.
    pub audit: Arc<crate::audit::AuditLog>,
}

/// Sets up logging as configured (`RUST_LOG` overrides the level).
pub fn init_tracing(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tollgate")
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: draining connections");
            let _ = tx.send(true);
        });
        serve(config, async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Opens the engine, binds the listeners, serves until `shutdown` completes,
/// then drains and flushes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let engine = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || Engine::open(&c))
            .await?
            .with_context(|| format!("cannot open the store in {}", config.data.display()))?
    };
    serve_with_engine(Arc::new(engine), config, shutdown).await
}

/// Like `serve`, with an engine the caller opened (and may keep using, e.g. a
/// test that creates keys while the daemon runs). The engine is shut down at
/// the end all the same.
pub async fn serve_with_engine(
    engine: Arc<Engine>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = tokio::net::TcpListener::bind(config.http_addr()?)
        .await
        .with_context(|| format!("cannot listen on {}", config.http))?;
    let http_unix = match &config.http_socket {
        None => None,
        Some(path) => Some(
            bind_unix(path, config.http_socket_mode_bits()?)
                .with_context(|| format!("cannot listen on {}", path.display()))?,
        ),
    };
    let socket = crate::sidecar::bind(&config).await?;
    let admin = crate::http::admin::AdminState::new(&config)?;
    let audit = crate::audit::AuditLog::start(engine.clone()).context("cannot start the audit writer")?;
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        config: config.clone(),
        ready: AtomicBool::new(false),
        admin,
        audit,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_task = tokio::spawn(crate::http::serve_tcp(http, shared.clone(), stop_rx.clone()));
    let unix_task = http_unix.map(|l| tokio::spawn(crate::http::serve_unix(l, shared.clone(), stop_rx.clone())));
    let sidecar_task = tokio::spawn(crate::sidecar::run(
        socket,
        Arc::new(crate::sidecar::EngineService::new(engine.clone())),
        crate::sidecar::Limits::from_config(&config),
        stop_rx.clone(),
    ));
    shared.ready.store(true, Ordering::Release);
    tracing::info!(
        data = %config.data.display(),
        socket = %config.socket.display(),
        http = %config.http,
        http_socket = ?config.http_socket,
        keys = engine.index().keys.len(),
        tokens = engine.index().tokens.len(),
        "tollgate ready"
    );
    shutdown.await;
    shared.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = tokio::join!(http_task, sidecar_task);
    if let Some(t) = unix_task {
        let _ = t.await;
    }
    crate::sidecar::remove_socket(&config.socket);
    if let Some(path) = &config.http_socket
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the http socket");
    }
    let audit = shared.audit.clone();
    tokio::task::spawn_blocking(move || {
        audit.shutdown();
        engine.shutdown()
    })
    .await??;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Binds a Unix socket at `path` with file mode `mode`. A socket file left by a
/// process that is gone is replaced; a live one, or a file that is not a
/// socket, is an error rather than something to delete.
fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another process is listening on {}", path.display());
        }
        std::fs::remove_file(path).context("cannot remove the stale socket")?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).context("cannot set the socket mode")?;
    Ok(listener)
}
