# shellcheck shell=bash
# hack/lib.sh: helpers shared by the scripts in hack/. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets REPO (the workspace root) and HACK (this directory).

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HACK/.." && pwd)"
# Where cargo puts the binaries (the workspace builds for an explicit target: .cargo/config.toml).
export BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release
export HACK REPO

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
