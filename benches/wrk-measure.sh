# Sourced by benches/http-wrk.sh and benches/cluster.sh: one wrk run against
# a daemon, measured by its requests/s and its CPU time per request.
#
# Needs $tmp (a scratch directory), $CONNECTIONS and $DURATION; $THREADS
# (wrk's threads) defaults to 1. Writes $tmp/verify.lua, which POSTs
# {"credential": $KEY} (KEY from the environment of the wrk run).

cat >"$tmp/verify.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"credential":"' .. os.getenv("KEY") .. '"}'
LUA

# A process's CPU time (user + system, in clock ticks) from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# measure PID WRK-ARGS...: prints "requests/s cpu-µs-per-request" of one wrk
# run; fails on any non-2xx answer (a figure of refusals is not a figure).
measure() {
    local pid=$1 before after out; shift
    before=$(ticks "$pid")
    out=$(wrk -t"${THREADS:-1}" -c"$CONNECTIONS" -d"$DURATION" "$@")
    after=$(ticks "$pid")
    if echo "$out" | grep -q "Non-2xx"; then echo "wrk: non-2xx answers: $out" >&2; exit 1; fi
    echo "$out" | awk -v t=$((after - before)) -v hz="$hz" '
        /requests in/ {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%s %.2f\n", r, t * 1e6 / hz / n}'
}

# The median of the numbers on stdin (separated by spaces or lines).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
