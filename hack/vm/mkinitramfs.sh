#!/usr/bin/env bash
# Usage: hack/vm/mkinitramfs.sh KERNEL_VERSION OUTPUT
#
# Build the initramfs of the cgroup v2 test VM (hack/vm-run.sh calls this and caches
# the result; there is no need to run it by hand): a gzipped cpio (newc) holding
# busybox-static as /bin/busybox, hack/vm/init as /init, /dev/console, and the
# modules below from /lib/modules/KERNEL_VERSION with their dependencies (from
# modules.dep), listed in load order in /lib/modules/order. Compressed modules
# (.ko.xz, .ko.zst) are decompressed, since busybox's insmod may not read them.
# OUTPUT is written atomically (a temporary file renamed into place).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# What the VM needs: 9p over virtio for its filesystems, overlayfs for its / and the
# tests, virtio-blk and ext4 for /tmp (a block device, as on the host: the blkio tests
# need one; ext4 finds crc32c through the crypto API, so it must be loaded already),
# virtio-rng so that getrandom() does not wait for entropy.
WANTED=(virtio_pci 9pnet_virtio 9p overlay virtio_blk crc32c_generic ext4 virtio-rng)

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
esac
(($# == 2)) || die "usage: hack/vm/mkinitramfs.sh KERNEL_VERSION OUTPUT"
kver=$1 out=$2
moddir=/lib/modules/$kver
[[ -f $moddir/modules.dep ]] || die "$moddir/modules.dep not found (install linux-image-amd64)"
[[ -x /bin/busybox ]] || die "/bin/busybox not found (install busybox-static)"
if ldd /bin/busybox >/dev/null 2>&1; then
	die "/bin/busybox is dynamically linked; install busybox-static"
fi

# modules.dep: "kernel/a/b.ko: kernel/c/d.ko kernel/e/f.ko", the dependencies in
# the order modprobe loads them backwards. Index it by module name ('-' == '_').
declare -A path_of deps_of
while IFS= read -r line; do
	file=${line%%:*}
	name=${file##*/}
	name=${name%%.ko*}
	name=${name//-/_}
	path_of[$name]=$file
	deps_of[$name]=${line#*:}
done <"$moddir/modules.dep"

declare -A seen
order=()
# add NAME: append NAME's dependencies (recursively) and then NAME to $order.
add() {
	local name=${1//-/_} dep d
	[[ -z ${seen[$name]:-} ]] || return 0
	[[ -n ${path_of[$name]:-} ]] || die "module $1 not in $moddir/modules.dep (built in? then drop it from WANTED)"
	seen[$name]=1
	local -a deps
	read -ra deps <<<"${deps_of[$name]}"
	for ((d = ${#deps[@]} - 1; d >= 0; d--)); do
		dep=${deps[d]##*/}
		add "${dep%%.ko*}"
	done
	order+=("$name")
}
for m in "${WANTED[@]}"; do add "$m"; done

work=$(mktemp -d /tmp/berth-initramfs.XXXXXX)
tmp_out=$out.tmp.$$
trap 'rm -rf "$work" "$tmp_out"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,scratch,lib/modules}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$HACK/vm/init" "$root/init"
# The kernel opens /dev/console for /init before anything is mounted.
mknod -m 0600 "$root/dev/console" c 5 1

for name in "${order[@]}"; do
	src=$moddir/${path_of[$name]}
	dst=$root/lib/modules/$name.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
	echo "$name.ko" >>"$root/lib/modules/order"
done

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -1 >"$tmp_out"
mv -f "$tmp_out" "$out"
log "built $out ($(du -k "$out" | cut -f1) KiB; modules: ${order[*]})"
