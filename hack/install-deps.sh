#!/usr/bin/env bash
# Usage: hack/install-deps.sh [--update]
#
# Install the Debian 12 packages berth's build, tests and benchmarks need, and check
# that the Rust toolchain (cargo, from rustup) is present. Idempotent: when every
# package is already installed it does not touch apt at all; otherwise (or with
# --update) it runs `apt-get update` and `apt-get install` for the missing ones.
# Must run as root. The package list lives in PACKAGES below and nowhere else.
# Packages whose maintainer scripts would start a service (docker.io) are installed with a
# policy-rc.d that denies every start (there is no systemd here; nothing may run behind the
# tests' back): the suite starts its own private dockerd and containerd.
# Then hack/install-peers.sh unpacks the newer peers (docker 26.1.5 from trixie, containerd
# 2.1.9 and runc 1.3.6 from sid) into its cache dir beside the system.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The one list of Debian packages the project needs.
PACKAGES=(
	runc              # reference runtime for the differential integration suite and benchmarks
	crun              # second peer runtime for benchmarks
	busybox-static    # rootfs of test and benchmark bundles (hack/mkbundle.sh)
	hyperfine         # benchmarks (hack/bench.sh)
	jq                # config.json editing
	time              # GNU /usr/bin/time for peak RSS
	umoci             # OCI image layouts for tests
	skopeo            # OCI layout <-> archive / registry copies
	containerd        # shim and `ctr --runc-binary` tests; integration client tests (ctr)
	podman            # integration client tests: `podman --runtime` through conmon
	docker.io         # integration client tests: docker 20.10 (dockerd started by the suite, --add-runtime)
	docker-registry   # registry pull and push tests (image/tests/registry.rs, ctl/tests/registry.rs, integration images), berthctl pull/push
	openssl           # ctl/tests/registry.rs: the test's own CA, server and client certificates
	iproute2          # ctl/tests/registry.rs: an address of its own in a network namespace of its own
	curl              # hack/bench-build.sh: the push floor; ctl/tests/network.rs fetches published ports
	containernetworking-plugins # berthctl's networks (bridge, host-local, portmap, firewall, tuning): ctl/tests/network.rs
	iptables          # the CNI plugins' NAT and filter rules (portmap, bridge ipMasq, firewall)
	golang-github-containernetworking-plugin-dnsname # podman 4.3's name resolution on CNI networks (with dnsmasq-base): ctl/tests/network_podman.rs compares berthctl with it
	cpio              # initramfs of the cgroup v2 VM (hack/vm-run.sh)
	e2fsprogs         # mkfs.ext4: the cgroup v2 VM's /tmp disk
	qemu-system-x86   # the cgroup v2 VM: qemu-system-x86_64 -accel tcg
	linux-image-amd64 # the cgroup v2 VM's kernel and modules (/boot/vmlinuz-*, /lib/modules)
	python3-grpcio    # the shim's CRI test (shim/tests/cri.rs): gRPC for its CRI client
	python3-grpc-tools # the CRI test's Python stubs, generated from shim/tests/cri/api.proto
	musl-tools        # musl-gcc: the C parts of zstd and ring for the musl build (hack/lib.sh)
	strace            # integration faults and the fault regression tests (strace -e inject); cgroup_mounts_read_mountinfo_once counts opens
	apparmor          # apparmor_parser: the AppArmor tests load profiles in the cgroup v2 VM (Debian's 6.1 kernel has AppArmor; the VM sees the host's / read-only)
	selinux-policy-default # the SELinux tests: the VM booted with security=selinux loads its policy, permissive (hack/vm/stage2); inert on a host whose kernel runs no SELinux (nothing is relabelled, selinux-activate is not run)
	policycoreutils   # load_policy for that (hack/vm/stage2)
	selinux-utils     # getenforce: hack/test.sh checks that the SELinux VM pass runs permissive
	debootstrap       # hack/debian-base.sh: the Debian base of the integration suite's gcc and Python builds (client_images_debian_*)
	uidmap            # newuidmap/newgidmap: rootless containers with subordinate ids (integration rootless_*)
	patchelf          # hack/install-peers.sh points sid's runc 1.3.6 at sid's libc (its ELF interpreter and rpath)
)

force_update=0
case "${1:-}" in
"") ;;
--update) force_update=1 ;;
-h | --help)
	usage
	exit 0
	;;
*) die "unknown argument: $1 (usage: hack/install-deps.sh [--update])" ;;
esac

need_root

missing=()
for p in "${PACKAGES[@]}"; do
	if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0 && force_update == 0)); then
	log "all ${#PACKAGES[@]} Debian packages already installed"
else
	export DEBIAN_FRONTEND=noninteractive
	log "apt-get update"
	apt-get update -qq
	if ((force_update)); then missing=("${PACKAGES[@]}"); fi
	# No service may start: a policy-rc.d that denies everything, for this install only
	# (one that is already there, as on the project's machines, is left as it is).
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# hack/install-deps.sh: no service starts during its install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	log "apt-get install ${missing[*]}"
	rc=0
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	if ((own_policy)); then rm -f "$policy"; fi
	((rc == 0)) || die "apt-get install failed (exit $rc)"
fi
# docker.io's postinst enables its units for systemd (absent here) and asks invoke-rc.d to
# start it (denied above): nothing of docker runs after the install.
if pids=$(pidof dockerd 2>/dev/null); then
	log "warning: a dockerd is running (pid $pids), not started by this script"
fi

# busybox-static and busybox (the dynamic one) both provide /bin/busybox; bundles
# need the static one because the rootfs has no libc.
if ldd /bin/busybox >/dev/null 2>&1; then
	die "/bin/busybox is dynamically linked; install busybox-static (apt-get install busybox-static)"
fi

# The newer peers (cached in /var/tmp/berth-peers). Without them only what needs them fails,
# saying what is missing: the matrix's docker 26.1.5 and containerd 2.1.9 tests, and the
# integration and difffuzz passes against runc 1.3.6.
"$HACK/install-peers.sh" ||
	log "warning: hack/install-peers.sh failed: the docker 26.1.5, containerd 2.1.9 and runc 1.3.6 steps will fail"

ensure_cargo
log "$(cargo --version)"
# The musl target (hack/lib.sh's pick_target); without it everything builds against glibc.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
	log "rustup target add x86_64-unknown-linux-musl"
	timeout 300 rustup target add x86_64-unknown-linux-musl >&2 ||
		log "warning: could not add the musl target; berth builds against glibc (slower start-up)"
fi
for sub in fmt clippy; do
	if ! cargo "$sub" --version >/dev/null 2>&1; then
		log "warning: 'cargo $sub' is missing (rustup component add ${sub/fmt/rustfmt}); hack/test.sh needs it"
	fi
done
