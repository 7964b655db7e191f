#!/usr/bin/env bash
# Usage: hack/vm-run.sh [--] COMMAND [ARG...]
#
# Run COMMAND as root in a pure cgroup v2 VM: Debian's kernel (linux-image-amd64, the
# newest /boot/vmlinuz-*-amd64 with modules in /lib/modules) under
# `qemu-system-x86_64 -accel tcg` with cgroup_no_v1=all, about 10-15 s to boot;
# COMMAND itself then runs about 20 times slower than on the host.
#
# Inside the VM:
#   - / is the host's / over 9p, read-only, under an overlay whose upper layer is a
#     tmpfs (writes to / work but stay in the VM); /tmp is an empty ext4 on a virtio
#     disk (a sparse file of VM_DISK bytes in the scratch dir: /tmp is on a block device
#     as on the host, which the blkio tests need); /var/tmp /run /var/lib /root /mnt are
#     empty tmpfs; the repository is shared read-write at its own path, and so is a
#     scratch dir (its path in $VM_SCRATCH); $CARGO_TARGET_DIR and any argument of
#     COMMAND (or value of a NAME=VALUE argument) that is a path below one of those
#     tmpfs dirs are shared read-only at their own path (their top directory below it,
#     e.g. /tmp/target-vm), so that `hack/vm-run.sh $CARGO_TARGET_DIR/.../integration`
#     works; VM_SHARE adds directories shared read-write;
#   - cgroup2 is mounted on /sys/fs/cgroup (no v1 hierarchy at all), with every
#     available controller (cpuset cpu io memory hugetlb pids rdma misc) enabled in the
#     root's cgroup.subtree_control, and an empty child cgroup vm.static-keys (see
#     hack/vm/init); COMMAND runs in the root cgroup (0::/);
#   - devtmpfs on /dev, devpts on /dev/pts, tmpfs on /dev/shm, mqueue on /dev/mqueue;
#     loopback up; hostname berth-vm; all capabilities; the host's tools (runc, crun,
#     busybox, unshare) on PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin;
#   - COMMAND starts in the caller's cwd if the VM has that path (else in /), with
#     stdin /dev/null and a clean environment: PATH, HOME=/root, TERM=dumb,
#     LANG=C.UTF-8, VM_SCRATCH, plus the caller's BERTH_*, RUST_BACKTRACE, RUST_LOG and
#     the variables named in VM_ENV.
# COMMAND's stdout and stderr both come out on vm-run.sh's stdout (the VM's second
# serial port, ttyS1); vm-run.sh's own messages go to stderr, and so do the kernel's
# console messages (ttyS0, shown after the VM stopped; none on a healthy run).
#
# Exit status: COMMAND's, or 125 if the VM failed (no kernel or QEMU, boot failure, guest
# kernel panic, COMMAND's status never written) or hit VM_TIMEOUT; 130/143 on SIGINT/SIGTERM.
# A CPU stuck in the guest's kernel for ~20 s is a panic (softlockup_panic=1), which ends the
# VM at once (panic=-1) instead of at VM_TIMEOUT.
# QEMU (stopped by pid) and the temporary dirs are cleaned up in every case.
#
# The initramfs (hack/vm/mkinitramfs.sh) is built on first use and cached as
# $VM_CACHE/initrd-<kernel version>-<hash of the builder, hack/vm/init, /bin/busybox
# and the kernel package's files' sizes and times>.img.
#
# Environment:
#   VM_TIMEOUT  seconds before QEMU is killed (default 1200)
#   VM_CPUS     guest CPUs (default 2), VM_MEM guest memory in MiB (default 2048)
#   VM_NUMA     NUMA nodes (default 1): VM_MEM split evenly, CPU i on node i mod VM_NUMA
#   VM_DISK     size of /tmp's disk (truncate(1) sizes, default 8G, sparse; 0: a tmpfs)
#   VM_KERNEL   kernel version to boot (default: the newest installed *-amd64 one)
#   VM_APPEND   more kernel command-line arguments (e.g. loglevel=5: warnings and backtraces;
#               "security=selinux enforcing=0": SELinux instead of AppArmor, with the
#               host's selinux-policy-default loaded permissive by hack/vm/stage2)
#   VM_CACHE    initramfs cache dir (default ${CARGO_TARGET_DIR:-<repo>/target}/vm)
#   VM_SHARE    space-separated host directories to share read-write at the same path
#   VM_ENV      space-separated names of more variables to pass to COMMAND
#   VM_SCRATCH  scratch dir to share (kept afterwards; default a fresh temporary dir
#               below /tmp, removed on exit)
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, cpio, e2fsprogs
# (hack/install-deps.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VM_FAILED=125

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
--) shift ;;
esac
(($# > 0)) || {
	printf 'usage: hack/vm-run.sh [--] COMMAND [ARG...] (see hack/vm-run.sh --help)\n' >&2
	exit 2
}
# Errors before the VM runs are VM failures too.
vm_die() {
	printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2
	exit "$VM_FAILED"
}
[[ $(id -u) -eq 0 ]] || vm_die "must run as root (uid 0)"

VM_TIMEOUT=${VM_TIMEOUT:-1200}
VM_CPUS=${VM_CPUS:-2}
VM_MEM=${VM_MEM:-2048}
VM_NUMA=${VM_NUMA:-1}
VM_DISK=${VM_DISK:-8G}
[[ $VM_TIMEOUT =~ ^[0-9]+$ && $VM_CPUS =~ ^[0-9]+$ && $VM_MEM =~ ^[0-9]+$ && $VM_NUMA =~ ^[1-9][0-9]*$ ]] ||
	vm_die "VM_TIMEOUT, VM_CPUS, VM_MEM and VM_NUMA must be integers (VM_NUMA at least 1)"
[[ $VM_DISK =~ ^[0-9]+[KMGT]?$ ]] || vm_die "VM_DISK must be a size such as 8G (or 0)"
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 not found (hack/install-deps.sh)"

# The kernel: the newest /boot/vmlinuz-*-amd64 that has its modules installed.
if [[ -n ${VM_KERNEL:-} ]]; then
	kver=$VM_KERNEL
else
	kver=
	while read -r v; do
		[[ -d /lib/modules/$v ]] && kver=$v
	done < <(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V)
fi
kernel=/boot/vmlinuz-$kver
[[ -n $kver && -f $kernel && -d /lib/modules/$kver ]] ||
	vm_die "no Debian amd64 kernel with modules (/boot/vmlinuz-${kver:-*-amd64}, /lib/modules); install linux-image-amd64"

# The initramfs, cached by kernel version and the builder's inputs.
VM_CACHE=${VM_CACHE:-${CARGO_TARGET_DIR:-$REPO/target}/vm}
hash=$({
	cat "$HACK/vm/mkinitramfs.sh" "$HACK/vm/init" /bin/busybox
	stat -c '%s %Y' "$kernel" "/lib/modules/$kver/modules.dep" # a rebuilt package, same version
} | sha256sum | cut -c1-12)
initrd=$VM_CACHE/initrd-$kver-$hash.img
if [[ ! -s $initrd ]]; then
	log "building the initramfs for $kver"
	"$HACK/vm/mkinitramfs.sh" "$kver" "$initrd" || vm_die "building the initramfs failed"
	# Older builds for this kernel are stale.
	find "$VM_CACHE" -maxdepth 1 -name "initrd-$kver-*.img" ! -name "${initrd##*/}" -delete
fi

# State for cleanup, set as things start.
qemu_pid='' sleep_pid='' scratch_tmp=''
cleanup() {
	local i
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$qemu_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=''
	if [[ -n $sleep_pid ]]; then
		kill "$sleep_pid" 2>/dev/null || true
		wait "$sleep_pid" 2>/dev/null || true
		sleep_pid=''
	fi
	if [[ -n $scratch_tmp ]]; then
		rm -rf --one-file-system "$scratch_tmp"
		scratch_tmp=''
	fi
}
trap cleanup EXIT
trap 'log "interrupted"; cleanup; exit 130' INT
trap 'log "terminated"; cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

if [[ -n ${VM_SCRATCH:-} ]]; then
	mkdir -p "$VM_SCRATCH"
	scratch=$(cd "$VM_SCRATCH" && pwd -P)
	rm -f "$scratch/status" "$scratch/status.tmp"
else
	scratch_tmp=$(mktemp -d /tmp/berth-vm.XXXXXX)
	scratch=$scratch_tmp
fi

# The shares: the scratch dir, the repository, VM_SHARE (read-write) and the
# read-only ones found in CARGO_TARGET_DIR and COMMAND's arguments.
masked=(/tmp /var/tmp /run /var/lib /root /mnt) # tmpfs in the VM (hack/vm/init)
declare -A share_access=()
share_access[$scratch]=rw
share_access[$REPO]=rw
# under DIR PARENT: DIR is PARENT or below it.
under() { [[ $1 == "$2" || $1 == "$2"/* ]]; }
# add_share PATH ro|rw: share PATH (an existing directory, made absolute and
# physical) unless a share already covers it.
add_share() {
	local dir access=$2 p
	dir=$(cd "$1" 2>/dev/null && pwd -P) || return 0
	[[ $dir != / ]] || return 0
	for p in "${!share_access[@]}"; do
		if under "$dir" "$p"; then
			[[ $access == ro || ${share_access[$p]} == rw ]] && return 0
		fi
	done
	share_access[$dir]=$access
}
# auto_share VALUE: if VALUE is an existing path below a tmpfs dir of the VM, share
# its top directory there (e.g. /tmp/target-vm for /tmp/target-vm/x/y) read-only.
auto_share() {
	local path=$1 real m rest
	[[ $path == /* && -e $path ]] || return 0
	real=$(realpath -e -- "$path" 2>/dev/null) || return 0
	for m in "${masked[@]}"; do
		if [[ $real == "$m"/* ]]; then
			rest=${real#"$m"/}
			add_share "$m/${rest%%/*}" ro
		fi
	done
}
for d in ${VM_SHARE:-}; do
	[[ -d $d ]] || vm_die "VM_SHARE: $d is not a directory"
	add_share "$d" rw
done
[[ -z ${CARGO_TARGET_DIR:-} ]] || auto_share "$CARGO_TARGET_DIR"
for a in "$@"; do
	auto_share "$a"
	[[ ! $a =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || auto_share "${a#*=}"
done

# The 9p devices (QEMU wants "," doubled in option values) and the shares file for
# hack/vm/init, parents before children.
qemu_fs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
: >"$scratch/shares"
n=0
while IFS= read -r dir; do
	[[ $dir != *$'\n'* ]] || vm_die "share path with a newline: $dir"
	if [[ $dir == "$scratch" ]]; then
		tag=scratch
	else
		tag=share$n
		n=$((n + 1))
	fi
	access=${share_access[$dir]}
	opts="local,path=${dir//,/,,},mount_tag=$tag,security_model=none,multidevs=remap"
	[[ $access == rw ]] || opts+=",readonly=on"
	qemu_fs+=(-virtfs "$opts")
	printf '%s %s %s\n' "$tag" "$access" "$dir" >>"$scratch/shares"
done < <(printf '%s\n' "${!share_access[@]}" | LC_ALL=C sort)

# The command script run by hack/vm/stage2.
{
	printf 'cd -- %q 2>/dev/null || cd /\n' "$PWD"
	printf 'export VM_SCRATCH=%q\n' "$scratch"
	while IFS= read -r name; do
		if [[ $name =~ ^(BERTH_.*|RUST_BACKTRACE|RUST_LOG)$ ]] || [[ " ${VM_ENV:-} " == *" $name "* ]]; then
			printf 'export %s=%q\n' "$name" "${!name}"
		fi
	done < <(compgen -e)
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$scratch/cmd"
cp "$HACK/vm/stage2" "$scratch/stage2"

# /tmp's disk: a sparse file, ext4 without a journal (nothing in it outlives the VM).
qemu_disk=()
if [[ $VM_DISK != 0 ]]; then
	disk=$scratch/tmp.img
	rm -f "$disk"
	truncate -s "$VM_DISK" "$disk"
	mkfs.ext4 -q -F -O ^has_journal -m 0 -E lazy_itable_init=0,nodiscard "$disk" ||
		vm_die "mkfs.ext4 $disk failed"
	qemu_disk=(-drive "file=${disk//,/,,},format=raw,if=virtio,cache=unsafe")
fi

# NUMA nodes: each a RAM backend of VM_MEM/VM_NUMA MiB, CPU i on node i mod VM_NUMA.
qemu_numa=()
if ((VM_NUMA > 1)); then
	for ((n = 0; n < VM_NUMA; n++)); do
		cpus=''
		for ((c = n; c < VM_CPUS; c += VM_NUMA)); do cpus+=",cpus=$c"; done
		qemu_numa+=(-object "memory-backend-ram,id=numa$n,size=$((VM_MEM / VM_NUMA))M"
			-numa "node,nodeid=$n,memdev=numa$n$cpus")
	done
fi

log "booting $kver (VM_TIMEOUT=${VM_TIMEOUT}s): $*"
start=$SECONDS
qemu-system-x86_64 -accel tcg -cpu max -smp "$VM_CPUS" -m "$((VM_MEM / VM_NUMA * VM_NUMA))" \
	-nodefaults -no-user-config -no-reboot -display none -monitor none \
	-chardev "file,id=kcon,path=${scratch//,/,,}/console.log" -serial chardev:kcon \
	-chardev stdio,id=out -serial chardev:out \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet panic=-1 softlockup_panic=1 mitigations=off cgroup_no_v1=all rdinit=/init${VM_APPEND:+ $VM_APPEND}" \
	"${qemu_fs[@]}" "${qemu_disk[@]}" "${qemu_numa[@]}" -device virtio-rng-pci </dev/null &
qemu_pid=$!
sleep "$VM_TIMEOUT" &
sleep_pid=$!

timed_out=0
while :; do
	wait -n "$qemu_pid" "$sleep_pid" || true
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		wait "$qemu_pid" 2>/dev/null || true
		qemu_pid=''
		break
	fi
	if ! kill -0 "$sleep_pid" 2>/dev/null; then
		timed_out=1
		sleep_pid=''
		break
	fi
done
cleanup_scratch=$scratch_tmp
scratch_tmp='' # keep the status file until it is read
cleanup
scratch_tmp=$cleanup_scratch

# The kernel's console (ttyS0) went to console.log: show what it has besides the
# final "reboot: Power down" (nothing else on a healthy run under "quiet").
if grep -qv 'reboot: Power down' "$scratch/console.log" 2>/dev/null; then
	log "the VM's kernel console (ttyS0):"
	grep -v 'reboot: Power down' "$scratch/console.log" >&2 || true
fi
if grep -q 'Kernel panic' "$scratch/console.log" 2>/dev/null; then
	log "error: the guest kernel panicked (see the kernel console above; VM_APPEND=loglevel=5 shows its backtraces)"
	exit "$VM_FAILED"
fi
if ((timed_out)); then
	log "error: the VM timed out after ${VM_TIMEOUT}s (VM_TIMEOUT); killed QEMU"
	exit "$VM_FAILED"
fi
status=$(cat "$scratch/status" 2>/dev/null || true)
if [[ ! $status =~ ^[0-9]+$ ]]; then
	log "error: the VM stopped without COMMAND's exit status (boot failure? see the kernel console above)"
	exit "$VM_FAILED"
fi
log "exit status $status after $((SECONDS - start))s"
exit "$status"
