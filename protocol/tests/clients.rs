//! The blocking and async clients against a small fake server built from
//! this crate's own codec, the way the daemon's sidecar listener uses it.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;

use tollgate_protocol::*;

/// Answers one request the way the tests expect:
/// credential `deny` → RATE_LIMITED deny, `boom` → INTERNAL error frame,
/// `bye` → connection-level SERVER_BUSY error (id 0) and close, anything
/// else → the echo allow verdict. Quota consumes over 10 are refused.
fn answer(id: u32, req: &Request<'_>, out: &mut Vec<u8>) -> bool {
    let resp = match req {
        Request::Verify(v) => match v.credential {
            b"deny" => Response::Verdict(Verdict::Deny(Deny {
                code: DenyCode::RateLimited,
                retry_after_ms: Some(250),
                reason: "slow down".into(),
                rate_limit: None,
            })),
            b"boom" => {
                encode_error(id, ErrorCode::Internal, "store unavailable", out);
                return true;
            }
            b"bye" => {
                encode_error(0, ErrorCode::ServerBusy, "shutting down", out);
                return false;
            }
            _ => {
                let mut verdict = echo::allow_verdict(v);
                if let Verdict::Allow(a) = &mut verdict {
                    // Echo the credential back so clients can check matching.
                    a.credential_id = String::from_utf8_lossy(v.credential).into_owned().into();
                }
                Response::Verdict(verdict)
            }
        },
        Request::QuotaConsume(op) => Response::QuotaResult(QuotaResult {
            ok: op.amount <= 10,
            used: if op.amount <= 10 { op.amount.into() } else { 0 },
            limit: Some(10),
        }),
        Request::QuotaRelease(_) => Response::QuotaResult(QuotaResult { ok: true, used: 0, limit: None }),
        Request::Ping => Response::Pong,
    };
    encode_response(id, &resp, out).unwrap();
    true
}

/// Serves one connection: handshake, then frames. Answers to the frames of
/// one read are written in reverse order, so pipelined answers arrive out
/// of order and clients must match them by id.
fn serve(mut stream: UnixStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match server_handshake(&buf, &mut out) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(_) => return stream.write_all(&out),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    stream.write_all(&out)?;
    buf.drain(..HANDSHAKE_LEN);
    loop {
        let mut answers = Vec::new();
        let mut keep_open = true;
        let mut pos = 0;
        while keep_open {
            let frame = &buf[pos..];
            match check_frame(frame) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let mut one = Vec::new();
                    match decode_request(frame) {
                        Ok((id, req)) => keep_open = answer(id, &req, &mut one),
                        Err(e) => {
                            let id = frame_request_id(frame).unwrap_or(0);
                            encode_error(id, e.error_code(), &e.to_string(), &mut one);
                            keep_open = !e.closes_connection();
                        }
                    }
                    answers.push(one);
                    pos += len;
                }
                Err(e) => {
                    let mut one = Vec::new();
                    encode_error(0, e.error_code(), &e.to_string(), &mut one);
                    answers.push(one);
                    keep_open = false;
                }
            }
        }
        buf.drain(..pos);
        let batch: Vec<u8> = answers.into_iter().rev().flatten().collect();
        stream.write_all(&batch)?;
        if !keep_open {
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct FakeServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fake_server() -> FakeServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.sock");
    let listener = UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || serve(stream));
        }
    });
    FakeServer { _dir: dir, path }
}

/// A server that answers every hello with the given raw bytes.
fn scripted_server(reply: Vec<u8>) -> FakeServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scripted.sock");
    let listener = UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut hello = [0u8; HANDSHAKE_LEN];
            if stream.read_exact(&mut hello).is_ok() {
                let _ = stream.write_all(&reply);
            }
        }
    });
    FakeServer { _dir: dir, path }
}

fn credential_id(v: &Verdict<'_>) -> String {
    match v {
        Verdict::Allow(a) => a.credential_id.to_string(),
        Verdict::Deny(d) => d.code.as_str().to_string(),
    }
}

#[test]
fn blocking_client_calls() {
    let server = fake_server();
    let mut client = Client::connect(&server.path).unwrap();
    assert_eq!(client.version(), PROTOCOL_VERSION);
    client.set_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    client.ping().unwrap();

    let req = VerifyRequest::new("tg_live_1")
        .ip("127.0.0.1".parse().unwrap())
        .permissions(&[("documents", "read")])
        .quota("documents", 1);
    let v = client.verify(&req).unwrap();
    assert!(v.is_allow());
    assert_eq!(credential_id(&v), "tg_live_1");

    let v = client.verify(&VerifyRequest::new("deny")).unwrap();
    assert_eq!(v.deny_code(), Some(DenyCode::RateLimited));
    let Verdict::Deny(d) = v else { panic!() };
    assert_eq!((d.retry_after_ms, &*d.reason), (Some(250), "slow down"));

    let op = QuotaOp { team_id: "team_1", quota: "documents", amount: 4 };
    let q = client.quota_consume(&op).unwrap();
    assert_eq!((q.ok, q.used, q.limit), (true, 4, Some(10)));
    let q = client.quota_consume(&QuotaOp { amount: 11, ..op }).unwrap();
    assert!(!q.ok);
    assert!(client.quota_release(&op).unwrap().ok);

    // A request-level error frame becomes an error; the connection survives.
    let err = client.verify(&VerifyRequest::new("boom")).unwrap_err();
    assert!(err.to_string().contains("store unavailable"), "{err}");
    client.ping().unwrap();
}

#[test]
fn blocking_client_pipelines() {
    let server = fake_server();
    let mut client = Client::connect(&server.path).unwrap();
    let creds: Vec<String> = (0..1000).map(|i| if i % 7 == 0 { "deny".into() } else { format!("key_{i}") }).collect();
    let reqs: Vec<VerifyRequest<'_>> = creds.iter().map(VerifyRequest::new).collect();
    let verdicts = client.verify_many(&reqs).unwrap();
    assert_eq!(verdicts.len(), creds.len());
    for (cred, v) in creds.iter().zip(&verdicts) {
        let expected = if cred == "deny" { "RATE_LIMITED" } else { cred };
        assert_eq!(credential_id(v), expected);
    }

    // Manual pipelining with send/recv; answers come back reversed.
    for id in 1..=3u32 {
        let cred = format!("manual_{id}");
        client.send(id, &Request::Verify(VerifyRequest::new(&cred))).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (id, resp) = client.recv().unwrap();
        let Response::Verdict(v) = resp else { panic!() };
        assert_eq!(credential_id(&v), format!("manual_{id}"));
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, [1, 2, 3]);
    assert!(client.verify_many(&[]).unwrap().is_empty());

    // A failure part-way leaves stale answers behind; later calls skip them.
    let reqs: Vec<_> = ["a", "b", "boom", "c", "d"].iter().map(VerifyRequest::new).collect();
    let err = client.verify_many(&reqs).unwrap_err();
    assert!(err.to_string().contains("store unavailable"), "{err}");
    let v = client.verify(&VerifyRequest::new("after")).unwrap();
    assert_eq!(credential_id(&v), "after");
}

#[test]
fn blocking_client_sees_connection_errors() {
    let server = fake_server();
    let mut client = Client::connect(&server.path).unwrap();
    let err = client.verify(&VerifyRequest::new("bye")).unwrap_err();
    assert!(err.to_string().contains("SERVER_BUSY"), "{err}");
    let err = client.ping().unwrap_err();
    assert!(matches!(err.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe), "{err:?}");

    // The fake server answers a batch in reverse: the answer to "a" comes
    // after the connection-level error. The client reads on to the close
    // (SPEC.md 5.6) and then reports the error, not an EOF.
    let mut client = Client::connect(&server.path).unwrap();
    let err = client.verify_many(&[VerifyRequest::new("a"), VerifyRequest::new("bye")]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted, "{err:?}");
    assert!(err.to_string().contains("SERVER_BUSY"), "{err}");
}

#[test]
fn handshake_refusals() {
    let mut refusal = Vec::new();
    encode_error(0, ErrorCode::UnsupportedVersion, "need version 2", &mut refusal);
    let server = scripted_server(refusal);
    let err = Client::connect(&server.path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("need version 2"));

    // A server claiming a version newer than offered is refused by the client.
    let server = scripted_server(b"TGAT\x00\x09".to_vec());
    let err = Client::connect(&server.path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);

    // Something that is not a tollgate server at all.
    let server = scripted_server(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    assert!(Client::connect(&server.path).is_err());
}

#[test]
fn fake_server_rejects_malformed_frames() {
    // Exercises the server-side helpers exactly as the daemon uses them.
    let server = fake_server();
    let mut raw = UnixStream::connect(&server.path).unwrap();
    raw.write_all(b"TGAT\x00\x01").unwrap();
    let mut reply = [0u8; HANDSHAKE_LEN];
    raw.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"TGAT\x00\x01");
    // Unknown type 0x09 with id 5: error 4 with the id, connection stays open.
    raw.write_all(&[0, 0, 0, 5, 0x09, 0, 0, 0, 5]).unwrap();
    let mut buf = Vec::new();
    let resp = read_frame(&mut raw, &mut buf);
    assert_eq!(resp.0, 5);
    assert!(matches!(&resp.1, Response::Error(e) if e.code == ErrorCode::UnknownMessageType));
    // Oversized prefix: error 3 with id 0, then close.
    raw.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let resp = read_frame(&mut raw, &mut buf);
    assert_eq!(resp.0, 0);
    assert!(matches!(&resp.1, Response::Error(e) if e.code == ErrorCode::FrameTooLarge));
    assert_eq!(raw.read(&mut [0u8; 16]).unwrap(), 0);
}

fn read_frame(s: &mut UnixStream, buf: &mut Vec<u8>) -> (u32, Response<'static>) {
    loop {
        if let Some(len) = check_frame(buf).unwrap() {
            let (id, r) = decode_response(buf).unwrap();
            let r = r.into_owned();
            buf.drain(..len);
            return (id, r);
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(feature = "tokio")]
mod async_client {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_one_connection() {
        let server = fake_server();
        let client = AsyncClient::connect(&server.path).await.unwrap();
        assert_eq!(client.version(), PROTOCOL_VERSION);
        client.ping().await.unwrap();

        let mut tasks = Vec::new();
        for t in 0..16 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let cred = if i % 10 == 0 { "deny".to_string() } else { format!("key_{t}_{i}") };
                    let v = client.verify(&VerifyRequest::new(&cred)).await.unwrap();
                    let expected = if cred == "deny" { "RATE_LIMITED" } else { &cred };
                    assert_eq!(credential_id(&v), expected);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        let q = client.quota_consume(&QuotaOp { team_id: "t", quota: "docs", amount: 3 }).await.unwrap();
        assert!(q.ok);
        let q = client.quota_release(&QuotaOp { team_id: "t", quota: "docs", amount: 3 }).await.unwrap();
        assert!(q.ok);
        let err = client.verify(&VerifyRequest::new("boom")).await.unwrap_err();
        assert!(err.to_string().contains("store unavailable"));
        client.ping().await.unwrap();
    }

    #[tokio::test]
    async fn connection_errors_fail_calls() {
        let server = fake_server();
        let client = AsyncClient::connect(&server.path).await.unwrap();
        let err = client.verify(&VerifyRequest::new("bye")).await.unwrap_err();
        assert!(err.to_string().contains("SERVER_BUSY"), "{err}");
        let err = client.ping().await.unwrap_err();
        assert!(err.to_string().contains("SERVER_BUSY"), "{err}");

        // Answers the server still owes after a connection-level error are
        // delivered; the rest fail with that error.
        let client = AsyncClient::connect(&server.path).await.unwrap();
        let (ra, rb) = (VerifyRequest::new("a"), VerifyRequest::new("bye"));
        let (a, b) = tokio::join!(client.verify(&ra), client.verify(&rb));
        assert!(a.is_ok(), "{a:?}");
        assert!(b.unwrap_err().to_string().contains("SERVER_BUSY"));

        let mut refusal = Vec::new();
        encode_error(0, ErrorCode::UnsupportedVersion, "no", &mut refusal);
        let server = scripted_server(refusal);
        let err = AsyncClient::connect(&server.path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn dropped_calls_do_not_leak_or_confuse_later_ones() {
        let server = fake_server();
        let client = AsyncClient::connect(&server.path).await.unwrap();
        // Start calls and abort them at whatever point they have reached.
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let cred = format!("abandoned_{i}");
                    client.verify(&VerifyRequest::new(&cred)).await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            if let Ok(done) = t.await {
                assert!(credential_id(&done.unwrap()).starts_with("abandoned_"));
            }
        }
        let v = client.verify(&VerifyRequest::new("kept")).await.unwrap();
        assert_eq!(credential_id(&v), "kept");
    }
}
