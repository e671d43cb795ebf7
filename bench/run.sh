#!/usr/bin/env bash
# run.sh runs lightmesh's peer benchmarks, writes the raw output to
# results/*.txt and prints benchstat tables.
#
#   ./run.sh                      # everything, -count 6
#   COUNT=10 BENCHTIME=2s ./run.sh
#   ONLY=breaker ./run.sh         # one group: transport, throughput, grpc, breaker, proxy
#
# The proxy hop needs nginx and/or HAProxy from the OS packages
# (apt-get install -y nginx-light haproxy); without them those
# sub-benchmarks are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
ONLY=${ONLY:-}
mkdir -p results

if command -v benchstat >/dev/null 2>&1; then
	benchstat=(benchstat)
elif [ -x "$(go env GOPATH)/bin/benchstat" ]; then
	benchstat=("$(go env GOPATH)/bin/benchstat")
else
	benchstat=(go run golang.org/x/perf/cmd/benchstat@latest)
fi

# One binary for every group, so each group runs the same code.
go test -c -o results/bench.test .

# group NAME REGEX [extra test flags...]: run one benchmark group.
group() {
	local name=$1 regex=$2
	shift 2
	if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then
		return 1
	fi
	echo "== $name: -bench '$regex' -count $COUNT -benchtime $BENCHTIME $*" >&2
	if ! ./results/bench.test -test.run '^$' -test.bench "$regex" -test.count "$COUNT" \
		-test.benchtime "$BENCHTIME" "$@" | tee "results/$name.txt" >&2; then
		echo "run.sh: the $name benchmarks failed" >&2
		exit 1
	fi
}

table() { # table TITLE benchstat-args...
	echo
	echo "### $1"
	shift
	"${benchstat[@]}" "$@"
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
				printf "  %-8s hop adds %+.1fµs = %.1fx what lightmesh-full adds (target >= 20x)\n", p, hop / 1000, (mesh > 0 ? hop / mesh : 0)
			}
		}
	}' "$1"
}

if group transport 'BenchmarkTransport$' -test.cpu 1,2; then
	table "BenchmarkTransport (columns vs rt=bare)" -col /rt results/transport.txt
fi
if group throughput 'BenchmarkThroughput$' -test.cpu 1,2; then
	table "BenchmarkThroughput (lightmesh-full vs bare, per -cpu)" -col /rt results/throughput.txt
fi
if group grpc 'BenchmarkGRPC$' -test.cpu 1,2; then
	table "BenchmarkGRPC (columns vs rpc=bare)" -col /rpc results/grpc.txt
fi
if group breaker 'BenchmarkBreaker$'; then
	table "BenchmarkBreaker (rows: impl; columns: one goroutine vs GOMAXPROCS)" -row /impl -col /calls results/breaker.txt
fi
if group proxy 'BenchmarkProxyHop$' -test.cpu 1,2; then
	table "BenchmarkProxyHop (columns vs path=bare)" -col /path results/proxy.txt
	echo
	echo "### Added latency per request (medians of the raw results)"
	added results/proxy.txt
fi
