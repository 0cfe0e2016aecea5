#!/usr/bin/env bash
# HTTP throughput of two tollgate binaries in the same run: `POST /v1/verify`
# and `/auth` (an API key, allowed), `wrk -t1 -c32 -d5s` each, the binaries
# alternated round by round so that drift hits both alike. Prints each run and
# the median requests/s of each binary and route, and new/old; and the
# daemon's CPU time per request (utime + stime from /proc over the wrk run /
# requests wrk counted), which other load on the machine disturbs far less
# than requests/s.
#
#   benches/http-ab.sh OLD_BINARY NEW_BINARY
#   ROUNDS=5 DURATION=10s CONNECTIONS=64 benches/http-ab.sh old new
#
# To compare a branch with main: build main's `tollgate` (release), copy it
# away, build this tree's, and pass both. The key is made with this tree's
# `mkkey` example (the data format is the same). The daemon runs as
# `serve --config` with the default log level (info: one access line per
# request, sent to /dev/null) and the Pro tier's per-minute limit lifted, so
# every verification is an ALLOW. Needs wrk (apt-get install -y wrk), curl.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "http-ab: $tool not found (apt-get install -y wrk curl)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/tollgate-ab.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

(cd "$root" && cargo build --release --quiet --example mkkey)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/tollgate.toml" <<TOML
data = "$tmp/data"
socket = "$tmp/tollgate.sock"
http = "127.0.0.1:$port"

[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
TOML
key=$("$target/release/examples/mkkey" "$tmp/data" "$tmp/tollgate.toml" 2>"$tmp/mkkey.err") ||
    { cat "$tmp/mkkey.err" >&2; exit 1; }
cat >"$tmp/verify.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"credential": "$key", "permissions": {"files": ["read"]}}'
wrk.headers["Content-Type"] = "application/json"
LUA

tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# wrk's requests/s and the daemon's CPU µs per request: "RPS US".
measure() { # wrk arguments...
    local c0 c1 out
    c0=$(cpu)
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$@")
    c1=$(cpu)
    awk -v c="$((c1 - c0))" -v t="$tck" '/requests in/ { n = $1 } /^Requests\/sec:/ { r = $2 }
        END { printf "%s %.2f\n", r, c * 1e6 / t / n }' <<<"$out"
}
run() { # binary label
    "$1" serve --config "$tmp/tollgate.toml" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$port/auth" ||
        { echo "http-ab: $2: /auth does not allow the bench key" >&2; exit 1; }
    read -r a acpu < <(measure -H "Authorization: Bearer $key" "http://127.0.0.1:$port/auth")
    read -r v vcpu < <(measure -s "$tmp/verify.lua" "http://127.0.0.1:$port/v1/verify")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    echo "$2 auth $a $acpu"
    echo "$2 verify $v $vcpu"
    printf '%-4s /auth %10s req/s %7s µs CPU/req   /v1/verify %10s req/s %7s µs CPU/req\n' "$2" "$a" "$acpu" "$v" "$vcpu" >&2
}

results=$tmp/results
for r in $(seq "$ROUNDS"); do
    echo "round $r" >&2
    run "$old" old >>"$results"
    run "$new" new >>"$results"
done
median() { grep "^$1 $2 " "$results" | awk -v f="$3" '{print $f}' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for route in auth verify; do
    o=$(median old "$route" 3) n=$(median new "$route" 3)
    awk -v r="$route" -v o="$o" -v n="$n" 'BEGIN { printf "median %-7s req/s       old %10.0f  new %10.0f  new/old %.3f\n", r, o, n, n / o }'
    o=$(median old "$route" 4) n=$(median new "$route" 4)
    awk -v r="$route" -v o="$o" -v n="$n" 'BEGIN { printf "median %-7s µs CPU/req  old %10.2f  new %10.2f  new/old %.3f\n", r, o, n, n / o }'
done
