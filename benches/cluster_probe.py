#!/usr/bin/env python3
"""Cluster mode's propagation and admission figures, for benches/cluster.sh.

Talks to three running cluster nodes: the admin API over HTTP (node A) and
the verification socket (the Python client in clients/python, on PYTHONPATH).

    cluster_probe.py propagation HTTP_A,HTTP_B,HTTP_C SOCK_A,SOCK_B,SOCK_C CHANGES
    cluster_probe.py rate        HTTP_A,HTTP_B,HTTP_C SOCK_A,SOCK_B,SOCK_C MAX WINDOW_MS WINDOWS
    cluster_probe.py remaining   HTTP_A,HTTP_B,HTTP_C SOCK_A,SOCK_B,SOCK_C REMAINING

HTTP_* are host:port; admin changes are made through node A; the admin
token is TOLLGATE_ADMIN_TOKEN. Each prints
one summary line on stdout (progress goes to stderr) and exits 1 when a
bound is broken (a change not seen within 1 s, a limit over-admitted).
"""

import http.client
import json
import os
import sys
import threading
import time

from tollgate_client import Client, DenyCode

TOKEN = os.environ["TOLLGATE_ADMIN_TOKEN"]
SEEN_BOUND_S = 1.0


class Admin:
    """Admin API calls to one node on one keep-alive connection."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, method, path, body, want):
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status != want:
            sys.exit(f"{method} {path}: {r.status} (wanted {want}): {text.decode(errors='replace')}")
        return json.loads(text) if text else None


def owner(admin, name):
    team = admin.call("POST", "/v1/teams", {"name": name, "tier": "pro"}, 201)["id"]
    user = admin.call(
        "POST", "/v1/users",
        {"teamId": team, "username": f"{name}-{os.getpid()}", "password": "correct horse", "role": "Administrator"}, 201,
    )["id"]
    return user


def outcome(client, secret):
    v = client.verify(secret)
    return None if v.allowed else v.code


def pct(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def wait_everywhere(clients, secret, want):
    """Polls every client until `secret`'s outcome is `want`; returns the
    time each saw it (None: not within SEEN_BOUND_S)."""
    deadline = time.monotonic() + SEEN_BOUND_S
    seen = [None] * len(clients)
    while None in seen and time.monotonic() < deadline:
        for i, c in enumerate(clients):
            if seen[i] is None and outcome(c, secret) == want:
                seen[i] = time.monotonic()
    return seen


def propagation(https, socks, changes):
    admin = Admin(https[0])
    user = owner(admin, "probe-propagation")
    clients = [Client(socks[1]), Client(socks[2])]
    delays = []
    key = None

    def awaited(i, what, acked, want):
        seen = wait_everywhere(clients, key["key"], want)
        if None in seen:
            sys.exit(f"key {i} {what} on A not seen on every node within {SEEN_BOUND_S} s")
        delays.extend(max(0.0, t - acked) for t in seen)

    for i in range(changes // 2):
        # A key created on A, then disabled on A: each change is awaited on B and C.
        key = admin.call("POST", "/v1/keys", {"userId": user, "name": f"p{i}"}, 201)
        awaited(i, "created", time.monotonic(), None)
        admin.call("PATCH", f"/v1/keys/{key['id']}", {"enabled": False}, 200)
        awaited(i, "disabled", time.monotonic(), DenyCode.DISABLED)
    delays.sort()
    print(
        f"propagation: {len(delays) // 2} changes on A x 2 nodes (B, C), after A's answer: "
        f"p50 {ms(pct(delays, 0.5))}  p99 {ms(pct(delays, 0.99))}  max {ms(delays[-1])}"
    )


def hammer(socks, per_node, secret, until, on_deny):
    """per_node connections to each node, each verifying `secret` until
    `until()` says stop; returns the allowed count per connection."""
    counts = []
    lock = threading.Lock()

    def run(sock):
        c = Client(sock)
        allowed = 0
        state = {}
        while not until(state):
            code = outcome(c, secret)
            if code is None:
                allowed += 1
                state.pop("refused_since", None)
            else:
                on_deny(code, state)
        with lock:
            counts.append(allowed)

    threads = [threading.Thread(target=run, args=(s,)) for s in socks for _ in range(per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def key_on_every_node(admin, https, body):
    """A key made on A; returns it once every node's admin API knows it (a
    verification would spend a use)."""
    key = admin.call("POST", "/v1/keys", body, 201)
    for addr in https:
        node = Admin(addr)
        deadline = time.monotonic() + SEEN_BOUND_S
        while True:
            node.conn.request("GET", f"/v1/keys/{key['id']}", headers={"Authorization": f"Bearer {TOKEN}"})
            r = node.conn.getresponse()
            r.read()
            if r.status == 200:
                break
            if time.monotonic() > deadline:
                sys.exit(f"the key did not reach {addr} within {SEEN_BOUND_S} s")
            time.sleep(0.001)
    return key


def rate(https, socks, maximum, window_ms, windows):
    admin = Admin(https[0])
    user = owner(admin, "probe-rate")
    key = key_on_every_node(admin, https, {"userId": user, "rateLimitMax": maximum, "rateLimitTimeWindow": window_ms})
    # Runs `windows` windows minus 300 ms: each window is filled, and the run
    # ends before a further one opens.
    length = windows * window_ms / 1000 - 0.3
    started = time.monotonic()

    def until(_state):
        return time.monotonic() - started >= length

    def on_deny(code, _state):
        if code != DenyCode.RATE_LIMITED:
            sys.exit(f"unexpected denial {code!r}")
        time.sleep(0.02)

    counts = hammer(socks, 2, key["key"], until, on_deny)
    total = sum(counts)
    limit = maximum * windows
    print(
        f"rate limit: {maximum} per {window_ms} ms shared by 3 nodes x 2 connections, {windows} windows: "
        f"{total} admitted of {limit} ({(total - limit) / limit * 100:+.2f}%; per connection {sorted(counts)})"
    )
    if total > limit:
        sys.exit("over-admitted")


def remaining(https, socks, uses):
    admin = Admin(https[0])
    user = owner(admin, "probe-remaining")
    key = key_on_every_node(admin, https, {"userId": user, "remaining": uses})
    started = time.monotonic()

    # A connection stops once refused for 1.5 s on end: longer than a node
    # waits (1 s) before asking the cluster again after finding no uses left.
    def until(state):
        since = state.get("refused_since")
        if time.monotonic() - started > 120:
            sys.exit("not drained in 120 s")
        return since is not None and time.monotonic() - since >= 1.5

    def on_deny(code, state):
        if code != DenyCode.USAGE_EXCEEDED:
            sys.exit(f"unexpected denial {code!r}")
        state.setdefault("refused_since", time.monotonic())
        time.sleep(0.005)

    counts = hammer(socks, 4, key["key"], until, on_deny)
    total = sum(counts)
    print(
        f"remaining uses: {uses} shared by 3 nodes x 4 connections, drained: {total} allowed "
        f"({(total - uses) / uses * 100:+.2f}%) in {time.monotonic() - started:.1f} s"
    )
    if total > uses:
        sys.exit("over-admitted")


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    what, https, socks, args = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4:]
    if what == "propagation":
        propagation(https, socks, int(args[0]))
    elif what == "rate":
        rate(https, socks, int(args[0]), int(args[1]), int(args[2]))
    elif what == "remaining":
        remaining(https, socks, int(args[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
