#!/usr/bin/env bash
# Installs every Debian package that building, testing and running Strata locally needs.
# Idempotent: when everything is present it only checks and exits.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libgrpc-dev libabsl-dev
  golang-github-gogo-googleapis-dev golang-google-grpc-dev  # google/api and grpc/health .protos
  libboost-dev libboost-system-dev
  libssl-dev zlib1g-dev libc-ares-dev libre2-dev  # static archives for strata-edge (cmake/StaticEdge.cmake)
  libpqxx-dev libpq-dev libsqlite3-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libutfcpp-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev
  libgtest-dev libgmock-dev
  mosquitto mosquitto-clients
  postgresql-15 postgresql-client-15
  curl sqlite3 util-linux
  clang-14 libfuzzer-14-dev libclang-rt-14-dev  # tools/fuzz.sh
  python3
)
# tools/contract.sh runs its checkers (pinned in tools/contract/package.json) on Node.js:
# Debian's, unless the machine has a Node.js of its own.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian packages enable and start system-wide mosquitto/PostgreSQL services where an
# init system runs; Strata starts its own instances on free ports and never uses those.
