#!/usr/bin/env bash
# Usage: hack/install-peers.sh [--print-dir]
#
# Newer real peers for the integration suite's client matrix, from Debian's trixie and sid,
# unpacked with `dpkg -x` beside the system (never installed into it: they would pull a new
# libc; these binaries run on bookworm's glibc 2.36):
#   docker-26.1.5   trixie's docker.io (dockerd) and docker-cli (docker)
#   containerd-2.1.9 sid's containerd (containerd, ctr, containerd-shim-runc-v2)
#   runc-1.3.6       sid's runc, issue 10's reference runtime, with sid's libc6 (it needs
#                    glibc 2.38+): run <dir>/runc-1.3.6/runc, a copy patched to load sid's libc
#   criu-4.2.1       sid's criu for checkpoint/restore (issue 14): run <dir>/criu-4.2.1/bin/criu
#                    (put <dir>/criu-4.2.1/bin in PATH for runc). Bookworm's criu 3.17 fails
#                    `criu check` on this host's 6.18 kernel (vDSO); sid's 4.2.1 binary passes it
#                    ("Looks good."; `check --all` lacks only autofs and soft-dirty tracking, so
#                    no pre-dump here). Chosen over building CRIU from Debian's source: same
#                    recipe as runc 1.3.6 (sid's libc and the libraries bookworm lacks or has too
#                    old, a copy patched with patchelf: interpreter and a DT_RPATH, which unlike
#                    RUNPATH also applies to the libraries' own dependencies), seconds to set up.
# Each goes to $BERTH_PEERS_DIR/<name>/root (default /var/tmp/berth-peers), with a
# `.complete` stamp naming the exact package versions; a peer whose stamp is there is not
# downloaded again (idempotent, cached). The apt state used for the download is private
# (Dir::State::Lists, Dir::Cache and a sources.list below the cache dir): the system's apt
# sources, lists and dpkg database are untouched. Versions are pinned: if the archive no
# longer serves a pinned version the script fails saying so.
# --print-dir prints the cache dir and exits. The integration suite finds the peers in
# the same dir (BERTH_PEERS_DIR) and fails the tests that need a missing one, naming this script.
# Must run as root (the cache dir is host-wide).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR=${BERTH_PEERS_DIR:-/var/tmp/berth-peers}

# name | suite | package=version ...
PEERS=(
	"docker-26.1.5|trixie|docker.io=26.1.5+dfsg1-9+deb13u1+b1 docker-cli=26.1.5+dfsg1-9+deb13u1+b1"
	"containerd-2.1.9|sid|containerd=2.1.9+ds1-5"
	"runc-1.3.6|sid|runc=1.3.6+ds1-1 libc6=2.43-7"
	"criu-4.2.1|sid|criu=4.2.1-1 libcompel1=4.2.1-1 libc6=2.43-7 libbsd0=0.12.2-3 libgnutls30t64=3.8.13-1 libnet9=1.3+dfsg-3+b2 libnftables1=1.1.7-3 libnftnl11=1.3.2-1 libnl-3-200=3.12.0-2+b1 libprotobuf-c1=1.5.1-1+b2 libunistring5=1.4.2-1 libnettle8t64=3.10.2-1+b1 libhogweed6t64=3.10.2-1+b1 libtasn1-6=4.21.0-2+b1 libidn2-0=2.3.8-5 libp11-kit0=0.26.5-1 libgmp10=2:6.3.0+dfsg-5+b2"
)

case "${1:-}" in
"") ;;
--print-dir)
	echo "$DIR"
	exit 0
	;;
-h | --help)
	usage
	exit 0
	;;
*) die "unknown argument: $1 (usage: hack/install-peers.sh [--print-dir])" ;;
esac
need_root

# apt_private SUITE ARGS...: apt-get with a private state for SUITE below $DIR/apt.
apt_private() {
	local suite=$1 a=$DIR/apt/$1
	shift
	apt-get -q -o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" -o APT::Sandbox::User=root "$@"
}

declare -A updated=()
for entry in "${PEERS[@]}"; do
	IFS='|' read -r name suite pkgs <<<"$entry"
	dest=$DIR/$name
	if [[ -f $dest/.complete ]] && [[ $(cat "$dest/.complete") == "$pkgs" ]]; then
		log "$name: cached in $dest"
		continue
	fi
	a=$DIR/apt/$suite
	if [[ -z ${updated[$suite]:-} ]]; then
		mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
		echo "deb http://deb.debian.org/debian $suite main" >"$a/sources.list"
		log "apt-get update ($suite, private state in $a)"
		apt_private "$suite" update -qq >&2
		updated[$suite]=1
	fi
	tmp=$(mktemp -d "$DIR/.$name.XXXXXX")
	read -ra list <<<"$pkgs"
	log "$name: downloading ${list[*]}"
	if ! (cd "$tmp" && apt_private "$suite" download "${list[@]}" >&2); then
		rm -rf --one-file-system "$tmp"
		if [[ $name == criu-* ]]; then
			# Optional: without it the checkpoint tests skip, saying so.
			log "warning: $name: cannot download ${list[*]} from $suite (a pinned version gone? update PEERS in $0); checkpoint tests will skip"
			continue
		fi
		die "$name: cannot download ${list[*]} from $suite (a pinned version gone? update PEERS in $0)"
	fi
	mkdir -p "$tmp/root"
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$tmp/root"
	done
	rm -f "$tmp"/*.deb
	echo "$pkgs" >"$tmp/.complete"
	rm -rf --one-file-system "$dest"
	mv "$tmp" "$dest"
	log "$name: unpacked in $dest/root"
done
# Readable by every user (mktemp made them 0700): the rootless tests run runc 1.3.6 as an
# unprivileged user.
chmod 0755 "$DIR"/*/
# What the suite runs: check that each binary starts on this system's libc.
"$DIR/docker-26.1.5/root/usr/sbin/dockerd" --version >/dev/null 2>&1 ||
	die "trixie's dockerd does not run here: $("$DIR/docker-26.1.5/root/usr/sbin/dockerd" --version 2>&1 | head -n 1)"
"$DIR/containerd-2.1.9/root/usr/bin/containerd" --version >/dev/null 2>&1 ||
	die "sid's containerd does not run here: $("$DIR/containerd-2.1.9/root/usr/bin/containerd" --version 2>&1 | head -n 1)"
# runc 1.3.6 runs as <dir>/runc-1.3.6/runc: a copy whose ELF interpreter and library path are
# sid's (patchelf), so it loads sid's libc while everything else on the system keeps
# bookworm's; no mount namespace, so mount propagation and hooks see the host as with any runc.
r=$DIR/runc-1.3.6
lib=$r/root/usr/lib/x86_64-linux-gnu
if [[ ! -x $r/runc ]]; then
	command -v patchelf >/dev/null || die "patchelf is missing (hack/install-deps.sh installs it)"
	cp "$r/root/usr/sbin/runc" "$r/runc.tmp"
	patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --set-rpath "$lib" "$r/runc.tmp"
	mv "$r/runc.tmp" "$r/runc"
fi
"$r/runc" --version | grep -q '^runc version 1\.3\.6' ||
	die "sid's runc does not run through $r/runc: $("$r/runc" --version 2>&1 | head -n 1)"
# criu 4.2.1 the same way, as <dir>/criu-4.2.1/bin/criu (a directory holding only criu, for
# PATH); `criu check` must pass (it fails only on a kernel CRIU cannot dump on).
c=$DIR/criu-4.2.1
lib=$c/root/usr/lib/x86_64-linux-gnu
if [[ ! -d $c/root ]]; then
	log "peers ready in $DIR (without criu)"
	exit 0
fi
if [[ ! -x $c/bin/criu ]]; then
	command -v patchelf >/dev/null || die "patchelf is missing (hack/install-deps.sh installs it)"
	mkdir -p "$c/bin"
	cp "$c/root/usr/sbin/criu" "$c/bin/criu.tmp"
	patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" "$c/bin/criu.tmp"
	mv "$c/bin/criu.tmp" "$c/bin/criu"
	chmod 0755 "$c/bin"
fi
"$c/bin/criu" --version | grep -q '^Version: 4\.2\.1' ||
	log "warning: sid's criu does not run through $c/bin/criu (checkpoint tests will skip): $("$c/bin/criu" --version 2>&1 | head -n 1)"
"$c/bin/criu" check >/dev/null 2>&1 ||
	log "warning: criu check fails here (checkpoint tests will skip): $("$c/bin/criu" check 2>&1 | tail -n 1)"
log "peers ready in $DIR"
