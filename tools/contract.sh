#!/usr/bin/env bash
# Checks Strata's API contract with tools that are not ours (pinned in tools/contract/):
#   1. buf lint (STANDARD, the exceptions and their reasons in proto/buf.yaml) on strata.v1;
#   2. buf breaking (FILE rules) against the last released contract, proto/releases/baseline.binpb;
#   3. spectral lint (spectral:oas) on the OpenAPI document a running strata-cloud serves;
#   4. prism, a validating proxy, in front of that strata-cloud: every curl request quoted in
#      README.md and docs/api.md goes through it, written exactly as there, and must give a
#      request and a response that the document describes;
#   5. grpc-js against the gRPC port: health per service name, and reflection describes
#      every service it lists.
#
#   tools/contract.sh [--build-dir DIR]    (default: build; strata-cloud must be built there)
#   tools/contract.sh --write-baseline     makes the current protos the released contract
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=build
write_baseline=0
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --write-baseline) write_baseline=1; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "contract: unknown argument $1" >&2; exit 2 ;;
  esac
done

tools=$root/tools/contract
if [ ! -x "$tools/node_modules/.bin/prism" ] || [ "$tools/package-lock.json" -nt "$tools/node_modules/.package-lock.json" ]; then
  echo "contract: installing the pinned checkers (npm ci)"
  (cd "$tools" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
bin=$tools/node_modules/.bin

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1, 2: the protos, as a descriptor set (google/api comes from a Debian package, not the BSR)
googleapis=/usr/share/gocode/src/github.com/gogo/googleapis
protoc -I"$root/proto" -I"$googleapis" -I/usr/include --include_imports --include_source_info \
  --descriptor_set_out="$work/strata.binpb" "$root"/proto/strata/v1/*.proto
if [ "$write_baseline" = 1 ]; then
  mkdir -p proto/releases
  cp "$work/strata.binpb" proto/releases/baseline.binpb
  echo "contract: proto/releases/baseline.binpb is now the released contract ($(git rev-parse --short HEAD) + working tree)"
  exit 0
fi
echo "== buf lint"
"$bin/buf" lint "$work/strata.binpb" --config proto/buf.yaml --path strata/v1
echo "== buf breaking (against proto/releases/baseline.binpb)"
"$bin/buf" breaking "$work/strata.binpb" --against proto/releases/baseline.binpb --config proto/buf.yaml --path strata/v1

# --- a strata-cloud on the embedded database, on ports it picks
cloud_bin=$build/cloud-services/strata-cloud
[ -x "$cloud_bin" ] || { echo "contract: $cloud_bin is not built" >&2; exit 2; }
"$cloud_bin" --data-dir "$work/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$work/cloud.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q 'strata-cloud ready' "$work/cloud.log" && break
  sleep 0.1
done
ready=$(grep 'strata-cloud ready' "$work/cloud.log") || { cat "$work/cloud.log"; echo "contract: strata-cloud did not start" >&2; exit 1; }
rest=$(sed -E 's/.*REST=(http:\/\/[0-9.:]+).*/\1/' <<<"$ready")
grpc=$(sed -E 's/.*gRPC=([0-9.]+:[0-9]+).*/\1/' <<<"$ready")
curl -sf "$rest/openapi.json" >"$work/openapi.json"

# --- 3: spectral
echo "== spectral lint (spectral:oas) on /openapi.json"
printf 'extends: ["spectral:oas"]\n' >"$work/.spectral.yaml"
"$bin/spectral" lint "$work/openapi.json" --ruleset "$work/.spectral.yaml" --fail-severity warn
echo "spectral: no errors, no warnings"

# --- 4: every documented request through prism
echo "== documented requests through a validating proxy (prism --errors)"
proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/prism" proxy "$work/openapi.json" "$rest" --errors --host 127.0.0.1 --port "$proxy_port" >"$work/prism.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  grep -q 'Prism is listening' "$work/prism.log" && break
  sleep 0.1
done
grep -q 'Prism is listening' "$work/prism.log" || { cat "$work/prism.log"; echo "contract: prism did not start" >&2; exit 1; }
proxy=http://127.0.0.1:$proxy_port
python3 "$tools/doc_requests.py" README.md docs/api.md >"$work/requests.sh"
count=$(grep -c '^curl' "$work/requests.sh")
[ "$count" -ge 10 ] || { echo "contract: found only $count documented requests" >&2; exit 1; }
# Each request runs as written, with the documentation's address pointing at the proxy
# ($api and localhost:8080); `curl` is wrapped only to keep the status and headers.
cat >"$work/run.sh" <<EOF
set -u
api=$proxy
n=0; failed=0
curl() {
  n=\$((n + 1))
  command curl -D "$work/h.\$n" -o "$work/b.\$n" "\$@"
  local rc=\$?
  local status; status=\$(head -1 "$work/h.\$n" | cut -d' ' -f2)
  if [ \$rc -ne 0 ] || grep -qi '^sl-violations:' "$work/h.\$n" || grep -qi '^content-type: application/problem+json' "$work/h.\$n" || [ "\${status:-0}" -ge 500 ]; then
    failed=\$((failed + 1))
    echo "FAIL (\$status): curl \$*"; cat "$work/b.\$n"; echo
  else
    echo "ok   (\$status): curl \$*"
  fi
}
EOF
sed -E "s#localhost:8080#127.0.0.1:$proxy_port#g" "$work/requests.sh" >>"$work/run.sh"
printf 'echo "$n requests, $failed failed"; [ "$failed" = 0 ]\n' >>"$work/run.sh"
(cd "$work" && bash run.sh)

# --- 5: gRPC health and reflection, with grpc-js
echo "== gRPC health per service and reflection (grpc-js)"
node "$tools/grpc_check.js" "$grpc"
