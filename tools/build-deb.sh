#!/usr/bin/env bash
# Builds the gateway package strata-edge_<version>_<arch>.deb from deploy/debian/ and an
# existing strata-edge binary (stripped into the package), then runs lintian on it and fails
# on any lintian error. deploy/debian/README.md says what the package holds.
#
#   tools/build-deb.sh [--version V] [--binary PATH] [--no-lintian] [OUTDIR]
#
#   OUTDIR      where the .deb goes (default build/deb); earlier strata-edge packages there go
#   --version   the package version (default: from git, see below)
#   --binary    the strata-edge to package (default build/edge-agent/strata-edge; when it is
#               missing, `cmake --build build --target strata-edge` makes it)
#   --no-lintian  skip lintian (tools/deb-check.sh does for the copy it builds to test an upgrade)
#
# Needs dpkg-dev (dpkg-shlibdeps) and binutils (strip); lintian is installed with apt-get when
# missing and running as root. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
src=$root/deploy/debian

version=""
binary=$root/build/edge-agent/strata-edge
outdir=$root/build/deb
lint=1
while [ $# -gt 0 ]; do
  case $1 in
    --version) version=$2; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --binary) binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --no-lintian) lint=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "build-deb: unknown option $1" >&2; exit 2 ;;
    *) outdir=$1; shift ;;
  esac
done
say() { echo "build-deb: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install dpkg-dev binutils)"
done

if [ ! -x "$binary" ]; then
  [ "$binary" = "$root/build/edge-agent/strata-edge" ] || die "no binary at $binary"
  say "no $binary: building it"
  cmake --build "$root/build" --target strata-edge
fi

# The version. A tag vX.Y.Z on HEAD gives X.Y.Z; commits after it X.Y.Z+gitN.gSHA; with no
# tag, CMakeLists.txt's project version as a pre-release (X.Y.Z~gitN.gSHA sorts below X.Y.Z).
# N counts every commit to HEAD, so later builds of a branch upgrade earlier ones.
if [ -z "$version" ]; then
  count=$(git rev-list --count HEAD 2>/dev/null) || die "not a git checkout: give --version"
  sha=$(git rev-parse --short=7 HEAD)
  if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
    if [ "$(git rev-parse "$tag^{commit}")" = "$(git rev-parse HEAD)" ]; then
      version=${tag#v}
    else
      version="${tag#v}+git$count.g$sha"
    fi
  else
    base=$(sed -n 's/^project(strata VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
    [ -n "$base" ] || die "no project version in CMakeLists.txt: give --version"
    version="$base~git$count.g$sha"
  fi
fi
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "'$version' is not a Debian version without a revision"
arch=$(dpkg --print-architecture)

# Reproducible timestamps: the commit's time (or SOURCE_DATE_EPOCH when the caller sets it).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg
umask 022

install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/strata" \
  "$pkg/etc/mosquitto/conf.d" "$pkg/usr/share/doc/strata-edge" "$pkg/usr/share/lintian/overrides"
# dh_strip's way for an executable: all symbols and debug information go (nothing is kept in a
# -dbgsym package); 60 MB of DWARF stays in the build.
strip --remove-section=.comment --remove-section=.note -o "$pkg/usr/bin/strata-edge" "$binary"
chmod 0755 "$pkg/usr/bin/strata-edge"
install -m 0644 "$src/strata-edge.service" "$pkg/lib/systemd/system/strata-edge.service"
install -m 0644 "$src/edge.yaml" "$pkg/etc/strata/edge.yaml"
install -m 0644 "$src/mosquitto-strata-edge.conf" "$pkg/etc/mosquitto/conf.d/strata-edge.conf"
install -m 0644 "$src/copyright" "$pkg/usr/share/doc/strata-edge/copyright"
install -m 0644 "$src/README.md" "$pkg/usr/share/doc/strata-edge/README.md"
install -m 0644 "$src/lintian-overrides" "$pkg/usr/share/lintian/overrides/strata-edge"

# The changelog, with an entry for this build when deploy/debian/changelog's newest entry is of
# another version (a build from git between releases). A native package: changelog.gz.
{
  top=$(dpkg-parsechangelog -l "$src/changelog" -S Version 2>/dev/null || true)
  if [ "$top" != "$version" ]; then
    printf 'strata-edge (%s) bookworm; urgency=medium\n\n  * Built from git %s.\n\n -- %s  %s\n\n' \
      "$version" "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
      "$(sed -n 's/^Maintainer: //p' "$src/control.in")" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
  fi
  cat "$src/changelog"
} | gzip -9n >"$pkg/usr/share/doc/strata-edge/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/strata-edge/changelog.gz"

for script in postinst prerm postrm; do install -m 0755 "$src/$script" "$pkg/DEBIAN/$script"; done
install -m 0644 "$src/conffiles" "$pkg/DEBIAN/conffiles"

# Depends: what the binary loads (dpkg-shlibdeps reads its NEEDED entries and symbol
# versions: libc6 (>= 2.36) for a static build), and adduser for postinst.
mkdir -p "$work/shlibs/debian"
printf 'Source: strata-edge\n\nPackage: strata-edge\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$pkg/usr/bin/strata-edge" 2>"$work/shlibdeps.err") ||
  { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
deps=${shlibs#shlibs:Depends=}
[ -n "$deps" ] || die "dpkg-shlibdeps found no dependencies: is $binary a dynamic executable?"
needed=$(readelf -d "$pkg/usr/bin/strata-edge" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
say "strata-edge loads: $needed-> Depends: $deps, adduser"
case " $needed" in
  *libstdc++*|*libgrpc*|*libprotobuf*|*libssl*)
    say "warning: $binary links shared C++/gRPC/OpenSSL libraries: not the static edge build (cmake/StaticEdge.cmake)" ;;
esac

# Built-Using: the source packages whose static archives cmake/StaticEdge.cmake links into the
# binary (the same list), as installed here: a security update to one of them means a rebuild.
# Only meaningful when the binary was built on this machine, which is the case this script is for.
libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
archives=()
for name in grpc++ grpc gpr upb address_sorting cares re2 protobuf ssl crypto z sqlite3 yaml-cpp \
            boost_system paho-mqtt3as; do
  [ -f "$libdir/lib$name.a" ] && archives+=("$(readlink -f "$libdir/lib$name.a")")
done
for a in "$libdir"/libabsl_*.a; do [ -f "$a" ] && archives+=("$(readlink -f "$a")"); done
for a in libstdc++.a libgcc.a libgcc_eh.a; do
  f=$(gcc -print-file-name="$a" 2>/dev/null || true)
  [ -n "$f" ] && [ -f "$f" ] && archives+=("$(readlink -f "$f")")
done
built_using=""
if [ ${#archives[@]} -gt 0 ]; then
  mapfile -t owners < <(dpkg -S "${archives[@]}" 2>/dev/null | sed 's/:[^:]*: .*//; s/: .*//' | sort -u)
  if [ ${#owners[@]} -gt 0 ]; then
    built_using=$(dpkg-query -W -f='${source:Package} (= ${source:Version})\n' "${owners[@]}" | sort -u |
                  paste -sd, - | sed 's/,/, /g')
  fi
fi

installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    -e "s/@DEPENDS@/$deps, adduser/" -e "s/@BUILT_USING@/$built_using/" "$src/control.in" |
  { if [ -z "$built_using" ]; then grep -v '^Built-Using: $'; else cat; fi; } >"$pkg/DEBIAN/control"

(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$outdir"
deb=$(cd "$outdir" && pwd)/strata-edge_${version}_${arch}.deb
# One package in OUTDIR, so that `apt install ./strata-edge_*.deb` there names one version.
find "$outdir" -maxdepth 1 -name "strata-edge_*_${arch}.deb" ! -name "$(basename "$deb")" -delete
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"

if [ "$lint" = 1 ]; then
  if ! command -v lintian >/dev/null; then
    [ "$(id -u)" = 0 ] || die "lintian is not installed (apt-get install lintian)"
    say "installing lintian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
  fi
  # Every tag but the overridden ones is shown (--show-overrides would make lintian 2.116 fail
  # on an overridden error); an error (E:) fails the build. The overrides, with their reasons,
  # are in deploy/debian/lintian-overrides. lintian warns when run as root, as this script
  # often is: that line is dropped.
  rc=0
  lintian --fail-on error --display-info "$deb" >"$work/lintian.raw" 2>&1 || rc=$?
  grep -v '^running with root privileges' "$work/lintian.raw" >"$work/lintian.out" || true
  if [ -s "$work/lintian.out" ]; then sed 's/^/build-deb: lintian: /' "$work/lintian.out" >&2; fi
  [ "$rc" = 0 ] || die "lintian reports errors (exit $rc)"
  say "lintian: no errors"
fi
echo "$deb"
