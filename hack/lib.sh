# shellcheck shell=bash
# hack/lib.sh: helpers shared by the scripts in hack/. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets REPO (the workspace root) and HACK (this directory).

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HACK/.." && pwd)"
export HACK REPO

# pick_target: set CARGO_BUILD_TARGET and BIN_DIR (where cargo puts the release binaries).
# musl (static; .cargo/config.toml's default) where its Rust target and musl-gcc (for the C
# in zstd and ring) are installed, which hack/install-deps.sh tries to do: a process of a
# glibc binary spends ~0.6 ms of its start reading the CPU's cache topology with cpuid, which
# traps to the hypervisor on these VMs, musl none. Otherwise static glibc. BERTH_TARGET
# chooses.
pick_target() {
	local musl=x86_64-unknown-linux-musl sysroot
	sysroot=$("${CARGO_HOME:-$HOME/.cargo}/bin/rustc" --print sysroot 2>/dev/null || rustc --print sysroot 2>/dev/null || true)
	if [[ -n ${BERTH_TARGET:-} ]]; then
		CARGO_BUILD_TARGET=$BERTH_TARGET
	elif [[ -n $sysroot && -d $sysroot/lib/rustlib/$musl/lib ]] && command -v musl-gcc >/dev/null; then
		CARGO_BUILD_TARGET=$musl
	else
		CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu
	fi
	BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/$CARGO_BUILD_TARGET/release
	export CARGO_BUILD_TARGET BIN_DIR
}
pick_target

# log MSG...: a progress line on stderr, prefixed with the calling script's name.
log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# die MSG...: print an error on stderr and exit 1.
die() {
	printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2
	exit 1
}

# need_root: exit unless running as root (namespaces, cgroups and apt need it).
need_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (uid 0)"
}

# ensure_cargo: put rustup's ~/.cargo/bin on PATH when cargo is not found there
# already (CI shells may not source ~/.cargo/env); die with a clear message otherwise.
ensure_cargo() {
	if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
		PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
		export PATH
	fi
	command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain with rustup" \
		"(https://rustup.rs; it is preinstalled on the project's machines) and put ~/.cargo/bin on PATH"
}

# usage: print the comment block at the top of the running script (its usage text).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
