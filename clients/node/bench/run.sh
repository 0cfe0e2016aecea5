#!/usr/bin/env bash
# Verifications per second through a node:http server: the tollgate-client
# middleware over the daemon's socket (pipelined) against better-auth's
# api-key plugin, in the same run, alternating, with wrk; then the Node and
# Python clients alone, pipelined over the socket. Run from anywhere:
#   clients/node/bench/run.sh
# ROUNDS (3), DURATION (10s), CONNECTIONS (32) and COUNT (200000, for the
# clients alone) override the defaults. Needs wrk, python3, and `npm ci` in
# this directory (better-auth is pinned in package-lock.json).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
COUNT=${COUNT:-200000}

bench=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$bench/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
[ -d "$bench/node_modules/better-auth" ] || (cd "$bench" && npm ci --no-audit --no-fund)
command -v wrk >/dev/null || { echo "run.sh: wrk not found (apt-get install -y wrk)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/tollgate-node-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

echo "building tollgate (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin tollgate --example mkkey)
tport=$(free_port)
cat >"$tmp/tollgate.toml" <<TOML
data = "$tmp/data"
socket = "$tmp/tollgate.sock"
http = "127.0.0.1:$tport"
[log]
level = "warn"
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
TOML
key=$("$target/release/examples/mkkey" "$tmp/data" "$tmp/tollgate.toml")
"$target/release/tollgate" serve --config "$tmp/tollgate.toml" & pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/tollgate.sock" ] && break; sleep 0.1; done

p1=$(free_port); p2=$(free_port)
node "$bench/server.mjs" tollgate "$p1" "$tmp/tollgate.sock" & pids+=($!)
node "$bench/server.mjs" better-auth "$p2" >"$tmp/ba-key" & pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/ba-key" ] && curl -s -o /dev/null "http://127.0.0.1:$p1/" && curl -s -o /dev/null "http://127.0.0.1:$p2/" && break; sleep 0.1; done
bakey=$(cat "$tmp/ba-key")
# Both must allow their key and refuse another before anything is measured.
for pair in "$p1 $key" "$p2 $bakey"; do
  set -- $pair
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $2" "http://127.0.0.1:$1/")" = 200 ] || { echo "server on $1 refuses its key" >&2; exit 1; }
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: tg_nope" "http://127.0.0.1:$1/")" = 401 ] || { echo "server on $1 allows a bad key" >&2; exit 1; }
done

uptime
echo "node $(node --version), better-auth $(node -p "require('$bench/node_modules/better-auth/package.json').version" 2>/dev/null || grep -m1 '"version"' "$bench/node_modules/better-auth/package.json")"
run() { # name port key
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "X-API-Key: $3" "http://127.0.0.1:$2/" | awk -v n="$1" '/Requests\/sec/ {print n, $2} /Non-2xx/ {print n, "NON-2xx", $0}'
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run tollgate-middleware "$p1" "$key"
  run better-auth-api-key "$p2" "$bakey"
done

echo "clients alone, $COUNT pipelined verifications"
node "$bench/client.mjs" "$tmp/tollgate.sock" "$key" "$COUNT"
PYTHONPATH="$root/clients/python" python3 "$bench/python_client.py" "$tmp/tollgate.sock" "$key" "$COUNT"
