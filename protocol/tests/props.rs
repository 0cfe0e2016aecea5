//! Property tests: no input panics the decoders, and encode→decode is the
//! identity on every message that fits in a frame.

use std::borrow::Cow;
use std::net::IpAddr;

use proptest::prelude::*;
use tollgate_protocol::*;

/// Owned storage for a verify request, since requests only borrow.
#[derive(Debug, Clone)]
struct OwnedVerify {
    credential: Vec<u8>,
    ip: Option<IpAddr>,
    permissions: Vec<(String, String)>,
    cost: u32,
    quota: Option<(String, u32)>,
}

#[derive(Debug, Clone)]
enum OwnedRequest {
    Verify(OwnedVerify),
    Consume(String, String, u32),
    Release(String, String, u32),
    Ping,
}

fn short_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_:.-]{0,24}", any::<String>().prop_map(|s| s.chars().take(40).collect())]
}

fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Some(IpAddr::from(b))),
    ]
}

fn owned_request() -> impl Strategy<Value = OwnedRequest> {
    let verify = (
        prop::collection::vec(any::<u8>(), 0..600),
        ip(),
        prop::collection::vec((short_string(), short_string()), 0..8),
        any::<u32>(),
        prop::option::of((short_string(), any::<u32>())),
    )
        .prop_map(|(credential, ip, permissions, cost, quota)| {
            OwnedRequest::Verify(OwnedVerify { credential, ip, permissions, cost, quota })
        });
    prop_oneof![
        4 => verify,
        1 => (short_string(), short_string(), any::<u32>())
            .prop_map(|(t, q, n)| OwnedRequest::Consume(t, q, n)),
        1 => (short_string(), short_string(), any::<u32>())
            .prop_map(|(t, q, n)| OwnedRequest::Release(t, q, n)),
        1 => Just(OwnedRequest::Ping),
    ]
}

fn rate_limit() -> impl Strategy<Value = Option<RateLimit>> {
    prop::option::of((any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(limit, remaining, reset_ms)| RateLimit {
        limit,
        remaining,
        reset_ms,
    }))
}

fn str_list() -> impl Strategy<Value = List<'static, Cow<'static, str>>> {
    prop::collection::vec(short_string().prop_map(Cow::Owned), 0..6).prop_map(List::Owned)
}

fn response() -> impl Strategy<Value = Response<'static>> {
    let allow = (
        1..=3u8,
        (short_string(), short_string(), short_string()),
        str_list(),
        prop::collection::vec((short_string(), str_list()), 0..5),
        prop::option::of(any::<u64>()),
        rate_limit(),
    )
        .prop_map(|(kind, (subject, team_id, credential_id), roles, perms, remaining_uses, rate_limit)| {
            Verdict::Allow(Allow {
                kind: CredentialKind::from_u8(kind).unwrap(),
                subject: subject.into(),
                team_id: team_id.into(),
                credential_id: credential_id.into(),
                roles,
                permissions: List::Owned(
                    perms
                        .into_iter()
                        .map(|(resource, actions)| Permission { resource: resource.into(), actions })
                        .collect(),
                ),
                remaining_uses,
                rate_limit,
            })
        });
    let deny = (prop::sample::select(DenyCode::ALL), prop::option::of(any::<u64>()), short_string(), rate_limit())
        .prop_map(|(code, retry_after_ms, reason, rate_limit)| {
            Verdict::Deny(Deny { code, retry_after_ms, reason: reason.into(), rate_limit })
        });
    prop_oneof![
        3 => prop_oneof![allow, deny].prop_map(Response::Verdict),
        1 => (any::<bool>(), any::<u64>(), prop::option::of(any::<u64>()))
            .prop_map(|(ok, used, limit)| Response::QuotaResult(QuotaResult { ok, used, limit })),
        1 => Just(Response::Pong),
        1 => (prop::sample::select(ErrorCode::ALL), short_string())
            .prop_map(|(code, m)| Response::Error(ErrorResponse { code, message: m.into() })),
    ]
}

/// Encodes a generated request (borrowing from its owned storage) into
/// `out` and checks that decoding gives it back.
fn encode_owned(id: u32, req: &OwnedRequest, out: &mut Vec<u8>) {
    let pairs: Vec<(&str, &str)>;
    let request = match req {
        OwnedRequest::Verify(v) => {
            pairs = v.permissions.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            Request::Verify(VerifyRequest {
                credential: &v.credential,
                ip: v.ip,
                permissions: PermissionList::new(&pairs),
                cost: v.cost,
                quota: v.quota.as_ref().map(|(name, amount)| QuotaUse { name, amount: *amount }),
            })
        }
        OwnedRequest::Consume(t, q, n) => Request::QuotaConsume(QuotaOp { team_id: t, quota: q, amount: *n }),
        OwnedRequest::Release(t, q, n) => Request::QuotaRelease(QuotaOp { team_id: t, quota: q, amount: *n }),
        OwnedRequest::Ping => Request::Ping,
    };
    encode_request(id, &request, out).unwrap();
    let (got_id, decoded) = decode_request(out).unwrap();
    assert_eq!(got_id, id);
    assert_eq!(decoded, request);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = check_frame(&bytes);
        let _ = frame_request_id(&bytes);
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
        let _ = decode_handshake(&bytes);
        let _ = decode_handshake_reply(&bytes);
        let mut out = Vec::new();
        let _ = server_handshake(&bytes, &mut out);
        if let Ok((_, Request::Verify(v))) = decode_request(&bytes) {
            // Iterating a decoded wire view must agree with its length.
            prop_assert_eq!(v.permissions.iter().count(), v.permissions.len());
        }
    }

    /// Random bytes behind a valid header reach deep into the payload parsers.
    #[test]
    fn arbitrary_payloads_never_panic(
        msg_type in prop::sample::select(&[0x01u8, 0x02, 0x03, 0x04, 0x81, 0x82, 0x84, 0xff][..]),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut buf = ((payload.len() + 5) as u32).to_be_bytes().to_vec();
        buf.push(msg_type);
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&payload);
        if let Ok((id, req)) = decode_request(&buf) {
            prop_assert_eq!(id, 7);
            // Whatever decodes re-encodes to the same bytes.
            let mut again = Vec::new();
            encode_request(id, &req, &mut again).unwrap();
            prop_assert_eq!(again, buf.clone());
        }
        if let Ok((_, resp)) = decode_response(&buf) {
            let mut again = Vec::new();
            encode_response(7, &resp, &mut again).unwrap();
            prop_assert_eq!(again, buf);
        }
    }

    #[test]
    fn requests_round_trip(id in any::<u32>(), req in owned_request()) {
        let mut out = Vec::new();
        encode_owned(id, &req, &mut out);
        prop_assert_eq!(check_frame(&out), Ok(Some(out.len())));
    }

    #[test]
    fn responses_round_trip(id in any::<u32>(), resp in response()) {
        let mut out = Vec::new();
        encode_response(id, &resp, &mut out).unwrap();
        prop_assert_eq!(check_frame(&out), Ok(Some(out.len())));
        let (got_id, got) = decode_response(&out).unwrap();
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(&got, &resp);
        // Every strict prefix is just incomplete.
        let cut = out.len() / 2;
        prop_assert_eq!(decode_response(&out[..cut]).unwrap_err(), FrameError::Incomplete);
    }
}
