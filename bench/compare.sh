#!/usr/bin/env bash
# keybound beside node, on this machine, under the same `keybound bench` load:
#   token:    `keybound serve` (bench/keybound-bench.toml) vs node-oidc-provider
#             (bench/node/provider.mjs): client credentials, DPoP, ES256 JWT access tokens;
#   resource: keybound serve's GET /api/whoami (keybound-resource's ResourceLayer) vs a node:http
#             resource server on jose (bench/node/resource.mjs) doing the same checks.
#
# Usage: bench/compare.sh            (about 15 minutes with the defaults on a quiet machine)
# Settings (environment):
#   BENCH_CONCURRENCIES  "1 8 32 64"       concurrencies to run, in order
#   BENCH_MODES          "token resource"  which comparisons
#   BENCH_REQUESTS       20000             timed requests per run (each with its own proof)
#   BENCH_WARMUP         1000              untimed requests first (JIT, connections, caches)
#   BENCH_DURATION       40                a run stops after this many seconds even if requests
#                                          remain, so no proof outlives the servers' 60 s iat
#                                          window (proofs are minted before the run starts)
#   BENCH_ROUNDS         3                 repeat everything; the table shows medians
#   BENCH_SERVER_CPU     0                 the core every server is pinned to (taskset)
#   BENCH_CLIENT_CPU     1                 the core the generator is pinned to
#   BENCH_TARGET_RATIO   8                 the ratio the table is checked against
#   BENCH_QUIET_WAIT     300               before each run, wait up to this many seconds for
#                                          both cores to be idle (under BENCH_QUIET_PERCENT,
#                                          default 10, busy over a second): another build or
#                                          benchmark on the machine would skew the figures
#   BENCH_PERF           0                 1: record `perf record -g` of the keybound server
#                                          during each keybound run (perf-MODE-cN.data and a
#                                          perf report --no-children summary beside them);
#                                          perf costs CPU, so do not compare those figures
#   BENCH_OUT            $CARGO_TARGET_DIR/bench-compare/<time>   logs, results.jsonl, table.md
#   RS_TOKEN_CACHE       1                 0: the node resource server verifies the access
#                                          token's signature on every request instead of caching
#                                          verified tokens as keybound-resource does
#   CARGO_TARGET_DIR     /var/cache/kb-target-bench when unset
#
# Method: servers on one core, the generator on the other, so the figures are per server core
# and the generator never competes with the server. keybound and node alternate at each
# concurrency (the side that goes first alternates too). Every proof is minted before the
# timed phase, so the generator only sends requests; its CPU use is reported to show whether
# it, rather than the server, was the limit. Before timing, both resource servers get the same
# good and bad requests (bench/node/check-resource.mjs) and must give the same verdicts.
set -euo pipefail

die() {
	echo "compare.sh: $*" >&2
	exit 1
}
say() { echo "compare.sh: $*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/kb-target-bench}"
concurrencies=${BENCH_CONCURRENCIES:-"1 8 32 64"}
modes=${BENCH_MODES:-"token resource"}
requests=${BENCH_REQUESTS:-20000}
warmup=${BENCH_WARMUP:-1000}
duration=${BENCH_DURATION:-40}
rounds=${BENCH_ROUNDS:-3}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
target_ratio=${BENCH_TARGET_RATIO:-8}
quiet_wait=${BENCH_QUIET_WAIT:-300}
quiet_percent=${BENCH_QUIET_PERCENT:-10}
perf_record=${BENCH_PERF:-0}
out=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-compare/$(date +%Y%m%d-%H%M%S)}
# The secret bench/keybound-bench.toml holds the hash of; loopback only.
export BENCH_CLIENT_SECRET=bench-secret-bench-secret-bench-secret
export KEYBOUND_CLIENT_SECRET=$BENCH_CLIENT_SECRET

for tool in node npm; do
	command -v "$tool" >/dev/null || die "$tool is not installed: the node side needs node (>= 20.19) and npm"
done
for tool in cargo taskset curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
	die "node $(node --version) is too old: oidc-provider 9 needs node >= 20.19"
for mode in $modes; do
	[[ $mode == token || $mode == resource ]] || die "BENCH_MODES: unknown mode $mode"
done
if [[ $perf_record == 1 ]]; then
	command -v perf >/dev/null || die "BENCH_PERF=1 needs perf"
fi
for n in $concurrencies $requests $warmup $duration $rounds $server_cpu $client_cpu $quiet_wait $quiet_percent; do
	[[ $n =~ ^[0-9]+$ ]] || die "not a whole number: $n"
done
[[ $server_cpu != "$client_cpu" ]] || say "warning: the servers and the generator share core $server_cpu"
cores=$(nproc --all)
((server_cpu < cores && client_cpu < cores)) || die "this machine has cores 0 to $((cores - 1))"
if ((duration > 45)); then
	say "warning: BENCH_DURATION=$duration: proofs minted before the run may be older than 60 s at its end"
fi

mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

say "building keybound (release)"
(cd "$root" && cargo build --release --quiet -p keybound-cli)
# The target directory is shared with other work trees: run a copy, so a build elsewhere cannot
# replace the binary in the middle of a run.
keybound=$out/keybound
cp "$CARGO_TARGET_DIR/release/keybound" "$keybound"

say "installing the node side (npm ci, pinned by bench/node/package-lock.json)"
(cd "$root/bench/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# wait_for NAME PID URL: until URL answers (any status), or fail if the server died or 20 s passed.
wait_for() {
	local name=$1 pid=$2 url=$3 i
	for ((i = 0; i < 200; i++)); do
		curl -s -o /dev/null "$url" && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited; see $out/$name.log"
		sleep 0.1
	done
	die "$name did not answer $url within 20 s; see $out/$name.log"
}

kb_port=$(free_port)
op_port=$(free_port)
rs_port=$(free_port)
kb_issuer=http://127.0.0.1:$kb_port
op_issuer=http://127.0.0.1:$op_port
rs_url=http://127.0.0.1:$rs_port

say "starting the servers on core $server_cpu (logs in $out)"
taskset -c "$server_cpu" "$keybound" serve --config "$root/bench/keybound-bench.toml" \
	--listen "127.0.0.1:$kb_port" --issuer "$kb_issuer" --data-dir "$out/keybound-data" \
	>"$out/keybound.log" 2>&1 &
kb_pid=$!
pids+=("$kb_pid")
NODE_ENV=production taskset -c "$server_cpu" node "$root/bench/node/provider.mjs" "$op_port" "$op_issuer/api" \
	>"$out/node-oidc-provider.log" 2>&1 &
op_pid=$!
pids+=("$op_pid")
wait_for keybound "$kb_pid" "$kb_issuer/.well-known/oauth-authorization-server"
wait_for node-oidc-provider "$op_pid" "$op_issuer/.well-known/openid-configuration"
NODE_ENV=production taskset -c "$server_cpu" node "$root/bench/node/resource.mjs" "$rs_port" \
	"$op_issuer/jwks" "$op_issuer/api" "$rs_url" "$op_issuer" >"$out/node-resource.log" 2>&1 &
rs_pid=$!
pids+=("$rs_pid")
wait_for node-resource "$rs_pid" "$rs_url/"

if [[ " $modes " == *" resource "* ]]; then
	say "checking that both resource servers accept and refuse the same requests"
	echo "keybound serve /api/whoami:" >&2
	(cd "$root/bench/node" && node check-resource.mjs "$kb_issuer/token" "$kb_issuer/api/whoami") >&2 ||
		die "keybound's resource server gave an unexpected verdict"
	echo "node resource server (jose):" >&2
	(cd "$root/bench/node" && node check-resource.mjs "$op_issuer/token" "$rs_url/api/whoami") >&2 ||
		die "the node resource server gave an unexpected verdict"
fi

# CPU seconds (user + system, all threads) a process has used so far.
cpu_seconds() {
	local stat fields
	stat=$(<"/proc/$1/stat")
	read -r -a fields <<<"${stat##*) }"
	echo "$(((fields[11] + fields[12]) * 1000 / $(getconf CLK_TCK)))"
}

# core_ticks CPU: busy and total clock ticks of one core so far (/proc/stat).
core_ticks() {
	awk -v cpu="cpu$1" '$1 == cpu { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

# The share of a core (percent) that was busy between two core_ticks readings.
busy_percent() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.1f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'
}

# wait_quiet: until both cores were at most quiet_percent busy over a second (other work on the
# machine, such as a build, would take cycles from a server or the generator), or quiet_wait
# seconds passed (then a warning; the table's "other load" column shows what it cost).
wait_quiet() {
	local waited=0 server_ticks client_ticks server_busy client_busy
	while :; do
		server_ticks=$(core_ticks "$server_cpu")
		client_ticks=$(core_ticks "$client_cpu")
		sleep 1
		server_busy=$(busy_percent "$server_ticks" "$(core_ticks "$server_cpu")")
		client_busy=$(busy_percent "$client_ticks" "$(core_ticks "$client_cpu")")
		if awk -v a="$server_busy" -v b="$client_busy" -v q="$quiet_percent" 'BEGIN { exit !(a <= q && b <= q) }'; then
			((waited == 0)) || say "the machine is quiet again after ${waited} s"
			return 0
		fi
		if ((waited == 0)); then
			say "waiting for other work to stop (core $server_cpu $server_busy% busy, core $client_cpu $client_busy%)"
		fi
		waited=$((waited + 1))
		if ((waited >= quiet_wait)); then
			say "warning: still busy after ${quiet_wait} s (core $server_cpu $server_busy%, core $client_cpu $client_busy%); running anyway"
			return 0
		fi
	done
}

# run ROUND MODE CONCURRENCY SIDE: one `keybound bench` run on the generator's core; appends a
# line to results.jsonl and prints a summary.
run() {
	local round=$1 mode=$2 concurrency=$3 side=$4 pid target json before after status=0
	local server_core client_core started wall
	local load=(--requests "$requests" --warmup "$warmup" --concurrency "$concurrency"
		--duration "$duration" --max-error-rate 1 --quiet --client-id bench --scope read)
	case $side-$mode in
	keybound-token)
		pid=$kb_pid
		target=(token --issuer "$kb_issuer")
		;;
	node-token)
		pid=$op_pid
		target=(token --issuer "$op_issuer")
		;;
	keybound-resource)
		pid=$kb_pid
		target=(resource --url "$kb_issuer/api/whoami" --issuer "$kb_issuer")
		;;
	node-resource)
		pid=$rs_pid
		target=(resource --url "$rs_url/api/whoami" --issuer "$op_issuer")
		;;
	esac
	kill -0 "$pid" 2>/dev/null || die "the $side $mode server is gone; see the logs in $out"
	wait_quiet
	local perf_pid='' perf_data=$out/perf-$mode-c$concurrency.data
	if [[ $perf_record == 1 && $side == keybound ]]; then
		perf record -q -g -F 999 -p "$pid" -o "$perf_data" >"$out/perf.log" 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	before=$(cpu_seconds "$pid")
	server_core=$(core_ticks "$server_cpu")
	client_core=$(core_ticks "$client_cpu")
	started=$(date +%s%N)
	# In the background and waited for, so that a signal stops the script (and the trap stops
	# the generator and the servers) at once rather than after this run.
	taskset -c "$client_cpu" "$keybound" bench --json "${target[@]}" "${load[@]}" >"$out/last.json" &
	pids+=("$!")
	wait "$!" || status=$?
	unset 'pids[${#pids[@]}-1]'
	json=$(<"$out/last.json")
	wall=$((($(date +%s%N) - started) / 1000000))
	server_core=$(busy_percent "$server_core" "$(core_ticks "$server_cpu")")
	client_core=$(busy_percent "$client_core" "$(core_ticks "$client_cpu")")
	after=$(cpu_seconds "$pid")
	if [[ -n $perf_pid ]]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		perf report -i "$perf_data" --no-children --sort dso,symbol -g none --percent-limit 0.2 --stdio 2>/dev/null |
			grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' |
			head -60 >"${perf_data%.data}.txt" || true
		say "perf profile: ${perf_data%.data}.txt"
	fi
	[[ -n $json ]] || json=null
	# The server's CPU time covers the warmup and the timed requests (and one setup request);
	# the cores' busy shares cover the whole command (minting, setup, warmup, timed phase), so
	# the server core's share beyond the server's own CPU time is other work on that core.
	printf '{"round":%d,"mode":"%s","concurrency":%d,"side":"%s","exit":%d,"wall_seconds":%s,"server_core_busy_percent":%s,"client_core_busy_percent":%s,"server_cpu_seconds":%s,"server_requests":%s,"bench":%s}\n' \
		"$round" "$mode" "$concurrency" "$side" "$status" \
		"$(awk -v ms="$wall" 'BEGIN { printf "%.3f", ms / 1000 }')" "$server_core" "$client_core" \
		"$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.3f", (b - a) / 1000 }')" \
		"$(node -e 'const b = JSON.parse(process.argv[1]); console.log(b && !b.error ? b.warmup + b.total : 0)' "$json")" \
		"$json" >>"$results"
	node "$root/bench/table.mjs" --line "$(tail -n 1 "$results")" >&2
}

say "running: modes [$modes], concurrencies [$concurrencies], $requests requests (+$warmup warmup), $rounds round(s); servers on core $server_cpu, generator on core $client_cpu"
step=0
for ((round = 1; round <= rounds; round++)); do
	for mode in $modes; do
		for concurrency in $concurrencies; do
			if ((step % 2 == 0)); then sides=(keybound node); else sides=(node keybound); fi
			step=$((step + 1))
			for side in "${sides[@]}"; do
				run "$round" "$mode" "$concurrency" "$side"
			done
		done
	done
done

{
	echo "keybound $("$keybound" --version | awk '{ print $2 }') vs node-oidc-provider 9.13.3 / jose 6.2.18 on node $(node --version)," \
		"$(date -u +%Y-%m-%d), $(nproc --all) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))," \
		"servers on core $server_cpu, generator on core $client_cpu, $requests requests + $warmup warmup per run," \
		"node resource server's verified-token cache $([[ ${RS_TOKEN_CACHE:-1} == 0 ]] && echo off || echo on)"
	echo
	node "$root/bench/table.mjs" "$results" "$target_ratio"
} | tee "$out/table.md"
say "results: $results (one JSON line per run), table: $out/table.md"
