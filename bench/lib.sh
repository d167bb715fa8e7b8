# bench/lib.sh - what the HTTP benchmarks share: sourced by bench/http.sh and
# bench/scaling.sh from the repository's root, not run on its own. Sourcing it
# sets shared (the peers' folder, $SHARED_BENCH or ../shared/bench), secs
# (seconds per wrk run, $BENCH_SECONDS or 5) and rounds ($BENCH_ROUNDS or 3).
# The script then calls bench_setup, which makes the scratch folder $tmp
# (removed on exit, with every parrot started here and the nginx peers),
# checks for nginx and wrk and starts the peers (origin :18080, proxy_pass
# :18081, proxy_cache :18082).
#
#   start_parrot PORT PIDFILE ARGS...  a parrot ($BENCH_PARROT, default
#       build/parrot: another branch's binary to compare) in front of the
#       origin, as `make run` serves it; data in $tmp/data-PORT; on the CPUs
#       of $PIN_PARROT (a taskset list) when that is set
#   stop_parrot PIDFILE                SIGTERM, and wait until it has exited
#   run NAME URL BODY WRKARGS...       one wrk run of $secs with the peers'
#       ${SCRIPT:-post.lua} (a path with a slash: that script), on the CPUs
#       of $PIN_WRK when set; appends
#       "NAME rps p50_us p99_us errors" to $tmp/raw
#   stat NAME COLUMN                   the median of a column of NAME's runs
#   url PORT, ratio A B, metric PORT NAME (the sum of a /metrics family's
#       samples; empty when parrot does not have it)
# shellcheck shell=bash

shared=${SHARED_BENCH:-../shared/bench}
secs=${BENCH_SECONDS:-5}
# shellcheck disable=SC2034 # the sourcing scripts count their rounds with it
rounds=${BENCH_ROUNDS:-3}

bench_cleanup() {
    local f
    for f in "$tmp"/*.pid; do
        if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
    sh "$shared/peers.sh" stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}

bench_setup() {
    local tool
    tmp=$(mktemp -d)
    chmod 755 "$tmp" # nginx workers must reach their cache directory
    export PEERS_DIR=$tmp/peers
    trap bench_cleanup EXIT
    for tool in nginx wrk; do
        command -v $tool >/dev/null || { echo "bench: $tool is missing (apt-get install nginx wrk)" >&2; exit 1; }
    done
    sh "$shared/peers.sh" start >/dev/null
}

# taskset's arguments when a CPU list is given, else nothing.
pinned() { [ -z "$1" ] || printf 'taskset\n-c\n%s\n' "$1"; }

start_parrot() {
    local port=$1 pidfile=$2 pin
    shift 2
    mapfile -t pin < <(pinned "${PIN_PARROT:-}")
    # The best default mode, as `make run` serves it: word vectors and WordNet.
    "${pin[@]}" "${BENCH_PARROT:-./build/parrot}" --listen 127.0.0.1:"$port" --upstream http://127.0.0.1:18080/v1 \
        --word-vectors build/word-vectors.bin --wordnet build/wordnet.bin \
        --data-dir "$tmp/data-$port" --log-level warn "$@" 2>"$tmp/parrot-$port.log" &
    echo $! >"$pidfile"
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "bench: parrot on $port did not start" >&2
    cat "$tmp/parrot-$port.log" >&2
    exit 1
}

stop_parrot() {
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$1"
}

run() {
    local name=$1 url=$2 body=$3 pin
    shift 3
    mapfile -t pin < <(pinned "${PIN_WRK:-}")
    local script=${SCRIPT:-post.lua}
    [ "${script#*/}" != "$script" ] || script=$shared/$script
    BENCH_REQUEST=$body "${pin[@]}" wrk "$@" -d"${secs}s" -s "$script" "$url" |
        sed -n "s/^RESULT rps=\([0-9]*\) p50_us=\([0-9]*\) p90_us=[0-9]* p99_us=\([0-9]*\).*errors=\([0-9]*\)/$name \1 \2 \3 \4/p" \
            >>"$tmp/raw"
}

url() { echo "http://127.0.0.1:$1/v1/chat/completions"; }

metric() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) print s + 0 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

stat() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$tmp/raw" | median; }
