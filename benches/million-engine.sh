#!/usr/bin/env bash
# A million keys at the engine level (BENCHMARKS.md, "A million keys"):
# fills a fresh data directory with KEYS keys through Engine::create_keys
# (examples/million.rs: time, RSS and peak RSS while creating), then starts
# the daemon on it and prints the time until /readyz answers 200 and the
# daemon's VmRSS and VmHWM at that moment and 5 s later.
#
#   benches/million-engine.sh [KEYS] [DIR]     (release build; KEYS default 1000000)
#
# BIN=DIR runs the `tollgate` and `million` binaries in DIR instead of
# building them (to measure another commit's build in the same session).
# DIR (default: a new directory under $TMPDIR) is deleted at the end unless
# KEEP=1. Run it alone: the figures are RSS and wall-clock times.
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
port=$(( 20000 + RANDOM % 20000 ))
start=$(date +%s.%N)
"$BIN/tollgate" serve --data "$dir/data" --socket "$dir/sock" --http "127.0.0.1:$port" \
  >"$dir/daemon.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
  kill -0 $pid 2>/dev/null || { echo "daemon exited:"; cat "$dir/daemon.log"; exit 1; }
  sleep 0.05
done
ready=$(date +%s.%N)
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$pid/status"; }
printf 'ready after %.2f s; %s\n' "$(echo "$ready - $start" | bc)" "$(rss)"
sleep 5
printf '5 s later: %s\n' "$(rss)"
