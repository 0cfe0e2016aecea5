#!/usr/bin/env bash
# A million keys through the HTTP API (issue 13's acceptance; BENCHMARKS.md,
# "A million keys over HTTP"):
#
#   1. starts a fresh release daemon and imports KEYS keys (default 1,000,000)
#      with `tollgate-admin keys import --batch 10000`, i.e. POST /v1/keys/import
#      over HTTP, 100 requests of 10,000; prints the import rate (wall clock of
#      the CLI, which reads the JSONL, sends the batches and writes the answers)
#      and the daemon's peak RSS (VmHWM) and RSS (VmRSS) afterwards, and the data
#      directory's size;
#   2. stops it (SIGTERM), starts it again on the same directory, prints the
#      time until /readyz answers 200 and VmRSS/VmHWM then and 5 s later,
#      and checks three imported keys with their original secrets;
#   3. runs `tollgate bench --keys 100000` (benches/loadgen: another
#      `tollgate serve` child on a fresh directory, its keys imported over
#      HTTP) and prints its server CPU per answer.
#
#   benches/million.sh [KEYS] [DIR]
#
# MODE=adopt (default): each entry adopts a key by the SHA-256 of its secret
# (a migration; the secrets are `sk_live_bench<i>_<salt>`). MODE=generate:
# entries without a hash, so the daemon generates every secret and answers
# them (the CLI writes them to DIR/made.jsonl).
# CONFIG=FILE starts the daemon with that configuration file (e.g. another
# `[store] cache_mb`). BIN=DIR runs the binaries in DIR instead of building them. DIR (default: a
# new directory under $TMPDIR) is deleted at the end unless KEEP=1. Run it
# alone: the figures are RSS and wall-clock times. Needs curl and python3.
set -euo pipefail
keys=${1:-1000000}
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/tollgate-million-http.XXXXXX")}
mode=${MODE:-adopt}
target=${CARGO_TARGET_DIR:-target}
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin tollgate --bin tollgate-admin
  mkdir -p "$dir/bin"
  cp "$target/release/tollgate" "$target/release/tollgate-admin" "$dir/bin/"
  BIN=$dir/bin
fi
export TOLLGATE_ADMIN_TOKEN="bench-admin-token-$(date +%s%N)"
port=$(( 20000 + RANDOM % 20000 ))
url="http://127.0.0.1:$port"
pid=
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=
}
trap 'stop; [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"' EXIT
serve() {
  "$BIN/tollgate" serve ${CONFIG:+--config "$CONFIG"} --data "$dir/data" --socket "$dir/sock" --http "127.0.0.1:$port" \
    >>"$dir/daemon.log" 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "daemon exited:"; cat "$dir/daemon.log"; exit 1; }
    sleep 0.05
  done
}
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$pid/status"; }
admin() { curl -sf "$url$1" -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H 'Content-Type: application/json' -d "$2"; }

# 1. Import over HTTP into a fresh daemon.
rm -rf "$dir/data" "$dir/made.jsonl"
serve
team=$(admin /v1/teams '{"name": "million", "tier": "Pro"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
user=$(admin /v1/users "{\"teamId\": \"$team\", \"username\": \"million\", \"password\": \"password password\", \"role\": \"Administrator\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
salt=$RANDOM$RANDOM
python3 - "$dir/keys.jsonl" "$keys" "$user" "$mode" "$salt" <<'EOF'
import hashlib, json, sys
path, n, user, mode, salt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with open(path, "w") as f:
    for i in range(n):
        if mode == "generate":
            f.write('{"userId":"%s"}\n' % user)
        else:
            secret = "sk_live_bench%d_%s" % (i, salt)
            h = hashlib.sha256(secret.encode()).hexdigest()
            f.write('{"userId":"%s","hash":"%s","start":"%s"}\n' % (user, h, secret[:12]))
EOF
printf 'JSONL: %d lines, %d MB (MODE=%s)\n' "$keys" "$(( $(stat -c %s "$dir/keys.jsonl") / 1000000 ))" "$mode"
printf 'daemon before the import: %s\n' "$(rss)"
t0=$(date +%s.%N)
"$BIN/tollgate-admin" --url "$url" --timeout 5m keys import "$dir/keys.jsonl" --batch 10000 --out "$dir/made.jsonl"
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
printf 'imported %d keys over HTTP in %.1f s: %.0f keys/s\n' "$keys" "$secs" "$(echo "$keys / $secs" | bc -l)"
printf 'daemon after the import: %s\n' "$(rss)"
stop
printf 'data directory: %d MB\n' "$(( $(du -sb "$dir/data" | cut -f1) / 1000000 ))"

# 2. Restart on the same directory.
start=$(date +%s.%N)
serve
ready=$(date +%s.%N)
printf 'restart: ready after %.2f s; %s\n' "$(echo "$ready - $start" | bc)" "$(rss)"
sleep 5
printf 'restart: 5 s later: %s\n' "$(rss)"
if [ "$mode" = generate ]; then
  secrets=$(python3 -c 'import json,sys; ls=open(sys.argv[1]).readlines(); print(" ".join(json.loads(ls[i])["key"] for i in (0, len(ls)//2, len(ls)-1)))' "$dir/made.jsonl")
else
  secrets="sk_live_bench0_$salt sk_live_bench$(( keys / 2 ))_$salt sk_live_bench$(( keys - 1 ))_$salt"
fi
for s in $secrets; do
  curl -sf "$url/v1/verify" -H 'Content-Type: application/json' -d "{\"credential\": \"$s\"}" | grep -q '"valid":true' \
    || { echo "an imported key does not verify after the restart"; exit 1; }
done
echo "restart: three imported keys verify with their secrets"
stop

# 3. Server CPU per socket answer at 100k keys.
"$BIN/tollgate" bench --keys 100000 2>"$dir/bench.log" | grep -E 'req/s  \(|cpu:'
