#!/usr/bin/env bash
# Usage: hack/debian-base.sh [--print-path]
#
# Make, once, the Debian base the integration suite's "real peers" builds start from
# (integration/src/tests/images.rs, client_images_debian_*): a bookworm rootfs made by
#   debootstrap --variant=minbase --include=gcc,libc6-dev,python3-minimal bookworm DIR MIRROR
# from the Debian archive (MIRROR: $DEBIAN_MIRROR, default the system's apt source,
# http://deb.debian.org/debian), packed as a plain tar at $BERTH_DEBIAN_BASE (default
# /var/cache/berth-test/debian-bookworm-gcc-python.tar). A tarball already there is reused
# (cached); a new one is written to a temporary name beside it and renamed when complete,
# so a half-made tarball is never seen. debootstrap's own mounts (/proc, /sys in the
# target) happen in a private mount namespace and go away with it. The tarball holds no
# device nodes (/dev is left empty, as in registry images), no apt lists or .deb cache.
# --print-path prints the tarball's path and exits. Must run as root (debootstrap chroots).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=${BERTH_DEBIAN_BASE:-/var/cache/berth-test/debian-bookworm-gcc-python.tar}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

case "${1:-}" in
"") ;;
--print-path)
	echo "$OUT"
	exit 0
	;;
-h | --help)
	usage
	exit 0
	;;
*) die "unknown argument: $1 (usage: hack/debian-base.sh [--print-path])" ;;
esac

if [[ -s $OUT ]]; then
	log "cached: $OUT ($(du -h "$OUT" | cut -f1))"
	exit 0
fi
need_root
command -v debootstrap >/dev/null || die "debootstrap not found (hack/install-deps.sh installs it)"

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "$(dirname "$OUT")/.debian-base.XXXXXX")
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT

start=$SECONDS
log "debootstrap bookworm from $MIRROR into $work/rootfs"
# The mounts debootstrap makes in the target stay in this namespace, even if it fails.
if ! unshare -m --propagation private debootstrap --variant=minbase \
	--include=gcc,libc6-dev,python3-minimal bookworm "$work/rootfs" "$MIRROR" >"$work/log" 2>&1; then
	tail -n 20 "$work/log" >&2
	die "debootstrap failed (see above)"
fi
r=$work/rootfs
rm -rf --one-file-system "${r:?}"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* \
	"$r"/var/log/bootstrap.log "$r"/var/cache/ldconfig/aux-cache
find "$r/dev" -mindepth 1 -delete
tar --numeric-owner --xattrs --sort=name -C "$r" -cf "$work/base.tar" .
mv -T "$work/base.tar" "$OUT"
log "made $OUT in $((SECONDS - start)) s ($(du -h "$OUT" | cut -f1))"
