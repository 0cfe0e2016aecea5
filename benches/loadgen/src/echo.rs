//! The bare echo server: the socket, the handshake and the frames the daemon
//! speaks (protocol/SPEC.md, with tollgate-protocol's codec), and nothing
//! behind them.
//!
//! Each connection is served the way the daemon serves one: after each read,
//! every whole frame in the buffer is decoded and answered into one write
//! buffer, written in one go. A verify gets [`proto::echo::allow_verdict`], a
//! canned allow verdict of a realistic size; a ping a pong; a quota
//! operation an `ok`. It runs on a multi-threaded tokio runtime with a worker
//! per core (as the daemon's socket does; both honour
//! `TOKIO_WORKER_THREADS`), whose threads' CPU time is what
//! [`Echo::cpu`] reads.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tollgate_protocol as proto;
use tollgate_protocol::{Request, Response};

/// Bytes read at most per read, as the daemon's socket reads.
const READ_CHUNK: usize = 64 * 1024;

/// A running echo server.
pub struct Echo {
    rt: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    /// The runtime's threads (kernel thread ids), for their CPU time.
    threads: Arc<Mutex<Vec<u32>>>,
    path: PathBuf,
}

impl Echo {
    /// Listens on `path` (replacing a stale socket file there).
    pub fn start(path: &Path) -> anyhow::Result<Echo> {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let rt = {
            let threads = threads.clone();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("echo")
                .on_thread_start(move || {
                    if let Some(tid) = thread_id()
                        && let Ok(mut t) = threads.lock()
                    {
                        t.push(tid);
                    }
                })
                .build()
                .context("cannot start the echo server's runtime")?
        };
        let _ = std::fs::remove_file(path);
        let listener = {
            let _in_rt = rt.enter();
            UnixListener::bind(path).with_context(|| format!("cannot bind the echo server on {}", path.display()))?
        };
        let (stop, stopped) = watch::channel(false);
        rt.spawn(accept(listener, stopped));
        Ok(Echo { rt, stop, threads, path: path.to_owned() })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// CPU time (user + system) its threads have used so far.
    pub fn cpu(&self) -> Option<Duration> {
        let threads = self.threads.lock().ok()?;
        threads.iter().map(|tid| crate::cpu_of(&format!("/proc/self/task/{tid}/stat"))).sum()
    }

    /// Stops accepting, lets the connections close and removes the socket.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        self.rt.shutdown_timeout(Duration::from_secs(1));
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The calling thread's kernel id, from `/proc/thread-self` (`PID/task/TID`).
fn thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

async fn accept(listener: UnixListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = serve(stream).await;
                });
            }
            // Usually EMFILE: back off instead of spinning on it.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One connection: the handshake, then batches of frames until the client
/// closes or sends a malformed frame.
async fn serve(mut stream: UnixStream) -> io::Result<()> {
    let mut rbuf = vec![0u8; READ_CHUNK];
    let mut filled = 0;
    let mut wbuf = Vec::with_capacity(16 * 1024);
    loop {
        match proto::server_handshake(rbuf.get(..filled).unwrap_or_default(), &mut wbuf) {
            Ok(Some(_version)) => break,
            Ok(None) => {}
            // The error frame is in `wbuf`: send it, then close.
            Err(_) => {
                stream.write_all(&wbuf).await?;
                return stream.shutdown().await;
            }
        }
        let n = stream.read(rbuf.get_mut(filled..).unwrap_or_default()).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        filled += n;
    }
    rbuf.copy_within(proto::HANDSHAKE_LEN..filled, 0);
    filled -= proto::HANDSHAKE_LEN;
    loop {
        // Frames that came with the hello, or a batch just read; the
        // handshake's answer goes out with the first batch's.
        let (used, close) = answer_frames(rbuf.get(..filled).unwrap_or_default(), &mut wbuf);
        rbuf.copy_within(used..filled, 0);
        filled -= used;
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        if close {
            return stream.shutdown().await;
        }
        // Room for a whole frame after a partial one (check_frame refuses
        // frames over MAX_FRAME_LEN, so this is bounded).
        if rbuf.len() - filled < READ_CHUNK.min(proto::MAX_FRAME_LEN) {
            rbuf.resize(filled + READ_CHUNK, 0);
        }
        let room = rbuf.get_mut(filled..filled + READ_CHUNK).unwrap_or_default();
        let n = stream.read(room).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
}

/// Answers every whole frame at the start of `buf` into `out`. Returns how
/// many bytes were used and whether to close after writing the answers (a
/// malformed frame).
fn answer_frames(buf: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let len = match proto::check_frame(rest) {
            Ok(Some(len)) => len,
            Ok(None) => return (pos, false),
            Err(e) => {
                // The frame boundary is lost: nothing after it can be trusted.
                proto::encode_error(0, e.error_code(), &e.to_string(), out);
                return (buf.len(), true);
            }
        };
        let frame = rest.get(..len).unwrap_or_default();
        pos += len;
        match proto::decode_request(frame) {
            Ok((id, req)) => {
                let resp = match req {
                    Request::Verify(v) => Response::Verdict(proto::echo::allow_verdict(&v)),
                    Request::Ping => Response::Pong,
                    Request::QuotaConsume(_) | Request::QuotaRelease(_) => {
                        Response::QuotaResult(proto::QuotaResult { ok: true, used: 0, limit: None })
                    }
                };
                if proto::encode_response(id, &resp, out).is_err() {
                    proto::encode_error(id, proto::ErrorCode::Internal, "cannot encode", out);
                }
            }
            Err(e) => {
                let id = proto::frame_request_id(frame).unwrap_or(0);
                proto::encode_error(id, e.error_code(), &e.to_string(), out);
                if e.closes_connection() {
                    return (buf.len(), true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client with tollgate-protocol's blocking client: the echo server
    /// speaks the protocol the daemon does.
    #[test]
    fn answers_the_protocol_client_and_refuses_a_bad_hello() {
        let dir = std::env::temp_dir().join(format!("tollgate-loadgen-echo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("echo.sock");
        let echo = Echo::start(&path).unwrap();
        let mut client = proto::Client::connect(&path).unwrap();
        client.ping().unwrap();
        let verdicts = client
            .verify_many(&[proto::VerifyRequest::new("tg_a"), proto::VerifyRequest::new("tg_b").cost(3)])
            .unwrap();
        assert_eq!(verdicts.len(), 2);
        for (v, cost) in verdicts.iter().zip([1, 3]) {
            let proto::Verdict::Allow(a) = v else { panic!("{v:?}") };
            let rl = a.rate_limit.as_ref().unwrap();
            assert_eq!(rl.remaining, proto::echo::ECHO_RATE_LIMIT - cost);
        }

        // A hello with the wrong magic gets an error frame, then the end.
        use std::io::{Read as _, Write as _};
        let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
        raw.write_all(b"HTTP/1").unwrap();
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).unwrap();
        let (id, resp) = proto::decode_response(&answer).unwrap();
        assert_eq!(id, 0);
        assert!(matches!(resp, Response::Error(_)), "{resp:?}");

        assert!(echo.cpu().is_some());
        echo.stop();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
