//! Requests built from arbitrary data: whatever encodes must decode to the
//! same request, as one whole frame.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_protocol::{
    QuotaOp, Request, VerifyRequest, check_frame, decode_request, encode_request,
};

#[derive(Arbitrary, Debug)]
enum Input {
    Verify {
        credential: Vec<u8>,
        ip: Option<IpAddr>,
        permissions: Vec<(String, String)>,
        cost: u32,
        quota: Option<(String, u32)>,
    },
    Consume(String, String, u32),
    Release(String, String, u32),
    Ping,
}

fuzz_target!(|input: (u32, Input)| {
    let (id, input) = input;
    let pairs: Vec<(&str, &str)>;
    let req = match &input {
        Input::Verify {
            credential,
            ip,
            permissions,
            cost,
            quota,
        } => {
            pairs = permissions
                .iter()
                .map(|(r, a)| (r.as_str(), a.as_str()))
                .collect();
            let mut v = VerifyRequest::new(credential)
                .permissions(&pairs)
                .cost(*cost);
            v.ip = *ip;
            if let Some((name, amount)) = quota {
                v = v.quota(name, *amount);
            }
            Request::Verify(v)
        }
        Input::Consume(team_id, quota, amount) => Request::QuotaConsume(QuotaOp {
            team_id,
            quota,
            amount: *amount,
        }),
        Input::Release(team_id, quota, amount) => Request::QuotaRelease(QuotaOp {
            team_id,
            quota,
            amount: *amount,
        }),
        Input::Ping => Request::Ping,
    };
    let mut buf = Vec::new();
    if encode_request(id, &req, &mut buf).is_err() {
        // Over a limit: refused, and nothing half-written is left behind.
        assert!(buf.is_empty());
        return;
    }
    assert_eq!(check_frame(&buf).ok().flatten(), Some(buf.len()));
    let (got_id, got) = decode_request(&buf).expect("an encoded request decodes");
    assert_eq!(got_id, id);
    assert_eq!(got, req);
});
