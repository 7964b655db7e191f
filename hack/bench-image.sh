#!/usr/bin/env bash
# Usage: hack/bench-image.sh [-n RUNS] [-r RUN_RUNS] [-o OUTDIR] [-B] [-s SECTIONS]
#
# Image import + unpack, and `run --rm` of a tiny container, for berthctl against containerd
# 1.6 (`ctr`), umoci and podman, with the raw decompression bound:
#   unpack (the same multi-layer image, every run from a clean state):
#     berthctl --root TMP import ARCHIVE        (import + unpack into snapshots: runnable)
#     ctr images import ARCHIVE                 (a private containerd 1.6; unpacks by default
#                                                into its overlayfs snapshotter; restarted by
#                                                pid with an empty root before each run)
#     umoci unpack --image LAYOUT:gzip DIR      (no import step: reads the layout in place)
#     gzip -dc BLOBS > /dev/null                (the decompression bound, one process)
#     tar -xzf BLOB -C DIR per layer            (GNU tar + gzip: a plain extraction)
#   and the same image with zstd layers: berthctl import, ctr images import, zstd -dc.
#   run (busybox from hack/mkimage.sh, /bin/true):
#     berthctl run --rm --network none busybox /bin/true (berth; and with --runtime runc)
#     ctr run --rm busybox ID /bin/true         (private containerd, runc shim + runc)
#     podman run --rm busybox /bin/true         (own --root/--runroot/--tmpdir, runc:
#                                                podman's default crun refuses hybrid cgroups)
# The unpack commands run in interleaved rounds (every command once per round; a shared
# machine's load changes over minutes), the run commands in one hyperfine run. Prints a markdown
# table (medians, ratios, CPU seconds) and writes the raw times (TSV), hyperfine's JSON and the
# table to OUTDIR.
#
# The benchmark image is built once and cached in $BENCH_IMAGE_CACHE (default
# /var/tmp/berth-bench-image; -B rebuilds it): an OCI layout and oci-archive with 5 gzip
# layers of files from installed Debian packages (busybox-static as a base; /usr/bin and
# /usr/sbin; /usr/share/locale and /usr/share/doc; /usr/include and /usr/lib/python3.11;
# /usr/share/man, /usr/share/perl and /usr/share/i18n): ~1 GB of tar in ~47k entries, ~360 MB
# of gzip (on the machine it was written on). Layer sets can be changed with BENCH_LAYERS (';' between layers, paths relative to /).
#
# Options and environment:
#   -n RUNS      rounds of the unpack part (env RUNS, default 5; plus a warm-up round)
#   -r RUN_RUNS  hyperfine --runs for the run part (env RUN_RUNS, default 20; warm-up 3)
#   -o OUTDIR    where bench-image-<time>{.md,-unpack.tsv,-run.json} go (env BENCH_OUT,
#                default target/bench)
#   -B           rebuild the cached image
#   -s SECTIONS  what to run: unpack, zstd, run, or a comma list (default unpack,zstd,run);
#                image: only build the cached image
#   BENCH_IMAGE_CACHE, BENCH_LAYERS  see above
#   BERTHCTL, BERTH  binaries (default $BIN_DIR/berthctl, $BIN_DIR/berth: cargo build --release)
#   RUNC         runc for ctr/podman/berthctl-with-runc (default /usr/sbin/runc)
# Everything it starts (containerd, by pid) it stops, everything it mounts it unmounts, and
# its temp dirs (under /var/tmp/berth-bench-image.XXXXXX) are removed on exit; the image cache
# stays.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-5}
RUN_RUNS=${RUN_RUNS:-20}
BENCH_OUT=${BENCH_OUT:-$REPO/target/bench}
CACHE=${BENCH_IMAGE_CACHE:-/var/tmp/berth-bench-image}
BERTHCTL=${BERTHCTL:-$BIN_DIR/berthctl}
BERTH=${BERTH:-$BIN_DIR/berth}
RUNC=${RUNC:-/usr/sbin/runc}
SECTIONS=unpack,zstd,run
REBUILD=0
# One layer per ';': directories (relative to /) whose files make the layer.
BENCH_LAYERS=${BENCH_LAYERS:-"usr/bin usr/sbin;usr/share/locale usr/share/doc;usr/include usr/lib/python3.11;usr/share/man usr/share/perl usr/share/i18n"}
IMAGE_VERSION="v1 $BENCH_LAYERS" # the cache is rebuilt when this changes
IMAGE_NAME=docker.io/library/berth-bench # tags: gzip, zstd

while getopts 'n:r:o:Bs:h' opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	r) RUN_RUNS=$OPTARG ;;
	o) BENCH_OUT=$OPTARG ;;
	B) REBUILD=1 ;;
	s) SECTIONS=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	*) die "usage: hack/bench-image.sh [-n RUNS] [-r RUN_RUNS] [-o OUTDIR] [-B] [-s SECTIONS]" ;;
	esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be an integer >= 1, got '$RUNS'"
[[ $RUN_RUNS =~ ^[0-9]+$ && $RUN_RUNS -ge 1 ]] || die "RUN_RUNS must be an integer >= 1, got '$RUN_RUNS'"
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }
for s in ${SECTIONS//,/ }; do
	case $s in image | unpack | zstd | run) ;; *) die "-s: unknown section '$s' (image, unpack, zstd, run)" ;; esac
done

need_root
for tool in hyperfine jq gzip zstd tar sha256sum containerd ctr umoci skopeo podman timeout; do
	command -v "$tool" >/dev/null || die "$tool not found (run hack/install-deps.sh)"
done
[[ -x $BERTHCTL || $SECTIONS == image ]] || die "$BERTHCTL not found: cargo build --release -p berthctl -p berth"
[[ -x $BERTH || $SECTIONS == image ]] || die "$BERTH not found: cargo build --release -p berth"
[[ -x $RUNC ]] || die "$RUNC not found (apt-get install runc)"

# --- the image (cached) --------------------------------------------------------------------

# add_blob LAYOUT FILE MEDIATYPE: move FILE into LAYOUT's blobs; prints a descriptor (JSON).
add_blob() {
	local l=$1 f=$2 mt=$3 hex size
	hex=$(sha256sum "$f" | cut -d' ' -f1)
	size=$(stat -c %s "$f")
	mv "$f" "$l/blobs/sha256/$hex"
	jq -cn --arg mt "$mt" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $mt, digest: $d, size: $s}'
}

# write_image LAYOUT COMPRESSION(gzip|zstd) TAG: an OCI layout with the layer tars in
# $CACHE/build (l1.tar ...) compressed with COMPRESSION, their config, manifest and index.
write_image() {
	local dir=$1 comp=$2 tag=$3 i n diff_ids=() layers=() cfg man
	mkdir -p "$dir/blobs/sha256"
	printf '{"imageLayoutVersion":"1.0.0"}\n' >"$dir/oci-layout"
	n=$(find "$CACHE/build" -maxdepth 1 -name 'l*.tar' | wc -l)
	for ((i = 1; i <= n; i++)); do
		diff_ids+=("sha256:$(sha256sum "$CACHE/build/l$i.tar" | cut -d' ' -f1)")
	done
	log "compressing $n layers with $comp"
	if [[ $comp == gzip ]]; then
		# Go's gzip default level (6), as docker/containerd/umoci write layers; 2 at a time.
		# shellcheck disable=SC2016 # $1 is for the inner sh
		printf '%s\n' "$CACHE"/build/l*.tar | xargs -P 2 -I{} sh -c 'gzip -n -6 -c "$1" > "$1.gz"' sh {}
	else
		printf '%s\n' "$CACHE"/build/l*.tar | xargs -P 1 -I{} zstd -q -3 -T2 -f "{}" -o "{}.zst"
	fi
	for ((i = 1; i <= n; i++)); do
		if [[ $comp == gzip ]]; then
			layers+=("$(add_blob "$dir" "$CACHE/build/l$i.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)")
		else
			layers+=("$(add_blob "$dir" "$CACHE/build/l$i.tar.zst" application/vnd.oci.image.layer.v1.tar+zstd)")
		fi
	done
	jq -n --args '{architecture: "amd64", os: "linux", created: "2026-01-01T00:00:00Z",
		config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/sh"]},
		rootfs: {type: "layers", diff_ids: $ARGS.positional}}' "${diff_ids[@]}" >"$CACHE/build/config.json"
	cfg=$(add_blob "$dir" "$CACHE/build/config.json" application/vnd.oci.image.config.v1+json)
	printf '%s\n' "${layers[@]}" | jq -s --argjson cfg "$cfg" \
		'{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: $cfg, layers: .}' \
		>"$CACHE/build/manifest.json"
	man=$(add_blob "$dir" "$CACHE/build/manifest.json" application/vnd.oci.image.manifest.v1+json)
	jq -n --argjson m "$man" --arg ref "$IMAGE_NAME:$tag" --arg tag "$tag" \
		'{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
		manifests: [$m + {annotations: {"io.containerd.image.name": $ref,
			"org.opencontainers.image.ref.name": $tag}}]}' >"$dir/index.json"
}

build_image() {
	if [[ $REBUILD == 0 && -f $CACHE/version && "$(cat "$CACHE/version")" == "$IMAGE_VERSION" &&
		-f $CACHE/gzip.tar && -f $CACHE/zstd.tar && -f $CACHE/busybox.tar ]]; then
		return 0
	fi
	log "building the benchmark image in $CACHE (once)"
	rm -rf --one-file-system "$CACHE"
	mkdir -p "$CACHE/build"
	# Layer 1: busybox-static with its applets, /etc/passwd, /etc/group, /tmp.
	local r=$CACHE/build/base i=1 layer
	mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/usr/bin" "$r/usr/sbin" "$r/sbin"
	chmod 1777 "$r/tmp"
	cp /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list-full); do
		[[ $a == bin/busybox ]] && continue
		mkdir -p "$r/$(dirname "$a")"
		ln -sf /bin/busybox "$r/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	tar --format=pax --pax-option=delete=atime,delete=ctime --numeric-owner -C "$r" -cf "$CACHE/build/l1.tar" .
	rm -rf "$r"
	# Layers 2...: files of installed packages, as they are on this host.
	IFS=';' read -ra groups <<<"$BENCH_LAYERS"
	for layer in "${groups[@]}"; do
		i=$((i + 1))
		local dirs=()
		for d in $layer; do
			if [[ -e /$d ]]; then dirs+=("$d"); else log "warning: /$d does not exist, left out of layer $i"; fi
		done
		((${#dirs[@]} > 0)) || die "layer $i ($layer): none of its directories exists"
		tar --format=pax --pax-option=delete=atime,delete=ctime --numeric-owner -C / -cf "$CACHE/build/l$i.tar" "${dirs[@]}"
	done
	write_image "$CACHE/layout" gzip gzip
	write_image "$CACHE/layout-zstd" zstd zstd
	# oci-archives (a tar of the layout): what berthctl import and ctr images import take.
	tar -C "$CACHE/layout" -cf "$CACHE/gzip.tar" oci-layout index.json blobs
	tar -C "$CACHE/layout-zstd" -cf "$CACHE/zstd.tar" oci-layout index.json blobs
	rm -rf "$CACHE/build"
	"$HACK/mkimage.sh" "$CACHE/busybox.tar" 2>/dev/null || die "hack/mkimage.sh failed"
	printf '%s' "$IMAGE_VERSION" >"$CACHE/version"
}
build_image
if [[ $SECTIONS == image ]]; then
	log "image ready in $CACHE"
	exit 0
fi

# layer_blobs LAYOUT: the layer blob paths of the layout's (single) image, bottom first.
layer_blobs() {
	local l=$1 m
	m=$l/blobs/sha256/$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$l/index.json")
	jq -r '.layers[].digest | sub("sha256:"; "")' "$m" | sed "s|^|$l/blobs/sha256/|"
}
mapfile -t GZ_BLOBS < <(layer_blobs "$CACHE/layout")
mapfile -t ZST_BLOBS < <(layer_blobs "$CACHE/layout-zstd")
size_of() { du -cb "$@" | tail -n 1 | cut -f1; }
GZ_SIZE=$(size_of "${GZ_BLOBS[@]}")
ZST_SIZE=$(size_of "${ZST_BLOBS[@]}")
RAW_SIZE=$(gzip -dc "${GZ_BLOBS[@]}" | wc -c)
log "image: ${#GZ_BLOBS[@]} layers, $((RAW_SIZE >> 20)) MiB of tar, $((GZ_SIZE >> 20)) MiB gzip, $((ZST_SIZE >> 20)) MiB zstd"

# --- workspace, containerd, cleanup ----------------------------------------------------------
work=$(mktemp -d /var/tmp/berth-bench-image.XXXXXX)
CTRD_PID=""
SOCK=$work/containerd/containerd.sock
cg_before=() # cgroup parents that existed before (never removed)
for d in /sys/fs/cgroup/*/default /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/*/berth; do
	[[ -d $d ]] && cg_before+=("$d")
done

# unmount_under DIR: unmount every mount point below DIR, deepest first.
unmount_under() {
	local m
	awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
	done
}

podman_cmd() {
	podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
		--storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime "$RUNC" "$@"
}

cleanup() {
	local rc=$? d
	trap - EXIT INT TERM
	if [[ -d $work/podman/root ]]; then
		timeout 60 podman_cmd rm -a -f >/dev/null 2>&1 || true
		timeout 60 podman_cmd rmi -a -f >/dev/null 2>&1 || true
	fi
	if [[ -n $CTRD_PID ]]; then
		# Containers of an interrupted run: kill and delete them, then stop containerd.
		for c in $(timeout 10 ctr -a "$SOCK" containers ls -q 2>/dev/null || true); do
			timeout 10 ctr -a "$SOCK" tasks kill -s KILL "$c" >/dev/null 2>&1 || true
			timeout 10 ctr -a "$SOCK" tasks delete -f "$c" >/dev/null 2>&1 || true
			timeout 10 ctr -a "$SOCK" containers delete "$c" >/dev/null 2>&1 || true
		done
		stop_containerd
	fi
	unmount_under "$work"
	rm -rf --one-file-system "$work" || log "warning: could not remove all of $work"
	# Cgroup parents this run made (ctr: /default, podman: /libpod_parent, berthctl: /berth),
	# only when empty and not there before.
	for d in /sys/fs/cgroup/*/default /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/*/berth; do
		[[ -d $d && " ${cg_before[*]} " != *" $d "* ]] || continue
		rmdir "$d" 2>/dev/null || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_containerd: TERM by pid, KILL after 10 s.
stop_containerd() {
	[[ -n $CTRD_PID ]] || return 0
	kill "$CTRD_PID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$CTRD_PID" 2>/dev/null || true
	wait "$CTRD_PID" 2>/dev/null || true
	CTRD_PID=""
}

start_containerd() {
	mkdir -p "$work/containerd"
	local d=$work/containerd
	containerd config default | awk -v d="$d" -v sock="$SOCK" '
		/^[[:space:]]*\[/ { section = $1 }
		section == "" && /^root = / { print "root = \"" d "/root\""; next }
		section == "" && /^state = / { print "state = \"" d "/state\""; next }
		section == "" && /^disabled_plugins = / { print "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"; next }
		section == "[grpc]" && /^[[:space:]]*address = / { print "  address = \"" sock "\""; next }
		(section == "[ttrpc]" || section == "[debug]" || section == "[metrics]") && /^[[:space:]]*address = / { print "  address = \"\""; next }
		/path = "\/opt\/containerd"/ { print "    path = \"" d "/opt\""; next }
		{ print }' >"$d/config.toml"
	containerd --config "$d/config.toml" </dev/null >>"$d/containerd.log" 2>&1 &
	CTRD_PID=$!
	for _ in $(seq 200); do
		if timeout 5 ctr -a "$SOCK" version >/dev/null 2>&1; then return 0; fi
		kill -0 "$CTRD_PID" 2>/dev/null || break
		sleep 0.05
	done
	die "containerd did not come up; log: $(tail -n 20 "$d/containerd.log")"
}
start_containerd

q() { printf '%q' "$1"; }
mkdir -p "$BENCH_OUT"
stamp=$(date +%Y%m%d-%H%M%S)
md=$BENCH_OUT/bench-image-$stamp.md
CTR="ctr -a $(q "$SOCK")"
BCTL=$(q "$BERTHCTL")

# ctr_fresh: a clean containerd for each ctr run: stop it (by pid), remove its root and state,
# start it again. (`ctr images rm --sync` leaves snapshots behind for a while, and the gzip and
# zstd images share their snapshots: a leftover would make the next unpack a no-op.)
ctr_fresh() {
	stop_containerd
	unmount_under "$work/containerd"
	rm -rf --one-file-system "$work/containerd/root" "$work/containerd/state"
	start_containerd
	[[ $($CTR snapshots ls | tail -n +2 | wc -l) -eq 0 ]] || die "a fresh containerd has snapshots"
}
for tool in /usr/bin/time getconf; do command -v "$tool" >/dev/null || die "$tool not found"; done

# --- unpack ------------------------------------------------------------------------------------
# Interleaved rounds (each round runs every command once, starting one further along each
# time) rather than one hyperfine run per command: on a shared machine the load changes over
# minutes, and a ratio of two medians taken minutes apart would measure that. Round 0 is a
# warm-up. Wall time and CPU time (user+sys of the command's process tree, plus for ctr the
# CPU containerd itself spent, read from /proc/PID/stat) per run.
U_NAMES=() U_PREP=() U_CMD=()
add_u() { U_NAMES+=("$1") U_PREP+=("$2") U_CMD+=("$3"); }
if want unpack; then
	broot=$work/bctl-unpack
	troot=$work/tar-unpack
	uroot=$work/umoci-unpack
	gz_list=$(printf '%q ' "${GZ_BLOBS[@]}")
	add_u "berthctl import+unpack (gzip)" "rm -rf --one-file-system $(q "$broot")" \
		"$BCTL --root $(q "$broot") import $(q "$CACHE/gzip.tar") >/dev/null"
	add_u "ctr images import+unpack (gzip)" @ctr_fresh \
		"$CTR images import $(q "$CACHE/gzip.tar") >/dev/null"
	add_u "umoci unpack (gzip)" "rm -rf --one-file-system $(q "$uroot")" \
		"umoci unpack --image $(q "$CACHE/layout"):gzip $(q "$uroot") >/dev/null"
	add_u "gzip -dc (bound)" true "gzip -dc $gz_list >/dev/null"
	add_u "GNU tar -xzf per layer" "rm -rf --one-file-system $(q "$troot")" \
		"mkdir $(q "$troot") && for b in $gz_list; do tar --numeric-owner -xzf \$b -C $(q "$troot") || exit 1; done"
fi
if want zstd; then
	broot_z=$work/bctl-unpack-zstd
	zst_list=$(printf '%q ' "${ZST_BLOBS[@]}")
	add_u "berthctl import+unpack (zstd)" "rm -rf --one-file-system $(q "$broot_z")" \
		"$BCTL --root $(q "$broot_z") import $(q "$CACHE/zstd.tar") >/dev/null"
	add_u "ctr images import+unpack (zstd)" @ctr_fresh \
		"$CTR images import $(q "$CACHE/zstd.tar") >/dev/null"
	add_u "zstd -dc (bound)" true "zstd -qdc $zst_list >/dev/null"
fi
tsv_unpack=$BENCH_OUT/bench-image-$stamp-unpack.tsv
# ctrd_cpu: containerd's user+sys CPU so far, in clock ticks.
ctrd_cpu() { awk '{ print $14 + $15 }' "/proc/$CTRD_PID/stat"; }
if ((${#U_NAMES[@]} > 0)); then
	n=${#U_NAMES[@]}
	log "unpack: $n commands, $RUNS interleaved rounds after a warm-up round"
	printf 'round\tcommand\twall_s\tcpu_s\n' >"$tsv_unpack"
	tck=$(getconf CLK_TCK)
	for ((r = 0; r <= RUNS; r++)); do
		for ((j = 0; j < n; j++)); do
			i=$(((j + r) % n))
			if [[ ${U_PREP[i]} == @* ]]; then
				"${U_PREP[i]#@}"
			else
				bash -c "${U_PREP[i]}" >/dev/null 2>&1 || die "preparing '${U_NAMES[i]}' failed: ${U_PREP[i]}"
			fi
			c0=$(ctrd_cpu)
			/usr/bin/time -f '%e %U %S' -o "$work/time.out" bash -c "${U_CMD[i]}" ||
				die "'${U_NAMES[i]}' failed: ${U_CMD[i]}"
			c1=$(ctrd_cpu)
			read -r wall usr sys <"$work/time.out"
			cpu=$(awk -v u="$usr" -v s="$sys" -v d=$((c1 - c0)) -v t="$tck" 'BEGIN { printf "%.2f", u + s + d / t }')
			log "round $r/$RUNS: ${U_NAMES[i]}: ${wall} s wall, ${cpu} s CPU"
			((r > 0)) && printf '%d\t%s\t%s\t%s\n' "$r" "${U_NAMES[i]}" "$wall" "$cpu" >>"$tsv_unpack"
		done
	done
	# A check that the trees agree (entries), from the last round.
	if want unpack; then
		count() { find "$1" -xdev \( -type f -o -type l -o -type d \) | wc -l; }
		log "check: berthctl committed $(find "$broot/snapshots/committed" -mindepth 1 -maxdepth 1 | wc -l)" \
			"snapshots; GNU tar's tree has $(count "$troot") entries, umoci's rootfs $(count "$uroot/rootfs")"
	fi
	rm -rf --one-file-system "$work/bctl-unpack" "$work/bctl-unpack-zstd" "$work/tar-unpack" "$work/umoci-unpack"
	ctr_fresh
fi

# --- run ---------------------------------------------------------------------------------------
hf_run=()
json_run=$BENCH_OUT/bench-image-$stamp-run.json
if want run; then
	bb=docker.io/library/busybox:latest
	rroot=$work/bctl-run
	"$BERTHCTL" --root "$rroot" import "$CACHE/busybox.tar" >/dev/null 2>&1 || die "berthctl import of busybox failed"
	$CTR images import "$CACHE/busybox.tar" >/dev/null || die "ctr images import of busybox failed"
	mkdir -p "$work/podman"
	podman_cmd load -q -i "$CACHE/busybox.tar" >/dev/null 2>&1 || die "podman load of busybox failed"
	PODMAN="podman --root $(q "$work/podman/root") --runroot $(q "$work/podman/run") --tmpdir $(q "$work/podman/tmp")"
	PODMAN+=" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime $(q "$RUNC")"
	PODMAN_RUN="run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 $bb /bin/true"
	# Preflight: each must run once.
	"$BERTHCTL" --root "$rroot" run --rm --network none busybox /bin/true || die "berthctl run failed"
	"$BERTHCTL" --root "$rroot" --runtime "$RUNC" run --rm --network none busybox /bin/true || die "berthctl --runtime runc run failed"
	$CTR run --rm "$bb" "bench-pre-$$" /bin/true || die "ctr run failed"
	eval "$PODMAN $PODMAN_RUN" || die "podman run failed"
	hf_run+=(-n "berthctl run --rm (berth)" "$BCTL --root $(q "$rroot") run --rm --network none busybox /bin/true")
	hf_run+=(-n "berthctl run --rm (runc)" "$BCTL --root $(q "$rroot") --runtime $(q "$RUNC") run --rm --network none busybox /bin/true")
	hf_run+=(-n "ctr run --rm (runc shim, runc)" "$CTR run --rm $bb bench-\$\$ /bin/true")
	hf_run+=(-n "podman run --rm (runc)" "$PODMAN $PODMAN_RUN")
	log "hyperfine (run): --warmup 3 --runs $RUN_RUNS"
	hyperfine --style basic --warmup 3 --runs "$RUN_RUNS" --export-json "$json_run" "${hf_run[@]}" >&2 ||
		die "hyperfine failed (a benchmarked command exited non-zero; see above)"
fi

# --- report --------------------------------------------------------------------------------------
median() { # median JSON NAME -> seconds, empty if absent
	[[ -f $1 ]] || return 0
	jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"
}
umedian() { # umedian NAME COLUMN(3 wall, 4 cpu) -> median seconds over the rounds, empty if absent
	[[ -f $tsv_unpack ]] || return 0
	awk -F '\t' -v n="$1" -v c="$2" 'NR > 1 && $2 == n { print $c }' "$tsv_unpack" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
fmt() { awk -v x="$1" -v m="$2" 'BEGIN { if (x == "") print "—"; else printf "%.*f", (m == 1000 ? 1 : 2), x * m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×", a / b }'; }
mbps() { awk -v s="$1" -v t="$2" 'BEGIN { if (t == "" || t == 0) print "—"; else printf "%.0f", s / t / 1048576 }'; }
{
	echo "## hack/bench-image.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	if [[ -f $tsv_unpack ]]; then
		echo "Image: ${#GZ_BLOBS[@]} layers, $((RAW_SIZE >> 20)) MiB of tar, $((GZ_SIZE >> 20)) MiB gzip" \
			"($((ZST_SIZE >> 20)) MiB zstd); medians of $RUNS interleaved rounds, each run from a clean state."
		echo
		echo "| import + unpack | wall, s | MiB/s of tar | berthctl ÷ this | CPU, s |"
		echo "|---|---:|---:|---:|---:|"
		b=$(umedian "berthctl import+unpack (gzip)" 3)
		bz=$(umedian "berthctl import+unpack (zstd)" 3)
		for n in "berthctl import+unpack (gzip)" "ctr images import+unpack (gzip)" "umoci unpack (gzip)" \
			"gzip -dc (bound)" "GNU tar -xzf per layer" \
			"berthctl import+unpack (zstd)" "ctr images import+unpack (zstd)" "zstd -dc (bound)"; do
			t=$(umedian "$n" 3)
			[[ -n $t ]] || continue
			ref=$b
			[[ $n == *zstd* ]] && ref=$bz
			echo "| $n | $(fmt "$t" 1) | $(mbps "$RAW_SIZE" "$t") | $(ratio "$ref" "$t") | $(fmt "$(umedian "$n" 4)" 1) |"
		done
		echo
		echo "Targets: berthctl at least 1.5× containerd's speed (berthctl ÷ ctr ≤ 0.67×) and within" \
			"1.3× of the decompression bound (berthctl ÷ gzip -dc ≤ 1.30×):" \
			"berthctl ÷ ctr = $(ratio "$b" "$(umedian "ctr images import+unpack (gzip)" 3)")," \
			"berthctl ÷ gzip -dc = $(ratio "$b" "$(umedian "gzip -dc (bound)" 3)")," \
			"berthctl ÷ umoci = $(ratio "$b" "$(umedian "umoci unpack (gzip)" 3)");" \
			"zstd: berthctl ÷ ctr = $(ratio "$bz" "$(umedian "ctr images import+unpack (zstd)" 3)")," \
			"berthctl ÷ zstd -dc = $(ratio "$bz" "$(umedian "zstd -dc (bound)" 3)")." \
			"CPU: containerd's own included for ctr; wall is what the targets are about."
		echo
	fi
	if [[ -f $json_run ]]; then
		echo "| run --rm busybox /bin/true | median, ms | berthctl (berth) ÷ this |"
		echo "|---|---:|---:|"
		b=$(median "$json_run" "berthctl run --rm (berth)")
		for n in "berthctl run --rm (berth)" "berthctl run --rm (runc)" "ctr run --rm (runc shim, runc)" "podman run --rm (runc)"; do
			t=$(median "$json_run" "$n")
			echo "| $n | $(fmt "$t" 1000) | $(ratio "$b" "$t") |"
		done
		echo
		echo "hyperfine medians of $RUN_RUNS runs (warm-up 3)."
	fi
} | tee "$md"
outs=("$md")
for f in "$tsv_unpack" "$json_run"; do [[ -f $f ]] && outs+=("$f"); done
log "results: ${outs[*]}"
