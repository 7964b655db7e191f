#!/usr/bin/env bash
# Usage: hack/mkbundle.sh DIR [ARGS...]
#
# Make an OCI bundle at DIR from Debian's busybox-static:
#   DIR/rootfs      /bin/busybox plus a relative symlink for every applet
#                   (`busybox --list-full`), /etc/passwd and /etc/group (root,
#                   nobody, user 1000), /tmp (1777), /proc /sys /dev /root /home/user
#   DIR/config.json from `${RUNTIME:-runc} spec --bundle DIR`, then with jq:
#                   process.terminal=false, process.args=ARGS (default: sh),
#                   linux.cgroupsPath="${CGROUP_PARENT:-/berth}/<basename of DIR>"
# The cgroupsPath is always absolute: an empty or relative one would put the
# container's cgroups below the machine supervisor's (see shared/ENVIRONMENT.md).
# Refuses if DIR exists and is not empty. Environment: RUNTIME (binary whose `spec`
# makes the base config.json; berth's is runc-compatible), BUSYBOX (default
# /bin/busybox), CGROUP_PARENT (absolute, default /berth).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if (($# < 1)) || [[ $1 == -h || $1 == --help ]]; then
	usage >&2
	exit 2
fi
dir=$1
shift
if (($# == 0)); then set -- sh; fi

runtime=${RUNTIME:-runc}
busybox=${BUSYBOX:-/bin/busybox}
cgparent=${CGROUP_PARENT:-/berth}

command -v jq >/dev/null || die "jq not found (run hack/install-deps.sh)"
command -v "$runtime" >/dev/null || die "RUNTIME '$runtime' not found"
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (install busybox-static)"; fi
[[ $cgparent == /* ]] || die "CGROUP_PARENT must be absolute, got '$cgparent'"

if [[ -e $dir ]]; then
	[[ -d $dir ]] || die "$dir exists and is not a directory"
	[[ -z "$(ls -A "$dir")" ]] || die "$dir exists and is not empty"
fi
existed=0
[[ -d $dir ]] && existed=1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# On failure, leave DIR as it was found (absent or empty), so a re-run can succeed.
undo() {
	local rc=$?
	((rc == 0)) && return 0
	if ((existed)); then
		find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
	else
		rm -rf --one-file-system "$dir"
	fi
	exit "$rc"
}
trap undo EXIT
name=$(basename "$dir")
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "bundle directory name '$name' is not usable in a cgroup path"
rootfs=$dir/rootfs

# --- rootfs ---
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,root,home/user,tmp,run,var}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"

# One relative symlink per applet: usr/bin/env -> ../../bin/busybox, linuxrc -> bin/busybox.
while IFS= read -r applet; do
	[[ -n $applet && $applet != bin/busybox ]] || continue
	[[ $applet != /* && $applet != *..* ]] || die "unexpected applet path '$applet'"
	slashes=${applet//[^\/]/}
	up=""
	for ((i = 0; i < ${#slashes}; i++)); do up+="../"; done
	mkdir -p "$rootfs/$(dirname "$applet")"
	ln -sfn "${up}bin/busybox" "$rootfs/$applet"
done < <("$busybox" --list-full)

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
chown 1000:1000 "$rootfs/home/user"

# --- config.json ---
"$runtime" spec --bundle "$dir"
[[ -s $dir/config.json ]] || die "'$runtime spec --bundle $dir' wrote no config.json"
args_json=$(jq -cn '$ARGS.positional' --args -- "$@")
jq --argjson args "$args_json" --arg cg "$cgparent/$name" \
	'.process.terminal = false | .process.args = $args | .linux.cgroupsPath = $cg' \
	"$dir/config.json" >"$dir/config.json.tmp"
mv "$dir/config.json.tmp" "$dir/config.json"
[[ "$(jq -r '.linux.cgroupsPath' "$dir/config.json")" == /* ]] || die "cgroupsPath not absolute"

log "bundle $dir: args $args_json, cgroupsPath $cgparent/$name"
