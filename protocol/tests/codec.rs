//! Round trips, partial frames and invalid input for the codec and handshake.

use std::borrow::Cow;
use std::net::IpAddr;

use tollgate_protocol::*;

const PERMS: &[(&str, &str)] = &[("documents", "read"), ("invoices", "write")];

fn sample_requests() -> Vec<Request<'static>> {
    vec![
        Request::Verify(VerifyRequest::new("tg_live_abc")),
        Request::Verify(
            VerifyRequest::new(b"\xff\x00binary credential")
                .ip("203.0.113.7".parse().unwrap())
                .permissions(PERMS)
                .cost(5)
                .quota("documents", 2),
        ),
        Request::Verify(VerifyRequest::new("eyJhbGciOi").ip("2001:db8::1".parse().unwrap())),
        Request::QuotaConsume(QuotaOp { team_id: "team_1", quota: "documents", amount: 3 }),
        Request::QuotaRelease(QuotaOp { team_id: "team_1", quota: "documents", amount: 1 }),
        Request::Ping,
    ]
}

fn sample_allow() -> Verdict<'static> {
    Verdict::Allow(Allow {
        kind: CredentialKind::Jwt,
        subject: "user_1".into(),
        team_id: "team_1".into(),
        credential_id: "jti-9".into(),
        roles: vec![Cow::from("admin"), Cow::from("")].into(),
        permissions: vec![
            Permission { resource: "documents".into(), actions: vec![Cow::from("read"), Cow::from("write")].into() },
            Permission { resource: "empty".into(), actions: Vec::new().into() },
        ]
        .into(),
        remaining_uses: Some(41),
        rate_limit: Some(RateLimit { limit: 100, remaining: 99, reset_ms: 60_000 }),
    })
}

fn sample_responses() -> Vec<Response<'static>> {
    let mut v = vec![
        Response::Verdict(sample_allow()),
        Response::Verdict(echo::allow_verdict(&VerifyRequest::new("x"))),
        Response::QuotaResult(QuotaResult { ok: true, used: 10, limit: Some(100) }),
        Response::QuotaResult(QuotaResult { ok: false, used: 0, limit: None }),
        Response::Pong,
    ];
    for &code in DenyCode::ALL {
        v.push(Response::Verdict(Verdict::Deny(Deny {
            code,
            retry_after_ms: (code == DenyCode::RateLimited).then_some(1500),
            reason: code.as_str().to_lowercase().into(),
            rate_limit: None,
        })));
    }
    for &code in ErrorCode::ALL {
        v.push(Response::Error(ErrorResponse { code, message: "héllo".into() }));
    }
    v
}

fn encode_req(id: u32, req: &Request<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_request(id, req, &mut buf).unwrap();
    buf
}

fn encode_resp(id: u32, resp: &Response<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_response(id, resp, &mut buf).unwrap();
    buf
}

#[test]
fn requests_round_trip() {
    for (i, req) in sample_requests().iter().enumerate() {
        let id = 1000 + i as u32;
        let buf = encode_req(id, req);
        assert_eq!(check_frame(&buf), Ok(Some(buf.len())));
        assert_eq!(frame_request_id(&buf), Some(id));
        let (got_id, got) = decode_request(&buf).unwrap();
        assert_eq!((got_id, &got), (id, req));
        // Re-encoding the decoded (wire-view) form gives identical bytes.
        assert_eq!(encode_req(id, &got), buf);
    }
}

#[test]
fn responses_round_trip() {
    for (i, resp) in sample_responses().iter().enumerate() {
        let id = u32::MAX - i as u32;
        let buf = encode_resp(id, resp);
        assert_eq!(check_frame(&buf), Ok(Some(buf.len())));
        let (got_id, got) = decode_response(&buf).unwrap();
        assert_eq!((got_id, &got), (id, resp));
        assert_eq!(&got.into_owned(), resp);
    }
}

#[test]
fn decoded_verify_borrows_from_the_frame() {
    let req = Request::Verify(VerifyRequest::new("tg_live_abc").permissions(PERMS));
    let buf = encode_req(1, &req);
    let (_, Request::Verify(v)) = decode_request(&buf).unwrap() else {
        panic!("not a verify");
    };
    let range = buf.as_ptr_range();
    assert!(range.contains(&v.credential.as_ptr()));
    let (resource, _) = v.permissions.iter().next().unwrap();
    assert!(range.contains(&resource.as_ptr()));
    assert_eq!(v.permissions.len(), 2);
    assert_eq!(v.credential_str(), Some("tg_live_abc"));
}

#[test]
fn several_frames_in_one_buffer_are_split_by_check_frame() {
    let mut buf = Vec::new();
    for (i, req) in sample_requests().iter().enumerate() {
        encode_request(i as u32 + 1, req, &mut buf).unwrap();
    }
    let mut rest = &buf[..];
    let mut n = 0;
    while let Some(len) = check_frame(rest).unwrap() {
        let (id, got) = decode_request(rest).unwrap();
        assert_eq!(got, sample_requests()[n]);
        assert_eq!(id, n as u32 + 1);
        rest = &rest[len..];
        n += 1;
    }
    assert_eq!((n, rest.len()), (sample_requests().len(), 0));
}

#[test]
fn every_truncation_is_incomplete() {
    let frames = sample_requests()
        .into_iter()
        .map(|r| (encode_req(7, &r), true))
        .chain(sample_responses().into_iter().map(|r| (encode_resp(7, &r), false)));
    for (buf, is_request) in frames {
        for cut in 0..buf.len() {
            let part = &buf[..cut];
            assert_eq!(check_frame(part), Ok(None), "cut at {cut}");
            let err = if is_request {
                decode_request(part).map(|_| ()).unwrap_err()
            } else {
                decode_response(part).map(|_| ()).unwrap_err()
            };
            assert_eq!(err, FrameError::Incomplete, "cut at {cut}");
            assert!(err.is_incomplete());
        }
    }
}

#[test]
fn oversized_length_is_rejected_from_the_prefix_alone() {
    for len in [MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        let prefix = len.to_be_bytes();
        let err = check_frame(&prefix).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { len: len as usize });
        assert_eq!(err.error_code(), ErrorCode::FrameTooLarge);
        assert!(err.closes_connection());
        assert_eq!(decode_request(&prefix).unwrap_err(), err);
        assert_eq!(frame_request_id(&prefix), None);
    }
    // Exactly the maximum is fine (and merely incomplete here).
    assert_eq!(check_frame(&(MAX_FRAME_LEN as u32).to_be_bytes()), Ok(None));
}

#[test]
fn too_short_length_is_rejected() {
    for len in 0..HEADER_LEN as u32 {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&[0; 8]);
        assert_eq!(check_frame(&buf), Err(FrameError::TooShort { len: len as usize }));
    }
}

#[test]
fn unknown_and_wrong_direction_types_are_rejected() {
    let mut buf = encode_req(9, &Request::Ping);
    for t in [0x00, 0x05, 0x7f, 0x81, 0x84, 0xff] {
        buf[4] = t;
        let err = decode_request(&buf).unwrap_err();
        assert_eq!(err, FrameError::UnknownMessageType { msg_type: t });
        assert_eq!(err.error_code(), ErrorCode::UnknownMessageType);
        assert!(!err.closes_connection());
        // The id is still recoverable for the error frame.
        assert_eq!(frame_request_id(&buf), Some(9));
    }
    let mut buf = encode_resp(9, &Response::Pong);
    buf[4] = 0x04;
    assert_eq!(decode_response(&buf).unwrap_err(), FrameError::UnknownMessageType { msg_type: 0x04 });
}

#[test]
fn bad_utf8_is_rejected_but_binary_credentials_are_not() {
    let op = QuotaOp { team_id: "team", quota: "docs", amount: 1 };
    let mut buf = encode_req(3, &Request::QuotaConsume(op));
    // team id string starts after header (9 bytes) + its u16 length.
    buf[11] = 0xff;
    let err = decode_request(&buf).unwrap_err();
    assert_eq!(err, FrameError::InvalidUtf8 { field: "team id" });
    assert_eq!(err.error_code(), ErrorCode::MalformedFrame);
    assert!(err.closes_connection());

    let buf = encode_req(3, &Request::Verify(VerifyRequest::new(b"\xff\xfe")));
    let (_, Request::Verify(v)) = decode_request(&buf).unwrap() else { panic!() };
    assert_eq!(v.credential, b"\xff\xfe");
    assert_eq!(v.credential_str(), None);
}

#[test]
fn invalid_values_and_trailing_bytes_are_rejected() {
    // IP tag 5.
    let mut buf = encode_req(1, &Request::Verify(VerifyRequest::new("k")));
    buf[12] = 5;
    assert_eq!(decode_request(&buf).unwrap_err(), FrameError::InvalidValue { field: "ip tag", value: 5 });
    // Presence flag 2 for the quota.
    let mut buf = encode_req(1, &Request::Verify(VerifyRequest::new("k")));
    *buf.last_mut().unwrap() = 2;
    assert!(matches!(decode_request(&buf), Err(FrameError::InvalidValue { .. })));
    // Deny code 14 is not defined in version 1.
    let deny = Response::Verdict(Verdict::Deny(Deny {
        code: DenyCode::QuotaExceeded,
        retry_after_ms: None,
        reason: "".into(),
        rate_limit: None,
    }));
    let mut buf = encode_resp(1, &deny);
    buf[10] = 14;
    assert_eq!(decode_response(&buf).unwrap_err(), FrameError::InvalidValue { field: "deny code", value: 14 });
    // One byte too many in a ping.
    let mut buf = encode_req(1, &Request::Ping);
    buf.push(0);
    buf[3] += 1;
    assert_eq!(decode_request(&buf).unwrap_err(), FrameError::TrailingBytes { count: 1 });
    // A length prefix that cuts the payload short: truncated, not incomplete.
    let mut buf = encode_req(1, &Request::Verify(VerifyRequest::new("key")));
    buf[3] -= 1;
    assert!(matches!(decode_request(&buf), Err(FrameError::Truncated { .. })));
}

#[test]
fn huge_inner_lengths_do_not_allocate_or_panic() {
    // A verdict whose role count claims 256 entries with no bytes behind it.
    let mut buf = vec![0, 0, 0, 0, 0x81, 0, 0, 0, 1, 1, 1];
    for _ in 0..3 {
        buf.extend_from_slice(&[0, 0]);
    }
    buf.extend_from_slice(&[0x01, 0x00]);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(decode_response(&buf), Err(FrameError::Truncated { .. })));
    // A list count over the limit is rejected before anything is read.
    let n = buf.len();
    buf[n - 2..].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        decode_response(&buf).unwrap_err(),
        FrameError::FieldTooLong { field: "roles", len: 0xffff, max: MAX_LIST_LEN }
    );
}

#[test]
fn encoding_checks_limits_and_leaves_the_buffer_untouched() {
    let big = vec![b'a'; MAX_CREDENTIAL_LEN + 1];
    let mut buf = b"previous".to_vec();
    let err = encode_request(1, &Request::Verify(VerifyRequest::new(&big)), &mut buf);
    assert!(matches!(err, Err(FrameError::FieldTooLong { .. })));
    assert_eq!(buf, b"previous");

    // Fields within their limits that add up to more than a frame.
    let s = "r".repeat(MAX_STRING_LEN);
    let pairs: Vec<(&str, &str)> = (0..40).map(|_| (s.as_str(), s.as_str())).collect();
    let req = Request::Verify(VerifyRequest::new("k").permissions(&pairs));
    assert!(matches!(encode_request(1, &req, &mut buf), Err(FrameError::TooLarge { .. })));
    assert_eq!(buf, b"previous");

    // The largest credential fits.
    let max = vec![b'a'; MAX_CREDENTIAL_LEN];
    encode_request(1, &Request::Verify(VerifyRequest::new(&max)), &mut buf).unwrap();
}

#[test]
fn encode_error_truncates_long_messages_at_a_char_boundary() {
    let msg = "é".repeat(MAX_STRING_LEN);
    let mut buf = Vec::new();
    encode_error(0, ErrorCode::Internal, &msg, &mut buf);
    let (id, Response::Error(e)) = decode_response(&buf).unwrap() else { panic!() };
    assert_eq!(id, 0);
    assert_eq!(e.message.len(), MAX_STRING_LEN);
}

#[test]
fn handshake() {
    let mut hello = Vec::new();
    encode_handshake(PROTOCOL_VERSION, &mut hello);
    assert_eq!(hello, b"TGAT\x00\x01");
    for cut in 0..HANDSHAKE_LEN {
        assert_eq!(decode_handshake(&hello[..cut]), Ok(None));
        let mut out = Vec::new();
        assert_eq!(server_handshake(&hello[..cut], &mut out), Ok(None));
        assert!(out.is_empty());
    }
    assert_eq!(decode_handshake(&hello), Ok(Some(1)));
    assert_eq!(decode_handshake(b"TGX"), Err(FrameError::BadMagic));
    assert_eq!(decode_handshake(b"\x00"), Err(FrameError::BadMagic));

    // Accepted: the server echoes its version.
    let mut out = Vec::new();
    assert_eq!(server_handshake(&hello, &mut out), Ok(Some(1)));
    assert_eq!(out, b"TGAT\x00\x01");
    assert_eq!(decode_handshake_reply(&out), Ok(Some((HandshakeReply::Accepted(1), HANDSHAKE_LEN))));
    // A newer client is offered the server's version.
    assert_eq!(negotiate_version(7), Ok(PROTOCOL_VERSION));

    // Version 0 is refused with an error frame (id 0) that the client decodes.
    let mut out = Vec::new();
    let err = server_handshake(b"TGAT\x00\x00", &mut out).unwrap_err();
    assert_eq!(err, FrameError::UnsupportedVersion { version: 0 });
    let (reply, used) = decode_handshake_reply(&out).unwrap().unwrap();
    assert_eq!(used, out.len());
    let HandshakeReply::Rejected(e) = reply else { panic!() };
    assert_eq!(e.code, ErrorCode::UnsupportedVersion);
    assert_eq!(frame_request_id(&out), Some(0));
    for cut in 0..out.len() {
        assert_eq!(decode_handshake_reply(&out[..cut]), Ok(None));
    }

    // Bad magic is refused as a malformed frame.
    let mut out = Vec::new();
    assert_eq!(server_handshake(b"GET / HTTP/1.1", &mut out), Err(FrameError::BadMagic));
    let (_, Response::Error(e)) = decode_response(&out).unwrap() else { panic!() };
    assert_eq!(e.code, ErrorCode::MalformedFrame);
}

#[test]
fn codes_and_names() {
    for (i, &code) in DenyCode::ALL.iter().enumerate() {
        assert_eq!(code.as_u8() as usize, i + 1);
        assert_eq!(DenyCode::from_u8(code.as_u8()), Some(code));
        assert_eq!(code.to_string(), code.as_str());
    }
    assert_eq!(DenyCode::from_u8(0), None);
    assert_eq!(DenyCode::from_u8(14), None);
    assert_eq!(DenyCode::InsufficientPermissions.as_str(), "INSUFFICIENT_PERMISSIONS");
    assert_eq!(DenyCode::TeamRateLimited.as_str(), "TEAM_RATE_LIMITED");
    for &code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
    }
    assert_eq!(ErrorCode::from_u16(7), None);
    for b in 1..=3 {
        assert_eq!(CredentialKind::from_u8(b).unwrap().as_u8(), b);
    }
    assert_eq!(CredentialKind::from_u8(4), None);
    assert_eq!(CredentialKind::AccessToken.as_str(), "access_token");
    for t in 0..=255u8 {
        if let Some(m) = MessageType::from_u8(t) {
            assert_eq!(m.as_u8(), t);
        }
    }
}

#[test]
fn echo_verdict_is_realistic() {
    let v = echo::allow_verdict(&VerifyRequest::new("k").cost(3));
    let buf = encode_resp(1, &Response::Verdict(v.clone()));
    assert!((100..400).contains(&buf.len()), "{} bytes", buf.len());
    assert!(v.is_allow());
    assert_eq!(v.rate_limit().unwrap().remaining, echo::ECHO_RATE_LIMIT - 3);
}

/// The worked examples in SPEC.md, byte for byte.
#[test]
fn spec_examples() {
    let hex = |s: &str| -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    let verify = Request::Verify(
        VerifyRequest::new("tg_abc").ip(IpAddr::from([10, 0, 0, 7])).permissions(&[("docs", "read")]).quota("docs", 1),
    );
    let expected = hex("0000002f 01 0000002a
         0006 74675f616263
         04 0a000007
         0001 0004 646f6373 0004 72656164
         00000001
         01 0004 646f6373 00000001");
    assert_eq!(encode_req(42, &verify), expected);

    let allow = Response::Verdict(Verdict::Allow(Allow {
        kind: CredentialKind::ApiKey,
        subject: "u1".into(),
        team_id: "t1".into(),
        credential_id: "k1".into(),
        roles: vec![Cow::from("admin")].into(),
        permissions: vec![Permission {
            resource: "docs".into(),
            actions: vec![Cow::from("read"), Cow::from("write")].into(),
        }]
        .into(),
        remaining_uses: None,
        rate_limit: Some(RateLimit { limit: 100, remaining: 99, reset_ms: 60_000 }),
    }));
    let expected = hex("00000045 81 0000002a
         01 01
         0002 7531 0002 7431 0002 6b31
         0001 0005 61646d696e
         0001 0004 646f6373 0002 0004 72656164 0005 7772697465
         00
         01 00000064 00000063 000000000000ea60");
    assert_eq!(encode_resp(42, &allow), expected);

    let deny = Response::Verdict(Verdict::Deny(Deny {
        code: DenyCode::RateLimited,
        retry_after_ms: Some(1500),
        reason: "slow down".into(),
        rate_limit: Some(RateLimit { limit: 100, remaining: 0, reset_ms: 1500 }),
    }));
    let expected = hex("0000002c 81 0000002a
         02 0a
         01 00000000000005dc
         0009 736c6f7720646f776e
         01 00000064 00000000 00000000000005dc");
    assert_eq!(encode_resp(42, &deny), expected);

    // What the Python sketch in SPEC.md section 8 produces.
    let sketch = Request::Verify(VerifyRequest::new("tg_abc").permissions(&[("docs", "read")]));
    assert_eq!(
        encode_req(42, &sketch),
        hex("00000021010000002a000674675f6162630000010004646f63730004726561640000000100")
    );
    assert_eq!(encode_req(1, &Request::Ping), hex("00000005 04 00000001"));
    assert_eq!(encode_resp(1, &Response::Pong), hex("00000005 84 00000001"));
    let mut buf = Vec::new();
    encode_error(0, ErrorCode::FrameTooLarge, "too large", &mut buf);
    assert_eq!(buf, hex("00000012 ff 00000000 0003 0009 746f6f206c61726765"));
}
