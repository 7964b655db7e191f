#!/usr/bin/env bash
# Usage: hack/test.sh
#
# The whole test suite, as CI runs it (.ci/run), as root on a fresh machine:
#   1. hack/install-deps.sh (which runs hack/install-peers.sh: docker 26.1.5 and containerd
#      2.1.9 for the client matrix and runc 1.3.6, unpacked into /var/tmp/berth-peers, cached)
#   1b. hack/debian-base.sh: the Debian bookworm base (debootstrap, gcc and python3-minimal)
#      of the integration suite's client_images_debian_* builds, made once and cached in
#      /var/cache/berth-test (~75 s, 344 MB); if it fails, those tests skip saying why
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo build --release --workspace
#   5. cargo test --workspace                            (unit tests, and the shim's end-to-end
#      tests against a private containerd 1.6 and 2.1.9 with berth and with runc: BERTH_SHIM_E2E=1)
#   6. integration suite against berth: BERTH_TEST_RUNTIME=$BIN_DIR/berth
#   7. integration suite against runc:  BERTH_TEST_RUNTIME=/usr/sbin/runc (Debian's 1.1.5),
#      and against runc 1.3.6, issue 10's reference (Debian sid's, from hack/install-peers.sh:
#      RUNC13, default /var/tmp/berth-peers/runc-1.3.6/runc)
#   8. difffuzz: the differential fuzzer (integration difffuzz, integration/src/fuzz/) over a
#      fixed seed set: each random OCI config under runc and under berth, fails on any
#      difference that no documented deviation explains; once with runc 1.1.5, once with
#      runc 1.3.6 (BERTH_FUZZ=0 skips both)
#   8b. faults: the fault injector (integration faults, integration/src/faults.rs) with a
#      fixed seed: berth SIGKILLed at FAULTS_KILLS (default 300) points of create/run/start/
#      exec/delete and strace error injection into every syscall (and class) of the create
#      path; fails on a hang, a panic, or anything left after delete --force (BERTH_FAULTS=0
#      skips it; FAULTS_SEED, default 1; FAULTS_TIMEOUT, default 600 s)
#   8c. mutfuzz: the runtime-level config mutation fuzzer (integration mutfuzz,
#      integration/src/fuzz/mutate.rs) with fixed seeds: mutated configs through berth with
#      every mount but the bundles, the state root, cgroupfs, /proc and /dev read-only; fails on
#      a hang, a signal death, a panic, a malformed error, anything left, or a write outside
#      (BERTH_MUTFUZZ=0 skips it; MUTFUZZ_SEEDS, default 1,2; MUTFUZZ_CASES, default 1000)
#   9. only when 6 and 7 passed: the integration suite in the pure cgroup v2 VM
#      (hack/vm-run.sh), against berth and against runc (BERTH_VM=0 skips it); then its
#      `lsm` tests in the VM booted with SELinux instead of AppArmor (security=selinux
#      enforcing=0; hack/vm/stage2 loads selinux-policy-default, permissive), against berth
#      and against runc: Debian's 6.1 kernel runs only one of the two (~15 s a pass)
# Steps 2-5 all run even when one fails; 6 and 7 both run when the build succeeded
# (each runs the built binary $BIN_DIR/integration, in a private mount
# namespace so that a mount leaked by a runtime bug cannot stay in the host's).
# At the end it prints one line per step and the integration summaries (fewer with
# BERTH_VM=0), and exits non-zero if any step failed.
# Environment: CARGO_TARGET_DIR (honoured), RUNC (default /usr/sbin/runc),
# INTEGRATION_TIMEOUT (seconds per integration pass, default 1800),
# INTEGRATION_ARGS (extra arguments to the integration binary, split on spaces),
# BERTH_TEST_NO_UNSHARE=1 (run the integration binary in the host's mount namespace),
# BERTH_VM=0 (skip step 9; VM_TIMEOUT, default INTEGRATION_TIMEOUT, limits each VM run),
# FUZZ_SEEDS (default 1,2,3), FUZZ_CASES (cases per seed, default 150), FUZZ_TIMEOUT
# (seconds, default 900) for step 8,
# BERTH_SHIM_E2E=0 (skip the shim's containerd end-to-end test in step 5).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
"") ;;
-h | --help)
	usage
	exit 0
	;;
*) die "usage: hack/test.sh (no arguments; see the environment variables in its header)" ;;
esac
need_root
cd "$REPO"

RUNC=${RUNC:-/usr/sbin/runc}
RUNC13=${RUNC13:-$("$HACK/install-peers.sh" --print-dir)/runc-1.3.6/runc}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-1800}
logs=$(mktemp -d /tmp/berth-test-logs.XXXXXX)
trap 'rm -rf "$logs"' EXIT

STEPS=()   # "name<TAB>PASS|FAIL|SKIP<TAB>seconds"
failed=0
suite_start=$SECONDS

# step NAME CMD...: run CMD, record the result; never exits on failure.
step() {
	local name=$1 start=$SECONDS rc=0
	shift
	log "=== $name: $*"
	"$@" || rc=$?
	if ((rc == 0)); then
		STEPS+=("$name"$'\t'PASS$'\t'$((SECONDS - start)))
	else
		STEPS+=("$name"$'\t'"FAIL (exit $rc)"$'\t'$((SECONDS - start)))
		failed=1
		log "=== $name: FAILED (exit $rc)"
	fi
	return "$rc"
}
skip() { STEPS+=("$1"$'\t'"SKIP ($2)"$'\t'0); failed=1; log "=== $1: skipped ($2)"; }

# integration LABEL RUNTIME_BINARY: one pass of the integration suite, its output
# shown and kept in $logs/LABEL.log for the summary.
# shellcheck disable=SC2317 # called through step
integration() {
	local label=$1 runtime=$2 bin=$BIN_DIR/integration
	local -a cmd=(timeout --kill-after=30 "$INTEGRATION_TIMEOUT" "$bin")
	# shellcheck disable=SC2206 # INTEGRATION_ARGS is split on purpose
	cmd+=(${INTEGRATION_ARGS:-})
	if [[ ${BERTH_TEST_NO_UNSHARE:-0} != 1 ]]; then
		cmd=(unshare -m --propagation private -- "${cmd[@]}")
	fi
	[[ -x $runtime ]] || {
		echo "runtime binary $runtime not found" | tee "$logs/$label.log"
		return 1
	}
	BERTH_TEST_RUNTIME=$runtime "${cmd[@]}" 2>&1 | tee "$logs/$label.log"
}

# integration_vm LABEL RUNTIME_BINARY: one pass of the integration suite inside the
# cgroup v2 VM (hack/vm-run.sh: the suite's own unshare works there), kept in $logs/LABEL.log.
# QEMU's TCG runs it ~20 times slower: the suite's per-command timeouts are 5 times longer.
# A pass whose guest kernel panicked (e.g. vCPUs stuck in the kernel: the one cause seen,
# TCG and live code patching, is avoided in hack/vm/init) has no result at all; it runs once
# more, and the summary says so (the first pass's log is kept as LABEL.retried).
# shellcheck disable=SC2317 # called through step
integration_vm() {
	local label=$1 rc=0
	rm -f "$logs/$label.retried"
	vm_pass "$@" || rc=$?
	if ((rc == 125)) && grep -q 'the guest kernel panicked' "$logs/$label.log"; then
		mv "$logs/$label.log" "$logs/$label.retried"
		log "=== $label: the guest kernel panicked (log in $logs/$label.retried); running the pass once more"
		rc=0
		vm_pass "$@" || rc=$?
	fi
	return "$rc"
}

# vm_pass LABEL RUNTIME_BINARY [selinux]: integration_vm's one pass. With "selinux": the VM
# boots with SELinux (permissive, the policy loaded by hack/vm/stage2) instead of AppArmor,
# and only the `lsm` tests run; the pass fails if SELinux is not enabled and permissive
# there, so that the SELinux tests cannot pass by skipping.
# shellcheck disable=SC2317 # called through integration_vm
vm_pass() {
	local label=$1 runtime=$2 mode=${3:-} append=${VM_APPEND:-}
	local -a args
	read -ra args <<<"${INTEGRATION_ARGS:-}"
	if [[ $mode == selinux ]]; then
		append+="${append:+ }security=selinux enforcing=0"
		args=(lsm)
	fi
	[[ -x $runtime ]] || {
		echo "runtime binary $runtime not found" | tee "$logs/$label.log"
		return 1
	}
	# The client matrix (docker 20.10/26.1, containerd 2.1, podman's additions) runs on the
	# host passes only: BERTH_IT_MATRIX=0 (the peers' cache in /var/tmp is not visible in the
	# VM, and dockerd under TCG is some 20 times slower).
	# The repository (and so the target dir) is shared into the VM uncached: binaries run from
	# there page-fault over 9p. The suite and a berth built here run from copies on the VM's
	# own tmpfs instead (runc comes from the cached root share).
	# CRIU (the peer hack/install-peers.sh unpacks) is shared in: the VM's kernel has the
	# soft-dirty tracking pre-dump needs, which the host's lacks.
	local share=${VM_SHARE:-}
	local criu_dir=${BERTH_PEERS_DIR:-/var/tmp/berth-peers}/criu-4.2.1
	[[ -x $criu_dir/bin/criu ]] && share+="${share:+ }$criu_dir"
	# Two NUMA nodes for berth's pass, for memory_policy_two_nodes (the host has one). The
	# other passes boot one node: runc 1.1 ignores memoryPolicy, and its pass on two nodes
	# under TCG twice stalled a vCPU (a 100 s hang of `runc run` in CI; a soft lockup in
	# clear_page_erms, under runc, in the next full run), each time near the cpuset tests,
	# where a `mems` of node 0 migrates runc's pages; 40 runs of those tests alone on two
	# nodes did not stall, and no one-node pass ever did.
	local numa=1
	[[ $runtime == "$BIN_DIR/berth" && $mode != selinux ]] && numa=2
	# shellcheck disable=SC2016 # expanded inside the VM
	VM_NUMA=${VM_NUMA:-$numa} VM_SHARE=$share VM_APPEND=$append VM_TIMEOUT=${VM_TIMEOUT:-$INTEGRATION_TIMEOUT} "$HACK/vm-run.sh" sh -c '
		set -e
		if [ "$4" = selinux ] && [ "$(getenforce 2>&1)" != Permissive ]; then
			echo "SELinux is not enabled and permissive in the VM (getenforce: $(getenforce 2>&1))"
			exit 1
		fi
		d=$(mktemp -d /var/tmp/vm-bin.XXXXXX)
		cp "$1" "$d/integration"
		rt=$2
		case $rt in "$3"/*) cp "$rt" "$d/" && rt=$d/${rt##*/} ;; esac
		shift 4
		exec env BERTH_TEST_RUNTIME="$rt" BERTH_TEST_TIMEOUT_SCALE=5 BERTH_IT_MATRIX=0 "$d/integration" "$@"
	' sh "$BIN_DIR/integration" "$runtime" "$BIN_DIR" "$mode" "${args[@]}" 2>&1 | tee "$logs/$label.log"
}

# difffuzz LABEL RUNC: the fixed-seed pass of the differential fuzzer (RUNC vs berth), in a
# private mount namespace like the integration passes; its output is kept in $logs/LABEL.log.
# shellcheck disable=SC2317 # called through step
difffuzz() {
	local label=$1 runc=$2
	local -a cmd=(timeout --kill-after=30 "${FUZZ_TIMEOUT:-900}" "$BIN_DIR/integration" difffuzz
		--seed "${FUZZ_SEEDS:-1,2,3}" --cases "${FUZZ_CASES:-150}" --runc "$runc" --berth "$BIN_DIR/berth")
	if [[ ${BERTH_TEST_NO_UNSHARE:-0} != 1 ]]; then
		cmd=(unshare -m --propagation private -- "${cmd[@]}")
	fi
	[[ -x $runc ]] || {
		echo "runc $runc not found" | tee "$logs/$label.log"
		return 1
	}
	"${cmd[@]}" 2>&1 | tee "$logs/$label.log"
}

# faults: the fixed-seed pass of the fault injector against berth, in a private mount
# namespace like the integration passes; its output is kept in $logs/faults.log.
# shellcheck disable=SC2317 # called through step
faults() {
	local -a cmd=(timeout --kill-after=30 "${FAULTS_TIMEOUT:-600}" "$BIN_DIR/integration" faults
		--seed "${FAULTS_SEED:-1}" --kills "${FAULTS_KILLS:-300}" --runtime "$BIN_DIR/berth")
	if [[ ${BERTH_TEST_NO_UNSHARE:-0} != 1 ]]; then
		cmd=(unshare -m --propagation private -- "${cmd[@]}")
	fi
	"${cmd[@]}" 2>&1 | tee "$logs/faults.log"
}

# mutfuzz: the fixed-seed pass of the config mutation fuzzer against berth (it makes its own
# mount namespace read-only, see integration/src/fuzz/mutate.rs); output in $logs/mutfuzz.log.
# shellcheck disable=SC2317 # called through step
mutfuzz() {
	local -a cmd=(timeout --kill-after=30 "${MUTFUZZ_TIMEOUT:-600}" "$BIN_DIR/integration" mutfuzz
		--seed "${MUTFUZZ_SEEDS:-1,2}" --cases "${MUTFUZZ_CASES:-1000}" --berth "$BIN_DIR/berth")
	"${cmd[@]}" 2>&1 | tee "$logs/mutfuzz.log"
}

# summary_line LABEL: the integration binary's own summary (its last line with
# "N passed"), or else its last non-empty line.
summary_line() {
	local f=$logs/$1.log line
	[[ -s $f ]] || {
		echo "(no output)"
		return
	}
	line=$(grep -aE '[0-9]+ passed' "$f" | tail -n 1 || true)
	[[ -n $line ]] || line=$(grep -av '^[[:space:]]*$' "$f" | tail -n 1 || true)
	printf '%s\n' "${line:-(no output)}"
}

if ! step install-deps "$HACK/install-deps.sh"; then
	die "hack/install-deps.sh failed; nothing else can run"
fi
step debian-base "$HACK/debian-base.sh" || true
ensure_cargo
pick_target # install-deps may have added the musl target
log "building for $CARGO_BUILD_TARGET (binaries in $BIN_DIR)"

step fmt cargo fmt --all -- --check || true
step clippy cargo clippy --workspace --all-targets -- -D warnings || true
build_ok=1
step build cargo build --release --workspace || build_ok=0
# The shim's end-to-end test (a private containerd 1.6, berth and runc) runs with the unit
# tests; it drives the release berth built above.
export BERTH_SHIM_E2E=${BERTH_SHIM_E2E:-1}
export BERTH_BINARY="$BIN_DIR/berth"
step unit-tests cargo test --workspace || true

host_integration_ok=0
if ((build_ok)) && [[ -x $BIN_DIR/integration ]]; then
	host_integration_ok=1
	step "integration (berth)" integration berth "$BIN_DIR/berth" || host_integration_ok=0
	step "integration (runc)" integration runc "$RUNC" || host_integration_ok=0
	step "integration (runc 1.3.6)" integration runc-1.3.6 "$RUNC13" || true
else
	skip "integration (berth)" "build failed"
	skip "integration (runc)" "build failed"
	skip "integration (runc 1.3.6)" "build failed"
fi

if [[ ${BERTH_FUZZ:-1} == 1 ]]; then
	if ((build_ok)) && [[ -x $BIN_DIR/integration ]]; then
		step difffuzz difffuzz difffuzz "$RUNC" || true
		step "difffuzz (runc 1.3.6)" difffuzz difffuzz-1.3.6 "$RUNC13" || true
	else
		skip difffuzz "build failed"
		skip "difffuzz (runc 1.3.6)" "build failed"
	fi
fi

if [[ ${BERTH_FAULTS:-1} == 1 ]]; then
	if ((build_ok)) && [[ -x $BIN_DIR/integration ]]; then
		step faults faults || true
	else
		skip faults "build failed"
	fi
fi

if [[ ${BERTH_MUTFUZZ:-1} == 1 ]]; then
	if ((build_ok)) && [[ -x $BIN_DIR/integration ]]; then
		step mutfuzz mutfuzz || true
	else
		skip mutfuzz "build failed"
	fi
fi

vm_labels=()
if [[ ${BERTH_VM:-1} == 1 ]]; then
	vm_labels=(vm-berth vm-runc vm-selinux-berth vm-selinux-runc)
	if ((host_integration_ok)); then
		step "integration-vm (berth)" integration_vm vm-berth "$BIN_DIR/berth" || true
		step "integration-vm (runc)" integration_vm vm-runc "$RUNC" || true
		step "vm-selinux lsm (berth)" integration_vm vm-selinux-berth "$BIN_DIR/berth" selinux || true
		step "vm-selinux lsm (runc)" integration_vm vm-selinux-runc "$RUNC" selinux || true
	else
		skip "integration-vm (berth)" "host integration failed"
		skip "integration-vm (runc)" "host integration failed"
		skip "vm-selinux lsm (berth)" "host integration failed"
		skip "vm-selinux lsm (runc)" "host integration failed"
	fi
fi

echo
echo "==================== hack/test.sh summary ===================="
for s in "${STEPS[@]}"; do
	IFS=$'\t' read -r name result secs <<<"$s"
	printf '%-25s %-20s %5ss\n' "$name" "$result" "$secs"
done
for rt in berth runc runc-1.3.6 "${vm_labels[@]}"; do
	case $rt in
	vm-selinux-*) title="vm-selinux lsm (${rt#vm-selinux-})" ;;
	vm-*) title="integration-vm (${rt#vm-})" ;;
	runc-1.3.6) title="integration (runc 1.3.6)" ;;
	*) title="integration ($rt)" ;;
	esac
	if [[ -f $logs/$rt.log ]]; then
		retried=''
		[[ ! -f $logs/$rt.retried ]] || retried=" (second pass: the first one's guest kernel panicked)"
		printf '%s summary: %s%s\n' "$title" "$(summary_line "$rt")" "$retried"
	else
		printf '%s summary: not run\n' "$title"
	fi
done
for f in difffuzz difffuzz-1.3.6; do
	if [[ -f $logs/$f.log ]]; then
		printf '%s summary: %s\n' "$f" "$(grep -a 'unexplained differences' "$logs/$f.log" | tail -n 1 || echo '(no summary)')"
	fi
done
if [[ -f $logs/mutfuzz.log ]]; then
	printf 'mutfuzz summary: %s\n' "$(grep -a '^mutfuzz: .* findings$' "$logs/mutfuzz.log" | tail -n 1 || echo '(no summary)')"
fi
if [[ -f $logs/faults.log ]]; then
	printf 'faults summary: %s\n' "$(grep -a '^faults: .* findings' "$logs/faults.log" | tail -n 1 || echo '(no summary)')"
fi
printf 'total %ss: %s\n' "$((SECONDS - suite_start))" "$( ((failed)) && echo FAILED || echo PASSED)"
exit "$failed"
