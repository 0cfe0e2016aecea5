#!/bin/bash
# Runs every benchmark in sequence (run it on an otherwise idle machine);
# logs go to the directory given as $1 (default target/bench-logs).
cd "$(dirname "$0")/.."
L=${1:-target/bench-logs}; mkdir -p "$L"
cargo build --release --bin tollgate --example verify_scaling --example mkkey 2>&1 | tail -1
uptime > $L/uptime.start
for i in 1 2 3 4 5; do
  ./target/release/tollgate bench --duration 5 --keys 100000 --mode both > $L/sidecar-pipelined-$i.log 2>&1
done
for i in 1 2 3; do
  ./target/release/tollgate bench --duration 5 --keys 100000 --mode both --connections 1 --depth 1 > $L/sidecar-single-$i.log 2>&1
done
./target/release/tollgate bench --duration 5 --keys 1000 --mode both --credential-kind jwt > $L/sidecar-jwt.log 2>&1
for i in 1 2; do
  ./target/release/examples/verify_scaling 1000 100000 > $L/scaling-default-$i.log 2>&1
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 ./target/release/examples/verify_scaling 1000 100000 > $L/scaling-hugetlb-$i.log 2>&1
done
uptime > $L/uptime.mid
cargo bench --bench verify > $L/criterion-verify.log 2>&1
cargo bench --bench socket > $L/criterion-socket.log 2>&1
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 cargo bench --bench verify -- api_key_verify/1M > $L/criterion-verify-hugetlb.log 2>&1
benches/nginx-wrk.sh > $L/nginx.log 2>&1
uptime > $L/uptime.end
echo done > $L/done
