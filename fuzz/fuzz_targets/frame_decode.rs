//! Arbitrary bytes through everything a server or client does with input:
//! the handshake, `check_frame`, and both decoders. Nothing may panic, and a
//! frame `check_frame` accepts must be exactly as long as it says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_protocol::{
    check_frame, decode_handshake_reply, decode_request, decode_response, frame_request_id,
    server_handshake,
};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = server_handshake(data, &mut out);
    let _ = decode_handshake_reply(data);
    // Walk the buffer the way the sidecar does after each read.
    let mut rest = data;
    while let Ok(Some(len)) = check_frame(rest) {
        assert!(len <= rest.len());
        let frame = &rest[..len];
        let _ = frame_request_id(frame);
        if let Ok((_, req)) = decode_request(frame) {
            // Whatever decodes can be iterated in full (the permission view
            // re-parses the wire bytes lazily).
            if let tollgate_protocol::Request::Verify(v) = req {
                assert_eq!(v.permissions.iter().count(), v.permissions.len());
            }
        }
        let _ = decode_response(frame);
        rest = &rest[len..];
    }
});
