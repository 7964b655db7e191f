#!/usr/bin/env bash
# Usage: hack/bench-net.sh [-n RUNS] [-o OUTDIR]
#
# berthctl's services against podman's (issue 13), medians of hyperfine runs, ratios from one
# run (by hand, not in CI; as root):
#   run -d -p   `run -d -p PORT:80` of busybox httpd until the first successful HTTP response
#               (curl on 127.0.0.1:PORT, retried without pause)
#   start       `start` of that container, stopped, until the first successful response
#   run -d, no network   `run -d --network none` of a sleeping busybox (no CNI plugins): each
#               client's own overhead, without the plugins both run (bridge, portmap, firewall
#               and their ~40 iptables runs)
# berthctl (berth, the default bridge network through the CNI plugins) and podman 4.3 (runc,
# its CNI backend on the same plugins). Everything runs in a network and mount namespace of
# its own (unshare -m -n: own /run/netns, /var/lib/cni, iptables), so the host's network is
# never touched; its temp dir (/var/tmp/berth-bench-net.XXXXXX) is removed on exit.
# Prints a markdown table and writes it and hyperfine's JSON to OUTDIR.
#
# Options and environment:
#   -n RUNS      hyperfine --runs (env RUNS, default 20; warm-up 2)
#   -o OUTDIR    where bench-net-<time>{.md,-*.json} go (env BENCH_OUT, default target/bench)
#   BERTHCTL, BERTH  binaries (default $BIN_DIR/berthctl, $BIN_DIR/berth: cargo build --release)
#   RUNC         runc for podman (default /usr/sbin/runc)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-20}
BENCH_OUT=${BENCH_OUT:-$REPO/target/bench}
while getopts "n:o:h" o; do
	case $o in
	n) RUNS=$OPTARG ;;
	o) BENCH_OUT=$OPTARG ;;
	*) usage; exit 2 ;;
	esac
done
need_root
BERTHCTL=${BERTHCTL:-$BIN_DIR/berthctl}
BERTH=${BERTH:-$BIN_DIR/berth}
RUNC=${RUNC:-/usr/sbin/runc}
for tool in hyperfine jq podman curl unshare ip iptables /usr/lib/cni/bridge /usr/lib/cni/portmap; do
	command -v "$tool" >/dev/null || die "$tool is missing (hack/install-deps.sh)"
done
[[ -x $BERTHCTL && -x $BERTH ]] || die "build first: cargo build --release --workspace"

# Into a network and mount namespace of our own, once.
if [[ -z ${BENCH_NET_INNER:-} ]]; then
	mkdir -p /run/netns /var/lib/cni
	exec unshare -m -n --propagation private env BENCH_NET_INNER=1 RUNS="$RUNS" BENCH_OUT="$BENCH_OUT" \
		BERTHCTL="$BERTHCTL" BERTH="$BERTH" RUNC="$RUNC" "$0"
fi
mount -t tmpfs tmpfs /run/netns
mount -t tmpfs tmpfs /var/lib/cni
ip link set lo up

mkdir -p "$BENCH_OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d /var/tmp/berth-bench-net.XXXXXX)
q() { printf '%q' "$1"; }
export NETCONFPATH=$work/net.d
BCTL="$(q "$BERTHCTL") --root $(q "$work/bctl") --runtime $(q "$BERTH")"
PODMAN="podman --root $(q "$work/podman/root") --runroot $(q "$work/podman/run") --tmpdir $(q "$work/podman/tmp")"
PODMAN+=" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime $(q "$RUNC")"
PODMAN+=" --network-backend cni --cni-config-dir $(q "$work/podman/net.d")"

cleanup() {
	trap - EXIT INT TERM
	eval "$BCTL rm -f web" >/dev/null 2>&1 || true
	if [[ -d $work/podman/root ]]; then
		timeout 60 bash -c "$PODMAN rm -a -f -t 0" >/dev/null 2>&1 || true
		timeout 120 bash -c "$PODMAN rmi -a -f" >/dev/null 2>&1 || true
	fi
	awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$work" || log "warning: could not remove all of $work"
	for d in /sys/fs/cgroup/*/berth-bench-net /sys/fs/cgroup/*/libpod_parent; do
		rmdir "$d"/* 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

"$HACK/mkimage.sh" "$work/busybox.tar" >/dev/null 2>&1 || die "hack/mkimage.sh failed"
eval "$BCTL load -q -i $(q "$work/busybox.tar")" >/dev/null
mkdir -p "$work/podman"
eval "$PODMAN load -q -i $(q "$work/busybox.tar")" >/dev/null 2>&1 || die "podman load failed"
mkdir -p "$work/www"
echo "hello from the benchmark" >"$work/www/index.html"

# until the port answers (no pause: the time to the first response is what is measured)
wait_http() { printf 'until curl -sf -o /dev/null http://127.0.0.1:%s/; do :; done' "$1"; }
HTTPD="-v $(q "$work/www"):/www busybox httpd -f -p 80 -h /www"
B_RUN="$BCTL run -d --name web --cgroup-parent /berth-bench-net -p 18080:80 $HTTPD >/dev/null && $(wait_http 18080)"
P_RUN="$PODMAN run -d --name web --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -p 18081:80 $HTTPD >/dev/null && $(wait_http 18081)"
for c in "$B_RUN" "$P_RUN"; do
	bash -c "$c" || die "preflight failed: $c"
done
B_RM="$BCTL rm -f web >/dev/null 2>&1 || true"
P_RM="$PODMAN rm -f -t 0 web >/dev/null 2>&1 || true"
results=()
bench() { # bench SECTION hyperfine-args...
	local json=$BENCH_OUT/bench-net-$stamp-$1.json
	shift
	hyperfine --style basic --warmup 2 --runs "$RUNS" --export-json "$json" "$@" >&2 ||
		die "hyperfine failed (a benchmarked command exited non-zero; see above)"
	results+=("$json")
}
bench run \
	--prepare "$B_RM" -n "run -d -p: berthctl" "$B_RUN" \
	--prepare "$P_RM" -n "run -d -p: podman" "$P_RUN"
B_NONE="$BCTL run -d --name idle --cgroup-parent /berth-bench-net --network none busybox sleep 1000 >/dev/null"
P_NONE="$PODMAN run -d --name idle --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none busybox sleep 1000 >/dev/null"
bench none \
	--prepare "$BCTL rm -f idle >/dev/null 2>&1 || true" -n "run -d, no network: berthctl" "$B_NONE" \
	--prepare "$PODMAN rm -f -t 0 idle >/dev/null 2>&1 || true" -n "run -d, no network: podman" "$P_NONE"
eval "$BCTL rm -f idle" >/dev/null 2>&1 || true
eval "$PODMAN rm -f -t 0 idle" >/dev/null 2>&1 || true
# The last run's containers are there: stopped before each start.
bench start \
	--prepare "$BCTL stop -t 0 web >/dev/null" -n "start: berthctl" "$BCTL start web >/dev/null && $(wait_http 18080)" \
	--prepare "$PODMAN stop -t 0 web >/dev/null" -n "start: podman" "$PODMAN start web >/dev/null && $(wait_http 18081)"

md=$BENCH_OUT/bench-net-$stamp.md
{
	echo "| | berthctl | podman | ÷ podman |"
	echo "|---|---|---|---|"
	for s in "run -d -p" start "run -d, no network"; do
		b=$(jq -s --arg n "$s: berthctl" '[.[].results[] | select(.command == $n) | .median][0] * 1000' "${results[@]}")
		p=$(jq -s --arg n "$s: podman" '[.[].results[] | select(.command == $n) | .median][0] * 1000' "${results[@]}")
		awk -v s="$s" -v b="$b" -v p="$p" 'BEGIN { printf "| %s | %.1f ms | %.1f ms | %.2f× |\n", s, b, p, b / p }'
	done
} | tee "$md"
log "written: $md"
