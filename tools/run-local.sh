#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and runs Strata on this machine
# on the embedded database (SQLite under ./strata-data), with a demo device fed with
# simulated readings. Ctrl-C stops everything cleanly.
#
# Environment: STRATA_GRPC_PORT (default 7000), STRATA_HTTP_PORT (default 8080),
# STRATA_DATA_DIR (default ./strata-data).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target strata-cloud

grpc_port=${STRATA_GRPC_PORT:-7000}
http_port=${STRATA_HTTP_PORT:-8080}
data_dir=${STRATA_DATA_DIR:-strata-data}
api="http://127.0.0.1:${http_port}"

build/cloud-services/strata-cloud --data-dir "$data_dir" \
  --grpc-listen "127.0.0.1:${grpc_port}" --http-listen "127.0.0.1:${http_port}" &
cloud_pid=$!
sim_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  kill -TERM "$cloud_pid" 2>/dev/null || true
  wait "$cloud_pid" 2>/dev/null || true
  echo "stopped."
}
trap stop INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  kill -0 "$cloud_pid" 2>/dev/null || { echo "strata-cloud exited; see the log above"; exit 1; }
  sleep 0.1
done

# A demo device with simulated readings, written through the public REST API.
curl -fsS -X POST "$api/v1/devices" -H 'content-type: application/json' \
  -d '{"device_id":"demo-thermo-1","name":"Demo thermometer","type":"thermometer","labels":{"site":"lab"}}' \
  >/dev/null 2>&1 || true
(
  i=0
  while true; do
    t=$(awk -v i="$i" 'BEGIN { printf "%.2f", 21 + 2 * sin(i / 10) }')
    h=$(awk -v i="$i" 'BEGIN { printf "%.1f", 45 + 5 * cos(i / 7) }')
    curl -fsS -X POST "$api/v1/devices/demo-thermo-1/telemetry" -H 'content-type: application/json' \
      -d "[{\"values\":{\"temperature\":$t,\"humidity\":$h}}]" >/dev/null 2>&1 || true
    i=$((i + 1))
    sleep 1
  done
) &
sim_pid=$!

cat <<TXT

Strata is running on the embedded database ($data_dir/strata.db).
  gRPC      127.0.0.1:${grpc_port}   (server reflection on; health: grpc.health.v1.Health)
  REST      $api
  metrics   $api/metrics
  OpenAPI   $api/openapi.json

Try:
  curl -s $api/v1/devices
  curl -s $api/v1/devices/demo-thermo-1/telemetry/latest
  curl -s "$api/v1/devices/demo-thermo-1/telemetry?keys=temperature&order=DESC&limit=5"
  curl -s "$api/v1/devices/demo-thermo-1/telemetry/aggregate?keys=temperature,humidity&function=AVG&interval=10000&start=\$(( (\$(date +%s) - 600) * 1000 ))&end=\$(( \$(date +%s) * 1000 ))"
  curl -s -X POST $api/v1/devices -d '{"device_id":"pump-1","type":"pump"}'
  curl -s -X POST $api/v1/devices/pump-1/telemetry -d '[{"ts":1700000000000,"values":{"pressure":2.4}}]'

Ctrl-C stops everything.
TXT
wait "$cloud_pid"
