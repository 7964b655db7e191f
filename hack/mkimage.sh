#!/usr/bin/env bash
# Usage: hack/mkimage.sh ARCHIVE [REF]
#
# Make an OCI image archive (`oci-archive` tar, what `berthctl import` and `ctr images import`
# take) of a busybox image built from Debian's busybox-static: /bin/busybox, a symlink for every
# applet, /etc/passwd and /etc/group, /tmp 1777; cmd /bin/sh. REF is the name inside the archive
# (default docker.io/library/busybox:latest). Needs umoci and skopeo (hack/install-deps.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 1 && $# <= 2)) || die "usage: hack/mkimage.sh ARCHIVE [REF]"
archive=$1
ref=${2:-docker.io/library/busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"

tmp=$(mktemp -d /tmp/berth-mkimage.XXXXXX)
trap 'rm -rf --one-file-system "$tmp"' EXIT
umoci init --layout "$tmp/L"
umoci new --image "$tmp/L:busybox"
umoci unpack --image "$tmp/L:busybox" "$tmp/w" >/dev/null
r=$tmp/w/rootfs
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root"
chmod 1777 "$r/tmp"
cp "$busybox" "$r/bin/busybox"
for a in $("$busybox" --list-full); do
	[[ $a == bin/busybox ]] && continue
	mkdir -p "$r/$(dirname "$a")"
	ln -sf /bin/busybox "$r/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
umoci repack --image "$tmp/L:busybox" "$tmp/w"
umoci config --image "$tmp/L:busybox" --config.cmd /bin/sh \
	--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
rm -f "$archive"
skopeo copy -q oci:"$tmp/L:busybox" oci-archive:"$archive":"$ref"
log "image archive $archive ($ref)"
