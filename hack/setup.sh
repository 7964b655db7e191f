#!/usr/bin/env bash
# Usage: hack/setup.sh [BUNDLE_DIR]
#
# First command on a fresh machine (as root, from anywhere in the repository):
#   1. hack/install-deps.sh (Debian packages; checks cargo)
#   2. cargo build --release
#   3. install berth and berthctl to /usr/local/bin (only where the path is free, a
#      symlink, or a berth/berthctl of an earlier run; nothing else is installed
#      system-wide). berth is installed immutable (chattr +i): a binary nobody can
#      open for writing needs no re-exec to protect itself against CVE-2019-5736,
#      which saved 0.3-0.8 ms of a run and 0.4 ms of an exec in hack/bench.sh here
#      (README, "Benchmarks").
#      Run hack/setup.sh again after a rebuild to update them.
#   4. hack/mkbundle.sh BUNDLE_DIR echo hello from berth
#      (default BUNDLE_DIR /tmp/berth-hello, replaced if it is a bundle from a previous
#      run; a BUNDLE_DIR you give must be empty or absent)
#   5. berth run --bundle BUNDLE_DIR <id>, printing the container's output
#   6. a busybox image from busybox-static (hack/mkimage.sh), `berthctl import`ed into the
#      default store (/var/lib/berth), and `berthctl run --rm busybox echo hello from berthctl`
# Environment: RUNTIME (binary whose `spec` makes config.json; default: the berth just
# built), BERTH (binary that runs the container; default: the installed berth),
# BERTH_ROOT (passed as --root when set; otherwise berth's default state root),
# CARGO_TARGET_DIR (honoured), SKIP_INSTALL_DEPS=1 (skip step 1).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
esac
(($# <= 1)) || die "usage: hack/setup.sh [BUNDLE_DIR]"
need_root

default_bundle=/tmp/berth-hello
bundle=${1:-$default_bundle}

# 1. dependencies
if [[ ${SKIP_INSTALL_DEPS:-0} != 1 ]]; then
	log "installing dependencies"
	"$HACK/install-deps.sh"
fi
ensure_cargo
pick_target # install-deps may have added the musl target
built=$BIN_DIR/berth
RUNTIME=${RUNTIME:-$built}

# 2. build
log "cargo build --release"
(cd "$REPO" && cargo build --release)
[[ -x $built ]] || die "cargo build did not produce $built"

# 3. the one system-wide change: berth and berthctl on PATH
# install_bin SRC DEST [immutable]: copy SRC to DEST (a new inode, renamed into place) where
# DEST is free, a symlink, or an earlier install (its --version names it); prints DEST.
install_bin() {
	local src=$1 dest=$2 immutable=${3:-} name
	name=$(basename "$dest")
	if [[ -e $dest && ! -L $dest ]] && ! "$dest" --version 2>/dev/null | grep -q "^$name"; then
		log "warning: $dest exists and is not a $name of ours; left alone"
		return 1
	fi
	local tmp=$dest.new.$$
	if ! { cp "$src" "$tmp" && chmod 0755 "$tmp"; }; then
		rm -f "$tmp"
		return 1
	fi
	if [[ -e $dest && ! -L $dest ]]; then chattr -i "$dest" 2>/dev/null || true; fi
	mv -f "$tmp" "$dest" || {
		rm -f "$tmp"
		return 1
	}
	if [[ -n $immutable ]]; then
		if chattr +i "$dest" 2>/dev/null; then
			log "installed $dest (immutable)"
		else
			log "installed $dest (chattr +i failed: berth re-execs from a read-only copy of itself)"
		fi
	else
		log "installed $dest"
	fi
	echo "$dest"
}
installed=$(install_bin "$built" /usr/local/bin/berth immutable) || installed=$built
BERTH=${BERTH:-$installed}

# 4. bundle
if [[ $bundle == "$default_bundle" && -f $bundle/config.json && -d $bundle/rootfs ]]; then
	log "replacing the bundle from a previous run at $bundle"
	rm -rf --one-file-system "$bundle"
fi
RUNTIME=$RUNTIME "$HACK/mkbundle.sh" "$bundle" echo hello from berth

# 5. run a container
id=hello-$$
root_args=()
if [[ -n ${BERTH_ROOT:-} ]]; then root_args=(--root "$BERTH_ROOT"); fi
log "$BERTH ${root_args[*]} run --bundle $bundle $id"
rc=0
out=$("$BERTH" "${root_args[@]}" run --bundle "$bundle" "$id" 2>&1) || rc=$?
if ((rc != 0)); then
	"$BERTH" "${root_args[@]}" delete --force "$id" >/dev/null 2>&1 || true
	printf '%s\n' "$out" >&2
	die "the container failed (exit $rc)"
fi
printf '%s\n' "$out"
[[ $out == *"hello from berth"* ]] || die "unexpected output from the container"

# The image service: a busybox image from busybox-static, imported and run with berthctl.
ctl=$BIN_DIR/berthctl
[[ -x $ctl ]] || die "cargo build did not produce $ctl"
# Installed next to berth, berthctl runs containers with that berth.
ctl=$(install_bin "$ctl" /usr/local/bin/berthctl || echo "$ctl")
archive=$(mktemp /tmp/berth-busybox.XXXXXX.tar)
"$HACK/mkimage.sh" "$archive"
"$ctl" import "$archive"
rm -f "$archive"
log "$ctl run --rm busybox echo hello from berthctl"
"$ctl" run --rm busybox echo hello from berthctl
log "done: berth and berthctl are built and run containers; the bundle is at $bundle." \
	"Next: hack/test.sh (the whole suite), hack/bench.sh (benchmarks)."
