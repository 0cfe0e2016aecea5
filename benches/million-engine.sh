#!/usr/bin/env bash
# A million keys at the engine level (BENCHMARKS.md, "A million keys" and
# "The key image"): fills a fresh data directory with KEYS keys through
# Engine::create_keys (examples/million.rs: time, RSS and peak RSS while
# creating), then starts the daemon on it twice. Each start prints the time
# until /readyz answers 200, the daemon's VmRSS and VmHWM then and 5 s
# later, its "keys loaded" log line, and how long the stop (SIGTERM) took.
# The first start reads the store; its clean stop writes the key image,
# which the second start reads.
#
#   benches/million-engine.sh [KEYS] [DIR]     (release build; KEYS default 1000000)
#
# BIN=DIR runs the `tollgate` and `million` binaries in DIR instead of
# building them (to measure another commit's build in the same session).
# DIR (default: a new directory under $TMPDIR) is deleted at the end unless
# KEEP=1; with KEEP=1 and an existing DIR/data, the keys are not made again.
# Run it alone: the figures are RSS and wall-clock times.
set -euo pipefail
keys=${1:-1000000}
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/tollgate-million.XXXXXX")}
target=${CARGO_TARGET_DIR:-target}
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --example million --bin tollgate
  mkdir -p "$dir/bin"
  cp "$target/release/tollgate" "$target/release/examples/million" "$dir/bin/"
  BIN=$dir/bin
fi
if [ ! -d "$dir/data" ]; then
  "$BIN/million" "$dir/data" "$keys"
fi
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"' EXIT
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$pid/status"; }
for run in "first start" "second start"; do
  port=$(( 20000 + RANDOM % 20000 ))
  start=$(date +%s.%N)
  "$BIN/tollgate" serve --data "$dir/data" --socket "$dir/sock" --http "127.0.0.1:$port" \
    >"$dir/daemon.log" 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
    kill -0 $pid 2>/dev/null || { echo "daemon exited:"; cat "$dir/daemon.log"; exit 1; }
    sleep 0.05
  done
  ready=$(date +%s.%N)
  printf '%s: ready after %.2f s; %s\n' "$run" "$(echo "$ready - $start" | bc)" "$(rss)"
  sleep 5
  printf '  5 s later: %s\n' "$(rss)"
  stop=$(date +%s.%N)
  kill $pid
  wait $pid
  pid=
  printf '  stopped in %.2f s\n' "$(echo "$(date +%s.%N) - $stop" | bc)"
  grep -a -o 'keys loaded.*\|key image.*' "$dir/daemon.log" | sed 's/^/  /' | cut -c1-200
done
