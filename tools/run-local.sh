#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and runs the whole Strata
# platform on this machine: mosquitto (own config, loopback), strata-cloud on the embedded
# database (SQLite under ./strata-data), strata-edge, and strata-sim publishing simulated
# sensors of the six application scenarios. Ctrl-C stops everything cleanly.
#
# Environment: STRATA_GRPC_PORT (7000), STRATA_HTTP_PORT (8080), STRATA_MQTT_PORT (1883),
# STRATA_EDGE_PORT (9090), STRATA_DATA_DIR (./strata-data), STRATA_SIM_DEVICES (12),
# STRATA_SIM_RATE (messages per second, 20).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target strata-cloud strata-edge strata-sim

grpc_port=${STRATA_GRPC_PORT:-7000}
http_port=${STRATA_HTTP_PORT:-8080}
mqtt_port=${STRATA_MQTT_PORT:-1883}
edge_port=${STRATA_EDGE_PORT:-9090}
data_dir=$(mkdir -p "${STRATA_DATA_DIR:-strata-data}" && cd "${STRATA_DATA_DIR:-strata-data}" && pwd)
api="http://127.0.0.1:${http_port}"
mkdir -p "$data_dir/mosquitto" "$data_dir/logs"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  # Reverse order of start: the simulator first, the broker last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  echo "stopped. Data stays in $data_dir."
}
trap stop INT TERM EXIT

wait_http() {  # URL PID NAME
  for _ in $(seq 1 150); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; see $data_dir/logs/$3.log"; exit 1; }
    sleep 0.2
  done
  echo "$3 did not come up; see $data_dir/logs/$3.log"; exit 1
}

sed -e "s|@PORT@|$mqtt_port|" -e "s|@DIR@|$data_dir/mosquitto|" deploy/mosquitto/local.conf.in \
  > "$data_dir/mosquitto/mosquitto.conf"
[ "$(id -u)" -eq 0 ] && echo "user root" >> "$data_dir/mosquitto/mosquitto.conf"
mosquitto -c "$data_dir/mosquitto/mosquitto.conf" > "$data_dir/logs/mosquitto.log" 2>&1 &
pids+=($!)

build/cloud-services/strata-cloud --data-dir "$data_dir" \
  --grpc-listen "127.0.0.1:${grpc_port}" --http-listen "127.0.0.1:${http_port}" \
  > "$data_dir/logs/strata-cloud.log" 2>&1 &
pids+=($!)
wait_http "$api/readyz" "${pids[-1]}" strata-cloud

# Three rules over the simulated scenarios, so that alarms appear (docs/rules.md): two CLOUD
# rules and one EDGE rule (PM2.5, evaluated at the gateway and sent up); they stay in the
# database across runs (creating one again is a 409, and changes nothing).
for rule in \
  '{"rule_id":"machine-overheat","name":"Machine overheating","alarm_type":"machine_overheat","for_ms":10000,"raise":[{"severity":"MAJOR","condition":"has(reading.machine_temperature) && machine_temperature > 66.0"},{"severity":"CRITICAL","condition":"has(reading.machine_temperature) && machine_temperature > 70.0"}],"clear":"machine_temperature < 64.0"}' \
  '{"rule_id":"pm25-high","name":"PM2.5 above the limit","location":"EDGE","alarm_type":"pm25_high","for_ms":30000,"raise":[{"severity":"MINOR","condition":"has(reading.pm2_5) && pm2_5 > 20.0"}],"clear":"pm2_5 < 17.0"}' \
  '{"rule_id":"spo2-low","name":"SpO2 too low","alarm_type":"spo2_low","clear_after_ms":30000,"raise":[{"severity":"CRITICAL","condition":"has(reading.spo2) && spo2 < 97"}]}'; do
  curl -s -o /dev/null -X POST "$api/v1/rules" -H 'Content-Type: application/json' -d "$rule" || true
done

build/edge-agent/strata-edge --edge-id local-gw --mqtt-url "tcp://127.0.0.1:${mqtt_port}" \
  --cloud "127.0.0.1:${grpc_port}" --data-dir "$data_dir/edge" --http-listen "127.0.0.1:${edge_port}" \
  > "$data_dir/logs/strata-edge.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${edge_port}/healthz" "${pids[-1]}" strata-edge

build/tools/sim/strata-sim --mqtt-url "tcp://127.0.0.1:${mqtt_port}" --scenarios all \
  --devices "${STRATA_SIM_DEVICES:-12}" --rate "${STRATA_SIM_RATE:-20}" --seed 1 \
  > "$data_dir/logs/strata-sim.log" 2>&1 &
pids+=($!)

cat <<TXT

Strata is running on this machine:
  mosquitto    tcp://127.0.0.1:${mqtt_port}
  strata-sim   ${STRATA_SIM_DEVICES:-12} simulated devices across the six scenarios, ${STRATA_SIM_RATE:-20} msg/s
  strata-edge  status http://127.0.0.1:${edge_port}/status   (or: build/edge-agent/strata-edge status --http-listen 127.0.0.1:${edge_port})
  strata-cloud gRPC 127.0.0.1:${grpc_port}, REST $api   (SQLite: $data_dir/strata.db)
  logs         $data_dir/logs/

Try:
  curl -s $api/v1/devices
  curl -s $api/v1/devices/mfg-0001/telemetry/latest
  curl -s "$api/v1/devices/grid-0001/telemetry?keys=voltage&order=DESC&limit=5"
  curl -s "$api/v1/devices/mfg-0001/telemetry/aggregate?keys=machine_temperature&function=AVG&interval=10000&start=\$(( (\$(date +%s) - 600) * 1000 ))&end=\$(( \$(date +%s) * 1000 ))"
  curl -s -X POST $api/v1/devices/mfg-0001/commands -H 'Content-Type: application/json' -d '{"name":"set_speed","params":{"rpm":1200}}'
  curl -s "$api/v1/devices/mfg-0001/commands?page_size=5"
  curl -s -X PATCH $api/v1/devices/mfg-0001/twin/desired -H 'Content-Type: application/json' -d '{"desired":{"rpm":1200}}'
  curl -s $api/v1/devices/mfg-0001/twin
  curl -s "$api/v1/alarms?status=ACTIVE_UNACK&page_size=5"
  curl -s $api/metrics | grep strata_
  curl -s http://127.0.0.1:${edge_port}/metrics | grep strata_edge_
  mosquitto_pub -p ${mqtt_port} -t v1/devices/my-sensor/telemetry -m '{"temperature":21.5}'

Ctrl-C stops everything.
TXT
wait "${pids[1]}"
