#!/usr/bin/env bash
# bench/run.sh - make bench: every scenario of docs/bench.md against its peer
# from ../shared/bench, in one run, written to bench/results.md (+ .tsv, .png).
#
#   1-3  HTTP: exact hits vs nginx proxy_cache, semantic hits, the miss path
#        (pass-through, and real misses that are stored) vs nginx proxy_pass
#        (bench/http.sh: peer and parrot alternate)
#   4    2,000 concurrent slow streams through parrot (bench/streams.mjs)
#   5    HNSW vs hnswlib on the same 100k x 384-d vectors
#   6    durable inserts, 50 writers, vs the raw group-commit bound
#        (bench/wal_bench.c in-round, and ../shared/bench/fsyncbench.c)
#   7    restart with 100k entries vs hnswlib loading its saved index
#   8    replicas through Redis: replication lag, and exact-hit throughput
#        with --redis vs without (bench/replicas.mjs)
#   9    scaling: the miss path (pass-through and real misses) with 1 and 2
#        HTTP worker threads on pinned CPUs (bench/scaling.sh)
#
# Knobs: SHARED_BENCH (../shared/bench), BENCH_SECONDS and BENCH_ROUNDS (HTTP),
# BENCH_SCALING_CONNS (64), BENCH_CPUS1, BENCH_CPUS2 and BENCH_LOAD_CPUS
# (scenario 9's pinning), BENCH_STREAMS (2000), BENCH_HNSW_N (100000), BENCH_DIR (scratch; on the disk
# to measure, default a fresh directory under bench/.scratch).
# Needs the packages of `deploy/install-deps.sh --bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED_BENCH:-../shared/bench}
streams=${BENCH_STREAMS:-2000}
hnsw_n=${BENCH_HNSW_N:-100000}
scratch=${BENCH_DIR:-bench/.scratch}
out=bench/results.md
tsv=bench/results.tsv
rm -rf "$scratch"
mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
trap 'rm -rf "$scratch"' EXIT
kv=$scratch/kv # every measured value, `key value`
: >"$kv"
get() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$kv"; }
say() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)" >&2; }

# 2,000 streams need 3 descriptors each in the bench's processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

say "1-3 HTTP vs nginx"
bash bench/http.sh "$scratch/http.md" "$kv" >&2

say "4 streams"
node bench/streams.mjs "$streams" 20 100 | tee "$scratch/streams.txt" >&2
cat "$scratch/streams.txt" >>"$kv"

say "5 HNSW vs hnswlib (data)"
DATA=lowrank /usr/bin/python3 bench/hnsw_data.py "$hnsw_n" "$scratch/vec" >&2
say "5 HNSW: parrot"
./build/bench/hnsw_bench "$scratch/vec" "$hnsw_n" | tee "$scratch/hnsw-parrot.txt" >&2
say "5 HNSW: hnswlib"
DATA=lowrank /usr/bin/python3 "$shared/hnswlib_bench.py" "$hnsw_n" 1 | tee "$scratch/hnsw-peer.txt" >&2
# ef=64 row of a query set: "QPS recall@1 recall@10"
efrow() { sed -n "s/^ef=  64 $2 *batchQPS(1thr)= *\([0-9]*\) recall@1=\([0-9.]*\) recall@10=\([0-9.]*\).*/\1 \2 \3/p" "$1"; }
for who in parrot peer; do
    read -r q r1 r10 <<<"$(efrow "$scratch/hnsw-$who.txt" random)"
    read -r nq nr1 nr10 <<<"$(efrow "$scratch/hnsw-$who.txt" near-dup)"
    build=$(sed -n 's/^BUILD threads=1: [0-9.]*s = \([0-9]*\) inserts.*/\1/p' "$scratch/hnsw-$who.txt")
    mem=$(sed -n 's/.*index RSS delta \([0-9]*\) MiB.*/\1/p' "$scratch/hnsw-$who.txt")
    printf 'hnsw_%s_qps %s\nhnsw_%s_r1 %s\nhnsw_%s_r10 %s\nhnsw_%s_nd_qps %s\nhnsw_%s_nd_r1 %s\nhnsw_%s_nd_r10 %s\nhnsw_%s_build %s\nhnsw_%s_mem %s\n' \
        "$who" "$q" "$who" "$r1" "$who" "$r10" "$who" "$nq" "$who" "$nr1" "$who" "$nr10" \
        "$who" "$build" "$who" "$mem" >>"$kv"
done

say "6 durable inserts"
gcc -O2 -pthread -o "$scratch/fsyncbench" "$shared/fsyncbench.c"
mkdir -p "$scratch/disk"
"$scratch/fsyncbench" "$scratch/disk" | tee "$scratch/fsync.txt" >&2
./build/bench/wal_bench "$scratch/disk" 2 50 1024 5 | tee "$scratch/wal.txt" >&2
sed -n 's/^leader\/follower group commit, 50 threads *[0-9]* recs *\([0-9]*\) recs\/s.*/fsync_gc50 \1/p' \
    "$scratch/fsync.txt" >>"$kv"
sed -n 's/^  => \([a-z]*\) *\([0-9]*\) recs\/s (raw \([0-9]*\)): median \([0-9.]*\)x.*/wal_\1 \2\nwal_raw \3\nwal_\1_ratio \4/p' \
    "$scratch/wal.txt" >>"$kv"

say "7 restart: parrot"
mkdir -p "$scratch/restart"
./build/bench/restart_bench "$scratch/restart" "$hnsw_n" | tee "$scratch/restart.txt" >&2
sed 's/^/restart_/' "$scratch/restart.txt" >>"$kv"
say "7 restart: hnswlib load"
/usr/bin/python3 bench/hnswlib_load.py "$scratch/vec" "$hnsw_n" | tee -a "$kv" >&2

say "8 replicas through Redis"
node bench/replicas.mjs "$kv" | tee "$scratch/replicas.md" >&2

say "9 scaling with worker threads"
bash bench/scaling.sh "$scratch/scaling.md" "$kv" >&2

# ---- report ----------------------------------------------------------------
r() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
d() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "") printf "%+.3f", a - b; else print "n/a" }'; }
# Rows: scenario | measure | value | target | met. A row's `score` (value
# over target, or target over value for an upper bound; >= 1 is met; capped
# at 3 so one easy win does not flatten the chart) feeds the chart.
: >"$tsv"
row() { # label value target-op target-value
    local met score
    score=$(awk -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
        if (v == "n/a" || v == "") { print "n/a"; exit }
        if (op == ">=") r = v / t; else if (op == "<=") r = (v > 0 ? t / v : 3); else r = (v >= -t ? 1 : 0)
        printf "%.3f", (r > 3 ? 3 : r) }')
    met=$(awk -v s="$score" 'BEGIN { print (s == "n/a" ? "?" : (s >= 1 ? "yes" : "**no**")) }')
    if [ "$3" = "within" ]; then
        echo "| $1 | $2 | within $4 of the peer | $met |"
    else
        echo "| $1 | $2 | $3 $4 | $met |"
    fi
    printf '%s\t%s\t%s\n' "$1" "$score" "$met" >>"$tsv"
}
{
    echo "# make bench: parrot side by side with its peers"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -1)),"
    echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); clients and servers on the same machine."
    echo "Ratios are taken within this one run; absolute numbers drift between runs on shared machines."
    echo
    echo "## Targets"
    echo
    echo "| scenario | ratio (parrot / peer) | target | met |"
    echo "|---|---|---|---|"
    row "1 exact-hit req/s vs nginx proxy_cache, -c64" "$(get exact_rps_t2c64)" ">=" 1.0
    row "1 exact-hit p99 vs nginx proxy_cache, -c64" "$(get exact_p99_t2c64)" "<=" 1.5
    row "1 exact-hit req/s vs nginx proxy_cache, -c1" "$(get exact_rps_t1c1)" ">=" 1.0
    row "2 semantic-hit req/s vs parrot exact-hit, -c64" "$(get semantic_rps_t2c64)" ">=" 0.7
    row "2 semantic-hit req/s vs parrot exact-hit, -c1" "$(get semantic_rps_t1c1)" ">=" 0.7
    row "3 pass-through req/s vs nginx proxy_pass, -c64" "$(get miss_rps_t2c64)" ">=" 1.0
    row "3 pass-through added p50 vs nginx proxy_pass, -c64" "$(get miss_p50_t2c64)" "<=" 1.0
    row "3 pass-through added p50 vs nginx proxy_pass, -c1" "$(get miss_p50_t1c1)" "<=" 1.0
    row "3 pass-through added p99 vs nginx proxy_pass, -c1" "$(get miss_p99_t1c1)" "<=" 1.0
    row "3 real misses (stored) req/s vs nginx proxy_pass, -c64" "$(get realmiss_rps_t2c64)" ">=" 0.5
    row "3 real misses without digits (one HNSW index) req/s vs nginx proxy_pass, -c64" "$(get realmiss_words_rps_t2c64)" ">=" 0.5
    row "3 real misses (stored) added p50 vs nginx proxy_pass, -c1" "$(get realmiss_p50_t1c1)" "<=" 1.0
    row "3 real misses (stored) added p99 vs nginx proxy_pass, -c1" "$(get realmiss_p99_t1c1)" "<=" 1.0
    row "4 streams completed / started" "$(r "$(get completed)" "$(get streams)")" ">=" 1.0
    row "5 HNSW recall@10 minus hnswlib's, ef 64" "$(d "$(get hnsw_parrot_r10)" "$(get hnsw_peer_r10)")" within 0.01
    row "5 HNSW recall@1 minus hnswlib's, ef 64" "$(d "$(get hnsw_parrot_r1)" "$(get hnsw_peer_r1)")" within 0.01
    row "5 HNSW QPS vs hnswlib, ef 64" "$(r "$(get hnsw_parrot_qps)" "$(get hnsw_peer_qps)")" ">=" 1.5
    row "5 HNSW memory vs hnswlib" "$(r "$(get hnsw_parrot_mem)" "$(get hnsw_peer_mem)")" "<=" 1.25
    row "6 durable inserts (always) vs raw group commit, same round" "$(get wal_always_ratio)" ">=" 0.5
    row "6 durable inserts (always) vs fsyncbench 50 threads" "$(r "$(get wal_always)" "$(get fsync_gc50)")" ">=" 0.5
    row "7 restart 100k: graphs rebuilt (none allowed)" "$(get restart_graphs_rebuilt)" "<=" 0
    row "8 exact-hit req/s with --redis vs without, -c64" "$(get repl_hit_ratio)" ">=" 0.95
    row "9 pass-through req/s, 2 worker threads vs 1 (pinned), -c64" "$(get scaling_pass_ratio)" ">=" 1.7
    row "9 real misses req/s, 2 worker threads vs 1 (pinned), -c64" "$(get scaling_real_ratio)" ">=" 1.7
    row "9 real misses: share of stores dropped, 2 workers, -c64" "$(get scaling_real_dropped)" "<=" 0.01
    echo
    echo "## 1-3 HTTP (bench/http.sh)"
    echo
    sed '1,2d' "$scratch/http.md"
    echo
    echo "## 4 Streams (bench/streams.mjs)"
    echo
    echo "$(get streams) concurrent streams of 20 SSE events 100 ms apart, each a distinct question (a miss relayed"
    echo "to the scripted provider): $(get completed) completed in $(get wall_seconds) s; parrot's threads"
    echo "$(get threads_start) at start, at most $(get threads_max); resident set $(get rss_start_mb) MB at start, at most $(get rss_max_mb) MB;"
    echo "$(get cpu_seconds) s of CPU (user + system) over the streams."
    echo
    echo "## 5 Vector index (bench/hnsw_bench.c vs hnswlib_bench.py, same vectors, one thread)"
    echo
    echo "| | build inserts/s | QPS ef 64 | recall@1 | recall@10 | near-dup QPS | near-dup recall@1 | memory MiB |"
    echo "|---|---|---|---|---|---|---|---|"
    for who in parrot peer; do
        echo "| $([ $who = peer ] && echo hnswlib || echo parrot) | $(get hnsw_${who}_build) | $(get hnsw_${who}_qps) | $(get hnsw_${who}_r1) | $(get hnsw_${who}_r10) | $(get hnsw_${who}_nd_qps) | $(get hnsw_${who}_nd_r1) | $(get hnsw_${who}_mem) |"
    done
    echo
    echo "Build rate ratio $(r "$(get hnsw_parrot_build)" "$(get hnsw_peer_build)")x. Every ef:"
    echo
    echo '```'
    grep -h -e '^ef=' -e '^BUILD' "$scratch/hnsw-parrot.txt" | sed 's/^/parrot  /'
    grep -h -e '^ef=' -e '^BUILD' "$scratch/hnsw-peer.txt" | sed 's/^/hnswlib /'
    echo '```'
    echo
    echo "## 6 Durable inserts (bench/wal_bench.c, fsyncbench.c), 50 writers, 1 KiB records"
    echo
    echo '```'
    grep -e '^leader' "$scratch/fsync.txt" | sed 's/^/fsyncbench /'
    sed -n '/^durable/,/^async appends, paced/p' "$scratch/wal.txt" | sed '$d'
    echo '```'
    echo
    echo "## 7 Restart"
    echo
    echo "parrot (bench/restart_bench.c): $(get restart_entries) entries in $(get restart_partitions) partitions"
    echo "of $(get restart_dim)-d vectors, each partition with its own graph. Snapshot $(get restart_snapshot_bytes) bytes, written"
    echo "in $(get restart_snapshot_write_s) s. Restart: snapshot load $(get restart_snapshot_load_s) s (graphs loaded"
    echo "$(get restart_graphs_loaded), rebuilt $(get restart_graphs_rebuilt)) + replay of $(get restart_wal_tail_records) log records $(get restart_wal_tail_replay_s) s ="
    echo "**$(get restart_restart_s) s**; rebuilding the graphs from the log instead: $(get restart_build_s) s."
    echo "hnswlib loads its saved index of the 100k x 384-d vectors of scenario 5 (a graph only, no entries,"
    echo "no checksum) in $(get hnswlib_load_seconds) s."
    echo
    echo "## 8 Replicas through Redis (bench/replicas.mjs)"
    echo
    cat "$scratch/replicas.md"
    echo
    echo "## 9 Scaling with HTTP worker threads (bench/scaling.sh)"
    echo
    sed '1,2d' "$scratch/scaling.md"
} >"$out"

gnuplot <<EOF
set terminal pngcairo noenhanced size 1200,760 font "sans,10"
set output "bench/results.png"
set title "make bench: achieved / target (>= 1 meets the target)"
set datafile separator "\t"
set style fill solid 0.8
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -60 left font ",8" nomirror
set bmargin 22
set lmargin 8
set rmargin 12
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
plot "$tsv" using 0:(\$2 == \$2 ? \$2 : 0):(\$2 >= 1 ? 0x3a9a3a : 0xc04040):xtic(1) with boxes lc rgb variable notitle
EOF
cat "$out"
