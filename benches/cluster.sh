#!/usr/bin/env bash
# Cluster mode (issue 14), measured: a throwaway PostgreSQL (initdb in a temp
# directory, run as the `postgres` user when this runs as root), three release
# tollgate nodes in cluster mode and one standalone node, all on this machine.
# Prints
#   (a) the propagation delay of admin changes made through node A until B and
#       C verify accordingly (key created, key disabled), p50/p99;
#   (b) the admission error of a per-key rate limit shared by the 3 nodes, and
#       of a key's remaining uses drained through the 3 nodes;
#   (c) verification throughput (`POST /v1/verify` with wrk) and the daemon's
#       CPU time per answer of cluster node C against the standalone node, in
#       interleaved rounds, and the ratio cluster/standalone.
#
#   benches/cluster.sh
#   ROUNDS=5 DURATION=10s CHANGES=200 RATE_MAX=600 RATE_WINDOW_MS=10000 RATE_WINDOWS=3 \
#     REMAINING=1000 benches/cluster.sh
#
# Needs PostgreSQL's server binaries (apt-get install postgresql), wrk, curl
# and python3 (the probe uses the Python client in clients/python).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
CHANGES=${CHANGES:-200}
RATE_MAX=${RATE_MAX:-600}
RATE_WINDOW_MS=${RATE_WINDOW_MS:-10000}
RATE_WINDOWS=${RATE_WINDOWS:-3}
REMAINING=${REMAINING:-1000}
LOG=${LOG:-warn}

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool not found (apt-get install -y wrk curl python3)" >&2; exit 2; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "cluster.sh: PostgreSQL not found (apt-get install -y postgresql)" >&2; exit 2; }
echo "building tollgate (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin tollgate)
bin=$target/release/tollgate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/tollgate-cluster-bench.XXXXXX)
chmod 755 "$tmp"
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ -d "$tmp/pg" ] && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# PostgreSQL: its own data directory and port, trust on 127.0.0.1.
pgport=$(free_port)
mkdir "$tmp/pg" "$tmp/pgsock"
[ ${#as_pg[@]} -eq 0 ] || chown postgres "$tmp/pg" "$tmp/pgsock"
"${as_pg[@]}" "$pgbin/initdb" -D "$tmp/pg" -A trust -U postgres --no-sync >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pgsock/pg.log" -w start \
    -o "-p $pgport -k $tmp/pgsock -c listen_addresses=127.0.0.1" >/dev/null
url="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"

export TOLLGATE_ADMIN_TOKEN=cluster-bench-admin-token-0123456789abcdef
export TOLLGATE_BENCH_HS=cluster-bench-hs-secret-0123456789abcdef
# Nodes a, b, c in cluster mode; s standalone (the same configuration, no --postgres).
ports=() https=() socks=()
for n in a b c s; do
    port=$(free_port)
    cat >"$tmp/$n.toml" <<EOF
data = "$tmp/data-$n"
socket = "$tmp/$n.sock"
http = "127.0.0.1:$port"

[log]
level = "$LOG"

[[jwt.keys]]
kid = "bench"
alg = "HS256"
secret_env = "TOLLGATE_BENCH_HS"

[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"
EOF
    extra=()
    [ "$n" = s ] || extra=(--postgres "$url")
    "$bin" serve --config "$tmp/$n.toml" "${extra[@]}" 2>"$tmp/$n.log" &
    pids+=($!)
    ports+=("$port") https+=("127.0.0.1:$port") socks+=("$tmp/$n.sock")
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "cluster.sh: node $n did not start" >&2; cat "$tmp/$n.log" >&2; exit 1; }
done
pid_c=${pids[2]} pid_s=${pids[3]}
cluster_https=$(IFS=,; echo "${https[*]:0:3}")
cluster_socks=$(IFS=,; echo "${socks[*]:0:3}")

echo "== cluster mode: 3 nodes and PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on this host ($(nproc) cores), load average $(cut -d' ' -f1-3 /proc/loadavg)"
probe() { PYTHONPATH="$root/clients/python" python3 "$root/benches/cluster_probe.py" "$@"; }
probe propagation "$cluster_https" "$cluster_socks" "$CHANGES"
probe rate "$cluster_https" "$cluster_socks" "$RATE_MAX" "$RATE_WINDOW_MS" "$RATE_WINDOWS"
probe remaining "$cluster_https" "$cluster_socks" "$REMAINING"

# (c) A key without limits on node C (made through A) and one on the standalone node.
mkkey() {
    local http=$1 team user
    team=$(curl -sf -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
        -d '{"name":"wrk","tier":"pro"}' "http://$http/v1/teams" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    user=$(curl -sf -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"teamId\":\"$team\",\"username\":\"wrk-$RANDOM\",\"password\":\"correct horse\",\"role\":\"Administrator\"}" \
        "http://$http/v1/users" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    curl -sf -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"userId\":\"$user\",\"name\":\"wrk\"}" "http://$http/v1/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
key_c=$(mkkey "${https[0]}")
key_s=$(mkkey "${https[3]}")
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -d "{\"credential\":\"$key_c\"}" "http://${https[2]}/v1/verify")" = 200 ] && break
    sleep 0.01
done

. "$root/benches/wrk-measure.sh"
rc="" rs="" cc="" cs=""
for round in $(seq "$ROUNDS"); do
    read -r r c < <(KEY=$key_c measure "$pid_c" -s "$tmp/verify.lua" "http://${https[2]}/v1/verify")
    rc+="$r " cc+="$c "
    read -r r2 c2 < <(KEY=$key_s measure "$pid_s" -s "$tmp/verify.lua" "http://${https[3]}/v1/verify")
    rs+="$r2 " cs+="$c2 "
    echo "round $round  cluster node $r req/s ($c µs CPU/req)  standalone $r2 req/s ($c2 µs CPU/req)" >&2
done
mrc=$(echo "$rc" | median) mrs=$(echo "$rs" | median) mcc=$(echo "$cc" | median) mcs=$(echo "$cs" | median)
echo "verification (POST /v1/verify, wrk -c$CONNECTIONS, median of $ROUNDS x $DURATION): cluster node $mrc req/s, $mcc µs CPU/req; standalone $mrs req/s, $mcs µs CPU/req; cluster/standalone: throughput $(python3 -c "print(f'{$mrc/$mrs:.3f}')"), CPU per answer $(python3 -c "print(f'{$mcc/$mcs:.3f}')")"
