#!/usr/bin/env bash
# Usage: hack/bench-build.sh [-n RUNS] [-o OUTDIR] [-s SECTIONS]
#
# Builds, pushes and pulls with berthctl against the peers, medians of hyperfine runs, ratios
# from one run (by hand, not in CI; as root):
#   build (the same Dockerfile and a context of 10,000 small files; three trivial RUN steps,
#   so that the wall time is the builder's own overhead):
#     cold        --no-cache build
#     no-change   a rebuild with nothing changed (everything from the cache)
#     one-file    a rebuild after one COPYed file changed (that COPY and what follows run)
#   with berthctl build (berth runs the RUN steps), podman build --format docker (buildah 1.28,
#   runc) and docker 20.10's BuildKit (a private dockerd, DOCKER_BUILDKIT=1, its runc).
#   push/pull (an image of 4 layers of 8 MiB of random data, to Debian's docker-registry on
#   127.0.0.1, emptied before every push):
#     berthctl push / podman push / skopeo copy oci:... docker://... / curl (the floor: the
#     same blobs POSTed and PUT, then the manifest PUT, one curl per request)
#     berthctl pull / podman pull / skopeo copy docker://... oci:... (into empty stores)
# Prints a markdown table and writes it and hyperfine's JSON to OUTDIR.
#
# Options and environment:
#   -n RUNS      hyperfine --runs (env RUNS, default 10; warm-up 2)
#   -o OUTDIR    where bench-build-<time>{.md,-*.json} go (env BENCH_OUT, default target/bench)
#   -s SECTIONS  build, push, or build,push (default)
#   BERTHCTL, BERTH  binaries (default $BIN_DIR/berthctl, $BIN_DIR/berth: cargo build --release)
#   RUNC         runc for podman (default /usr/sbin/runc)
# Everything it starts (dockerd, docker-registry) it stops by pid; its temp dir
# (/var/tmp/berth-bench-build.XXXXXX) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-10}
BENCH_OUT=${BENCH_OUT:-$REPO/target/bench}
SECTIONS=build,push
while getopts "n:o:s:h" o; do
	case $o in
	n) RUNS=$OPTARG ;;
	o) BENCH_OUT=$OPTARG ;;
	s) SECTIONS=$OPTARG ;;
	*) usage; exit 2 ;;
	esac
done
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }
need_root
BERTHCTL=${BERTHCTL:-$BIN_DIR/berthctl}
BERTH=${BERTH:-$BIN_DIR/berth}
RUNC=${RUNC:-/usr/sbin/runc}
for tool in hyperfine jq podman skopeo curl /usr/sbin/dockerd /usr/bin/docker /usr/bin/docker-registry; do
	command -v "$tool" >/dev/null || die "$tool is missing (hack/install-deps.sh)"
done
[[ -x $BERTHCTL && -x $BERTH ]] || die "build first: cargo build --release --workspace"
mkdir -p "$BENCH_OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d /var/tmp/berth-bench-build.XXXXXX)
DOCKERD_PID='' REG_PID=''
q() { printf '%q' "$1"; }

podman_cmd() {
	podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
		--storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime "$RUNC" "$@"
}

cleanup() {
	trap - EXIT INT TERM
	if [[ -d $work/podman/root ]]; then
		timeout 60 podman_cmd rm -a -f >/dev/null 2>&1 || true
		timeout 120 podman_cmd rmi -a -f >/dev/null 2>&1 || true
	fi
	[[ -n $DOCKERD_PID ]] && { kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
	[[ -n $REG_PID ]] && { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
	awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$work" || log "warning: could not remove all of $work"
	for d in /sys/fs/cgroup/*/berth-bench-build /sys/fs/cgroup/*/libpod_parent; do
		rmdir "$d"/* 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

"$HACK/mkimage.sh" "$work/busybox.tar" >/dev/null 2>&1 || die "hack/mkimage.sh failed"
BCTL="$(q "$BERTHCTL") --root $(q "$work/bctl") --runtime $(q "$BERTH")"
eval "$BCTL load -q -i $(q "$work/busybox.tar")" >/dev/null
mkdir -p "$work/podman"
podman_cmd load -q -i "$work/busybox.tar" >/dev/null 2>&1 || die "podman load failed"
PODMAN="podman --root $(q "$work/podman/root") --runroot $(q "$work/podman/run") --tmpdir $(q "$work/podman/tmp")"
PODMAN+=" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime $(q "$RUNC")"

results=()
bench() { # bench SECTION hyperfine-args...
	local json=$BENCH_OUT/bench-build-$stamp-$1.json
	shift
	hyperfine --style basic --warmup 2 --runs "$RUNS" --export-json "$json" "$@" >&2 ||
		die "hyperfine failed (a benchmarked command exited non-zero; see above)"
	results+=("$json")
}

# --- build ---------------------------------------------------------------------------------------
if want build; then
	unshare_dockerd() {
		mkdir -p "$work/docker"
		unshare -m sh -c 'mount --make-rprivate /; exec "$@"' sh /usr/sbin/dockerd \
			--data-root "$work/docker/data" --exec-root "$work/docker/exec" -H "unix://$work/docker/sock" \
			--pidfile "$work/docker/pid" --iptables=false --bridge=none >"$work/docker/log" 2>&1 &
		DOCKERD_PID=$!
		for _ in $(seq 100); do
			/usr/bin/docker -H "unix://$work/docker/sock" version >/dev/null 2>&1 && return 0
			sleep 0.2
		done
		die "dockerd did not start: $(tail -5 "$work/docker/log")"
	}
	unshare_dockerd
	DOCKER="DOCKER_BUILDKIT=1 /usr/bin/docker -H unix://$(q "$work/docker/sock")"
	# docker 20.10 loads berthctl's save (not skopeo's oci-archive).
	eval "$BCTL save -o $(q "$work/busybox-docker.tar") busybox"
	eval "$DOCKER load -q -i $(q "$work/busybox-docker.tar")" >/dev/null
	ctx=$work/ctx
	mkdir -p "$ctx/files"
	log "context: 10,000 files"
	for d in $(seq 0 99); do
		mkdir -p "$ctx/files/d$d"
		for f in $(seq 0 99); do echo "file $d/$f" >"$ctx/files/d$d/f$f"; done
	done
	echo 0 >"$ctx/changing.txt"
	cat >"$ctx/Dockerfile" <<-'EOF'
		FROM busybox
		COPY files/ /files/
		RUN echo one > /one
		COPY changing.txt /changing.txt
		RUN cat /changing.txt > /copy
		RUN echo three > /three
		CMD ["cat", "/copy"]
	EOF
	B_BUILD="$BCTL build -q --cgroup-parent /berth-bench-build -t bench:b $(q "$ctx")"
	P_BUILD="$PODMAN build -q --format docker -t bench:p $(q "$ctx")"
	D_BUILD="$DOCKER build -q --network host -t bench:d $(q "$ctx")"
	for c in "$B_BUILD" "$P_BUILD" "$D_BUILD"; do eval "$c" >/dev/null || die "preflight failed: $c"; done
	bump="date +%s%N > $(q "$ctx/changing.txt")"
	# hyperfine takes one --prepare per command (in order) when it takes more than one.
	bench build \
		--prepare true -n "cold: berthctl build" "${B_BUILD/build -q/build -q --no-cache}" \
		--prepare true -n "cold: podman build" "${P_BUILD/build -q/build -q --no-cache}" \
		--prepare true -n "cold: BuildKit (docker 20.10)" "${D_BUILD/build -q/build -q --no-cache}" \
		--prepare true -n "no-change: berthctl build" "$B_BUILD" \
		--prepare true -n "no-change: podman build" "$P_BUILD" \
		--prepare true -n "no-change: BuildKit (docker 20.10)" "$D_BUILD" \
		--prepare "$bump" -n "one-file: berthctl build" "$B_BUILD" \
		--prepare "$bump" -n "one-file: podman build" "$P_BUILD" \
		--prepare "$bump" -n "one-file: BuildKit (docker 20.10)" "$D_BUILD"
fi

# --- push / pull ---------------------------------------------------------------------------------
if want push; then
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	reg=127.0.0.1:$port
	mkdir -p "$work/reg"
	printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
		"$work/reg/data" "$reg" >"$work/reg/config.yml"
	/usr/bin/docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.1; done
	pctx=$work/pctx
	mkdir -p "$pctx"
	printf 'FROM busybox\nRUN head -c 8388608 /dev/urandom > /l1\nRUN head -c 8388608 /dev/urandom > /l2\nRUN head -c 8388608 /dev/urandom > /l3\nRUN head -c 8388608 /dev/urandom > /l4\n' >"$pctx/Dockerfile"
	eval "$BCTL build -q --cgroup-parent /berth-bench-build -t $reg/bench/img:1 $(q "$pctx")" >/dev/null
	eval "$BCTL save -o $(q "$work/img.tar") $reg/bench/img:1"
	mkdir -p "$work/oci" && tar -xf "$work/img.tar" -C "$work/oci"
	podman_cmd load -q -i "$work/img.tar" >/dev/null 2>&1 || die "podman load of the push image failed"
	# The floor: one curl process PUTs every blob to an upload the preparation opened (POST,
	# untimed: the floor leaves that round trip out) and then the manifest.
	man=$(jq -r '.manifests[0].digest' "$work/oci/index.json")
	mtype=$(jq -r .mediaType "$work/oci/blobs/sha256/${man#sha256:}")
	cat >"$work/curl-prep.sh" <<-EOF
		set -e
		rm -rf $(q "$work/reg/data")
		{
		for d in \$(jq -r '.config.digest, .layers[].digest' $(q "$work/oci/blobs/sha256/${man#sha256:}")); do
			loc=\$(curl -sf -X POST -D - -o /dev/null "http://$reg/v2/bench/curl/blobs/uploads/" | tr -d '\r' | awk 'tolower(\$1) == "location:" { print \$2 }')
			case \$loc in /*) loc=http://$reg\$loc ;; esac
			printf 'url = "%s&digest=%s"\nupload-file = "%s"\nheader = "Content-Type: application/octet-stream"\nsilent\nfail\noutput = "/dev/null"\nnext\n' "\$loc" "\$d" "$work/oci/blobs/sha256/\${d#sha256:}"
		done
		printf 'url = "http://$reg/v2/bench/curl/manifests/1"\nupload-file = "%s"\nheader = "Content-Type: $mtype"\nsilent\nfail\noutput = "/dev/null"\n' "$work/oci/blobs/sha256/${man#sha256:}"
		} > $(q "$work/curl.cfg")
	EOF
	empty="rm -rf $(q "$work/reg/data")"
	bench push \
		--prepare "bash $(q "$work/curl-prep.sh")" -n "push: curl (floor)" "curl -K $(q "$work/curl.cfg")" \
		--prepare "$empty" -n "push: berthctl" "$BCTL push $reg/bench/img:1 >/dev/null 2>&1" \
		--prepare "$empty" -n "push: skopeo copy" "skopeo copy -q --dest-tls-verify=false oci:$(q "$work/oci"):1 docker://$reg/bench/skopeo:1" \
		--prepare "$empty" -n "push: podman push" "$PODMAN push -q --tls-verify=false $reg/bench/img:1"
	eval "$BCTL push $reg/bench/img:1" >/dev/null 2>&1
	bench pull \
		--prepare "rm -rf $(q "$work/pull-b")" -n "pull: berthctl" "$(q "$BERTHCTL") --root $(q "$work/pull-b") pull $reg/bench/img:1 >/dev/null 2>&1" \
		--prepare "$PODMAN rmi -f $reg/bench/img:1 >/dev/null 2>&1 || true" -n "pull: podman pull" "$PODMAN pull -q --tls-verify=false $reg/bench/img:1" \
		--prepare "rm -rf $(q "$work/pull-s")" -n "pull: skopeo copy" "skopeo copy -q --src-tls-verify=false docker://$reg/bench/img:1 oci:$(q "$work/pull-s"):1"
fi

# --- report --------------------------------------------------------------------------------------
md=$BENCH_OUT/bench-build-$stamp.md
{
	echo "## hack/bench-build.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| command | median ms | ratio to berthctl |"
	echo "|---|---|---|"
	jq -rs '[.[].results[]] as $r
		| ($r | map({key: .command, value: .median}) | from_entries) as $m
		| $r[] | .command as $c
		| ($c | split(": ")[0]) as $kind
		| ($m[$kind + ": berthctl build"] // $m[$kind + ": berthctl"]) as $base
		| "| \($c) | \(.median * 1000 | . * 10 | round / 10) | \(if $base then (.median / $base * 100 | round / 100 | tostring) + "×" else "—" end) |"' \
		"${results[@]}"
} | tee "$md"
log "wrote $md"
