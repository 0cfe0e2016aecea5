"""Unit tests of the codec against byte strings written out from protocol/SPEC.md.

The expected bytes are copied from the spec's worked examples and tables,
not produced by the Rust implementation, so these tests check the Python
codec against the document.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unittest

import support
from support import unhex

import tollgate_client as tg
from tollgate_client import (
    Allow,
    CredentialKind,
    Deny,
    DenyCode,
    ErrorCode,
    ErrorResponse,
    FieldTooLong,
    FrameTooLarge,
    Permission,
    Ping,
    Pong,
    ProtocolError,
    QuotaConsume,
    QuotaRelease,
    QuotaResult,
    RateLimit,
    VerifyRequest,
)

assert support  # imported for its sys.path setup

# SPEC.md 6.1: Verify request, id 42 (51 bytes).
SPEC_VERIFY = unhex(
    """
    00 00 00 2f                 # length = 47
    01                          # type = Verify
    00 00 00 2a                 # id = 42
    00 06 74 67 5f 61 62 63     # credential: len 6, "tg_abc"
    04 0a 00 00 07              # ip: IPv4 10.0.0.7
    00 01                       # permissions: 1 pair
       00 04 64 6f 63 73        # resource "docs"
       00 04 72 65 61 64        # action "read"
    00 00 00 01                 # cost = 1
    01                          # quota present
       00 04 64 6f 63 73        # name "docs"
       00 00 00 01              # amount = 1
    """
)

# SPEC.md 6.2: Allow verdict (73 bytes).
SPEC_ALLOW = unhex(
    """
    00 00 00 45                 # length = 69
    81                          # type = Verdict
    00 00 00 2a                 # id = 42
    01                          # ALLOW
    01                          # kind = API key
    00 02 75 31                 # subject "u1"
    00 02 74 31                 # team_id "t1"
    00 02 6b 31                 # credential_id "k1"
    00 01                       # roles: 1
       00 05 61 64 6d 69 6e     # "admin"
    00 01                       # permissions: 1 resource
       00 04 64 6f 63 73        # resource "docs"
       00 02                    # actions: 2
          00 04 72 65 61 64     # "read"
          00 05 77 72 69 74 65  # "write"
    00                          # remaining_uses absent
    01                          # rate_limit present
       00 00 00 64              # limit = 100
       00 00 00 63              # remaining = 99
       00 00 00 00 00 00 ea 60  # reset_ms = 60000
    """
)

# SPEC.md 6.3: Deny verdict (48 bytes).
SPEC_DENY = unhex(
    """
    00 00 00 2c                 # length = 44
    81                          # type = Verdict
    00 00 00 2a                 # id = 42
    02                          # DENY
    0a                          # code = 10 RATE_LIMITED
    01 00 00 00 00 00 00 05 dc  # retry_after_ms present, 1500
    00 09 73 6c 6f 77 20 64 6f 77 6e   # reason "slow down"
    01                          # rate_limit present
       00 00 00 64              # limit = 100
       00 00 00 00              # remaining = 0
       00 00 00 00 00 00 05 dc  # reset_ms = 1500
    """
)

# SPEC.md 6.4.
SPEC_PING = unhex("00 00 00 05 04 00 00 00 01")
SPEC_PONG = unhex("00 00 00 05 84 00 00 00 01")
SPEC_TOO_LARGE = unhex("00 00 00 12 ff 00 00 00 00 00 03 00 09 74 6f 6f 20 6c 61 72 67 65")

SPEC_VERIFY_REQUEST = VerifyRequest(b"tg_abc", ipaddress.ip_address("10.0.0.7"), (("docs", "read"),), 1, ("docs", 1))
SPEC_ALLOW_VERDICT = Allow(
    kind=CredentialKind.API_KEY,
    subject="u1",
    team_id="t1",
    credential_id="k1",
    roles=("admin",),
    permissions=(Permission("docs", ("read", "write")),),
    remaining_uses=None,
    rate_limit=RateLimit(100, 99, 60000),
)
SPEC_DENY_VERDICT = Deny(DenyCode.RATE_LIMITED, 1500, "slow down", RateLimit(100, 0, 1500))


def frame(msg_type: int, request_id: int, payload: bytes) -> bytes:
    """A frame built by hand from SPEC.md section 4's layout."""
    length = 5 + len(payload)
    return length.to_bytes(4, "big") + bytes([msg_type]) + request_id.to_bytes(4, "big") + payload


SPEC_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "protocol", "SPEC.md")


def spec_md_examples() -> "list[bytes]":
    """The hex blocks of SPEC.md section 6, in order: each line's leading
    two-digit hex tokens (the annotations after them are skipped)."""
    with open(SPEC_MD, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## 6. Worked examples", 1)[1].split("\n## 7.", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    out = []
    for block in blocks:
        data = bytearray()
        for line in block.splitlines():
            for token in line.split():
                if not re.fullmatch(r"[0-9a-f]{2}", token):
                    break
                data.append(int(token, 16))
        out.append(bytes(data))
    return out


class SpecExamples(unittest.TestCase):
    """Section 6, byte for byte, in both directions."""

    def test_example_lengths_match_the_spec_text(self) -> None:
        self.assertEqual((len(SPEC_VERIFY), len(SPEC_ALLOW), len(SPEC_DENY)), (51, 73, 48))

    def test_verify_request_encodes_to_the_example(self) -> None:
        self.assertEqual(tg.encode_request(42, SPEC_VERIFY_REQUEST), SPEC_VERIFY)
        # The same request from text arguments.
        req = VerifyRequest("tg_abc", "10.0.0.7", [("docs", "read")], 1, ("docs", 1))
        self.assertEqual(tg.encode_request(42, req), SPEC_VERIFY)
        # Permissions may also be given as a mapping.
        req = VerifyRequest("tg_abc", "10.0.0.7", {"docs": ["read"]}, 1, ("docs", 1))  # type: ignore[arg-type]
        self.assertEqual(tg.encode_request(42, req), SPEC_VERIFY)

    def test_verify_request_decodes_from_the_example(self) -> None:
        self.assertEqual(tg.check_frame(SPEC_VERIFY), 51)
        self.assertEqual(tg.decode_request(SPEC_VERIFY), (42, SPEC_VERIFY_REQUEST))

    def test_allow_verdict(self) -> None:
        self.assertEqual(tg.check_frame(SPEC_ALLOW), 73)
        rid, verdict = tg.decode_response(SPEC_ALLOW)
        self.assertEqual(rid, 42)
        self.assertEqual(verdict, SPEC_ALLOW_VERDICT)
        self.assertTrue(verdict.allowed)
        self.assertIsNone(verdict.code)
        assert isinstance(verdict, Allow)
        self.assertEqual(verdict.permissions_dict(), {"docs": ("read", "write")})
        self.assertEqual(tg.encode_response(42, SPEC_ALLOW_VERDICT), SPEC_ALLOW)

    def test_deny_verdict(self) -> None:
        rid, verdict = tg.decode_response(SPEC_DENY)
        self.assertEqual((rid, verdict), (42, SPEC_DENY_VERDICT))
        self.assertFalse(verdict.allowed)
        self.assertIs(verdict.code, DenyCode.RATE_LIMITED)
        self.assertEqual(tg.encode_response(42, SPEC_DENY_VERDICT), SPEC_DENY)

    def test_ping_pong_and_error(self) -> None:
        self.assertEqual(tg.encode_request(1, Ping()), SPEC_PING)
        self.assertEqual(tg.decode_request(SPEC_PING), (1, Ping()))
        self.assertEqual(tg.decode_response(SPEC_PONG), (1, Pong()))
        self.assertEqual(tg.encode_response(1, Pong()), SPEC_PONG)
        too_large = ErrorResponse(ErrorCode.FRAME_TOO_LARGE, "too large")
        self.assertEqual(tg.decode_response(SPEC_TOO_LARGE), (0, too_large))
        self.assertEqual(tg.encode_response(0, too_large), SPEC_TOO_LARGE)

    @unittest.skipUnless(os.path.exists(SPEC_MD), "protocol/SPEC.md is not next to this copy of the client")
    def test_the_examples_above_are_the_ones_in_spec_md(self) -> None:
        self.assertEqual(spec_md_examples(), [SPEC_VERIFY, SPEC_ALLOW, SPEC_DENY])

    def test_handshake_example(self) -> None:
        self.assertEqual(tg.encode_hello(), unhex("54 47 41 54 00 01"))
        self.assertEqual(tg.decode_hello(unhex("54 47 41 54 00 01")), 1)
        self.assertEqual(tg.decode_hello_reply(unhex("54 47 41 54 00 01 00")), (1, 6))


class Messages(unittest.TestCase):
    """The other messages, built from the tables of section 5."""

    def test_quota_requests(self) -> None:
        payload = unhex("00 06 74 65 61 6d 5f 31  00 09 64 6f 63 75 6d 65 6e 74 73  00 00 00 03")
        self.assertEqual(tg.encode_request(7, QuotaConsume("team_1", "documents", 3)), frame(0x02, 7, payload))
        self.assertEqual(tg.encode_request(7, QuotaRelease("team_1", "documents", 3)), frame(0x03, 7, payload))
        self.assertEqual(tg.decode_request(frame(0x03, 7, payload)), (7, QuotaRelease("team_1", "documents", 3)))

    def test_quota_result(self) -> None:
        with_limit = unhex("01  00 00 00 00 00 00 13 88  01 00 00 00 00 00 00 27 10")
        self.assertEqual(tg.decode_response(frame(0x82, 9, with_limit)), (9, QuotaResult(True, 5000, 10000)))
        unlimited = unhex("00  00 00 00 00 00 00 00 00  00")
        self.assertEqual(tg.decode_response(frame(0x82, 9, unlimited)), (9, QuotaResult(False, 0, None)))
        self.assertEqual(tg.encode_response(9, QuotaResult(True, 5000, 10000)), frame(0x82, 9, with_limit))

    def test_ip_tags(self) -> None:
        base = unhex("00 01 78")  # credential "x"
        tail = unhex("00 00  00 00 00 01  00")  # no permissions, cost 1, no quota
        cases = [
            (None, "00"),
            ("10.0.0.7", "04 0a 00 00 07"),
            ("2001:db8::1", "06 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01"),
            # SPEC.md 5.1: an IPv4-mapped IPv6 address is sent as IPv4.
            ("::ffff:10.0.0.7", "04 0a 00 00 07"),
        ]
        for ip, tag in cases:
            with self.subTest(ip=ip):
                want = frame(0x01, 3, base + unhex(tag) + tail)
                self.assertEqual(tg.encode_request(3, VerifyRequest("x", ip)), want)
                if ip is not None:
                    self.assertEqual(tg.encode_request(3, VerifyRequest("x", ipaddress.ip_address(ip))), want)

    def test_binary_credentials_are_sent_as_is(self) -> None:
        cred = b"\xff\x00\xfe"
        encoded = tg.encode_request(5, VerifyRequest(cred))
        self.assertEqual(encoded[9:14], unhex("00 03 ff 00 fe"))
        rid, req = tg.decode_request(encoded)
        assert isinstance(req, VerifyRequest)
        self.assertEqual((rid, req.credential), (5, cred))

    def test_every_deny_and_error_code_round_trips(self) -> None:
        for code in DenyCode:
            payload = bytes([0x02, code]) + unhex("00  00 00  00")
            self.assertEqual(tg.decode_response(frame(0x81, 1, payload)), (1, Deny(code, None, "", None)))
        for code in ErrorCode:
            payload = code.to_bytes(2, "big") + unhex("00 05 68 c3 a9 6c 6c")  # "héll"
            self.assertEqual(tg.decode_response(frame(0xFF, 1, payload)), (1, ErrorResponse(code, "héll")))

    def test_allow_with_usage_cap_and_no_rate_limit(self) -> None:
        payload = unhex(
            """
            01 03                       # ALLOW, JWT
            00 00  00 00  00 03 6a 74 69  # subject "", team "", jti "jti"
            00 00  00 00                # no roles, no permissions
            01 00 00 00 00 00 00 00 29  # remaining_uses 41
            00                          # no rate limit
            """
        )
        want = Allow(CredentialKind.JWT, "", "", "jti", (), (), 41, None)
        self.assertEqual(tg.decode_response(frame(0x81, 2, payload)), (2, want))
        self.assertEqual(tg.encode_response(2, want), frame(0x81, 2, payload))


class Framing(unittest.TestCase):
    """Section 4: the length field, partial frames, limits."""

    def test_partial_frames_need_more_bytes(self) -> None:
        for n in range(len(SPEC_VERIFY)):
            self.assertIsNone(tg.check_frame(SPEC_VERIFY[:n]), n)
        # Bytes after the frame belong to the next one.
        self.assertEqual(tg.check_frame(SPEC_VERIFY + SPEC_PING[:3]), 51)
        with self.assertRaises(ValueError):
            tg.decode_response(SPEC_ALLOW[:-1])

    def test_frame_buffer_splits_a_stream(self) -> None:
        stream = SPEC_ALLOW + SPEC_PONG + SPEC_DENY + SPEC_PONG[:7]
        buf = tg.FrameBuffer()
        got = []
        for i in range(0, len(stream), 5):  # arrives 5 bytes at a time
            buf.feed(stream[i : i + 5])
            while True:
                r = buf.next_response()
                if r is None:
                    break
                got.append(r)
        self.assertEqual(got, [(42, SPEC_ALLOW_VERDICT), (1, Pong()), (42, SPEC_DENY_VERDICT)])
        self.assertEqual(buf.pending(), SPEC_PONG[:7])

    def test_length_over_65536_is_rejected_from_the_prefix_alone(self) -> None:
        self.assertIsNone(tg.check_frame(unhex("00 01 00 00")))  # 65536: fine, wait for the body
        for prefix in ("00 01 00 01", "ff ff ff ff"):
            with self.assertRaises(FrameTooLarge) as cm:
                tg.check_frame(unhex(prefix))
            self.assertEqual(cm.exception.length, int(prefix.replace(" ", ""), 16))
        buf = tg.FrameBuffer(unhex("00 01 00 01"))
        with self.assertRaises(FrameTooLarge):
            buf.next_frame()

    def test_length_under_5_is_malformed(self) -> None:
        for length in range(5):
            with self.assertRaises(ProtocolError):
                tg.check_frame(length.to_bytes(4, "big") + bytes(8))
        self.assertIsNone(tg.frame_request_id(unhex("00 00 00 04 01 00 00 00 07")))
        self.assertEqual(tg.frame_request_id(unhex("00 00 00 08 01 00 00 00 07")), 7)

    def test_encoder_limits(self) -> None:
        # Credential: 8192 bytes fine, 8193 refused.
        tg.encode_request(1, VerifyRequest(b"x" * 8192))
        with self.assertRaises(FieldTooLong):
            tg.encode_request(1, VerifyRequest(b"x" * 8193))
        # Strings: 1024 bytes (not characters) fine, 1025 refused.
        tg.encode_request(1, VerifyRequest("k", permissions=(("r" * 1024, "a"),)))
        with self.assertRaises(FieldTooLong):
            tg.encode_request(1, VerifyRequest("k", permissions=(("é" * 513, "a"),)))
        # Lists: 256 items fine, 257 refused.
        tg.encode_request(1, VerifyRequest("k", permissions=(("r", "a"),) * 256))
        with self.assertRaises(FieldTooLong):
            tg.encode_request(1, VerifyRequest("k", permissions=(("r", "a"),) * 257))
        # Fields within their limits can still add up to a frame over 65536.
        big = tuple(("r" * 1024, "a" * 1024) for _ in range(40))
        with self.assertRaises(FrameTooLarge) as cm:
            tg.encode_request(1, VerifyRequest("k", permissions=big))
        self.assertGreater(cm.exception.length, 65536)
        # Request id 0 is reserved; numbers must fit their fields.
        with self.assertRaises(ValueError):
            tg.encode_request(0, Ping())
        with self.assertRaises(ValueError):
            tg.encode_request(2**32, Ping())
        with self.assertRaises(ValueError):
            tg.encode_request(1, VerifyRequest("k", cost=2**32))
        with self.assertRaises(ValueError):
            tg.encode_request(1, VerifyRequest("k", ip="not an address"))

    def test_a_frame_of_exactly_65536_is_allowed(self) -> None:
        # 5 header + 2 + 8192 credential + 1 ip + 2 count + pairs + 4 cost + 1 quota = 65536
        room = 65536 - (5 + 2 + 8192 + 1 + 2 + 4 + 1)
        pairs = []
        while room > 0:
            take = min(room - 4, 2048)
            pairs.append(("r" * (take // 2), "a" * (take - take // 2)))
            room -= take + 4
        self.assertEqual(room, 0)
        encoded = tg.encode_request(1, VerifyRequest(b"x" * 8192, permissions=tuple(pairs)))
        self.assertEqual(encoded[:4], unhex("00 01 00 00"))
        self.assertEqual(tg.check_frame(encoded), 65540)


class Malformed(unittest.TestCase):
    """What SPEC.md calls malformed must raise ProtocolError, never decode."""

    def assert_malformed(self, data: bytes, field: str = "") -> None:
        with self.assertRaises(ProtocolError) as cm:
            tg.decode_response(data)
        if field:
            self.assertEqual(cm.exception.field, field, cm.exception)

    def test_truncated_fields(self) -> None:
        # Shorten the payload of the spec examples byte by byte, fixing the length field.
        for example in (SPEC_ALLOW, SPEC_DENY, SPEC_TOO_LARGE):
            for cut in range(1, len(example) - 9):
                body = example[4 : len(example) - cut]
                with self.subTest(example=example[4], cut=cut):
                    self.assert_malformed(len(body).to_bytes(4, "big") + body)

    def test_trailing_bytes(self) -> None:
        body = SPEC_ALLOW[4:] + b"\x00"
        self.assert_malformed(len(body).to_bytes(4, "big") + body, "payload")
        self.assert_malformed(frame(0x84, 1, b"\x00"), "payload")

    def test_unknown_and_wrong_direction_types(self) -> None:
        for t in (0x00, 0x01, 0x04, 0x05, 0x7F, 0x80, 0x83, 0xFE):
            self.assert_malformed(frame(t, 1, b""), "type")
        with self.assertRaises(ProtocolError):
            tg.decode_request(SPEC_PONG)

    def test_invalid_values(self) -> None:
        deny = SPEC_DENY
        cases = {
            "verdict": deny[:9] + b"\x03" + deny[10:],
            "deny code": deny[:10] + b"\x0e" + deny[11:],
            "retry after flag": deny[:11] + b"\x02" + deny[12:],
            "rate limit flag": deny[:-17] + b"\x02" + deny[-16:],
            "credential kind": SPEC_ALLOW[:10] + b"\x04" + SPEC_ALLOW[11:],
            "error code": SPEC_TOO_LARGE[:9] + b"\x00\x07" + SPEC_TOO_LARGE[11:],
            "quota ok": frame(0x82, 1, unhex("02 00 00 00 00 00 00 00 00 00")),
        }
        for field, data in cases.items():
            with self.subTest(field=field):
                self.assert_malformed(data, field)
        zero_code = SPEC_DENY[:10] + b"\x00" + SPEC_DENY[11:]
        self.assert_malformed(zero_code, "deny code")

    def test_invalid_utf8(self) -> None:
        bad = SPEC_ALLOW[:13] + b"\xff" + SPEC_ALLOW[14:]  # subject "u1" -> "\xff1"
        self.assert_malformed(bad, "subject")
        # ... but a non-UTF-8 credential is fine on the request side (5.1).
        self.assertEqual(tg.decode_request(tg.encode_request(1, VerifyRequest(b"\xff")))[1].credential, b"\xff")

    def test_over_limit_lengths(self) -> None:
        # roles: 257 items
        payload = unhex("01 01 00 00 00 00 00 00  01 01") + bytes(2 * 257)
        self.assert_malformed(frame(0x81, 1, payload), "roles")
        # reason: 1025 bytes
        payload = unhex("02 01 00  04 01") + b"x" * 1025 + b"\x00"
        self.assert_malformed(frame(0x81, 1, payload), "reason")

    def test_bad_hello_replies(self) -> None:
        self.assertIsNone(tg.decode_hello_reply(b""))
        self.assertIsNone(tg.decode_hello_reply(b"TGA"))
        self.assertIsNone(tg.decode_hello_reply(SPEC_TOO_LARGE[:10]))
        with self.assertRaises(ProtocolError):
            tg.decode_hello(b"HTTP/1.1")
        with self.assertRaises(ProtocolError):
            tg.decode_hello_reply(b"TGX")
        # An error frame is a refusal; anything else framed is not an answer to a hello.
        refusal = frame(0xFF, 0, unhex("00 02 00 02 6e 6f"))
        self.assertEqual(tg.decode_hello_reply(refusal), (ErrorResponse(ErrorCode.UNSUPPORTED_VERSION, "no"), 15))
        with self.assertRaises(ProtocolError):
            tg.decode_hello_reply(SPEC_PONG)


if __name__ == "__main__":
    unittest.main()
