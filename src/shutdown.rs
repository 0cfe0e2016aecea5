//! The stop signal every listener watches: a `watch` channel that the server
//! turns to `true` on SIGTERM/SIGINT. It sits below the interfaces (socket,
//! HTTP) so that each takes it without importing another.

use tokio::sync::watch;

/// Resolves once `stop` turns true (or its sender is gone: nobody can stop
/// the daemon any more, which is the same as being told to).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
