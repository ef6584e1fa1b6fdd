#!/usr/bin/env bash
# Builds (once) a Debian trixie chroot holding a real GIMP 3 with Python plug-in
# support, for the end-to-end plug-in tests. Idempotent: a finished chroot is
# marked with a stamp and reused; a half-built one is never seen (built aside,
# then renamed). Needs root and debootstrap.
#
#   OLDPHOTO_GIMP3_CHROOT   where the chroot lives (default /var/cache/oldphoto-gimp3-chroot)
#   OLDPHOTO_DEBIAN_MIRROR  archive to use (default: read from this host's apt configuration)
#
# The archive address is only ever read from apt's configuration at run time,
# never stored in the project.
set -euo pipefail

ROOT=${OLDPHOTO_GIMP3_CHROOT:-/var/cache/oldphoto-gimp3-chroot}
SUITE=trixie
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 gir1.2-babl-0.1 python3-zmq python3-msgpack"
STAMP="$ROOT/.oldphoto-chroot-ready"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; then
  echo "gimp3 chroot: ready at $ROOT"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "gimp3 chroot: needs root" >&2; exit 2; }
command -v unshare >/dev/null || { echo "gimp3 chroot: unshare (util-linux) is missing" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "gimp3 chroot: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; then   # built by a concurrent run
  echo "gimp3 chroot: ready at $ROOT"
  exit 0
fi

mirror=${OLDPHOTO_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # the main Debian archive apt already uses (not the security one)
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN) $(LABEL)' 2>/dev/null \
           | awk '$2 == "Debian" && $3 == "Debian" {print $1; exit}')
fi
if [ -z "$mirror" ]; then
  mirror=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | grep -v security | grep '/debian/\?$' | head -n1 || true)
fi
[ -n "$mirror" ] || { echo "gimp3 chroot: no Debian archive found in apt's configuration; set OLDPHOTO_DEBIAN_MIRROR" >&2; exit 2; }

# the build log names the archive: shown on failure, then deleted like everything else
log=$(mktemp)
trap 'rm -f "$log"' EXIT
work="$ROOT.building"
rm -rf "$work"
start=$(date +%s)
echo "gimp3 chroot: debootstrap $SUITE into $work"
debootstrap --variant=minbase "$SUITE" "$work" "$mirror" >"$log" 2>&1 \
  || { tail -n 30 "$log" >&2; exit 1; }
# apt inside the chroot wants /proc; a private mount namespace drops it with the process
unshare --mount --pid --fork bash -c "
  set -e
  mount -t proc proc '$work/proc'
  export DEBIAN_FRONTEND=noninteractive
  chroot '$work' apt-get -q -o Dpkg::Use-Pty=0 update
  chroot '$work' apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends $PACKAGES
  chroot '$work' apt-get clean
" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
# do not leave the archive's address written down anywhere
rm -f "$work/etc/apt/sources.list" "$work"/etc/apt/sources.list.d/*
rm -rf "$work/var/lib/apt/lists/"*
chroot "$work" gimp-console-3.0 --version
echo "$PACKAGES" >"$work/.oldphoto-chroot-ready"
rm -rf "$ROOT"
mv "$work" "$ROOT"
echo "gimp3 chroot: built at $ROOT in $(( $(date +%s) - start )) s"
