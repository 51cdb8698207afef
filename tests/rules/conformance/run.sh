#!/usr/bin/env bash
# Runs Google's CEL conformance suite against strata::rules (ctest's cel_conformance_test):
# installs the pinned suite (@bufbuild/cel-spec, package-lock.json) if node_modules is
# missing or older than the lock, exports it to OUT with export.js, then runs the test
# binary on it with the known failures of known_failures.txt.
#
#   tests/rules/conformance/run.sh OUT.json TEST_BINARY [gtest args...]
#
# STRATA_CEL_CONFORMANCE_VERBOSE=1 also lists every out-of-subset case and every type
# disagreement.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1
binary=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)

# One install at a time: the build trees (build, build-asan, build-tsan) share this
# directory's node_modules, and npm ci deletes it before it installs.
exec 9>"${TMPDIR:-/tmp}/strata-cel-conformance-npm.lock"
flock 9
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "cel conformance: installing the pinned suite (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
mkdir -p "$(dirname "$out")"
node "$here/export.js" >"$out.tmp"
mv "$out.tmp" "$out"
flock -u 9
exec 9>&-

export STRATA_CEL_CONFORMANCE_JSON=$out
export STRATA_CEL_KNOWN_FAILURES=$here/known_failures.txt
exec "$binary" "$@"
