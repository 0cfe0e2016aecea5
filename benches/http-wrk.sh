#!/usr/bin/env bash
# HTTP verification throughput: `/auth` (nginx auth_request's route) and
# `POST /v1/verify`, with wrk, for one tollgate binary or two (A/B) in the same
# run, rounds interleaved so that drift on this shared machine hits each alike.
#
#   benches/http-wrk.sh                               # the tree's release binary
#   benches/http-wrk.sh OLD_BINARY NEW_BINARY          # A/B
#   ROUNDS=5 DURATION=10s CONNECTIONS=64 LOG=warn benches/http-wrk.sh A B
#   LOG_B=warn benches/http-wrk.sh BIN BIN              # cost of the access line
#
# Each binary serves its own data directory holding one key made by the
# `mkkey` example (a Pro team with unlimited requests, so the limit measured is
# the server's). LOG is the daemon's log level (default info: the access line
# per request is part of what is measured); its stderr goes to a file, as under
# systemd/journald it goes to a pipe. Prints the median requests/s of each route
# per binary, and the daemon's CPU time per request (user + system, from /proc:
# steadier than requests/s on a machine other work shares), with two binaries
# the ratio B/A of each.
#
# Needs wrk and curl (apt-get install -y wrk curl).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
LOG=${LOG:-info}
LOG_B=${LOG_B:-$LOG}   # the second binary's level, to measure the logging itself

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "http-wrk: $tool not found (apt-get install -y wrk curl)" >&2; exit 2; }
done
echo "building tollgate and mkkey (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin tollgate --example mkkey)
bins=("${@:-$target/release/tollgate}")
[ ${#bins[@]} -le 2 ] || { echo "http-wrk: at most two binaries" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/tollgate-http-wrk.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

ports=() keys=()
for i in "${!bins[@]}"; do
    port=$(free_port)
    cat >"$tmp/$i.toml" <<EOF
data = "$tmp/data$i"
socket = "$tmp/$i.sock"
http = "127.0.0.1:$port"

[log]
level = "$([ "$i" = 1 ] && echo "$LOG_B" || echo "$LOG")"

[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
EOF
    keys[i]=$("$target/release/examples/mkkey" "$tmp/data$i" "$tmp/$i.toml")
    "${bins[i]}" serve --config "$tmp/$i.toml" 2>"$tmp/$i.log" &
    pids+=($!)
    ports[i]=$port
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "http-wrk: ${bins[i]} did not start" >&2; cat "$tmp/$i.log" >&2; exit 1; }
done

. "$root/benches/wrk-measure.sh"
declare -A results
for round in $(seq "$ROUNDS"); do
    for i in "${!bins[@]}"; do
        url="http://127.0.0.1:${ports[i]}"
        read -r a ac < <(measure "${pids[i]}" -H "X-API-Key: ${keys[i]}" "$url/auth")
        read -r v vc < <(KEY=${keys[i]} measure "${pids[i]}" -s "$tmp/verify.lua" "$url/v1/verify")
        results[$i,auth]+="$a " results[$i,verify]+="$v " results[$i,authcpu]+="$ac " results[$i,verifycpu]+="$vc "
        echo "round $round  bin $i  /auth $a req/s ($ac µs CPU/req)  /v1/verify $v req/s ($vc µs CPU/req)" >&2
    done
done

for route in auth verify authcpu verifycpu; do
    line="$route:"
    for i in "${!bins[@]}"; do
        m[i]=$(echo "${results[$i,$route]}" | median)
        line+="  bin$i ${m[i]}"
    done
    [ ${#bins[@]} -eq 2 ] && line+="  ratio $(python3 -c "print(f'{${m[1]}/${m[0]}:.3f}')")"
    echo "$line"
done
