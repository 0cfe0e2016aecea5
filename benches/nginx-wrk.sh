#!/usr/bin/env bash
# Throughput of nginx serving a static file with tollgate `auth_request`,
# against the same file with no auth, in the same run.
#
#   benches/nginx-wrk.sh            # 3 rounds of wrk -t2 -c64 -d10s per variant
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 benches/nginx-wrk.sh
#   VARIANTS="noauth unix null-auth" benches/nginx-wrk.sh   # a subset
#
# Variants (each round runs them all, interleaved, so drift hits each alike):
#   noauth        the file, no auth_request
#   tcp           auth_request to tollgate over TCP, keep-alive upstream
#   unix          auth_request to tollgate over its HTTP Unix socket, keep-alive
#   tcp-nokeep    auth_request over TCP, a new connection per subrequest
#                 (nginx's default without an `upstream { keepalive; }` block)
#   null-auth     auth_request to an nginx location that just answers 200 over
#                 a keep-alive Unix socket: the cost of auth_request itself, the
#                 ceiling any auth server can reach on this machine
#
# Besides requests/s it prints the CPU time tollgate and nginx spent per
# request (from /proc), which says where the cores went.
#
# Needs nginx and wrk (apt-get install -y nginx-light wrk). Everything lives in
# a temp dir that is removed at the end. Prints the median requests/s of each
# variant and its ratio to noauth.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
# shellcheck disable=SC2206 # a space-separated list, split on purpose
VARIANTS=(${VARIANTS:-noauth tcp unix tcp-nokeep null-auth})
[[ " ${VARIANTS[*]} " == *" noauth "* ]] || { echo "nginx-wrk: VARIANTS must include noauth, the baseline" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in "$NGINX" wrk curl; do
    command -v "$tool" >/dev/null || { echo "nginx-wrk: $tool not found (apt-get install -y nginx-light wrk curl)" >&2; exit 2; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tmp=$(mktemp -d /tmp/tollgate-wrk.XXXXXX)
tollgate_pid= nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    [ -n "$tollgate_pid" ] && kill "$tollgate_pid" 2>/dev/null && wait "$tollgate_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "building tollgate (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin tollgate --example mkkey)

tport=$(free_port)
nport=$(free_port)
cat >"$tmp/tollgate.toml" <<EOF
data = "$tmp/data"
socket = "$tmp/tollgate.sock"
http = "127.0.0.1:$tport"
http_socket = "$tmp/http.sock"

[log]
level = "warn"

# The bench key's team must not be the limit being measured.
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = "unlimited"
log_retention_days = "unlimited"

[[auth.routes]]
prefix = "/tcp/"
permissions = { files = ["read"] }
[[auth.routes]]
prefix = "/unix/"
permissions = { files = ["read"] }
EOF

key=$("$target/release/examples/mkkey" "$tmp/data" "$tmp/tollgate.toml")
"$target/release/tollgate" serve --config "$tmp/tollgate.toml" &
tollgate_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$tport/readyz" >/dev/null && break; sleep 0.1; done

mkdir -p "$tmp/www"
head -c 1024 /dev/urandom | base64 >"$tmp/www/file.txt"
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat >"$tmp/nginx.conf" <<EOF
$user
worker_processes auto;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    default_type text/plain;

    upstream tollgate_tcp  { server 127.0.0.1:$tport; keepalive 32; }
    upstream tollgate_unix { server unix:$tmp/http.sock; keepalive 32; }
    upstream null_auth     { server unix:$tmp/null.sock; keepalive 32; }

    server {
        listen unix:$tmp/null.sock;
        location / { return 200; }
    }

    server {
        listen 127.0.0.1:$nport backlog=4096;
        root $tmp/www;

        location /noauth/ { alias $tmp/www/; }

        location /tcp/ {
            alias $tmp/www/;
            auth_request /_auth_tcp;
            auth_request_set \$auth_subject \$upstream_http_x_auth_subject;
        }
        location /unix/ {
            alias $tmp/www/;
            auth_request /_auth_unix;
            auth_request_set \$auth_subject \$upstream_http_x_auth_subject;
        }
        location /tcp-nokeep/ {
            alias $tmp/www/;
            auth_request /_auth_nokeep;
            auth_request_set \$auth_subject \$upstream_http_x_auth_subject;
        }

        location /null-auth/ {
            alias $tmp/www/;
            auth_request /_auth_null;
            auth_request_set \$auth_subject \$upstream_http_x_auth_subject;
        }
        location = /_auth_null {
            internal;
            proxy_pass http://null_auth/auth;
            include $tmp/auth_params;
        }

        location = /_auth_tcp {
            internal;
            proxy_pass http://tollgate_tcp/auth;
            include $tmp/auth_params;
        }
        location = /_auth_unix {
            internal;
            proxy_pass http://tollgate_unix/auth;
            include $tmp/auth_params;
        }
        location = /_auth_nokeep {
            internal;
            proxy_pass http://127.0.0.1:$tport/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Real-IP \$remote_addr;
        }
    }
}
EOF
cat >"$tmp/auth_params" <<'EOF'
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_pass_request_body off;
proxy_set_header Content-Length "";
proxy_set_header X-Original-Method $request_method;
proxy_set_header X-Original-URI $request_uri;
proxy_set_header X-Real-IP $remote_addr;
EOF
"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e stderr -g "daemon off; pid $tmp/nginx.pid; error_log stderr warn;" &
nginx_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$nport/noauth/file.txt" && break; sleep 0.1; done

# Sanity: auth works, and is enforced, on every protected variant.
for v in "${VARIANTS[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "http://127.0.0.1:$nport/$v/file.txt")
    [ "$code" = 200 ] || { echo "nginx-wrk: $v answered $code with the key" >&2; exit 1; }
    if [ "$v" != noauth ] && [ "$v" != null-auth ]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/$v/file.txt")
        [ "$code" = 401 ] || { echo "nginx-wrk: $v answered $code without a key" >&2; exit 1; }
    fi
done

# CPU ticks (utime + stime) of a process and its children's threads.
ticks() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid" || true); }
hz=$(getconf CLK_TCK)

declare -A results
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $(nproc) cores, $("$NGINX" -v 2>&1)" >&2
for round in $(seq "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
        t0=$(ticks "$tollgate_pid"); n0=$(ticks $(nginx_pids))
        out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "Authorization: Bearer $key" "http://127.0.0.1:$nport/$v/file.txt")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
        if [ -n "$bad" ]; then
            echo "nginx-wrk: $v had $bad non-2xx responses; the run is not valid" >&2
            exit 1
        fi
        t1=$(ticks "$tollgate_pid"); n1=$(ticks $(nginx_pids))
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        cpu=$(awk -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v r="$reqs" -v hz="$hz" \
            'BEGIN {printf "cpu/request: tollgate %5.1f us, nginx %5.1f us", t/hz/r*1e6, n/hz/r*1e6}')
        echo "round $round  $(printf '%-11s' "$v") $rps req/s   $cpu" >&2
        results[$v]="${results[$v]:-} $rps"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
base=$(median <<<"${results[noauth]}")
printf '\n%-11s %12s %8s   %s\n' variant "median req/s" ratio "runs"
for v in "${VARIANTS[@]}"; do
    m=$(median <<<"${results[$v]}")
    printf '%-11s %12.0f %8.2f  %s\n' "$v" "$m" "$(awk -v m="$m" -v b="$base" 'BEGIN {print m/b}')" "${results[$v]}"
done
