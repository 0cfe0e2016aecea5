//! Wiring of a running daemon: the engine, the listeners, the signals. The
//! listeners get the shutdown signal from here and drain on it; the engine is
//! flushed last.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{Config, LogConfig};
use crate::engine::Engine;
use crate::http::Shared;
use crate::metrics::Metrics;

/// Worker threads of the admin runtime. Admin calls that change something
/// take the engine's admin lock and fsync, so more workers would mostly wait
/// for one another; one also bounds what admin traffic can take of the CPU to
/// one core, leaving the others to verification (BENCHMARKS.md, "Admin work
/// and verification").
pub const ADMIN_WORKERS: usize = 1;

/// Builds the admin API's runtime: its own threads (`tollgate-admin`), so an
/// admin call blocked on the admin lock, an fsync or a scan never holds a
/// thread that serves verifications. `TOLLGATE_ADMIN_WORKERS` overrides
/// [`ADMIN_WORKERS`], for measurements (`benches/admin-isolation.sh`); it is
/// not a supported setting.
fn admin_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOLLGATE_ADMIN_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(ADMIN_WORKERS);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .enable_all()
        .thread_name("tollgate-admin")
        .on_thread_start(lower_priority)
        .build()
        .context("cannot start the admin runtime")
}

/// Builds the socket protocol's runtime: its own worker threads
/// (`tollgate-socket`), one per core, that run nothing but socket
/// connections. HTTP connections (admin requests among them: reading,
/// parsing, writing answers) run on the main runtime's workers, so a socket
/// verification never waits in a worker's queue behind an HTTP task; when
/// both are busy it is the kernel's scheduler, which preempts, that shares
/// the cores between them, not tokio's, which does not (BENCHMARKS.md,
/// "Admin work and verification").
fn socket_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tollgate-socket")
        .build()
        .context("cannot start the socket runtime")
}

/// Niceness of the admin runtime's threads (workers and blocking threads).
/// When the cores are busy, the scheduler then gives a verification worker
/// that wakes the core ahead of an admin thread (weight 110 against 1024):
/// admin work fills idle CPU and waits under load, verification does not
/// wait behind it (BENCHMARKS.md, "Admin work and verification").
pub const ADMIN_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`ADMIN_NICE`]. On Linux a
/// niceness is per thread (`setpriority(PRIO_PROCESS, 0)` applies to the
/// calling thread only), so the verification workers keep theirs. A refusal
/// (a sandbox without the syscall) leaves the thread as it was.
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, ADMIN_NICE) {
        tracing::debug!("admin thread keeps its priority: {e}");
    }
}

/// Runs `f` on a thread of its own at [`ADMIN_NICE`]; threads it starts
/// inherit that niceness. The store is opened and the audit writer started
/// this way, so that storage work (sled's I/O pool and flusher, the counter
/// flusher, the audit writer) fills idle CPU like admin work and never takes a
/// core from a verification (BENCHMARKS.md, "Admin work and verification").
async fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tollgate-start".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        })
        .context("cannot start a thread")?;
    rx.await.context("a startup thread failed")
}

/// A runtime of its own (admin, socket), shut down without waiting if
/// `serve_opening` returns early (a runtime may not be dropped, which waits, on an async thread).
struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl RuntimeGuard {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Sets up logging as configured (`RUST_LOG` overrides the level). See `logging`.
pub fn init_tracing(log: &LogConfig) {
    crate::logging::init(log);
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Files the daemon creates (sled's among them) are the owner's alone;
    // sockets get their configured mode explicitly.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
            notify_systemd("STOPPING=1");
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

/// Reloads the configuration on every SIGHUP until `stop`.
async fn reload_on_sighup(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload with `tollgate reload`");
            return;
        }
    };
    loop {
        tokio::select! {
            r = hup.recv() => {
                if r.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                let s = shared.clone();
                // Reading key files and building the key set is blocking work.
                let _ = tokio::task::spawn_blocking(move || crate::reload::reload(&s.live())).await;
            }
            () = crate::shutdown::stopped(&mut stop) => return,
        }
    }
}

/// Tells systemd (`Type=notify`) about the daemon's state, when it is run by
/// systemd: `NOTIFY_SOCKET` names the datagram socket (`@` for an abstract one).
pub fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(std::io::Error::other("abstract sockets exist only on Linux")),
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Opens the engine, binds the listeners, serves until `shutdown` completes,
/// then drains and flushes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    serve_on(config, shutdown, Handover::default()).await
}

/// Like `serve`, with listeners and a readiness channel from the caller (see [`Handover`]).
pub async fn serve_on(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handover: Handover,
) -> anyhow::Result<()> {
    let c = config.clone();
    let open = async move {
        let data = c.data.clone();
        let shown = data.display().to_string();
        let engine = background(move || {
            let existed = data.exists();
            let engine = Engine::open(&c);
            if engine.is_ok() {
                secure_data_dir(&data, existed);
            }
            engine
        })
        .await?
        .with_context(|| format!("cannot open the store in {shown}"))?;
        Ok(Arc::new(engine))
    };
    serve_handed(config, open, shutdown, handover).await
}

/// Like `serve`, with an engine the caller opened (and may keep using, e.g. a
/// test that creates keys while the daemon runs). The engine is shut down at
/// the end all the same.
pub async fn serve_with_engine(
    engine: Arc<Engine>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_opening(config, async move { Ok(engine) }, shutdown).await
}

/// Like `serve`, with the engine coming from `open`. The HTTP listener is
/// bound first and answers `/healthz` (200) and `/readyz` (503) while `open`
/// runs (loading a large index takes a while); every other route answers 503
/// until the engine is there and every listener is bound.
pub async fn serve_opening(
    config: Config,
    open: impl Future<Output = anyhow::Result<Arc<Engine>>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_handed(config, open, shutdown, Handover::default()).await
}

/// What the caller of [`serve_handed`] hands the daemon: a listener it bound
/// itself, and a channel to hear when the daemon is ready. A test binds
/// `127.0.0.1:0` and keeps the listener, so that no other process can take
/// the port between bind and use, and waits on `ready` instead of polling.
#[derive(Default)]
pub struct Handover {
    /// The HTTP API's TCP listener; `config.http` is not bound when given.
    pub http: Option<std::net::TcpListener>,
    /// Told once every listener is bound and the engine is open: when
    /// `/readyz` turns 200 and `READY=1` goes to systemd. Dropped unsent when
    /// the daemon fails to start.
    pub ready: Option<tokio::sync::oneshot::Sender<Ready>>,
}

/// What [`Handover::ready`] is told.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    /// The address the HTTP API listens on (the port chosen when `config.http`
    /// ends in `:0`).
    pub http: std::net::SocketAddr,
}

/// Like [`serve_opening`], with listeners and a readiness channel from the caller.
pub async fn serve_handed(
    config: Config,
    open: impl Future<Output = anyhow::Result<Arc<Engine>>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handover: Handover,
) -> anyhow::Result<()> {
    use crate::http::listen;
    let tls = match &config.http_server.tls {
        None => None,
        Some(t) => {
            let loaded = crate::tls::load_tls(t)?;
            tracing::info!(certificate = %loaded.summary, client_ca = ?t.client_ca, "HTTPS on the TCP listener");
            Some(crate::tls::Tls::new(loaded))
        }
    };
    let limits = listen::Limits::from_config(&config.http_server);
    let cap = match listen::cap_for_fd_limit(limits.max_connections) {
        None => limits.max_connections,
        Some((cap, nofile)) => {
            tracing::warn!(
                configured = limits.max_connections,
                cap,
                open_file_limit = nofile,
                "http_server.max_connections lowered to fit the open-file limit (raise it with LimitNOFILE= or ulimit -n)"
            );
            cap
        }
    };
    let conns = listen::Connections::new(cap);
    let tcp = match handover.http {
        Some(l) => {
            l.set_nonblocking(true).context("cannot make the given HTTP listener non-blocking")?;
            tokio::net::TcpListener::from_std(l).context("cannot use the given HTTP listener")?
        }
        None => tokio::net::TcpListener::bind(config.http_addr()?)
            .await
            .with_context(|| format!("cannot listen on {}", config.http))?,
    };
    let http_addr = tcp.local_addr().context("cannot read the HTTP listener's address")?;
    let http = listen::Listener::Tcp(tcp, tls.clone());
    let (starting_tx, starting_rx) = tokio::sync::oneshot::channel();
    let starting = tokio::spawn(crate::http::serve_starting(http, conns.clone(), limits, starting_rx));
    let engine = open.await;
    let _ = starting_tx.send(());
    let http = starting.await.context("the startup HTTP server failed")?;
    let engine = engine?;
    // Cluster mode: follow the change log and lease remaining uses.
    engine.start_cluster().context("cannot start cluster mode")?;

    let http_unix = match &config.http_socket {
        None => None,
        Some(path) => Some(
            bind_unix(path, config.http_socket_mode_bits()?)
                .with_context(|| format!("cannot listen on {}", path.display()))?,
        ),
    };
    // Bound on the socket runtime, so that the listener is registered with its reactor.
    let mut socket_rt = RuntimeGuard(Some(socket_runtime()?));
    let socket = {
        let config = config.clone();
        socket_rt.handle().spawn(async move { crate::sidecar::bind(&config).await }).await??
    };
    let demo = if config.demo {
        let e = engine.clone();
        let data = config.data.clone();
        Some(
            tokio::task::spawn_blocking(move || crate::demo::ensure(&e, &data))
                .await
                .context("demo access task failed")?
                .context("cannot set up demo access")?,
        )
    } else {
        None
    };
    let admin = crate::http::admin::AdminState::new(&config)?;
    let audit = {
        let (engine, config) = (engine.clone(), config.audit.clone());
        background(move || crate::audit::AuditLog::start_with(engine, &config))
            .await?
            .context("cannot start the audit writer")?
    };
    let metrics = Arc::new(Metrics::default());
    let mut admin_rt = RuntimeGuard(Some(admin_runtime()?));
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        config: ArcSwap::from_pointee(config.clone()),
        ready: AtomicBool::new(false),
        admin,
        audit,
        metrics: metrics.clone(),
        reload_lock: parking_lot::Mutex::new(()),
        tls,
        admin_runtime: admin_rt.handle(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_task = tokio::spawn(crate::http::serve(http, conns.clone(), limits, shared.clone(), stop_rx.clone()));
    let unix_task = http_unix.map(|l| {
        tokio::spawn(crate::http::serve(
            listen::Listener::Unix(l),
            conns.clone(),
            limits,
            shared.clone(),
            stop_rx.clone(),
        ))
    });
    let sidecar_task = socket_rt.handle().spawn(crate::sidecar::run(
        socket,
        Arc::new(crate::sidecar::EngineService::with_metrics(engine.clone(), metrics).with_audit(shared.audit.clone())),
        crate::sidecar::Limits::from_config(&config),
        stop_rx.clone(),
    ));
    let hup_task = tokio::spawn(reload_on_sighup(shared.clone(), stop_rx.clone()));
    shared.ready.store(true, Ordering::Release);
    tracing::info!(
        data = %config.data.display(),
        socket = %config.socket.display(),
        http = %http_addr,
        https = shared.tls.is_some(),
        http_socket = ?config.http_socket,
        config = ?config.file,
        keys = engine.index().keys.len(),
        tokens = engine.index().tokens.len(),
        "tollgate ready"
    );
    if let Some(d) = &demo {
        // To the terminal that started the daemon, not to the log: the key is a secret.
        // The address bound, which differs from `config.http` for port 0.
        let bound = Config { http: http_addr.to_string(), ..config.clone() };
        print!("{}", crate::demo::banner(d, &bound));
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    // The address, for whoever started the daemon with `http` on port 0.
    notify_systemd(&format!("READY=1\nSTATUS=ready, HTTP on {http_addr}"));
    if let Some(tx) = handover.ready {
        let _ = tx.send(Ready { http: http_addr });
    }
    shutdown.await;
    shared.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = tokio::join!(http_task, sidecar_task, hup_task);
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
    let admin_rt = admin_rt.0.take();
    let socket_rt = socket_rt.0.take();
    tokio::task::spawn_blocking(move || {
        // Every connection has drained, so no admin call or socket
        // connection is running.
        for rt in [admin_rt, socket_rt].into_iter().flatten() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
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

/// Makes the data directory the owner's: files in it (sled's `db`, `conf`,
/// blobs, snapshots, the key files) are set to 0600 and directories tollgate
/// created to 0700. A directory that existed before with access for group or
/// others is left as the operator made it, with a warning naming the fix.
pub fn secure_data_dir(dir: &Path, existed: bool) {
    let mode = match std::fs::metadata(dir) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) => {
            tracing::warn!(data = %dir.display(), error = %e, "cannot read the data directory's mode");
            return;
        }
    };
    if mode & 0o077 != 0 {
        if existed {
            tracing::warn!(
                data = %dir.display(),
                mode = %format!("{mode:04o}"),
                "the data directory is open to group or others (the store holds credential hashes and signing keys): \
                 run `chmod 700 {}`",
                dir.display()
            );
        } else if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            tracing::warn!(data = %dir.display(), error = %e, "cannot set the data directory's mode to 0700");
        }
    }
    tighten(dir);
}

/// Sets files under `dir` to 0600 and directories to 0700 (not `dir` itself).
fn tighten(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let want = if meta.is_dir() {
            tighten(&path);
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o777 != want
            && let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict the file's mode");
        }
    }
}
