#!/bin/bash
# Runs the README's first session against a real daemon; prints each command and its output.
# Needs curl, jq and the binaries: cargo build --release builds both (BIN overrides where
# they are, e.g. BIN=target/debug). Uses port 7070, like the README.
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
W=$(mktemp -d)
cd "$W"
export PATH="$BIN:$PATH"
tollgate serve > daemon.log 2>&1 &
DPID=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:7070/readyz >/dev/null && break; sleep 0.1; done
run() { echo "\$ $*"; eval "$@"; echo; }
echo "=== curl"
run 'ls tollgate-data'
run 'export TOLLGATE_ADMIN_TOKEN=$(cat tollgate-data/admin-token)'
run 'curl -s http://127.0.0.1:7070/v1/teams -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H "Content-Type: application/json" -d '"'"'{"name": "acme", "tier": "Pro"}'"'"' | tee team.json | jq .'
run 'TEAM=$(jq -r .id team.json)'
run 'curl -s http://127.0.0.1:7070/v1/users -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H "Content-Type: application/json" -d "{\"teamId\": \"$TEAM\", \"username\": \"alice\", \"password\": \"correct horse battery\", \"role\": \"Administrator\"}" | jq .'
run 'curl -s -X POST http://127.0.0.1:7070/v1/auth/token -u "alice:correct horse battery"'
run 'JWT=$(curl -s -X POST http://127.0.0.1:7070/v1/auth/token -u "alice:correct horse battery" | jq -r .token)'
run 'curl -s http://127.0.0.1:7070/v1/keys -H "Authorization: Bearer $JWT" -H "Content-Type: application/json" -d '"'"'{"name": "ci", "permissions": {"docs": ["read"]}}'"'"' | tee key.json | jq .'
run 'KEY=$(jq -r .key key.json); KEY_ID=$(jq -r .id key.json)'
run 'curl -s http://127.0.0.1:7070/v1/verify -H "Content-Type: application/json" -d "{\"credential\": \"$KEY\", \"permissions\": {\"docs\": [\"read\"]}}" | jq .'
run 'curl -s http://127.0.0.1:7070/v1/verify -H "Content-Type: application/json" -d "{\"credential\": \"$KEY\", \"permissions\": {\"docs\": [\"delete\"]}}" | jq .'
run 'curl -s "http://127.0.0.1:7070/v1/keys?limit=10" -H "Authorization: Bearer $JWT" | jq .'
run 'curl -s -o /dev/null -w "%{http_code}\n" -X DELETE http://127.0.0.1:7070/v1/keys/$KEY_ID -H "Authorization: Bearer $JWT"'
run 'curl -s http://127.0.0.1:7070/v1/verify -H "Content-Type: application/json" -d "{\"credential\": \"$KEY\"}" | jq .'
run 'curl -s "http://127.0.0.1:7070/v1/logs?outcome=denied" -H "Authorization: Bearer $JWT" | jq .'
echo "=== cli"
run 'export TOLLGATE_ADMIN_TOKEN=$(cat tollgate-data/admin-token)'
run 'TEAM=$(tollgate-admin --json teams create globex --tier Pro | jq -r .id)'
run 'tollgate-admin teams get $TEAM'
run 'echo "correct horse battery" | tollgate-admin users create bob --team $TEAM --role Administrator --password-stdin'
run 'tollgate-admin users list --team $TEAM'
run 'echo "correct horse battery" | tollgate-admin login bob --password-stdin'
run 'export TOLLGATE_TOKEN=$(echo "correct horse battery" | tollgate-admin login bob --password-stdin); unset TOLLGATE_ADMIN_TOKEN'
run 'tollgate-admin keys create --name ci --permission docs:read --remaining 1000 --expires-in 90d'
run 'tollgate-admin --json keys create --name deploy --permission docs:read --permission docs:create --rate-limit-max 10 --rate-limit-window 1m > deploy.json'
run 'KEY=$(jq -r .key deploy.json); KEY_ID=$(jq -r .id deploy.json)'
run 'tollgate-admin keys list'
run 'tollgate-admin --json keys list --limit 1'
run 'tollgate-admin verify $KEY --permission docs:create'
run 'tollgate-admin verify $KEY --permission docs:delete; echo "exit code: $?"'
run 'tollgate-admin keys delete $KEY_ID'
run 'tollgate-admin verify $KEY; echo "exit code: $?"'
run 'tollgate-admin logs --since 1h --limit 6'
run 'tollgate-admin keys get no-such-key; echo "exit code: $?"'
run 'tollgate-admin --json keys get no-such-key; echo "exit code: $?"'
run 'tollgate-admin logs --outcome bogus; echo "exit code: $?"'
run 'tollgate-admin --url http://127.0.0.1:1 teams get x; echo "exit code: $?"'
kill $DPID; wait $DPID
echo "daemon exit: $?"
