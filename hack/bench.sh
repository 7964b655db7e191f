#!/usr/bin/env bash
# Usage: hack/bench.sh [-n RUNS] [-o OUTDIR]
#
# Start-up latency and memory of berth against runc and crun, measured together (hyperfine):
#   (a) `RUNTIME run` of /bin/true
#   (b) `RUNTIME create`, `RUNTIME start`, wait for /bin/true to exit, `RUNTIME delete`
#   (c) `RUNTIME exec` of /bin/true into a running container (one per runtime, own cgroup)
#   (d) (b) with a typical resource block: memory limit+reservation, cpu shares/quota/period,
#       pids limit, and the default deny-all device rule plus the default allow list
# for berth (as hack/setup.sh installs it: an immutable copy, which needs no protective
# re-exec; and the writable binary as built, which re-execs on create, run and exec),
# on one busybox bundle (hack/mkbundle.sh, absolute cgroupsPath /berth/<bundle name>),
# a fresh container id per iteration and a --root directory of the benchmark's own per
# runtime; then the peak RSS (GNU time %M, max over RSS_RUNS `run`s of /bin/true) of
# each runtime's process tree. Prints a markdown table (medians, ratios to crun and
# runc, peak RSS) and writes hyperfine's JSON and the table to OUTDIR.
#
# crun refuses this host's hybrid cgroups; on such a host every crun call runs in a
# private mount namespace where /sys/fs/cgroup/unified is hidden by an empty tmpfs
# (shared/ENVIRONMENT.md). The cost of getting into that namespace is measured too
# (same method, running /bin/true), and a "crun minus wrapper" estimate is printed so
# the crun numbers can be read fairly.
#
# Options and environment:
#   -n RUNS    hyperfine --runs (env RUNS, default 50); warm-up: env WARMUP (default 5)
#   -o OUTDIR  where bench-<time>.json/.md go (env BENCH_OUT, default target/bench)
#   RSS_RUNS   runs per runtime for peak RSS (default 10)
#   ROUNDS     hyperfine is run this many times (default 3), RUNS/ROUNDS runs each (rounded up), every
#              round starting at another command; medians are over all rounds' runs. One
#              long series favours the commands that come first: later ones share the CPUs
#              with the kernel's deferred teardown of every container before them.
#   CRUN_NS    how crun gets that namespace: nsenter (default: one namespace made up
#              front, held by a sleeping process, entered with `nsenter --mount` per
#              call; ~1 ms per call) or unshare (a generated wrapper script doing
#              `unshare -m` + mount per call; ~4 ms per call, and crun's create+start+
#              delete measured this way stays ~5 ms slower even after subtracting it)
#   BERTH, RUNC, CRUN  binaries (defaults: $BIN_DIR/berth, /usr/sbin/runc,
#              /usr/bin/crun); a missing or failing one is skipped with a message.
# Everything it creates (containers, bundle, root dirs, cgroups) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
RSS_RUNS=${RSS_RUNS:-10}
ROUNDS=${ROUNDS:-3}
BENCH_OUT=${BENCH_OUT:-$REPO/target/bench}
BERTH=${BERTH:-$BIN_DIR/berth}
RUNC=${RUNC:-/usr/sbin/runc}
CRUN=${CRUN:-/usr/bin/crun}
CRUN_NS=${CRUN_NS:-nsenter}
CGROUP_PARENT=/berth
NSHOLDER=""
INSTALLED="" # berth's immutable copy in the work dir, when chattr works here
WRITABLE_ROW="berth (writable binary)"

while getopts 'n:o:h' opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	o) BENCH_OUT=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	*) die "usage: hack/bench.sh [-n RUNS] [-o OUTDIR]" ;;
	esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 2 ]] || die "RUNS must be an integer >= 2, got '$RUNS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be an integer, got '$WARMUP'"
[[ $RSS_RUNS =~ ^[0-9]+$ && $RSS_RUNS -ge 1 ]] || die "RSS_RUNS must be an integer >= 1"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $((RUNS / ROUNDS)) -ge 2 ]] ||
	die "ROUNDS must be an integer >= 1 with RUNS/ROUNDS >= 2, got '$ROUNDS'"

need_root
for tool in hyperfine jq unshare timeout /usr/bin/time; do
	command -v "$tool" >/dev/null || die "$tool not found (run hack/install-deps.sh)"
done

# --- workspace and cleanup -------------------------------------------------------------
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
name=$(basename "$work")
bundle=$work/$name # its basename makes the cgroupsPath: /berth/berth-bench.XXXXXX
cgparent_existed=()
for h in /sys/fs/cgroup/*/; do
	if [[ -d $h${CGROUP_PARENT#/} ]]; then cgparent_existed+=("$h${CGROUP_PARENT#/}"); fi
done

q() { printf '%q' "$1"; } # shell-quote one word

declare -A CMD ROOT # runtime -> command prefix (shell words, already quoted) / --root dir
RUNTIMES=()         # runtimes that passed the preflight, in table order
SKIPPED=()          # "runtime: reason"

# delete_all RT: force-delete every container left in RT's root dir.
delete_all() {
	local rt=$1 d
	[[ -d ${ROOT[$rt]:-} ]] || return 0
	for d in "${ROOT[$rt]}"/*; do
		[[ -e $d ]] || continue
		eval "timeout 20 ${CMD[$rt]} --root $(q "${ROOT[$rt]}") delete --force $(q "$(basename "$d")")" \
			>/dev/null 2>&1 || true
	done
}

cleanup() {
	local rc=$? rt d leftover=0
	trap - EXIT INT TERM
	for rt in "${!CMD[@]}"; do delete_all "$rt"; done
	if [[ -n $NSHOLDER ]]; then
		kill "$NSHOLDER" 2>/dev/null || true
		wait "$NSHOLDER" 2>/dev/null || true
	fi
	for d in /sys/fs/cgroup/*/"${CGROUP_PARENT#/}/$name" /sys/fs/cgroup/*/"${CGROUP_PARENT#/}/$name"-exec-* \
		/sys/fs/cgroup/*/"${CGROUP_PARENT#/}/$name"-res; do
		[[ -d $d ]] || continue
		rmdir "$d" 2>/dev/null || {
			log "warning: could not remove cgroup $d"
			leftover=1
		}
	done
	# Remove the parent (/berth) only where this run created it and it is empty now.
	for d in /sys/fs/cgroup/*/"${CGROUP_PARENT#/}"; do
		[[ -d $d && " ${cgparent_existed[*]} " != *" $d "* ]] || continue
		rmdir "$d" 2>/dev/null || true
	done
	if [[ -n $INSTALLED ]]; then chattr -i "$INSTALLED" || leftover=1; fi
	rm -rf --one-file-system "$work" || leftover=1
	((leftover == 0)) || log "warning: some of $work or its cgroups could not be removed"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- bundle ----------------------------------------------------------------------------
log "making bundle $bundle (/bin/true, cgroupsPath $CGROUP_PARENT/$name)"
spec_rt=$RUNC # whose `spec` makes the base config.json: runc's, else whichever exists
[[ -x $spec_rt ]] || spec_rt=$CRUN
[[ -x $spec_rt ]] || spec_rt=$BERTH
RUNTIME=$spec_rt CGROUP_PARENT=$CGROUP_PARENT "$HACK/mkbundle.sh" "$bundle" /bin/true 2>/dev/null ||
	die "hack/mkbundle.sh failed (RUNTIME=$spec_rt)"
bundle_res=$work/$name-res # same, with a resource block (cgroupsPath .../$name-res)
RUNTIME=$spec_rt CGROUP_PARENT=$CGROUP_PARENT "$HACK/mkbundle.sh" "$bundle_res" /bin/true 2>/dev/null ||
	die "hack/mkbundle.sh failed (RUNTIME=$spec_rt)"
jq '.linux.resources += {"memory": {"limit": 268435456, "reservation": 134217728},
	"cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 128}}' \
	"$bundle_res/config.json" >"$bundle_res/config.json.new" && mv "$bundle_res/config.json.new" "$bundle_res/config.json"

# --- crun's namespace (hybrid cgroups only) ---------------------------------------------
# NSPREFIX: shell words that run a command in a mount namespace where the cgroup2 mount
# /sys/fs/cgroup/unified is hidden by an empty read-only tmpfs; empty when not needed.
NSPREFIX=""
ns_label=""
if [[ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null || true)" == cgroup2fs && -x $CRUN ]]; then
	case $CRUN_NS in
	unshare)
		# A generated wrapper: a new private mount namespace per call.
		cat >"$work/nswrap" <<'EOS'
#!/bin/sh
# generated by hack/bench.sh: run "$@" with the hybrid host's cgroup2 mount hidden
exec unshare -m --propagation private sh -c 'mount -t tmpfs -o size=4m,mode=0555 none /sys/fs/cgroup/unified && exec "$@"' sh "$@"
EOS
		chmod 0755 "$work/nswrap"
		NSPREFIX=$(q "$work/nswrap")
		ns_label="wrapper script: unshare -m + mount tmpfs"
		;;
	nsenter)
		# One namespace, made once and held by a sleeping process; calls nsenter into it.
		unshare -m --propagation private sh -c \
			'mount -t tmpfs -o size=4m,mode=0555 none /sys/fs/cgroup/unified && exec sleep infinity' &
		NSHOLDER=$!
		for ((i = 0; i < 50; i++)); do
			if [[ "$(nsenter --mount="/proc/$NSHOLDER/ns/mnt" stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null || true)" == tmpfs ]]; then
				NSPREFIX="nsenter --mount=/proc/$NSHOLDER/ns/mnt --"
				break
			fi
			kill -0 "$NSHOLDER" 2>/dev/null || break
			sleep 0.1
		done
		[[ -n $NSPREFIX ]] || die "could not set up the mount namespace for crun"
		ns_label="nsenter into a mount namespace made once"
		;;
	*) die "CRUN_NS must be unshare or nsenter, got '$CRUN_NS'" ;;
	esac
fi

# --- preflight: does each runtime run the bundle? --------------------------------------

# add_runtime RT BINARY: register RT if BINARY exists and passes a run and a
# create/start/delete of the bundle; otherwise record why it is skipped.
add_runtime() {
	local rt=$1 bin=$2 prefix
	if [[ ! -x $bin ]]; then
		SKIPPED+=("$rt: $bin not found${3:+ ($3)}")
		return 0
	fi
	prefix=$(q "$bin")
	if [[ ($rt == crun || $rt == "berth (crun's wrapper)") && -n $NSPREFIX ]]; then prefix="$NSPREFIX $prefix"; fi
	CMD[$rt]=$prefix
	ROOT[$rt]=$work/root-${rt//[^a-z]/_}
	mkdir -p "${ROOT[$rt]}"
	local r b id=preflight-${rt//[^a-z]/_}-$$
	r="$prefix --root $(q "${ROOT[$rt]}")"
	b=$(q "$bundle")
	# Output goes to a file, not a pipe: a container that hangs must not hang us.
	local rc=0 pf=$work/preflight-$rt.out what="run"
	timeout 30 bash -c "$r run --bundle $b $id-run" >"$pf" 2>&1 || rc=$?
	if ((rc == 0)); then
		what="create/start/wait/state(stopped)/delete"
		timeout 60 bash -c "x=\$($r create --bundle $b $id-csd && $r start $id-csd) &&
			for i in \$(seq 50); do $r state $id-csd | jq -e '.status == \"stopped\"' >/dev/null && break; sleep 0.02; done &&
			$r state $id-csd | jq -e '.status == \"stopped\"' >/dev/null &&
			$r delete --force $id-csd" >"$pf" 2>&1 || rc=$?
	fi
	if ((rc == 0)); then
		RUNTIMES+=("$rt")
		return 0
	elif ((rc == 124)); then
		SKIPPED+=("$rt: $what of the bundle timed out")
	else
		SKIPPED+=("$rt: $what of the bundle failed (exit $rc): $(tr '\n' ' ' <"$pf")")
	fi
	delete_all "$rt"
	unset "CMD[$rt]"
}

# "berth": installed as hack/setup.sh does, immutable (chattr +i), so that it needs no re-exec
# to protect itself against CVE-2019-5736 (libcontainer/src/sealed.rs). The copy is this
# run's own and is removed on exit; where chattr does not work, "berth" is the binary as built.
BERTH_MAIN=$BERTH
if [[ -x $BERTH ]]; then
	mkdir -p "$work/installed" && cp "$BERTH" "$work/installed/berth"
	if chattr +i "$work/installed/berth" 2>/dev/null; then
		INSTALLED=$work/installed/berth
		BERTH_MAIN=$INSTALLED
	else
		log "chattr +i does not work in $work: \"berth\" is the writable binary"
	fi
fi
add_runtime berth "$BERTH_MAIN" "build it with: cargo build --release"
if [[ -n $INSTALLED ]]; then add_runtime "$WRITABLE_ROW" "$BERTH"; fi
add_runtime runc "$RUNC"
add_runtime crun "$CRUN"
# berth through the very wrapper crun needs here: a like-for-like comparison with crun.
if [[ -n $NSPREFIX && -n ${CMD[berth]:-} && -n ${CMD[crun]:-} ]]; then
	add_runtime "berth (crun's wrapper)" "$BERTH_MAIN"
fi
for s in "${SKIPPED[@]}"; do log "skipping $s"; done
((${#RUNTIMES[@]} > 0)) || die "no runtime passed the preflight"

# --- latency: one hyperfine run ----------------------------------------------------------
# Container ids carry the iteration's shell pid ($$ of hyperfine's `sh -c`), so each
# iteration gets a fresh id. For create+start+delete, the $(...) around create/start
# holds the pipe the container's stdout inherits: it returns when /bin/true has exited,
# so `delete` (with --force only against the race between the pipe's EOF and the
# process turning into a zombie) always deletes a stopped container that has run.
hf_args=()
for rt in "${RUNTIMES[@]}"; do
	r="${CMD[$rt]} --root $(q "${ROOT[$rt]}")"
	b=$(q "$bundle")
	id=${rt//[^a-z]/_} # container ids from the runtime's name ("berth (crun's wrapper)")
	hf_args+=(-n "$rt run" "$r run --bundle $b $id-run-\$\$")
	hf_args+=(-n "$rt create+start+delete"
		"x=\$($r create --bundle $b $id-csd-\$\$ && $r start $id-csd-\$\$) && $r delete --force $id-csd-\$\$")
	br=$(q "$bundle_res")
	hf_args+=(-n "$rt create+start+delete (resources)"
		"x=\$($r create --bundle $br $id-res-\$\$ && $r start $id-res-\$\$) && $r delete --force $id-res-\$\$")
	# exec: into a sleeping container of its own (own bundle, so its own cgroup), started once.
	bx=$work/$name-exec-$id
	RUNTIME=$spec_rt CGROUP_PARENT=$CGROUP_PARENT "$HACK/mkbundle.sh" "$bx" sleep 3600 2>/dev/null ||
		die "hack/mkbundle.sh failed for $bx"
	eval "timeout 30 $r run --detach --bundle $(q "$bx") $id-exec" </dev/null >"$bx.out" 2>&1 ||
		die "$rt: could not start the container to exec into: $(tr '\n' ' ' <"$bx.out")"
	hf_args+=(-n "$rt exec" "$r exec $id-exec /bin/true")
done
NS_BENCH="crun namespace overhead alone ($CRUN_NS, /bin/true)"
if [[ -n ${CMD[crun]:-} && -n $NSPREFIX ]]; then
	hf_args+=(-n "$NS_BENCH" "$NSPREFIX /bin/true")
fi

mkdir -p "$BENCH_OUT"
stamp=$(date +%Y%m%d-%H%M%S)
json=$BENCH_OUT/bench-$stamp.json
md=$BENCH_OUT/bench-$stamp.md
per_round=$(((RUNS + ROUNDS - 1) / ROUNDS))
ncmd=$((${#hf_args[@]} / 3)) # hf_args holds (-n NAME COMMAND) triples
round_json=()
for ((k = 0; k < ROUNDS; k++)); do
	off=$(((k * ncmd / ROUNDS) * 3)) # a whole command: its triple
	rotated=("${hf_args[@]:off}" "${hf_args[@]:0:off}")
	rj=$work/round-$k.json
	log "hyperfine round $((k + 1))/$ROUNDS: ${#RUNTIMES[@]} runtime(s), --warmup $WARMUP" \
		"--runs $per_round, from command $((off / 3 + 1)) of $ncmd"
	hyperfine --style basic --warmup "$WARMUP" --runs "$per_round" --export-json "$rj" "${rotated[@]}" >&2 ||
		die "hyperfine failed (a benchmarked command exited non-zero; see above)"
	round_json+=("$rj")
done
# One result per command over all rounds: its times, their median, mean, min and max.
jq -s '{results: ([.[].results[]] | group_by(.command) | map({command: .[0].command,
	times: [.[].times[]]}) | map(. + {median: ((.times | sort) as $t | ($t | length) as $n |
	if $n % 2 == 1 then $t[($n - 1) / 2] else ($t[$n / 2 - 1] + $t[$n / 2]) / 2 end),
	mean: ((.times | add) / (.times | length)), min: (.times | min), max: (.times | max)}))}' \
	"${round_json[@]}" >"$json"

# --- peak RSS -----------------------------------------------------------------------------
declare -A RSS # runtime -> max KiB
for rt in "${RUNTIMES[@]}"; do
	[[ $rt == "berth (crun's wrapper)" ]] && continue # berth's binary again
	rssfile=$work/rss-$rt
	if [[ $rt == crun && -n $NSPREFIX ]]; then
		# Measure inside the namespace so that the wrapper's processes are not counted.
		eval "runner=($NSPREFIX /usr/bin/time -f %M -o $(q "$rssfile") $(q "$CRUN"))"
	else
		case $rt in
		runc) bin=$RUNC ;;
		crun) bin=$CRUN ;;
		"$WRITABLE_ROW") bin=$BERTH ;;
		*) bin=$BERTH_MAIN ;;
		esac
		runner=(/usr/bin/time -f %M -o "$rssfile" "$bin")
	fi
	max=0
	for ((i = 0; i < RSS_RUNS; i++)); do
		timeout 30 "${runner[@]}" --root "${ROOT[$rt]}" run --bundle "$bundle" "${rt//[^a-z]/_}-rss-$$-$i" >/dev/null 2>&1 ||
			die "$rt: 'run' failed while measuring RSS"
		kib=$(tail -n 1 "$rssfile")
		if ((kib > max)); then max=$kib; fi
	done
	RSS[$rt]=$max
done

# --- report ---------------------------------------------------------------------------------
median_ms() { # median_ms NAME -> median in ms from the hyperfine JSON, empty if absent
	jq -r --arg n "$1" '.results[] | select(.command == $n) | .median * 1000' "$json"
}
fmt() { awk -v x="$1" 'BEGIN { if (x == "") print "—"; else printf "%.1f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×", a / b }'; }

declare -A RUN CSD EXEC RES
for rt in "${RUNTIMES[@]}"; do
	RUN[$rt]=$(median_ms "$rt run")
	CSD[$rt]=$(median_ms "$rt create+start+delete")
	EXEC[$rt]=$(median_ms "$rt exec")
	RES[$rt]=$(median_ms "$rt create+start+delete (resources)")
done
wrap_ms=""
if [[ -n ${CMD[crun]:-} && -n $NSPREFIX ]]; then
	wrap_ms=$(median_ms "$NS_BENCH")
	# crun minus its wrapper: one wrapped call for run, three for create+start+delete.
	RUN["crun - wrapper"]=$(awk -v a="${RUN[crun]}" -v w="$wrap_ms" 'BEGIN { printf "%.4f", a - w }')
	CSD["crun - wrapper"]=$(awk -v a="${CSD[crun]}" -v w="$wrap_ms" 'BEGIN { printf "%.4f", a - 3 * w }')
	EXEC["crun - wrapper"]=$(awk -v a="${EXEC[crun]}" -v w="$wrap_ms" 'BEGIN { printf "%.4f", a - w }')
	RES["crun - wrapper"]=$(awk -v a="${RES[crun]}" -v w="$wrap_ms" 'BEGIN { printf "%.4f", a - 3 * w }')
fi

rows=("${RUNTIMES[@]}")
if [[ -n $wrap_ms ]]; then rows+=("crun - wrapper"); fi
{
	echo "## berth benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) CPUs, runs=$((per_round * ROUNDS)) in $ROUNDS rounds, warmup=$WARMUP)"
	echo
	echo "| runtime | run /bin/true, median ms | create+start+delete, median ms | c+s+d with resources, median ms | exec /bin/true, median ms | run ÷ crun | run ÷ runc | c+s+d ÷ crun | c+s+d ÷ runc | res ÷ crun | res ÷ runc | exec ÷ crun | exec ÷ runc | peak RSS, MB |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for rt in "${rows[@]}"; do
		crun_ref=crun
		[[ -n $wrap_ms ]] && crun_ref="crun - wrapper"
		rss="—"
		[[ -n ${RSS[$rt]:-} ]] && rss=$(awk -v k="${RSS[$rt]}" 'BEGIN { printf "%.1f", k / 1024 }')
		label=$rt
		[[ $rt == "crun - wrapper" ]] && label="crun − wrapper (est.)"
		# Through crun's own wrapper, berth compares with crun as measured, not with the estimate.
		ref=$crun_ref
		[[ $rt == "berth (crun's wrapper)" ]] && ref=crun
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
			"$(fmt "${RUN[$rt]}")" "$(fmt "${CSD[$rt]}")" "$(fmt "${RES[$rt]}")" "$(fmt "${EXEC[$rt]}")" \
			"$(ratio "${RUN[$rt]}" "${RUN[$ref]:-}")" "$(ratio "${RUN[$rt]}" "${RUN[runc]:-}")" \
			"$(ratio "${CSD[$rt]}" "${CSD[$ref]:-}")" "$(ratio "${CSD[$rt]}" "${CSD[runc]:-}")" \
			"$(ratio "${RES[$rt]}" "${RES[$ref]:-}")" "$(ratio "${RES[$rt]}" "${RES[runc]:-}")" \
			"$(ratio "${EXEC[$rt]}" "${EXEC[$ref]:-}")" "$(ratio "${EXEC[$rt]}" "${EXEC[runc]:-}")" "$rss"
	done
	echo
	if [[ -n $wrap_ms ]]; then
		echo "crun refuses this host's hybrid cgroups, so each crun call runs in a mount namespace" \
			"with /sys/fs/cgroup/unified hidden ($ns_label), which alone costs $(fmt "$wrap_ms") ms" \
			"(median). The crun row includes it once for run and three times for create+start+delete;" \
			"the \"crun − wrapper\" row subtracts that and is the reference of the ÷ crun columns." \
			"crun's RSS is measured inside the namespace (wrapper not counted)."
		echo
	fi
	if [[ -n ${RUN[$WRITABLE_ROW]:-} ]]; then
		echo "\"berth\": installed as hack/setup.sh does, immutable (chattr +i), so it needs no" \
			"re-exec to protect itself against CVE-2019-5736 (libcontainer/src/sealed.rs; a container" \
			"that may hold CAP_LINUX_IMMUTABLE still gets one). \"$WRITABLE_ROW\": the binary as" \
			"built, which re-execs from a read-only copy of itself on each create, run and exec."
		echo
	fi
	echo "Peak RSS: GNU time %M (max RSS of the runtime and its reaped children, i.e. its init" \
		"and the container's /bin/true), max over $RSS_RUNS runs of \`run\`."
	for s in "${SKIPPED[@]}"; do echo; echo "Skipped $s"; done
} | tee "$md"
log "results: $json, $md"
