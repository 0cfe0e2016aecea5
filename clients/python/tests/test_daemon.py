"""Integration tests against a real tollgate daemon.

They run when ``TOLLGATE_SOCKET`` names the socket of a running daemon and
are skipped otherwise. ``tests/it/python_client.rs`` in the Rust workspace
starts the daemons, creates the team, users, keys and tokens these tests
need, passes them in ``TOLLGATE_TEST_*`` variables, and runs this suite.
With ``TOLLGATE_SOCKET`` set, a missing variable is an error, not a skip.

They mirror the Rust client's tests (tests/it/sidecar.rs): strict-mode
pipelining with out-of-order answers, verdict fields and deny codes, quotas,
and the error tests (oversized, truncated and undecodable frames, a wrong
handshake, garbage, a connection cap, shutdown) while a well-behaved
connection keeps being served.

Environment:

=================================  ===========================================
``TOLLGATE_SOCKET``                main daemon, strict durability
``TOLLGATE_BUSY_SOCKET``           daemon with ``max_connections = 1``
``TOLLGATE_SHUTDOWN_SOCKET``       daemon stopped when the test creates...
``TOLLGATE_SHUTDOWN_FILE``         ...this file
``TOLLGATE_SHUTDOWN_KEY``          a counted key on that daemon
``TOLLGATE_TEST_TEAM`` / ``_USER`` the Pro team and its Administrator
``TOLLGATE_TEST_KEY`` / ``_KEY_ID`` key with ``documents: [read, write]``
``TOLLGATE_TEST_COUNTED_KEY``      key with 1,000,000 remaining uses
``TOLLGATE_TEST_USES_KEY``         key with exactly 1000 remaining uses
``TOLLGATE_TEST_IP_KEY``           key allowed from 10.0.0.0/8 and 2001:db8::/32
``TOLLGATE_TEST_RATE_KEY``         key limited to 3 requests a minute
``TOLLGATE_TEST_DISABLED_KEY``     disabled key
``TOLLGATE_TEST_EXPIRED_KEY``      expired key
``TOLLGATE_TEST_DELETED_KEY``      deleted key
``TOLLGATE_TEST_TOKEN`` / ``_ID``  access token of the user
``TOLLGATE_TEST_REVOKED_TOKEN``    revoked access token
``TOLLGATE_TEST_JWT``              JWT of the user
``TOLLGATE_TEST_FREE_KEY``         key of a Free-tier team (2 requests a minute)
``TOLLGATE_TEST_QUOTA_TEAM``       Pro team with its documents quota unused (5000)
=================================  ===========================================
"""

from __future__ import annotations

import collections
import ipaddress
import os
import socket
import threading
import time
import unittest
from typing import Dict, List, Optional, Tuple

import support

import tollgate_client as tg
from tollgate_client import (
    Allow,
    Client,
    ConnectionClosed,
    CredentialKind,
    Deny,
    DenyCode,
    ErrorCode,
    ErrorResponse,
    HandshakeRejected,
    Permission,
    Ping,
    Pong,
    QuotaConsume,
    QuotaResult,
    VerifyRequest,
)

assert support

SOCKET = os.environ.get("TOLLGATE_SOCKET")
LIMIT = 5.0  # seconds any single wait may take


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise AssertionError(f"TOLLGATE_SOCKET is set but {name} is not")
    return value


def connect(path: Optional[str] = None) -> Client:
    return Client(path or SOCKET, timeout=10.0)  # type: ignore[arg-type]


def raw(path: Optional[str] = None, hello: bool = True) -> socket.socket:
    """A raw connection to the daemon that has done the handshake."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(LIMIT)
        s.connect(path or SOCKET)  # type: ignore[arg-type]
        if hello:
            version, rest = tg.handshake(s)
            assert version == 1 and len(rest) == 0, (version, rest.pending())
    except BaseException:
        s.close()
        raise
    return s


def read_until_close(s: socket.socket, limit: float = LIMIT) -> Tuple[List[Tuple[int, tg.Response]], bool]:
    """Reads until the server closes (or ``limit`` passes). Returns the whole
    response frames seen, decoded (so they must be valid), and whether it closed."""
    buf = tg.FrameBuffer()
    frames: List[Tuple[int, tg.Response]] = []
    deadline = time.monotonic() + limit
    closed = False
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        buf.feed(data)
        while True:
            r = buf.next_response()
            if r is None:
                break
            frames.append(r)
    assert len(buf) == 0, f"a partial frame was left: {buf.pending()!r}"
    return frames, closed


def error_code(response: tg.Response) -> Optional[ErrorCode]:
    return response.code if isinstance(response, ErrorResponse) else None


GARBAGE_ERRORS = (ErrorCode.MALFORMED_FRAME, ErrorCode.FRAME_TOO_LARGE, ErrorCode.UNKNOWN_MESSAGE_TYPE)


def xorshift(seed: int):
    while True:
        seed ^= (seed << 13) & 0xFFFFFFFFFFFFFFFF
        seed ^= seed >> 7
        seed ^= (seed << 17) & 0xFFFFFFFFFFFFFFFF
        yield seed & 0xFF


class DaemonTest(unittest.TestCase):
    """Connections opened through these helpers are closed after the test."""

    def raw(self, path: Optional[str] = None, hello: bool = True) -> socket.socket:
        s = raw(path, hello)
        self.addCleanup(s.close)
        return s

    def connect(self, path: Optional[str] = None) -> Client:
        c = connect(path)
        self.addCleanup(c.close)
        return c


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class Verdicts(DaemonTest):
    def setUp(self) -> None:
        self.c = self.connect()
        self.addCleanup(self.c.close)

    def test_allow_carries_every_field(self) -> None:
        v = self.c.verify(env("TOLLGATE_TEST_KEY"), permissions=[("documents", "write")])
        self.assertIsInstance(v, Allow)
        assert isinstance(v, Allow)
        self.assertEqual(v.kind, CredentialKind.API_KEY)
        self.assertEqual(v.subject, env("TOLLGATE_TEST_USER"))
        self.assertEqual(v.team_id, env("TOLLGATE_TEST_TEAM"))
        self.assertEqual(v.credential_id, env("TOLLGATE_TEST_KEY_ID"))
        self.assertEqual(v.roles, ("Administrator",))
        self.assertEqual(v.permissions, (Permission("documents", ("read", "write")),))
        self.assertIsNone(v.remaining_uses, "uncapped key")
        self.assertIsNone(v.rate_limit, "neither the key nor the Pro team (lifted) is rate-limited")
        # A mapping of permissions works the same.
        self.assertTrue(self.c.verify(env("TOLLGATE_TEST_KEY"), permissions={"documents": ["read", "write"]}).allowed)

    def test_remaining_uses_count_down(self) -> None:
        key = env("TOLLGATE_TEST_COUNTED_KEY")
        first, second = self.c.verify(key), self.c.verify(key)
        assert isinstance(first, Allow) and isinstance(second, Allow), (first, second)
        assert first.remaining_uses is not None and second.remaining_uses is not None
        self.assertLess(second.remaining_uses, first.remaining_uses)
        self.assertLess(first.remaining_uses, 1_000_000)

    def test_access_token_and_jwt(self) -> None:
        v = self.c.verify(env("TOLLGATE_TEST_TOKEN"), permissions=[("documents", "read")])
        assert isinstance(v, Allow), v
        self.assertEqual((v.kind, v.credential_id), (CredentialKind.ACCESS_TOKEN, env("TOLLGATE_TEST_TOKEN_ID")))
        user, team = env("TOLLGATE_TEST_USER"), env("TOLLGATE_TEST_TEAM")
        self.assertEqual((v.subject, v.team_id, v.roles), (user, team, ("Administrator",)))
        self.assertIn(Permission("*", ("*",)), v.permissions)
        v = self.c.verify(env("TOLLGATE_TEST_JWT"))
        assert isinstance(v, Allow), v
        self.assertEqual((v.kind, v.subject, v.team_id), (CredentialKind.JWT, user, team))
        self.assertTrue(v.credential_id, "the jti")

    def test_deny_codes(self) -> None:
        key = env("TOLLGATE_TEST_KEY")
        jwt = env("TOLLGATE_TEST_JWT")
        # Flip a character in the middle of the signature segment.
        head, sig = jwt.rsplit(".", 1)
        mid = len(sig) // 2
        bad_jwt = f"{head}.{sig[:mid]}{'A' if sig[mid] != 'A' else 'B'}{sig[mid + 1:]}"
        cases = [
            ("garbage", VerifyRequest("not-a-key"), DenyCode.MALFORMED),
            ("not utf-8", VerifyRequest(b"\xff\xfe"), DenyCode.MALFORMED),
            ("empty", VerifyRequest(b""), DenyCode.MALFORMED),
            ("cost 0", VerifyRequest(key, cost=0), DenyCode.MALFORMED),
            ("unknown quota", VerifyRequest(key, quota=("seats", 1)), DenyCode.MALFORMED),
            ("deleted key", VerifyRequest(env("TOLLGATE_TEST_DELETED_KEY")), DenyCode.NOT_FOUND),
            ("tampered jwt", VerifyRequest(bad_jwt), DenyCode.BAD_SIGNATURE),
            ("expired key", VerifyRequest(env("TOLLGATE_TEST_EXPIRED_KEY")), DenyCode.EXPIRED),
            ("revoked token", VerifyRequest(env("TOLLGATE_TEST_REVOKED_TOKEN")), DenyCode.REVOKED),
            ("disabled key", VerifyRequest(env("TOLLGATE_TEST_DISABLED_KEY")), DenyCode.DISABLED),
            ("ip outside", VerifyRequest(env("TOLLGATE_TEST_IP_KEY"), ip="192.0.2.1"), DenyCode.IP_NOT_ALLOWED),
            ("no ip", VerifyRequest(env("TOLLGATE_TEST_IP_KEY")), DenyCode.IP_NOT_ALLOWED),
            ("permission", VerifyRequest(key, permissions=(("billing", "read"),)), DenyCode.INSUFFICIENT_PERMISSIONS),
            ("quota", VerifyRequest(key, quota=("documents", 1_000_000)), DenyCode.QUOTA_EXCEEDED),
        ]
        for label, req, code in cases:
            with self.subTest(label):
                v = self.c.verify(req.credential, req.ip, req.permissions, req.cost, req.quota)
                self.assertIsInstance(v, Deny)
                assert isinstance(v, Deny)
                self.assertIs(v.code, code)
                self.assertFalse(v.allowed)
                self.assertIsInstance(v.reason, str)
                self.assertIsNone(v.retry_after_ms)
        # The same through one pipelined batch, matched by id.
        got = self.c.verify_many([req for _, req, _ in cases])
        self.assertEqual([v.code for v in got], [code for _, _, code in cases])

    def test_ip_allowlist(self) -> None:
        key = env("TOLLGATE_TEST_IP_KEY")
        for ip in ("10.0.0.7", ipaddress.ip_address("10.200.0.1"), "2001:db8::1", "::ffff:10.1.2.3"):
            with self.subTest(ip=str(ip)):
                self.assertTrue(self.c.verify(key, ip=ip).allowed)
        self.assertIs(self.c.verify(key, ip="2001:db9::1").code, DenyCode.IP_NOT_ALLOWED)
        # A mapped address sent as IPv6 anyway (tag 6) is matched as the IPv4 address.
        cred = key.encode()
        mapped = ipaddress.IPv6Address("::ffff:10.1.2.3").packed
        payload = len(cred).to_bytes(2, "big") + cred + b"\x06" + mapped + bytes.fromhex("0000 00000001 00")
        rid = self.c.send_frame(tg.MessageType.VERIFY, payload)
        got_id, v = self.c.recv()
        self.assertEqual(got_id, rid)
        self.assertIsInstance(v, Allow)
        self.assertIs(self.c.verify(key, ip="::ffff:192.0.2.1").code, DenyCode.IP_NOT_ALLOWED)

    def test_rate_limited_key(self) -> None:
        key = env("TOLLGATE_TEST_RATE_KEY")
        allows = [self.c.verify(key) for _ in range(3)]
        remaining = []
        for v in allows:
            assert isinstance(v, Allow) and v.rate_limit is not None, v
            self.assertEqual(v.rate_limit.limit, 3)
            remaining.append(v.rate_limit.remaining)
        self.assertEqual(remaining, sorted(remaining, reverse=True))
        self.assertEqual(remaining[-1], 0)
        v = self.c.verify(key)
        assert isinstance(v, Deny), v
        self.assertIs(v.code, DenyCode.RATE_LIMITED)
        assert v.retry_after_ms is not None and v.rate_limit is not None
        self.assertGreater(v.retry_after_ms, 0)
        self.assertLessEqual(v.retry_after_ms, 60_000)
        self.assertEqual((v.rate_limit.limit, v.rate_limit.remaining), (3, 0))
        self.assertGreater(v.rate_limit.reset_ms, 0)

    def test_team_rate_limited(self) -> None:
        key = env("TOLLGATE_TEST_FREE_KEY")
        # The Free tier allows 2 a minute per team; a minute boundary may
        # reset the window once while this runs.
        verdicts = []
        for _ in range(6):
            verdicts.append(self.c.verify(key))
            if not verdicts[-1].allowed:
                break
        first = verdicts[0]
        assert isinstance(first, Allow) and first.rate_limit is not None, first
        self.assertEqual(first.rate_limit.limit, 2)
        deny = verdicts[-1]
        assert isinstance(deny, Deny), verdicts
        self.assertIs(deny.code, DenyCode.TEAM_RATE_LIMITED)
        assert deny.retry_after_ms is not None and deny.rate_limit is not None
        self.assertTrue(0 < deny.retry_after_ms <= 60_000, deny)
        self.assertEqual(deny.rate_limit.remaining, 0)

    def test_quota_consumed_with_an_allow(self) -> None:
        key = env("TOLLGATE_TEST_KEY")
        self.assertTrue(self.c.verify(key, quota=("documents", 1)).allowed)
        self.assertIs(self.c.verify(key, quota=("documents", 5000)).code, DenyCode.QUOTA_EXCEEDED)


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class Quotas(DaemonTest):
    def test_consume_and_release(self) -> None:
        team = env("TOLLGATE_TEST_QUOTA_TEAM")
        with self.connect() as c:
            self.assertEqual(c.consume_quota(team, "documents", 4990), QuotaResult(True, 4990, 5000))
            r = c.consume_quota(team, "documents", 11)
            self.assertEqual((r.ok, r.used), (False, 4990), "refused past the limit, nothing consumed")
            self.assertEqual(c.release_quota(team, "documents", 90), QuotaResult(True, 4900, 5000))
            self.assertEqual(c.release_quota(team, "documents", 1_000_000).used, 0, "never below zero")
            # SPEC.md 7.1: an unknown team or quota is ok=false, used=0, limit=0.
            self.assertEqual(c.consume_quota("team_nope", "documents", 1), QuotaResult(False, 0, 0))
            self.assertEqual(c.consume_quota(team, "seats", 1), QuotaResult(False, 0, 0))
            self.assertEqual(c.release_quota("team_nope", "documents", 1), QuotaResult(False, 0, 0))
            c.ping()


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class Pipelining(DaemonTest):
    def test_strict_mode_answers_come_out_of_order_and_match_by_id(self) -> None:
        # A counted key: in strict durability its allows wait for the disk,
        # while garbage is denied at once. All 200 are sent in one write.
        good = env("TOLLGATE_TEST_COUNTED_KEY")
        with self.connect() as c:
            reqs = [VerifyRequest(good if i % 2 == 0 else "not-a-key") for i in range(200)]
            ids = c.send_many(reqs)
            index = {rid: i for i, rid in enumerate(ids)}
            order: List[int] = []
            seen: Dict[int, tg.Response] = {}
            while len(seen) < len(reqs):
                rid, resp = c.recv()
                self.assertIn(rid, index, "an answer to a request never sent")
                self.assertNotIn(rid, seen, f"second answer to {rid}")
                seen[rid] = resp
                order.append(index[rid])
            for rid, i in index.items():
                if i % 2 == 0:
                    self.assertIsInstance(seen[rid], Allow, i)
                else:
                    self.assertIs(seen[rid].code, DenyCode.MALFORMED, i)  # type: ignore[union-attr]
            self.assertNotEqual(order, sorted(order), "denies are not held back by the flush, so they overtake")
            self.assertEqual(order[0] % 2, 1, f"the first answer is an immediate deny: {order[:10]}")
            self.assertEqual(c.pending, 0)

    def test_verify_many_returns_mixed_verdicts_in_request_order(self) -> None:
        key, counted, ip_key = env("TOLLGATE_TEST_KEY"), env("TOLLGATE_TEST_COUNTED_KEY"), env("TOLLGATE_TEST_IP_KEY")
        kinds = [
            (VerifyRequest(key), env("TOLLGATE_TEST_KEY_ID")),
            (VerifyRequest(counted), "counted"),
            (VerifyRequest("tg_nope"), DenyCode.MALFORMED),
            (VerifyRequest(ip_key), DenyCode.IP_NOT_ALLOWED),
            (VerifyRequest(key, permissions=(("billing", "read"),)), DenyCode.INSUFFICIENT_PERMISSIONS),
            (VerifyRequest(ip_key, ip="10.1.1.1"), "ip"),
        ]
        plan = [kinds[(i * 7 + i // 5) % len(kinds)] for i in range(1000)]
        with self.connect() as c:
            for window in (128, 7, 1000):
                with self.subTest(window=window):
                    got = c.verify_many([req for req, _ in plan], window=window)
                    self.assertEqual(len(got), len(plan))
                    for i, ((_, want), v) in enumerate(zip(plan, got)):
                        if isinstance(want, DenyCode):
                            self.assertIs(v.code, want, i)
                        elif want in ("counted", "ip"):
                            self.assertIsInstance(v, Allow, i)
                        else:
                            self.assertEqual(getattr(v, "credential_id", None), want, i)
            c.ping()

    def test_mixed_request_types_in_one_write(self) -> None:
        with self.connect() as c:
            ids = c.send_many(
                [Ping(), VerifyRequest(env("TOLLGATE_TEST_KEY")), QuotaConsume("team_nope", "documents", 1), Ping()]
            )
            got = dict(c.recv() for _ in ids)
            self.assertEqual(got[ids[0]], Pong())
            self.assertIsInstance(got[ids[1]], Allow)
            self.assertEqual(got[ids[2]], QuotaResult(False, 0, 0))
            self.assertEqual(got[ids[3]], Pong())

    def test_eight_connections_admit_exactly_the_remaining_uses(self) -> None:
        key = env("TOLLGATE_TEST_USES_KEY")  # 1000 uses left
        tallies: List[collections.Counter] = []
        failures: List[BaseException] = []

        def work() -> None:
            try:
                with self.connect() as c:
                    tallies.append(collections.Counter(v.code for v in c.verify_many([key] * 500)))
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        total = sum(tallies, collections.Counter())
        self.assertEqual(total, {None: 1000, DenyCode.USAGE_EXCEEDED: 3000})


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class ErrorHandling(DaemonTest):
    """Bad clients get an error frame or a close, and never disturb a good one:
    a well-behaved connection verifies in a loop while these tests run."""

    good_thread: threading.Thread
    stop = threading.Event()
    good_failures: List[BaseException] = []
    good_answers = 0

    @classmethod
    def setUpClass(cls) -> None:
        key = env("TOLLGATE_TEST_KEY")

        def good_client() -> None:
            try:
                with connect() as c:
                    while not cls.stop.is_set():
                        v = c.verify(key)
                        assert v.allowed, v
                        v = c.verify("tg_nope")
                        assert v.code is DenyCode.MALFORMED, v
                        cls.good_answers += 2
            except BaseException as e:
                cls.good_failures.append(e)

        cls.good_thread = threading.Thread(target=good_client, daemon=True)
        cls.good_thread.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.stop.set()
        cls.good_thread.join(30)
        assert not cls.good_thread.is_alive(), "the good client hung"
        assert not cls.good_failures, f"the good client failed: {cls.good_failures!r}"
        assert cls.good_answers > 0

    def test_oversized_length_field(self) -> None:
        s = self.raw()
        s.sendall(bytes.fromhex("ff ff ff ff 01 00 00 00 01"))
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got], [(0, ErrorCode.FRAME_TOO_LARGE)])

    def test_65536_is_the_largest_frame(self) -> None:
        # A verify request whose length field is exactly 65536 is answered...
        room = 65536 - (5 + 2 + 8192 + 1 + 2 + 4 + 1)
        pairs = []
        while room > 0:
            take = min(room - 4, 2048)
            pairs.append(("r" * (take // 2), "a" * (take - take // 2)))
            room -= take + 4
        with self.connect() as c:
            v = c.verify(b"x" * 8192, permissions=pairs)
            self.assertIs(v.code, DenyCode.MALFORMED, "a verdict, not an error frame")
            # ...one byte more cannot even be encoded by the client...
            with self.assertRaises(tg.FrameTooLarge) as cm:
                c.verify(b"x" * 8192, permissions=pairs + [("", "")])
            self.assertEqual(cm.exception.length, 65540)
            c.ping()
        # ...and the server refuses a length field of 65537 from its four bytes alone.
        s = self.raw()
        s.sendall(bytes.fromhex("00 01 00 01 01 00 00 00 05"))
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got], [(0, ErrorCode.FRAME_TOO_LARGE)])

    def test_wrong_version_handshake(self) -> None:
        s = self.raw(hello=False)
        with self.assertRaises(HandshakeRejected) as cm:
            tg.handshake(s, version=0)
        self.assertEqual((cm.exception.code, cm.exception.request_id), (ErrorCode.UNSUPPORTED_VERSION, 0))
        self.assertEqual(read_until_close(s), ([], True))
        # A newer version is answered with the one the server speaks.
        s = self.raw(hello=False)
        version, _ = tg.handshake(s, version=2)
        self.assertEqual(version, 1)
        s.close()

    def test_not_our_protocol(self) -> None:
        s = self.raw(hello=False)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got], [(0, ErrorCode.MALFORMED_FRAME)])

    def test_truncated_frame(self) -> None:
        s = self.raw()
        frame = tg.encode_request(9, VerifyRequest(env("TOLLGATE_TEST_KEY")))
        s.sendall(frame[:-3])
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_until_close(s), ([], True), "answered with nothing, closed")
        # After a half-close the whole frames before the partial one are still answered.
        s = self.raw()
        s.sendall(tg.encode_request(8, Ping()) + frame[:-3])
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_until_close(s), ([(8, Pong())], True))

    def test_undecodable_payload(self) -> None:
        s = self.raw()
        ping = tg.encode_request(41, Ping())
        s.sendall(ping + bytes.fromhex("00 00 00 08 01 00 00 00 2a aa bb cc"))
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got], [(41, None), (42, ErrorCode.MALFORMED_FRAME)])
        self.assertEqual(got[0][1], Pong())

    def test_answers_owed_still_come_after_a_connection_level_error(self) -> None:
        # Strict mode holds the allows of a counted key until their flush, but
        # the error about the oversized frame after them goes out at once: the
        # answers owed follow the id-0 error frame, then the server closes.
        s = self.raw()
        key = env("TOLLGATE_TEST_COUNTED_KEY")
        s.sendall(b"".join(tg.encode_request(i, VerifyRequest(key)) for i in range(1, 6)) + b"\xff\xff\xff\xff")
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got[:1]], [(0, ErrorCode.FRAME_TOO_LARGE)])
        self.assertEqual(sorted(rid for rid, _ in got[1:]), [1, 2, 3, 4, 5])
        self.assertTrue(all(isinstance(r, Allow) for _, r in got[1:]), got)

    def test_malformed_frame_through_the_client(self) -> None:
        # Requests before the bad frame are answered (the counted key's allows
        # after the error frame, in strict mode); the error closes the connection.
        c = self.connect()
        ids = c.send_many([VerifyRequest(env("TOLLGATE_TEST_COUNTED_KEY"))] * 3)
        bad = c.send_frame(tg.MessageType.VERIFY, b"\xaa\xbb\xcc")
        answers = {}
        with self.assertRaises(ConnectionClosed) as cm:
            while True:
                rid, resp = c.recv()
                answers[rid] = resp
        self.assertEqual(sorted(answers), sorted(ids + [bad]))
        self.assertEqual(error_code(answers[bad]), ErrorCode.MALFORMED_FRAME)
        self.assertTrue(all(answers[i].allowed for i in ids))  # type: ignore[union-attr]
        self.assertFalse(cm.exception.mid_frame)
        assert cm.exception.error is not None
        self.assertEqual((cm.exception.error.code, cm.exception.error.request_id), (ErrorCode.MALFORMED_FRAME, bad))
        self.assertTrue(c.closed)

    def test_unknown_message_type_keeps_the_connection(self) -> None:
        with self.connect() as c:
            rid = c.send_frame(0x7E)
            ping = c.send(Ping())
            got = dict([c.recv(), c.recv()])
            self.assertEqual(error_code(got[rid]), ErrorCode.UNKNOWN_MESSAGE_TYPE)
            self.assertEqual(got[ping], Pong())
            self.assertTrue(c.verify(env("TOLLGATE_TEST_KEY")).allowed)

    def test_garbage_gets_an_error_frame_or_a_close(self) -> None:
        rng = xorshift(0x9E3779B97F4A7C15)
        for round_ in range(50):
            with self.subTest(round=round_):
                s = self.raw()
                s.sendall(bytes(next(rng) for _ in range(1 + (round_ * 37) % 300)))
                s.shutdown(socket.SHUT_WR)
                got, closed = read_until_close(s)
                self.assertTrue(closed, "the server must close after garbage and our EOF")
                for rid, resp in got:
                    if isinstance(resp, ErrorResponse):
                        self.assertIn(resp.code, GARBAGE_ERRORS)
                s.close()
        # Garbage instead of a hello, too.
        for round_ in range(10):
            s = self.raw(hello=False)
            s.sendall(bytes(next(rng) | 0x80 for _ in range(8)))  # never starts with "T"
            got, closed = read_until_close(s)
            self.assertTrue(closed)
            self.assertEqual([(rid, error_code(r)) for rid, r in got], [(0, ErrorCode.MALFORMED_FRAME)])
            s.close()

    def test_a_silent_client_does_not_block_anyone(self) -> None:
        silent = self.raw(hello=False)
        self.addCleanup(silent.close)
        with self.connect() as c:
            c.ping()


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class ConnectionCap(DaemonTest):
    def test_connections_over_the_cap_are_told_busy(self) -> None:
        path = env("TOLLGATE_BUSY_SOCKET")  # max_connections = 1
        first = self.connect(path)
        first.ping()
        # The second is accepted, sent SERVER_BUSY with id 0, and closed. The
        # client reads the refusal, or finds the connection gone when it writes.
        with self.assertRaises((HandshakeRejected, ConnectionClosed)) as cm:
            self.connect(path)
        if isinstance(cm.exception, HandshakeRejected):
            self.assertEqual((cm.exception.code, cm.exception.request_id), (ErrorCode.SERVER_BUSY, 0))
        s = self.raw(path, hello=False)
        got, closed = read_until_close(s)
        self.assertTrue(closed)
        self.assertEqual([(rid, error_code(r)) for rid, r in got], [(0, ErrorCode.SERVER_BUSY)])
        first.ping()
        # A slot frees when a connection closes.
        first.close()
        deadline = time.monotonic() + LIMIT
        while True:
            try:
                second = self.connect(path)
                break
            except (HandshakeRejected, ConnectionClosed):
                self.assertLess(time.monotonic(), deadline, "no slot freed")
                time.sleep(0.01)
        with second:
            second.ping()


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class Shutdown(DaemonTest):
    def test_shutdown_answers_what_is_in_flight_then_says_busy_and_closes(self) -> None:
        path = env("TOLLGATE_SHUTDOWN_SOCKET")
        key = env("TOLLGATE_SHUTDOWN_KEY")  # counted: in strict mode its allows wait for a flush
        c = self.connect(path)
        self.addCleanup(c.close)
        ids = c.send_many([VerifyRequest(key)] * 50)
        # Let the daemon read the batch, then have the harness stop it while
        # the answers wait for the flush.
        time.sleep(0.03)
        with open(env("TOLLGATE_SHUTDOWN_FILE"), "w"):
            pass
        answers: List[Tuple[int, tg.Response]] = []
        with self.assertRaises(ConnectionClosed) as cm:
            while True:
                answers.append(c.recv())
        self.assertEqual(len(answers), 51, [(rid, type(r).__name__) for rid, r in answers])
        self.assertEqual(sorted(rid for rid, _ in answers[:-1]), sorted(ids))
        self.assertTrue(all(isinstance(r, Allow) for _, r in answers[:-1]))
        last_id, last = answers[-1]
        self.assertEqual((last_id, error_code(last)), (0, ErrorCode.SERVER_BUSY))
        assert cm.exception.error is not None
        self.assertEqual(cm.exception.error.code, ErrorCode.SERVER_BUSY)
        with self.assertRaises(ConnectionClosed):
            c.ping()


if __name__ == "__main__":
    unittest.main()
