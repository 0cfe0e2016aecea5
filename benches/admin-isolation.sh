#!/usr/bin/env bash
# Single-connection socket verification latency while the admin API is busy,
# against a release build, in one run per round:
#
#   idle    the probe alone
#   writes  the probe while `wrk -t1 -c4` POSTs /v1/teams (saturating, fsynced writes)
#   lists   the probe while `wrk -t1 -c4` GETs /v1/teams?limit=1 with ~11k teams stored
#
# The probe (examples/socket_probe.rs) is one connection verifying one key in a
# loop, one request at a time; it prints p50, p99, p99.9 and max in µs. Each
# round starts a fresh daemon on a temp dir. At the end the medians over the
# rounds of each figure, and of the per-round ratios to the round's idle, are
# printed.
#
#   benches/admin-isolation.sh                          # 5 rounds, 10 s per phase
#   ROUNDS=3 SECONDS_PER_PHASE=5 benches/admin-isolation.sh
#   TOLLGATE_BIN=/path/to/other/tollgate benches/admin-isolation.sh   # measure another build
#   LIST_PATH=/v1/teams benches/admin-isolation.sh      # another list request for the lists phase
#
# Before issue 12 `GET /v1/teams` took no `limit` (`?limit=1` was a 422) and
# always answered every team: measure such a build with LIST_PATH=/v1/teams.
#
# Needs wrk (apt-get install -y wrk), curl, python3. Acceptance (issue 12):
# under admin load p50 <= 1.5x idle p50 and p99 <= 3x idle p99.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_PHASE:-10}
TEAMS=${TEAMS:-11000}
LIST_PATH=${LIST_PATH:-/v1/teams?limit=1}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "admin-isolation: $tool not found (apt-get install -y wrk curl)" >&2; exit 2; }
done
echo "building (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin tollgate --example mkkey --example socket_probe)
BIN=${TOLLGATE_BIN:-$target/release/tollgate}
PROBE=$target/release/examples/socket_probe
MKKEY=$target/release/examples/mkkey

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tmp=$(mktemp -d /tmp/tollgate-iso.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

token=admin-isolation-bench-token-0123456789
export TOLLGATE_ADMIN_TOKEN=$token
cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"name":"bench-team"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$tmp/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

teams_total() {
    { curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/teams?limit=1" ||
        curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/teams"; } |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}

# wrk's requests/s from its output.
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}' "$1"; }

results=$tmp/results
: >"$results"
echo "binary: $BIN; lists phase: GET $LIST_PATH" >&2
uptime >&2
for round in $(seq "$ROUNDS"); do
    port=$(free_port)
    rm -rf "$tmp/data"
    cat >"$tmp/tollgate.toml" <<TOML
data = "$tmp/data"
socket = "$tmp/tollgate.sock"
http = "127.0.0.1:$port"

[log]
level = "error"

# The probe's team must not be the limit being measured.
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
TOML
    key=$("$MKKEY" "$tmp/data" "$tmp/tollgate.toml" 2>/dev/null)
    "$BIN" serve --config "$tmp/tollgate.toml" 2>"$tmp/daemon.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

    idle=$("$PROBE" "$tmp/tollgate.sock" "$key" "$SECS" idle)

    wrk -t1 -c4 -d"$((SECS + 2))s" -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/teams" >"$tmp/wrk-post" &
    wpid=$!
    sleep 1
    writes=$("$PROBE" "$tmp/tollgate.sock" "$key" "$SECS" writes)
    wait "$wpid"
    writes="$writes wrk=$(rps "$tmp/wrk-post")"

    # Top up to $TEAMS teams (the writes phase made most of them).
    while [ "$(teams_total)" -lt "$TEAMS" ]; do
        wrk -t1 -c4 -d2s -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/teams" >/dev/null
    done
    n=$(teams_total)

    wrk -t1 -c4 -d"$((SECS + 2))s" -s "$tmp/get.lua" "http://127.0.0.1:$port$LIST_PATH" >"$tmp/wrk-get" &
    wpid=$!
    sleep 1
    lists=$("$PROBE" "$tmp/tollgate.sock" "$key" "$SECS" lists)
    wait "$wpid"
    lists="$lists wrk=$(rps "$tmp/wrk-get") teams=$n non2xx=$(awk '/Non-2xx/ {print $5}' "$tmp/wrk-get")"

    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    printf 'round %s\n  %s\n  %s\n  %s\n' "$round" "$idle" "$writes" "$lists" >&2
    printf '%s\n%s\n%s\n' "$idle" "$writes" "$lists" >>"$results"
done
uptime >&2

python3 - "$results" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r'(\S+)=(\S+)', l)) for l in open(sys.argv[1])]
rounds = [rows[i:i + 3] for i in range(0, len(rows), 3)]
med = statistics.median
fig = ["p50", "p99", "p99.9", "max"]
print(f"\nmedians over {len(rounds)} rounds (µs; ratios: each round's figure / the same round's idle)")
print(f"{'phase':8} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>8}  {'p50 x':>6} {'p99 x':>6}  {'admin req/s':>11}")
ratio = lambda i, f: med(float(r[i][f]) / float(r[0][f]) for r in rounds)
for i, phase in enumerate(["idle", "writes", "lists"]):
    vals = [med(float(r[i][f]) for r in rounds) for f in fig]
    w = med(float(r[i]["wrk"]) for r in rounds) if "wrk" in rounds[0][i] else 0
    print(f"{phase:8} {vals[0]:7.0f} {vals[1]:7.0f} {vals[2]:7.0f} {vals[3]:8.0f}  {ratio(i, 'p50'):6.2f} {ratio(i, 'p99'):6.2f}  {w:11.0f}")
ok = all(ratio(i, "p50") <= 1.5 and ratio(i, "p99") <= 3 for i in (1, 2))
print("acceptance (p50 <= 1.5x idle, p99 <= 3x idle, medians of the ratios):", "met" if ok else "NOT met")
PY
