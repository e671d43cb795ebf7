#!/usr/bin/env bash
# run.sh runs every lightmesh benchmark — the core module's (routing, the
# decision path, the SDK's own overhead, gRPC, scaling) and this module's
# comparisons with peers (otelhttp, otelgrpc, breakers, an nginx/HAProxy
# hop, CPU per 1,000 rps, latency under load) — writes the raw output to results/*.txt, prints
# benchstat tables and writes them, with the machine and the date, to
# ../BENCHMARKS.md.
#
#   ./run.sh                      # everything, 6 rounds (about 20 minutes)
#   COUNT=10 BENCHTIME=2s ./run.sh
#   ONLY=proxy ./run.sh           # one group (see the names below)
#   SMOKE=1 ./run.sh              # every benchmark once (-benchtime 1x), no tables, output in
#                                 # results/smoke/ (the measured results stay): CI
#   ONLY=protect ./run.sh         # the protection scenarios alone (results/protect.md)
#   REPORT=1 ./run.sh             # no benchmark: the tables, BENCHMARKS.md and the README's
#                                 # table again from the raw results/*.txt already there
#
# The proxy hop and the CPU comparison need nginx and HAProxy; run.sh
# installs them (Debian's nginx-light and haproxy) when it runs as root and
# they are missing, and those sub-benchmarks skip with a message otherwise.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
ONLY=${ONLY:-}
SMOKE=${SMOKE:-}
REPORT=${REPORT:-}
if [ -n "$SMOKE" ]; then
	COUNT=1
	BENCHTIME=1x
fi
mkdir -p results

if ! { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 ||
	! { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "== installing nginx-light and haproxy" >&2
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy >/dev/null
	fi
fi

if command -v benchstat >/dev/null 2>&1; then
	benchstat=(benchstat)
elif [ -x "$(go env GOPATH)/bin/benchstat" ]; then
	benchstat=("$(go env GOPATH)/bin/benchstat")
else
	benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)
fi

# One binary per package, so that each group runs the same code; what was
# measured, when, is kept beside the results for REPORT=1.
# A single group run again (ONLY=) is added to what measured.txt says.
if [ -z "$REPORT" ] && [ -z "$SMOKE" ]; then
	stamp="(COUNT=$COUNT BENCHTIME=$BENCHTIME) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown), $(go version | cut -d' ' -f3-)."
	if [ -z "$ONLY" ]; then
		echo "$stamp" >results/measured.txt
	elif [ "$ONLY" != protect ]; then
		echo "Group $ONLY again $stamp" >>results/measured.txt
	fi
fi
if [ -z "$REPORT" ]; then
	go test -c -o results/peers.test .
	for pkg in router internal/engine mesh meshgrpc; do
		(cd .. && go test -c -o "bench/results/$(basename "$pkg").test" "./$pkg")
	done
fi

# group NAME BINARY REGEX [extra test flags...]: run one benchmark group.
group() {
	local name=$1 bin=$2 regex=$3
	shift 3
	if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then
		return 1
	fi
	if [ -n "$REPORT" ]; then
		[ -s "results/$name.txt" ]
		return
	fi
	local extra=("$@")
	if [ -n "$SMOKE" ]; then
		extra=() # one iteration of each, on the default GOMAXPROCS
	fi
	# COUNT rounds of one run each, rather than one run of -count COUNT:
	# -count runs each sub-benchmark COUNT times in a row, so the variants
	# of a comparison would be measured minutes apart, and this VM's speed
	# drifts by more than they differ. Rounds interleave them.
	local rounds=${ROUNDS:-$COUNT}
	# A smoke run's output goes to results/smoke/, so that it never
	# replaces the measured results REPORT=1 and the summary read.
	local out="results/$name.txt"
	if [ -n "$SMOKE" ]; then
		mkdir -p results/smoke
		out="results/smoke/$name.txt"
	fi
	echo "== $name: $bin -bench '$regex' -benchtime $BENCHTIME ${extra[*]}, $rounds rounds" >&2
	: >"$out"
	for ((round = 1; round <= rounds; round++)); do
		if ! ./results/"$bin" -test.run '^$' -test.bench "$regex" -test.count 1 \
			-test.benchtime "$BENCHTIME" -test.benchmem "${extra[@]}" | tee -a "$out" >&2; then
			echo "run.sh: the $name benchmarks failed" >&2
			exit 1
		fi
	done
	[ -z "$SMOKE" ]
}

out=results/tables.md
: >"$out"
table() { # table TITLE benchstat-args...
	{
		echo
		echo "### $1"
		echo
		echo '```'
		shift
		"${benchstat[@]}" "$@"
		echo '```'
	} | tee -a "$out"
}

# added FILE: the added latency of each path of BenchmarkProxyHop over
# path=bare, from the medians of the raw results, per GOMAXPROCS.
added() {
	awk '
	/ns\/op/ {
		name = $1; procs = 1
		if (match(name, /-[0-9]+$/)) { procs = substr(name, RSTART + 1); name = substr(name, 1, RSTART - 1) }
		sub(/.*\/path=/, "", name)
		for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") v = $i + 0
		k = procs SUBSEP name
		n[k]++; val[k, n[k]] = v; cpus[procs] = 1; paths[name] = 1
	}
	function median(k,   i, j, t, m) {
		m = n[k]
		for (i = 2; i <= m; i++) for (j = i; j > 1 && val[k, j - 1] > val[k, j]; j--) {
			t = val[k, j]; val[k, j] = val[k, j - 1]; val[k, j - 1] = t
		}
		return m % 2 ? val[k, (m + 1) / 2] : (val[k, m / 2] + val[k, m / 2 + 1]) / 2
	}
	END {
		for (c in cpus) {
			if (!((c SUBSEP "bare") in n)) continue
			bare = median(c SUBSEP "bare")
			mesh = ((c SUBSEP "lightmesh-full") in n) ? median(c SUBSEP "lightmesh-full") - bare : 0
			printf "GOMAXPROCS=%s: bare %.1fµs; lightmesh-full adds %+.1fµs\n", c, bare / 1000, mesh / 1000
			for (p in paths) {
				if (p == "bare" || p == "lightmesh-full" || !((c SUBSEP p) in n)) continue
				hop = median(c SUBSEP p) - bare
				printf "  %-8s hop adds %+.1fµs = %.1fx what lightmesh-full adds (target >= 45x)\n", p, hop / 1000, (mesh > 0 ? hop / mesh : 0)
			}
		}
	}' "$1"
}

# The core module.
if group route router.test 'BenchmarkRoute' ; then
	table "Routing (router): BenchmarkRoute, 100 routes" results/route.txt
fi
if group admit engine.test 'BenchmarkAdmit$|BenchmarkAdmitPaired$'; then
	table "Decision path (internal/engine): route + limiter + breakers, vs raw gobreaker + rate; BenchmarkAdmitPaired times them in alternating turns" -col /mesh results/admit.txt
fi
if group scale engine.test 'BenchmarkInstanceUpdate$' -test.benchtime 200000x; then
	table "Scaling (internal/engine): the State rebuilt on one instance change, 100 / 10,000 / 100,000 services" results/scale.txt
fi
# Each iteration builds the rules of up to 100,000 services: one per round.
if group memory engine.test 'BenchmarkPolicyMemory$' -test.benchtime 1x; then
	table "Memory (internal/engine): the heap the rules and protection of 100 / 10,000 / 100,000 services hold" results/memory.txt
fi
if group overhead mesh.test 'BenchmarkOverhead$'; then
	table "SDK overhead (mesh): over an in-process RoundTripper" -col /stack results/overhead.txt
fi
if group pick meshgrpc.test 'BenchmarkPick$|BenchmarkGRPC$'; then
	table "gRPC (meshgrpc): the picker; a unary call bare vs through lightmesh" results/pick.txt
fi

if group authz router.test 'BenchmarkDecide20Rules$' -test.cpu 1,2; then
	table "Authorization (router): Decide over a 20-rule policy, parallel" results/authz.txt
fi

# Peers.
if group transport peers.test 'BenchmarkTransport$' -test.cpu 1,2; then
	table "BenchmarkTransport (columns vs rt=bare)" -col /rt results/transport.txt
fi
if group throughput peers.test 'BenchmarkThroughput$' -test.cpu 1,2; then
	table "BenchmarkThroughput (lightmesh-full vs bare, per -cpu)" -col /rt results/throughput.txt
fi
if group grpc peers.test 'BenchmarkGRPC$' -test.cpu 1,2; then
	table "BenchmarkGRPC (columns vs rpc=bare)" -col /rpc results/grpc.txt
fi
if group paired peers.test 'BenchmarkPaired(Transport|GRPC)$' -test.cpu 1,2; then
	table "BenchmarkPairedTransport, BenchmarkPairedGRPC: the variants' calls made in turn, 32 each, in a random order each iteration (bare's µs per call; what each other variant adds)" results/paired.txt
fi
if group identity peers.test 'BenchmarkIdentity$'; then
	table "BenchmarkIdentity: mutual TLS vs plaintext vs otelhttp, kept-alive loopback GETs (columns vs rt=bare)" -col /rt results/identity.txt
fi
if group breaker peers.test 'BenchmarkBreaker$'; then
	table "BenchmarkBreaker (rows: impl; columns: one goroutine vs GOMAXPROCS)" -row /impl -col /calls results/breaker.txt
fi
if group proxy peers.test 'BenchmarkProxyHop$' -test.cpu 1,2; then
	table "BenchmarkProxyHop (columns vs path=bare)" -col /path results/proxy.txt
	{
		echo
		echo "### Added latency per request (medians of the raw results)"
		echo
		echo '```'
		added results/proxy.txt
		echo '```'
	} | tee -a "$out"
fi
paced_rounds=3 # the paced benchmarks take 10-25 s a run
if [ -n "$SMOKE" ]; then
	paced_rounds=1
fi
if ROUNDS=$paced_rounds group cpu peers.test 'BenchmarkCPU$' -test.benchtime 20000x; then
	table "BenchmarkCPU: 20,000 GETs at 2,000 rps — CPU per 1,000 rps and latency percentiles" -col /path results/cpu.txt
fi
# Every variant's turns of 100 paced GETs in each iteration (about 40 s a
# round): the CPU figure the target is decided on.
if group cpupaired peers.test 'BenchmarkCPUPaired$' -test.benchtime 200x; then
	table "BenchmarkCPUPaired: turns of 100 GETs at 2,000 rps, every variant in each iteration — bare's CPU per 1,000 rps, what each other variant adds, the rate reached" results/cpupaired.txt
fi
if ROUNDS=$paced_rounds group load peers.test 'BenchmarkLoad$' -test.benchtime 50000x; then
	table "BenchmarkLoad: 50,000 GETs at 10,000 rps from 64 callers — CPU per 1,000 rps and latency percentiles" -col /path results/load.txt
fi

# Protection scenarios (issue 24): lightmesh beside go-zero and kratos on a
# slow instance, a failing dependency, an overloaded server and slow start.
# Not benchmarks but timed runs printing one table each, written to
# results/protect.md: about two minutes in full, under 20 s in SMOKE.
if [ -z "$REPORT" ] && { [ -z "$ONLY" ] || [ "$ONLY" = protect ]; }; then
	if [ -n "$SMOKE" ]; then
		protect_env=LIGHTMESH_PROTECT_SMOKE=1
		protect_dir=results/smoke
	else
		protect_env=LIGHTMESH_PROTECT=1
		protect_dir=results
	fi
	mkdir -p "$protect_dir"
	echo "== protect: $protect_env peers.test -test.run TestProtectScenarios" >&2
	if ! env "$protect_env" ./results/peers.test -test.run '^TestProtectScenarios$' -test.v -test.timeout 10m >"$protect_dir/protect.txt" 2>&1; then
		cat "$protect_dir/protect.txt" >&2
		echo "run.sh: the protection scenarios failed" >&2
		exit 1
	fi
	cat "$protect_dir/protect.md" >&2
fi

if [ -n "$SMOKE" ] || [ -n "$ONLY" ]; then
	exit 0
fi
summary=$(go run ./summary results)
{
	echo "# lightmesh benchmarks"
	echo
	echo "Measured by \`bench/run.sh\` $(cat results/measured.txt 2>/dev/null || echo '(when: unknown)')"
	echo
	echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB;"
	echo "$(uname -sr). Every comparison is within one run of one binary; figures are medians"
	echo "with benchstat's confidence interval. Raw output: bench/results/*.txt."
	echo
	echo "Method: Go benchmarks (-benchmem), COUNT rounds of every group, $paced_rounds of the cpu and load groups"
	echo "(BenchmarkCPU, BenchmarkLoad; each round runs every variant once, so that the machine's drift falls on all of them),"
	echo "compared with benchstat. The loopback"
	echo "benchmarks send real HTTP/gRPC requests to a server in the same process; the proxy"
	echo "hop runs nginx and HAProxy as separate processes (one worker, keep-alive both sides);"
	echo "BenchmarkCPU paces requests at a fixed rate and reads getrusage for the process and"
	echo "/proc for the proxies; BenchmarkCPUPaired, which decides the CPU target, paces turns of"
	echo "100 requests of every variant in each iteration and reads getrusage around each turn."
	echo "The paired benchmarks (BenchmarkPaired*, BenchmarkAdmitPaired, BenchmarkCPUPaired) run"
	echo "every variant in turn inside each iteration and report the median of the differences."
	echo
	echo "## Targets"
	echo
	echo "$summary"
	echo
	echo "## Tables"
	cat "$out"
	echo
	echo "## Protection scenarios"
	echo
	echo "Side by side with go-zero and kratos (issue 24); the closing note of README.md's"
	echo "\"Protection scenarios\" section says where lightmesh wins and loses, and why."
	echo
	sed 's/^# .*//; s/^###/###/' results/protect.md
} >../BENCHMARKS.md
# The README's table is this summary, between its markers.
awk -v table="$summary" '
	/<!-- bench:begin -->/ { print; print table; skip = 1; next }
	/<!-- bench:end -->/ { skip = 0 }
	!skip { print }
' ../README.md >../README.md.new && mv ../README.md.new ../README.md
echo "wrote ../BENCHMARKS.md and the README's table" >&2
