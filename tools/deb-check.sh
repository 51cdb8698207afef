#!/usr/bin/env bash
# Checks the edge package the way a gateway meets it:
#   1. builds it (tools/build-deb.sh: lintian errors fail) and a copy with a higher version;
#   2. `systemd-analyze security --offline=yes` on the unit: exposure at most 2.0;
#   3. the package's files, modes and owners (dpkg-deb -c) and control fields (dpkg-deb -f);
#   4. installs it with apt into a clean Debian root (debootstrap --variant=minbase bookworm,
#      cached in build/deb-root.tar), which pulls mosquitto in through Recommends; checks the
#      user, the files and the enabled unit; runs mosquitto and the agent there (as the
#      strata-edge user, on the packaged config, in a network and PID namespace of their own so
#      the packaged ports 1883 and 9090 are free and nothing outlives the check); checks that
#      the untouched config is refused, then sets edge-id as a field engineer would, publishes a
#      reading and reads it back with `strata-edge status`;
#   5. upgrades to the higher version: the edited config, the buffer and a marker file in
#      /var/lib/strata-edge are kept, and the agent starts on them;
#   6. apt-get remove keeps the data, the user and the config; purge deletes them;
#   7. with --systemd: installs systemd in the root, the package again, and boots the root with
#      systemd-nspawn (private network): the hardened unit itself runs the agent, which answers
#      `strata-edge status`, buffers a reading, is restarted after a kill -9 and stops cleanly.
#
#   tools/deb-check.sh [--systemd]   (as root; needs the network to the Debian mirror apt uses;
#                                     --systemd needs systemd-container, installed when missing)
#
# Every step has a timeout. The first run spends about a minute on debootstrap; later ones
# unpack build/deb-root.tar (delete it to start from a fresh root) and take the packages apt
# downloaded from build/deb-apt-cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$(date +%s)
say() { echo "deb-check: $*"; }
fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }
with_systemd=0
for arg in "$@"; do
  case $arg in
    --systemd) with_systemd=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) fail "unknown argument $arg" ;;
  esac
done

[ "$(id -u)" = 0 ] || fail "must run as root (debootstrap, chroot, mount)"
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
for tool in debootstrap systemd-analyze dpkg-deb unshare ip chroot timeout findmnt; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
if [ "$with_systemd" = 1 ] && ! command -v systemd-nspawn >/dev/null; then
  say "installing systemd-container (systemd-nspawn)"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends systemd-container >/dev/null
fi
# systemd-nspawn leaves empty folders in /run/systemd/nspawn: removed if this run made them.
nspawn_run_existed=0
[ -e /run/systemd/nspawn ] && nspawn_run_existed=1

work=$(mktemp -d "${TMPDIR:-/var/tmp}/strata-deb-check.XXXXXX")
jail=$work/root
cache_tar=$root/build/deb-root.tar
apt_cache=$root/build/deb-apt-cache

# Ends what the script started inside the root (by pid: only processes whose root is it), then
# unmounts everything under it; the work folder is deleted only when nothing is mounted there.
cleanup() {
  local rc=$? pids p m
  pids=()
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$jail" ] && pids+=("${p#/proc/}")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "deb-check: ending processes left in the root: ${pids[*]}" >&2
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  for _ in 1 2 3; do
    mapfile -t mounts < <(findmnt -rn -o TARGET | grep -F "$work/" | sort -r || true)
    [ ${#mounts[@]} -eq 0 ] && break
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  if [ "$nspawn_run_existed" = 0 ] && [ -d /run/systemd/nspawn ]; then
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true
  fi
  if findmnt -rn -o TARGET | grep -qF "$work/"; then
    echo "deb-check: mounts remain under $work; not deleting it:" >&2
    findmnt -rn -o TARGET | grep -F "$work/" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. build
say "building the package"
deb=$(timeout 900 bash tools/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "tools/build-deb.sh made no package"
v1=$(dpkg-deb -f "$deb" Version)
v2="$v1+debcheck1"
dpkg --compare-versions "$v2" gt "$v1" || fail "$v2 does not sort above $v1"
deb2=$(timeout 600 bash tools/build-deb.sh --no-lintian --version "$v2" "$work/deb2" | tail -n 1)
say "built $(basename "$deb") and, to test the upgrade, $(basename "$deb2") ($(elapsed))"

# --- 2. the unit's exposure
unit=deploy/debian/strata-edge.service
security=$(timeout 60 systemd-analyze security --offline=yes "$unit" 2>&1) || { echo "$security" >&2; fail "systemd-analyze security failed"; }
exposure=$(sed -n 's/.*Overall exposure level for strata-edge.service: \([0-9.]*\).*/\1/p' <<<"$security")
[ -n "$exposure" ] || { echo "$security" >&2; fail "no exposure level in systemd-analyze's output"; }
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
  { grep '✗' <<<"$security" >&2; fail "the unit's exposure is $exposure, above 2.0"; }
say "unit exposure $exposure (at most 2.0)"

# --- 3. contents and fields
arch=$(dpkg --print-architecture)
expected="-rw-r--r-- root/root ./etc/mosquitto/conf.d/strata-edge.conf
-rw-r--r-- root/root ./etc/strata/edge.yaml
-rw-r--r-- root/root ./lib/systemd/system/strata-edge.service
-rw-r--r-- root/root ./usr/share/doc/strata-edge/README.md
-rw-r--r-- root/root ./usr/share/doc/strata-edge/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/strata-edge/copyright
-rw-r--r-- root/root ./usr/share/lintian/overrides/strata-edge
-rwxr-xr-x root/root ./usr/bin/strata-edge"
actual=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $1, $2, $6 }' | sort)
[ "$actual" = "$(sort <<<"$expected")" ] ||
  fail "the package's files differ from the expected ones:"$'\n'"$(diff <(sort <<<"$expected") <(echo "$actual") || true)"
dpkg-deb -c "$deb" | awk '$2 != "root/root" { bad = 1; print } END { exit bad }' >&2 || fail "entries not owned by root/root"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = strata-edge ] || fail "Package is '$(field Package)'"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)', not $arch"
grep -Eq '(^|, )libc6 \(>= [0-9.]+\)' <<<"$(field Depends)" || fail "Depends '$(field Depends)' has no libc6 (>= ...)"
grep -Eq '(^|, )adduser(,|$)' <<<"$(field Depends)" || fail "Depends '$(field Depends)' has no adduser"
grep -Eq '(^|, )mosquitto(,|$)' <<<"$(field Recommends)" || fail "Recommends '$(field Recommends)' has no mosquitto"
conffiles=$(dpkg-deb -I "$deb" conffiles | sort)
[ "$conffiles" = $'/etc/mosquitto/conf.d/strata-edge.conf\n/etc/strata/edge.yaml' ] || fail "conffiles: $conffiles"
say "contents, fields and conffiles as expected (Depends: $(field Depends))"

# --- 4. a clean Debian root
mirror=${STRATA_DEB_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first URI apt uses for bookworm itself (not -security or -updates).
  mirror=$(awk 'BEGIN { RS = ""; FS = "\n" }
                { uri = ""; ok = 0
                  for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) ok = 1
                  }
                  if (ok && uri != "") { print uri; exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $3 == "bookworm" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || fail "no Debian mirror for bookworm in /etc/apt/sources.list*: set STRATA_DEB_MIRROR"

mkdir -p "$jail" "$apt_cache/partial"
if [ ! -f "$cache_tar" ]; then
  say "debootstrap --variant=minbase bookworm from $mirror (cached in $cache_tar)"
  timeout 900 debootstrap --variant=minbase bookworm "$work/boot" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
  # Nothing a package installs may start a daemon in the root (mosquitto's init script would).
  printf '#!/bin/sh\nexit 101\n' >"$work/boot/usr/sbin/policy-rc.d"
  chmod 0755 "$work/boot/usr/sbin/policy-rc.d"
  rm -rf "$work/boot/var/cache/apt/archives/"*.deb
  tar -C "$work/boot" --numeric-owner -cf "$cache_tar.tmp.$$" . && mv "$cache_tar.tmp.$$" "$cache_tar"
  rm -rf --one-file-system "${work:?}/boot"
  say "root cached ($(elapsed))"
fi
tar -C "$jail" --numeric-owner -xpf "$cache_tar"
cp -L /etc/resolv.conf "$jail/etc/resolv.conf"
mount -t proc proc "$jail/proc"
mount --bind "$apt_cache" "$jail/var/cache/apt/archives"

in_root() {  # SECONDS COMMAND...: a command in the root, with a clean environment
  local secs=$1; shift
  timeout "$secs" chroot "$jail" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}
apt_in_root() {  # SECONDS APT-ARGS...: apt-get, its output kept for a failure
  local secs=$1; shift
  in_root "$secs" apt-get -q -y -o Dpkg::Use-Pty=0 "$@" >"$work/apt.log" 2>&1 ||
    { tail -n 40 "$work/apt.log" >&2; fail "apt-get $* failed in the root"; }
}
say "root ready; apt-get update ($(elapsed))"
apt_in_root 300 update

cp "$deb" "$deb2" "$jail/root/"
say "installing $(basename "$deb") with apt"
apt_in_root 600 install "/root/$(basename "$deb")"
grep -q "strata-edge: set edge-id and cloud in /etc/strata/edge.yaml" "$work/apt.log" ||
  fail "postinst did not tell the engineer to set edge-id"
in_root 30 dpkg-query -W -f='${Status}\n' mosquitto | grep -q 'install ok installed' ||
  fail "mosquitto was not installed through Recommends"
# Test tooling only: mosquitto_pub, to publish a reading.
apt_in_root 300 install --no-install-recommends mosquitto-clients

check_installed() {
  local pw
  pw=$(in_root 10 getent passwd strata-edge) || fail "no strata-edge user"
  IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
  [ "$uid" -lt 1000 ] || fail "strata-edge is not a system user (uid $uid)"
  [ "$home" = /var/lib/strata-edge ] || fail "strata-edge's home is $home"
  [ "$shell" = /usr/sbin/nologin ] || fail "strata-edge's shell is $shell"
  in_root 10 getent group strata-edge >/dev/null || fail "no strata-edge group"
  [ "$(in_root 10 stat -c '%U:%G %a' /var/lib/strata-edge)" = "strata-edge:strata-edge 750" ] ||
    fail "/var/lib/strata-edge is $(in_root 10 stat -c '%U:%G %a' /var/lib/strata-edge)"
  for f in /usr/bin/strata-edge /lib/systemd/system/strata-edge.service /etc/strata/edge.yaml \
           /etc/mosquitto/conf.d/strata-edge.conf /usr/share/doc/strata-edge/copyright; do
    [ -f "$jail$f" ] || fail "$f is missing"
  done
  [ "$(readlink "$jail/etc/systemd/system/multi-user.target.wants/strata-edge.service")" = /lib/systemd/system/strata-edge.service ] ||
    fail "the unit is not enabled (no multi-user.target.wants link)"
}
check_installed
say "installed: user, state directory, files, unit enabled ($(elapsed))"

# The agent and its broker, run in the root. PHASE is install or upgrade.
cat >"$jail/root/run-check.sh" <<'EOF'
#!/bin/sh
# Runs in the root, in a network and PID namespace of its own (lo only; everything started
# here ends with it). As root; the agent runs as strata-edge with the unit's umask.
set -eu
phase=$1
logs=$(mktemp -d)  # the root's own temporary folder: the agent's, the broker's and the refusal's output
fail() { echo "run-check ($phase): FAIL: $*" >&2; [ -f "$logs/agent.log" ] && tail -n 20 $logs/agent.log >&2; exit 1; }
as_agent() { setpriv --reuid=strata-edge --regid=strata-edge --clear-groups --no-new-privs "$@"; }
wait_for() {  # SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds, or fail
  secs=$1 what=$2; shift 2
  end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}
status_has() { strata-edge status 2>&1 | grep -Eq "$1"; }

if [ "$phase" = install ]; then
  # The packaged config, untouched, must be refused with a message that names the cause.
  rc=0
  as_agent timeout 20 /usr/bin/strata-edge --config /etc/strata/edge.yaml >$logs/refused.log 2>&1 || rc=$?
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "the agent started (exit $rc) with edge-id unset"
  grep -q -- "--edge-id must not be empty" $logs/refused.log || fail "unclear refusal: $(cat $logs/refused.log)"
  # What the field engineer does.
  sed -i 's/^#edge-id: .*/edge-id: deb-check-gw/' /etc/strata/edge.yaml
fi
grep -q '^edge-id: deb-check-gw$' /etc/strata/edge.yaml || fail "edge.yaml lost its edge-id"

install -d -o mosquitto -g mosquitto /run/mosquitto
mosquitto -c /etc/mosquitto/mosquitto.conf >$logs/mosquitto.out 2>&1 &
broker=$!
wait_for 20 "mosquitto on 127.0.0.1:1883" mosquitto_sub -h 127.0.0.1 -p 1883 -t probe -E -W 2
# (It says what it loads on stderr, before it opens its log file.)
grep -q 'Loading config file /etc/mosquitto/conf.d/strata-edge.conf' $logs/mosquitto.out ||
  fail "mosquitto did not load strata-edge.conf"
grep -q 'Opening ipv4 listen socket on port 1883' /var/log/mosquitto/mosquitto.log || fail "no listener on 1883"

# Not through as_agent: a function run with & is a subshell, and $! would be its pid.
setpriv --reuid=strata-edge --regid=strata-edge --clear-groups --no-new-privs \
  sh -c 'umask 0027; exec /usr/bin/strata-edge --config /etc/strata/edge.yaml' >$logs/agent.log 2>&1 &
agent=$!
wait_for 30 "strata-edge status to answer" strata-edge status
wait_for 30 "the agent's MQTT connection" status_has '^mqtt .*  connected'
status_has '^edge +deb-check-gw$' || fail "status does not show the edge id"
status_has '^cloud +strata-cloud.invalid:7000  DISCONNECTED' || fail "status does not show the placeholder cloud"
if [ "$phase" = install ]; then
  mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t v1/devices/deb-check-sensor/telemetry -m '{"temperature":21.5}'
fi
# Nothing acknowledges it (no cloud): the reading stays buffered, across the upgrade too.
wait_for 30 "the reading in the buffer" status_has '^buffer +1 readings'
# A field engineer's own account can ask too.
setpriv --reuid=nobody --regid=nogroup --clear-groups strata-edge status >/dev/null || fail "status fails for another user"
strata-edge status | sed 's/^/    /'

kill -TERM "$agent"
rc=0; wait "$agent" || rc=$?
[ "$rc" = 0 ] || fail "the agent exited $rc on SIGTERM"
grep -q 'strata-edge stopped; 1 readings buffered' $logs/agent.log || fail "no clean stop in the log"
kill -TERM "$broker"; wait "$broker" || true

for f in buffer.db config.db commands.db twins.db; do
  [ "$(stat -c '%U:%G %a' "/var/lib/strata-edge/$f")" = "strata-edge:strata-edge 640" ] ||
    fail "/var/lib/strata-edge/$f is $(stat -c '%U:%G %a' "/var/lib/strata-edge/$f")"
done
if [ "$phase" = install ]; then
  echo "written before the upgrade" >/var/lib/strata-edge/deb-check-marker
  chown strata-edge:strata-edge /var/lib/strata-edge/deb-check-marker
else
  [ -f /var/lib/strata-edge/deb-check-marker ] || fail "the marker in /var/lib/strata-edge is gone"
fi
echo "run-check ($phase): ok"
EOF
run_agent() {  # PHASE
  timeout 180 unshare --net --pid --fork --kill-child --mount --propagation private -- \
    sh -c 'mount -t proc proc "$1/proc" && ip link set lo up &&
           exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C sh /root/run-check.sh "$2"' \
    sh "$jail" "$1" </dev/null || fail "the agent check ($1) failed"
}
run_agent install
say "the agent ran on the packaged config: refused without edge-id, then connected and buffered a reading ($(elapsed))"

# --- 5. upgrade
say "upgrading to $v2"
apt_in_root 300 install "/root/$(basename "$deb2")"
[ "$(in_root 10 dpkg-query -W -f='${Version}' strata-edge)" = "$v2" ] || fail "the upgrade did not install $v2"
if grep -qiE "configuration file|conffile" "$work/apt.log"; then
  grep -iE "configuration file|conffile" "$work/apt.log" >&2; fail "dpkg asked about a conffile on the upgrade"
fi
check_installed
run_agent upgrade
say "upgraded: config, buffer and marker kept, the agent started on them ($(elapsed))"

# --- 6. remove, then purge
apt_in_root 300 remove strata-edge
[ ! -e "$jail/usr/bin/strata-edge" ] || fail "remove left /usr/bin/strata-edge"
[ "$(in_root 10 dpkg-query -W -f='${Status}' strata-edge)" = "deinstall ok config-files" ] || fail "not in config-files state after remove"
[ -f "$jail/var/lib/strata-edge/deb-check-marker" ] && [ -f "$jail/var/lib/strata-edge/buffer.db" ] || fail "remove deleted the data"
in_root 10 getent passwd strata-edge >/dev/null || fail "remove deleted the user"
grep -q '^edge-id: deb-check-gw$' "$jail/etc/strata/edge.yaml" || fail "remove deleted or changed the config"
[ "$(readlink "$jail/etc/systemd/system/strata-edge.service")" = /dev/null ] || fail "remove did not mask the unit"
say "removed: binary gone; data, user and config kept"

apt_in_root 300 purge strata-edge
status=$(in_root 10 dpkg-query -W -f='${Status}' strata-edge 2>/dev/null || true)
[ -z "$status" ] || [ "${status% not-installed}" != "$status" ] || fail "dpkg has strata-edge as '$status' after purge"
[ ! -e "$jail/var/lib/strata-edge" ] || fail "purge left /var/lib/strata-edge"
! in_root 10 getent passwd strata-edge >/dev/null || fail "purge left the strata-edge user"
! in_root 10 getent group strata-edge >/dev/null || fail "purge left the strata-edge group"
[ ! -e "$jail/etc/strata" ] || fail "purge left /etc/strata"
[ ! -e "$jail/etc/mosquitto/conf.d/strata-edge.conf" ] || fail "purge left the broker config"
leftover=$(find "$jail/etc/systemd" "$jail/var/lib/systemd" -name '*strata-edge*' 2>/dev/null || true)
[ -z "$leftover" ] || fail "purge left systemd state: $leftover"
say "purged: data, user, group, config and unit state gone"

# --- 7. through systemd itself
booted=""
if [ "$with_systemd" = 1 ]; then
  say "installing systemd and $(basename "$deb2") to boot the root"
  apt_in_root 600 install --no-install-recommends systemd dbus "/root/$(basename "$deb2")"
  sed -i 's/^#edge-id: .*/edge-id: deb-check-gw/' "$jail/etc/strata/edge.yaml"
  cat >"$jail/root/systemd-check.sh" <<'CHECK'
#!/bin/sh
# Runs in the booted root as a oneshot unit after strata-edge.service; writes its verdict to
# /root/systemd-check.result and powers the container off, whatever happens.
set -u
result=/root/systemd-check.result
trap 'systemctl --no-block poweroff' EXIT
fail() {
  { echo "FAIL: $*"; systemctl status --no-pager strata-edge; journalctl --no-pager -u strata-edge | tail -n 30; } >"$result" 2>&1
  exit 1
}
wait_for() {  # SECONDS DESCRIPTION COMMAND...
  secs=$1 what=$2; shift 2
  end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}
status_has() { strata-edge status 2>&1 | grep -Eq "$1"; }
prop() { systemctl show -p "$1" --value strata-edge; }
restarted() { [ "$(prop NRestarts)" = 1 ]; }

wait_for 30 "strata-edge status to answer" strata-edge status
wait_for 30 "the agent's MQTT connection" status_has '^mqtt .*  connected'
pid=$(prop MainPID)
[ "$(stat -c %U "/proc/$pid")" = strata-edge ] || fail "the agent runs as $(stat -c %U "/proc/$pid")"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "NoNewPrivs is not set"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "no seccomp filter"
grep -q '^CapBnd:[[:space:]]*0000000000000000' "/proc/$pid/status" || fail "capabilities left in the bounding set"
mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t v1/devices/deb-check-sensor/telemetry -m '{"temperature":21.5}'
wait_for 30 "the reading in the buffer" status_has '^buffer +1 readings'
systemctl kill --signal=KILL strata-edge
wait_for 45 "systemd to restart the agent (RestartSec=15s)" restarted
wait_for 30 "the restarted agent's status" status_has '^buffer +1 readings'
systemctl stop strata-edge
[ "$(prop ExecMainStatus)" = 0 ] || fail "the agent exited $(prop ExecMainStatus) on stop"
journalctl --no-pager -u strata-edge | grep -q 'strata-edge stopped; 1 readings buffered' || fail "no clean stop in the journal"
echo ok >"$result"
CHECK
  cat >"$jail/etc/systemd/system/deb-check.service" <<'UNIT'
[Unit]
Description=tools/deb-check.sh: the agent through its unit
After=strata-edge.service mosquitto.service
[Service]
Type=oneshot
ExecStart=/bin/sh /root/systemd-check.sh
TimeoutStartSec=150s
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/deb-check.service "$jail/etc/systemd/system/multi-user.target.wants/deb-check.service"
  # nspawn makes its own /proc; what was mounted for apt goes first.
  umount "$jail/var/cache/apt/archives" "$jail/proc"
  say "booting the root with systemd-nspawn"
  timeout 240 systemd-nspawn -q --register=no --keep-unit --private-network -D "$jail" --boot \
    >"$work/boot.log" 2>&1 </dev/null || true
  if [ "$(cat "$jail/root/systemd-check.result" 2>/dev/null)" != ok ]; then
    tail -n 20 "$work/boot.log" >&2
    cat "$jail/root/systemd-check.result" >&2 2>/dev/null || true
    fail "the agent through systemd"
  fi
  booted=", and ran under its unit in a booted root"
  say "systemd: the unit ran the agent as strata-edge (no capabilities, seccomp on), status answered, kill -9 was restarted, the stop was clean ($(elapsed))"
fi

say "ok: $(basename "$deb"), exposure $exposure, installed, upgraded, removed and purged in a bookworm root$booted ($(elapsed))"
