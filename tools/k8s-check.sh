#!/usr/bin/env bash
# Checks deploy/kubernetes without a cluster:
#   1. `kubectl kustomize` renders the base and every overlay;
#   2. every rendered object passes the Kubernetes API schemas (kubernetes-models, pinned in
#      deploy/kubernetes/check), with unknown fields refused (check/validate.js);
#   3. every overlay is wired to what strata-cloud really serves, read from its source: flags,
#      listening ports and containerPorts, probe ports and paths, gRPC health, the database
#      URL, one rule runner (check/wiring.js);
#   4. negative tests: copies broken on purpose (a misspelt field, a wrong type, a wrong probe
#      port, path or port name, a second rule runner, the base's placeholder database) must
#      each be refused, with the expected message.
#
#   bash tools/k8s-check.sh     (needs kubectl, node and npm; installs the checker with npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
k8s=$root/deploy/kubernetes
check=$k8s/check

for tool in kubectl node npm; do
  command -v "$tool" >/dev/null || { echo "k8s-check: $tool is not installed" >&2; exit 2; }
done
if [ ! -d "$check/node_modules/kubernetes-models" ] || [ "$check/package-lock.json" -nt "$check/node_modules/.package-lock.json" ]; then
  echo "k8s-check: installing the pinned checker (npm ci)"
  (cd "$check" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "k8s-check: FAIL: $*" >&2; failed=1; }

# --- 1. render
overlays=()
for dir in "$k8s"/overlays/*/; do overlays+=("$(basename "$dir")"); done
[ ${#overlays[@]} -gt 0 ] || { echo "k8s-check: no overlays in $k8s/overlays" >&2; exit 1; }
kubectl kustomize "$k8s/base" >"$work/base.yaml" || fail "kubectl kustomize deploy/kubernetes/base"
for o in "${overlays[@]}"; do
  kubectl kustomize "$k8s/overlays/$o" >"$work/$o.yaml" || fail "kubectl kustomize deploy/kubernetes/overlays/$o"
done
[ "$failed" = 0 ] || exit 1
echo "k8s-check: rendered base and ${overlays[*]}"

# --- 2, 3. the schemas, and the wiring against the source
renders=()
for o in "${overlays[@]}"; do renders+=("$work/$o.yaml"); done
node "$check/validate.js" "$work/base.yaml" "${renders[@]}" || fail "schema validation"
node "$check/wiring.js" --source "$root" "${renders[@]}" || fail "probes, ports and flags against strata-cloud's source"

# --- 4. negative tests: each broken copy must be refused, for the expected reason
expect_refused() {  # NAME CHECKER EXPECTED-MESSAGE FILE
  local name=$1 checker=$2 expected=$3 file=$4 out args=()
  [ "$checker" = wiring.js ] && args=(--source "$root")
  if out=$(node "$check/$checker" "${args[@]}" "$file" 2>&1); then
    fail "negative test $name: $checker accepted it"
  elif ! grep -qF -- "$expected" <<<"$out"; then
    fail "negative test $name: $checker refused it, but not with '$expected':"$'\n'"$out"
  else
    echo "k8s-check: negative test $name: refused ($expected)"
  fi
}
sample=$work/${overlays[0]}.yaml
while IFS='|' read -r mutation checker expected; do
  node "$check/mutate.js" "$mutation" "$sample" "$work/bad-$mutation.yaml"
  expect_refused "$mutation" "$checker" "$expected" "$work/bad-$mutation.yaml"
done <<'EOF'
unknown-field|validate.js|unknown field /spec/template/spec/containers/0/securityContext/readOnlyRootFS
wrong-type|validate.js|containerPort must be integer
probe-port|wiring.js|livenessProbe: grpc port 7001 is not the gRPC port 7000
probe-path|wiring.js|readinessProbe: strata-cloud does not serve /ready
port-name|wiring.js|startupProbe: httpGet port web is not a containerPort name
second-runner|wiring.js|runs the rule runner: must be a Deployment with replicas: 1
EOF
expect_refused base-database wiring.js "the base's placeholder" "$work/base.yaml"

if [ "$failed" != 0 ]; then
  echo "k8s-check: FAILED" >&2
  exit 1
fi
echo "k8s-check: ok (${overlays[*]})"
