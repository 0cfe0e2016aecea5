"""The WSGI and ASGI middleware shown in README.md, run as written (only its
socket path changed) against the real daemon: 200 with the verdict, 401 with
``WWW-Authenticate``, 403, 429 with ``Retry-After``, each with
``X-Auth-Denial``. Needs the variables of test_daemon.py, and
``TOLLGATE_TEST_MW_RATE_KEY`` (a key limited to 2 requests a minute).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import unittest

SOCKET = os.environ.get("TOLLGATE_SOCKET")
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def readme_middleware() -> dict:
    text = README.read_text()
    section = text[text.index("### Middleware: WSGI and ASGI") :]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert 'SOCKET = "/run/tollgate/tollgate.sock"' in code
    code = code.replace('SOCKET = "/run/tollgate/tollgate.sock"', f"SOCKET = {SOCKET!r}")
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    return ns


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise AssertionError(f"{name} is not set (see tests/it/python_client.rs)")
    return value


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["tollgate.verdict"].subject.encode()]


@unittest.skipUnless(SOCKET, "TOLLGATE_SOCKET is not set: no daemon to test against")
class ReadmeMiddleware(unittest.TestCase):
    def setUp(self) -> None:
        self.ns = readme_middleware()

    def wsgi(self, headers: dict, remote: str = "10.1.2.3", permissions=(("documents", "read"),)):
        guarded = self.ns["wsgi_guard"](app, permissions=list(permissions))
        environ = {"REMOTE_ADDR": remote, "REQUEST_METHOD": "GET", "PATH_INFO": "/"}
        environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
        got = {}

        def start_response(status, hdrs, exc_info=None):
            got["status"], got["headers"] = status, dict(hdrs)

        body = b"".join(guarded(environ, start_response))
        return int(got["status"].split()[0]), got["headers"], body

    def test_wsgi(self) -> None:
        key = env("TOLLGATE_TEST_KEY")
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}, {"Cookie": f"a=b; tollgate_token={key}"}):
            status, _, body = self.wsgi(headers)
            self.assertEqual((status, body), (200, env("TOLLGATE_TEST_USER").encode()), headers)
        status, h, _ = self.wsgi({})
        self.assertEqual(status, 401)
        self.assertEqual(h["WWW-Authenticate"], 'Bearer realm="tollgate"')
        self.assertEqual(h["X-Auth-Denial"], "MISSING_CREDENTIAL")
        status, h, _ = self.wsgi({"Authorization": "Bearer tg_nope"})
        self.assertEqual(status, 401)
        self.assertEqual(h["WWW-Authenticate"], 'Bearer realm="tollgate", error="invalid_token"')
        status, h, _ = self.wsgi({"X-API-Key": key}, permissions=[("documents", "delete")])
        self.assertEqual((status, h["X-Auth-Denial"]), (403, "INSUFFICIENT_PERMISSIONS"))
        ip_key = env("TOLLGATE_TEST_IP_KEY")
        self.assertEqual(self.wsgi({"X-API-Key": ip_key}, permissions=())[0], 200)
        status, h, _ = self.wsgi({"X-API-Key": ip_key}, remote="192.0.2.1", permissions=())
        self.assertEqual((status, h["X-Auth-Denial"]), (403, "IP_NOT_ALLOWED"))

    def test_asgi_and_429(self) -> None:
        async def inner(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["state"]["tollgate"].subject.encode()})

        guarded = self.ns["asgi_guard"](inner)

        async def call(key: str):
            sent = []

            async def send(message):
                sent.append(message)

            scope = {"type": "http", "headers": [(b"x-api-key", key.encode())], "client": ("127.0.0.1", 5000)}
            await guarded(scope, None, send)
            return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}, sent[1]["body"]

        rate = env("TOLLGATE_TEST_MW_RATE_KEY")
        for i in range(2):
            status, headers, body = asyncio.run(call(rate))
            self.assertEqual((status, body), (200, env("TOLLGATE_TEST_USER").encode()), i)
        status, headers, _ = asyncio.run(call(rate))
        self.assertEqual(status, 429)
        self.assertEqual(headers["X-Auth-Denial"], "RATE_LIMITED")
        self.assertTrue(1 <= int(headers["Retry-After"]) <= 60, headers)
        self.assertEqual(headers["X-RateLimit-Remaining"], "0")


if __name__ == "__main__":
    unittest.main()
