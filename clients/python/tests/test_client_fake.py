"""The blocking client against small scripted servers in this process.

These mirror the Rust client's tests in protocol/tests/clients.rs: a fake
server built from this package's own codec answers the frames of each read
in reverse order, so pipelined answers arrive out of order, and scripted
servers send refusals and broken bytes the real daemon never sends.
"""

from __future__ import annotations

import socket
import threading
import time
import unittest
from typing import List, Optional

import support
from support import ScriptedServer, recv_exactly

import tollgate_client as tg
from tollgate_client import (
    Allow,
    Client,
    ConnectionClosed,
    CredentialKind,
    Deny,
    DenyCode,
    ErrorCode,
    ErrorFrame,
    ErrorResponse,
    FrameTooLarge,
    HandshakeRejected,
    Ping,
    Pong,
    ProtocolError,
    QuotaConsume,
    QuotaRelease,
    QuotaResult,
    VerifyRequest,
)

assert support


def answer(request_id: int, request: tg.Request) -> "tuple[bytes, bool]":
    """One answer, the way protocol/tests/clients.rs's fake server answers:
    ``deny`` -> RATE_LIMITED, ``boom`` -> INTERNAL error frame, ``bye`` ->
    SERVER_BUSY with id 0 and close, ``slow`` -> answered after 0.5 s,
    anything else -> an allow echoing the credential as its id.
    Returns the frame and whether to keep the connection open."""
    if isinstance(request, VerifyRequest):
        cred = bytes(request.credential)
        if cred == b"deny":
            return tg.encode_response(request_id, Deny(DenyCode.RATE_LIMITED, 250, "slow down")), True
        if cred == b"boom":
            return tg.encode_response(request_id, ErrorResponse(ErrorCode.INTERNAL, "store unavailable")), True
        if cred == b"bye":
            return tg.encode_response(0, ErrorResponse(ErrorCode.SERVER_BUSY, "shutting down")), False
        if cred == b"slow":
            time.sleep(0.5)
        allow = Allow(CredentialKind.API_KEY, "user", "team", cred.decode("utf-8", "replace"), ("member",))
        return tg.encode_response(request_id, allow), True
    if isinstance(request, QuotaConsume):
        ok = request.amount <= 10
        return tg.encode_response(request_id, QuotaResult(ok, request.amount if ok else 0, 10)), True
    if isinstance(request, QuotaRelease):
        return tg.encode_response(request_id, QuotaResult(True, 0, None)), True
    return tg.encode_response(request_id, Pong()), True


def fake_daemon(conn: socket.socket) -> None:
    """Handshake, then answers every whole frame of each read in reverse order."""
    hello = recv_exactly(conn, tg.HANDSHAKE_LEN)
    if hello is None:
        return
    if tg.decode_hello(hello) != 1:
        conn.sendall(tg.encode_response(0, ErrorResponse(ErrorCode.UNSUPPORTED_VERSION, "version 1 only")))
        return
    conn.sendall(tg.encode_hello(1))
    buf = tg.FrameBuffer()
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf.feed(data)
        answers: List[bytes] = []
        keep_open = True
        while keep_open:
            try:
                frame = buf.next_frame()
            except tg.FrameTooLarge:
                answers.append(tg.encode_response(0, ErrorResponse(ErrorCode.FRAME_TOO_LARGE, "too large")))
                keep_open = False
                break
            if frame is None:
                break
            try:
                rid, request = tg.decode_request(frame)
            except ProtocolError as e:
                rid = tg.frame_request_id(frame) or 0
                code = ErrorCode.UNKNOWN_MESSAGE_TYPE if e.field == "type" else ErrorCode.MALFORMED_FRAME
                answers.append(tg.encode_response(rid, ErrorResponse(code, str(e))))
                keep_open = code == ErrorCode.UNKNOWN_MESSAGE_TYPE
                continue
            out, keep_open = answer(rid, request)
            answers.append(out)
        conn.sendall(b"".join(reversed(answers)))
        if not keep_open:
            return


def scripted(reply: bytes, after_hello: bool = True):
    """A handler that reads the hello (if ``after_hello``) and sends ``reply`` raw."""

    def handler(conn: socket.socket) -> None:
        if after_hello:
            recv_exactly(conn, tg.HANDSHAKE_LEN)
        conn.sendall(reply)

    return handler


def accepting(then: bytes, read_first: int = 0, linger: bool = False):
    """A handler that accepts the hello, reads ``read_first`` bytes, then sends
    ``then`` and closes (or, with ``linger``, reads until the client closes)."""

    def handler(conn: socket.socket) -> None:
        recv_exactly(conn, tg.HANDSHAKE_LEN)
        conn.sendall(tg.encode_hello(1))
        if read_first:
            recv_exactly(conn, read_first)
        conn.sendall(then)
        while linger and conn.recv(4096):
            pass

    return handler


def cred_id(v: object) -> str:
    if isinstance(v, Allow):
        return v.credential_id
    assert isinstance(v, Deny), v
    return v.code.name


class FakeServerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = ScriptedServer(fake_daemon)
        self.addCleanup(self.server.close)
        self.addCleanup(lambda: self.assertEqual(self.server.errors, []))

    def client(self, timeout: Optional[float] = 10.0) -> Client:
        c = Client(self.server.path, timeout=timeout)
        self.addCleanup(c.close)
        return c


class BlockingCalls(FakeServerTest):
    def test_calls(self) -> None:
        c = self.client()
        self.assertEqual(c.version, 1)
        c.ping()
        v = c.verify("tg_live_1", ip="127.0.0.1", permissions=[("documents", "read")], quota=("documents", 1))
        self.assertTrue(v.allowed)
        self.assertEqual(cred_id(v), "tg_live_1")

        v = c.verify("deny")
        assert isinstance(v, Deny)
        self.assertEqual((v.code, v.retry_after_ms, v.reason), (DenyCode.RATE_LIMITED, 250, "slow down"))

        self.assertEqual(c.consume_quota("team_1", "documents", 4), QuotaResult(True, 4, 10))
        self.assertFalse(c.consume_quota("team_1", "documents", 11).ok)
        self.assertTrue(c.release_quota("team_1", "documents", 4).ok)

        # A request-level error frame becomes an exception; the connection survives.
        with self.assertRaises(ErrorFrame) as cm:
            c.verify("boom")
        self.assertEqual(cm.exception.code, ErrorCode.INTERNAL)
        self.assertIn("store unavailable", str(cm.exception))
        self.assertNotEqual(cm.exception.request_id, 0)
        self.assertFalse(cm.exception.closes_connection)
        c.ping()
        self.assertFalse(c.closed)

    def test_connection_level_error_fails_the_call_and_the_next(self) -> None:
        c = self.client()
        with self.assertRaises(ErrorFrame) as cm:
            c.verify("bye")
        self.assertEqual((cm.exception.code, cm.exception.request_id), (ErrorCode.SERVER_BUSY, 0))
        self.assertTrue(cm.exception.closes_connection)
        self.assertTrue(c.closed)
        with self.assertRaises(ConnectionClosed) as closed:
            c.ping()
        assert closed.exception.error is not None
        self.assertEqual(closed.exception.error.code, ErrorCode.SERVER_BUSY)

    def test_timeout_leaves_the_client_usable(self) -> None:
        c = self.client(timeout=0.1)
        with self.assertRaises(TimeoutError):
            c.verify("slow")
        c.settimeout(10)
        # The late answer to "slow" is skipped; this call gets its own.
        self.assertEqual(cred_id(c.verify("after")), "after")


class Pipelining(FakeServerTest):
    def test_verify_many_matches_reversed_answers(self) -> None:
        c = self.client()
        creds = ["deny" if i % 7 == 0 else f"key_{i}" for i in range(1000)]
        verdicts = c.verify_many(creds)
        self.assertEqual(len(verdicts), len(creds))
        for cred, v in zip(creds, verdicts):
            self.assertEqual(cred_id(v), "RATE_LIMITED" if cred == "deny" else cred)
        self.assertEqual(c.verify_many([]), [])
        # Small windows too, and full request objects.
        reqs = [VerifyRequest(f"w{i}", cost=2) for i in range(50)]
        for window in (1, 2, 3, 64):
            self.assertEqual([cred_id(v) for v in c.verify_many(reqs, window=window)], [f"w{i}" for i in range(50)])

    def test_send_and_recv_by_id(self) -> None:
        c = self.client()
        ids = {c.send_verify(f"manual_{i}"): f"manual_{i}" for i in range(3)}
        ids[c.send(Ping())] = "ping"
        self.assertEqual(c.pending, 4)
        order = []
        for _ in range(4):
            rid, resp = c.recv()
            want = ids.pop(rid)
            self.assertEqual("ping" if isinstance(resp, Pong) else cred_id(resp), want)
            order.append(rid)
        self.assertEqual(c.pending, 0)
        self.assertEqual(sorted(order), sorted(set(order)))
        # send_many writes all at once (so the fake server reads them in one
        # batch and answers in reverse) and returns the ids in request order.
        ids2 = c.send_many([VerifyRequest("a"), VerifyRequest("b"), QuotaConsume("t", "documents", 1)])
        self.assertEqual(len(set(ids2)), 3)
        self.assertNotIn(0, ids2)
        got = [c.recv() for _ in range(3)]
        self.assertEqual([rid for rid, _ in got], ids2[::-1])
        answers = dict(got)
        self.assertEqual([cred_id(answers[ids2[0]]), cred_id(answers[ids2[1]])], ["a", "b"])
        self.assertEqual(answers[ids2[2]], QuotaResult(True, 1, 10))

    def test_blocking_calls_keep_answers_owed_to_recv(self) -> None:
        c = self.client()
        first = c.send_verify("pipelined")
        # verify() reads the pipelined answer first (or after its own) and keeps it for recv().
        self.assertEqual(cred_id(c.verify("blocking")), "blocking")
        rid, resp = c.recv()
        self.assertEqual((rid, cred_id(resp)), (first, "pipelined"))

    def test_a_failure_part_way_does_not_lose_the_other_answers(self) -> None:
        c = self.client()
        creds = ["a", "b", "boom", "c", "d"]
        with self.assertRaises(ErrorFrame) as cm:
            c.verify_many(creds)
        self.assertEqual(cm.exception.code, ErrorCode.INTERNAL)
        results = c.verify_many(creds, return_exceptions=True)
        self.assertIsInstance(results[2], ErrorFrame)
        self.assertEqual([cred_id(r) for i, r in enumerate(results) if i != 2], ["a", "b", "c", "d"])
        # No stale answers are left behind for the next call.
        self.assertEqual(cred_id(c.verify("after")), "after")

    def test_requests_over_the_limits_fail_before_anything_is_sent(self) -> None:
        c = self.client()
        with self.assertRaises(tg.FieldTooLong):
            c.verify_many(["ok", b"x" * 9000])
        results = c.verify_many(["ok", b"x" * 9000], return_exceptions=True)
        self.assertEqual(cred_id(results[0]), "ok")
        self.assertIsInstance(results[1], tg.FieldTooLong)
        with self.assertRaises(FrameTooLarge):
            c.verify("k", permissions=[("r" * 1024, "a" * 1024)] * 40)
        with self.assertRaises(tg.FieldTooLong):
            c.send_many([VerifyRequest("fine"), VerifyRequest(b"x" * 9000)])
        self.assertEqual(c.pending, 0)
        c.ping()

    def test_unknown_message_types_can_be_probed(self) -> None:
        c = self.client()
        rid = c.send_frame(0x7E)
        got_id, resp = c.recv()
        self.assertEqual(got_id, rid)
        self.assertIsInstance(resp, ErrorResponse)
        self.assertEqual(resp.code, ErrorCode.UNKNOWN_MESSAGE_TYPE)  # type: ignore[union-attr]
        c.ping()


class Refusals(unittest.TestCase):
    def serve(self, handler) -> str:
        server = ScriptedServer(handler)
        self.addCleanup(server.close)
        return server.path

    def test_unsupported_version(self) -> None:
        refusal = tg.encode_response(0, ErrorResponse(ErrorCode.UNSUPPORTED_VERSION, "need version 2"))
        with self.assertRaises(HandshakeRejected) as cm:
            Client(self.serve(scripted(refusal)))
        self.assertEqual((cm.exception.code, cm.exception.request_id), (ErrorCode.UNSUPPORTED_VERSION, 0))
        self.assertIn("need version 2", str(cm.exception))

    def test_busy_before_the_hello_is_read(self) -> None:
        busy = tg.encode_response(0, ErrorResponse(ErrorCode.SERVER_BUSY, "too many connections"))
        with self.assertRaises(HandshakeRejected) as cm:
            Client(self.serve(scripted(busy, after_hello=False)))
        self.assertEqual(cm.exception.code, ErrorCode.SERVER_BUSY)

    def test_a_version_the_client_does_not_speak(self) -> None:
        with self.assertRaises(ProtocolError):
            Client(self.serve(scripted(b"TGAT\x00\x09")))
        with self.assertRaises(ProtocolError):
            Client(self.serve(scripted(b"TGAT\x00\x00")))

    def test_not_a_tollgate_server(self) -> None:
        with self.assertRaises(ProtocolError):
            Client(self.serve(scripted(b"HTTP/1.1 400 Bad Request\r\n\r\n")))
        with self.assertRaises(ProtocolError):
            Client(self.serve(scripted(tg.encode_response(0, Pong()))))

    def test_closed_during_the_handshake(self) -> None:
        with self.assertRaises(ConnectionClosed) as cm:
            Client(self.serve(scripted(b"TGA")))
        self.assertTrue(cm.exception.mid_frame)
        with self.assertRaises(ConnectionClosed):
            Client(self.serve(scripted(b"")))

    def test_an_oversized_frame_from_the_server(self) -> None:
        c = Client(self.serve(accepting(b"\x00\x01\x00\x01" + bytes(100), read_first=9)))
        self.addCleanup(c.close)
        with self.assertRaises(FrameTooLarge) as cm:
            c.ping()
        self.assertEqual(cm.exception.length, 65537)
        self.assertTrue(c.closed, "a client that cannot decode a response closes")

    def test_a_malformed_answer(self) -> None:
        # A Pong with a byte of payload: well framed, but trailing bytes are malformed.
        bad = bytes.fromhex("00 00 00 06 84 00 00 00 01 00")
        c = Client(self.serve(accepting(bad, read_first=9)))
        self.addCleanup(c.close)
        with self.assertRaises(ProtocolError) as cm:
            c.ping()
        self.assertNotIsInstance(cm.exception, FrameTooLarge)
        self.assertEqual(cm.exception.field, "payload")
        self.assertTrue(c.closed)

    def test_a_wrong_answer_type(self) -> None:
        c = Client(self.serve(accepting(tg.encode_response(1, QuotaResult(True, 1)), read_first=9)))
        self.addCleanup(c.close)
        with self.assertRaises(ProtocolError):
            c.ping()

    def test_closed_in_the_middle_of_a_frame(self) -> None:
        c = Client(self.serve(accepting(tg.encode_response(1, Pong())[:6], read_first=9)))
        self.addCleanup(c.close)
        with self.assertRaises(ConnectionClosed) as cm:
            c.ping()
        self.assertTrue(cm.exception.mid_frame)

    def test_answers_owed_after_a_connection_level_error_are_collected(self) -> None:
        # The daemon may send answers it still owes after an id-0 error
        # (SPEC.md 5.6 and 7): verify_many keeps reading until the close.
        allow = Allow(CredentialKind.JWT, "s", "t", "late")
        reply = (
            tg.encode_response(0, ErrorResponse(ErrorCode.MALFORMED_FRAME, "bad frame"))
            + tg.encode_response(2, allow)
            + tg.encode_response(1, allow)
        )
        frame_len = len(tg.encode_request(1, VerifyRequest("x")))
        c = Client(self.serve(accepting(reply, read_first=3 * frame_len)))
        self.addCleanup(c.close)
        results = c.verify_many(["x", "y", "z"], return_exceptions=True)
        self.assertEqual(results[:2], [allow, allow])
        self.assertIsInstance(results[2], ConnectionClosed)
        err = results[2].error  # type: ignore[union-attr]
        self.assertEqual((err.code, err.request_id), (ErrorCode.MALFORMED_FRAME, 0))
        self.assertTrue(c.closed)

    def test_verify_many_stops_sending_after_a_closing_error_but_keeps_reading(self) -> None:
        frame_len = len(tg.encode_request(1, VerifyRequest("x")))

        def handler(conn: socket.socket) -> None:
            recv_exactly(conn, tg.HANDSHAKE_LEN)
            conn.sendall(tg.encode_hello(1))
            recv_exactly(conn, 4 * frame_len)  # the first window: ids 1 to 4
            conn.sendall(answer(1, VerifyRequest(b"1"))[0])
            conn.sendall(tg.encode_response(0, ErrorResponse(ErrorCode.SERVER_BUSY, "shutting down")))
            time.sleep(0.1)
            conn.sendall(b"".join(answer(i, VerifyRequest(str(i).encode()))[0] for i in (2, 3, 4)))

        c = Client(self.serve(handler), timeout=10)
        self.addCleanup(c.close)
        results = c.verify_many([str(i) for i in range(1, 7)], window=4, return_exceptions=True)
        self.assertEqual([cred_id(r) for r in results[:4]], ["1", "2", "3", "4"])
        for r in results[4:]:
            self.assertIsInstance(r, ConnectionClosed)
            self.assertEqual(r.error.code, ErrorCode.SERVER_BUSY)  # type: ignore[union-attr]

    def test_ids_owed_to_recv_are_not_reused(self) -> None:
        pongs = tg.encode_response(1, Pong()) + tg.encode_response(2, Pong())
        c = Client(self.serve(accepting(pongs, read_first=2 * 9, linger=True)), timeout=10)
        self.addCleanup(c.close)
        first = c.send(Ping())
        self.assertEqual(first, 1)
        c.ping()  # reads (and keeps) the answer to `first` while waiting for its own
        c._next_id = first  # as if the counter had wrapped around onto the unread answer's id
        second = c.send(Ping())
        self.assertNotEqual(second, first)
        self.assertEqual(c.recv(), (first, Pong()))

    def test_recv_returns_a_connection_level_error_then_late_answers(self) -> None:
        pong = tg.encode_response(1, Pong())
        busy = tg.encode_response(0, ErrorResponse(ErrorCode.SERVER_BUSY, "shutting down"))
        c = Client(self.serve(accepting(busy + pong, read_first=9)))
        self.addCleanup(c.close)
        rid = c.send(Ping())
        self.assertEqual(c.recv(), (0, ErrorResponse(ErrorCode.SERVER_BUSY, "shutting down")))
        self.assertEqual(c.recv(), (rid, Pong()))
        with self.assertRaises(ConnectionClosed):
            c.recv()
        with self.assertRaises(ConnectionClosed):
            c.send(Ping())


class Threads(FakeServerTest):
    def test_one_client_per_thread(self) -> None:
        failures: List[BaseException] = []

        def work(t: int) -> None:
            try:
                with Client(self.server.path, timeout=10) as c:
                    creds = [f"t{t}_{i}" for i in range(200)]
                    got = [cred_id(v) for v in c.verify_many(creds, window=16)]
                    assert got == creds, (t, got[:5])
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(failures, [])


if __name__ == "__main__":
    unittest.main()
