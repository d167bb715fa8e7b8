#!/usr/bin/env bash
# bench/scaling.sh - scenario 9: the miss path with 1 and 2 HTTP worker threads.
#
# Runs parrot with --threads 1 pinned to one CPU and with --threads 2 pinned to
# two (taskset), alternating BENCH_ROUNDS times, on both miss kinds:
#   pass  pass-through, `--cache false`, the peers' post.lua;
#   real  real misses: the caching parrot, post_unique.lua (a new question on
#         every request, so each is embedded, looked up, forwarded and stored).
# Each point gets fresh parrots with empty data folders. The load (wrk -t1
# -c$BENCH_SCALING_CONNS and the nginx origin) is pinned to CPUs of its own
# where the machine has them (3 or more CPUs: parrot on 0 and 0-1, the load on
# 2 and up); on 2 CPUs it must share: the load on CPU 0, parrot on CPU 1 with
# one worker and on 0-1 with two, so the two-worker parrot shares CPU 0 with
# the load. Override with BENCH_CPUS1, BENCH_CPUS2, BENCH_LOAD_CPUS.
#
# Reports req/s and latency medians per point, the throughput ratio 2 / 1 per
# kind, parrot's CPU per thread (from /proc/PID/task/*/stat around each wrk
# run; threads by the names parrot gives them), and for real misses the insert rate (parrot_cache_stores_total
# during the run) and the share of stores dropped
# (parrot_cache_stores_dropped_total, when parrot has that counter).
# Prints a markdown table, also written to $1 when given, and appends `key
# value` lines to $2 when given (for bench/run.sh).
#
# BENCH_PROFILE=DIR also records each run with `perf record --call-graph
# dwarf` on parrot (which slows it: those runs' numbers are not the
# scenario's) and writes DIR/NAME-rROUND.txt: each thread's share of the
# samples, then per thread by name where its own samples fall (by library, by
# function) and parrot's functions with their callees (as shares of all the
# samples: a function's share of its thread is its number over the thread's).
#
# BENCH_PARROT=PATH runs another parrot binary (another branch's build).
#
# Needs: nginx, wrk, taskset (util-linux), build/parrot; perf (linux-perf)
# for BENCH_PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/null}
kv=${2:-/dev/null}
# shellcheck source=bench/lib.sh
. bench/lib.sh
conns=${BENCH_SCALING_CONNS:-64}
pass_port=18192
real_port=18193
ncpu=$(nproc)
if [ "$ncpu" -ge 3 ]; then
    cpus1=${BENCH_CPUS1:-0} cpus2=${BENCH_CPUS2:-0,1} load_cpus=${BENCH_LOAD_CPUS:-2-$((ncpu - 1))}
else
    cpus1=${BENCH_CPUS1:-1} cpus2=${BENCH_CPUS2:-0,1} load_cpus=${BENCH_LOAD_CPUS:-0}
fi
if [ "$ncpu" -lt 2 ]; then
    echo "bench: scaling needs 2 CPUs, this machine has $ncpu" | tee "$out" >&2
    exit 0
fi
bench_setup
[ -z "${BENCH_PROFILE:-}" ] || mkdir -p "$BENCH_PROFILE"
command -v taskset >/dev/null || { echo "bench: taskset is missing (util-linux)" >&2; exit 1; }

# The origin's nginx master and workers go to the load's CPUs.
pin_tree() { # cpus pid: the process and its children, every thread
    local c
    taskset -a -p -c "$1" "$2" >/dev/null
    for c in $(ps -o pid= --ppid "$2"); do taskset -a -p -c "$1" "$c" >/dev/null; done
}
pin_tree "$load_cpus" "$(cat "$PEERS_DIR/nginx.pid")"
export PIN_WRK=$load_cpus
tick=$(getconf CLK_TCK)

# thread_names PID > FILE: "tid name" per thread, from /proc: parrot names
# each thread it starts (cache/base/thread.h: parrot-worker, parrot-store,
# parrot-wal, ...); the one left with the process's name is the main thread.
thread_names() {
    local pid=$1 t comm
    for t in /proc/"$pid"/task/*; do
        t=${t##*/}
        comm=$(cat "/proc/$pid/task/$t/comm")
        [ "$comm" = parrot ] && comm=main
        echo "$t $comm"
    done
}

# cpu_ticks PID: "tid ticks waited-ns" per thread: user + system CPU so far,
# and the time it spent runnable but waiting for a CPU (schedstat).
cpu_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        # After the name's closing parenthesis utime is the 12th field. A
        # thread may end between the glob and the reads.
        { { sed 's/.*) //' "$t/stat" && cat "$t/schedstat"; } 2>/dev/null || true; } |
            awk -v t="${t##*/}" 'NR == 1 { c = $12 + $13 } NR == 2 { print t, c, $2 }'
    done
}

# profile_start PID BASE: perf on PID's threads into BASE.data (pid in $tmp/perf.pid).
profile_start() {
    perf record -q -F 499 --call-graph dwarf,16384 -p "$1" -o "$2.data" 2>"$2.log" &
    echo $! >"$tmp/perf.pid"
    sleep 0.5 # perf attaches before the load starts
}

# profile_stop BASE NAMES: stop perf and write BASE.txt from BASE.data.
profile_stop() {
    local pid t who
    pid=$(cat "$tmp/perf.pid")
    kill -INT "$pid"
    wait "$pid" || true
    rm -f "$tmp/perf.pid"
    # report ARGS...: perf report's table of BASE.data, without its comments.
    report() { { perf report -i "$1.data" --stdio -g none "${@:2}" 2>/dev/null || true; } | sed -e '/^#/d' -e '/^$/d'; }
    {
        echo "== samples per thread"
        report "$1" --no-children --sort pid
        while read -r t who; do
            echo
            echo "== $who (thread $t): self, by library"
            report "$1" --tid="$t" --percentage relative --no-children --sort dso,symbol |
                awk '{ s[$2] += $1 } END { for (d in s) if (s[d] >= 1) printf "%7.2f%%  %s\n", s[d], d }' | sort -rn
            echo "== $who (thread $t): self, by function"
            report "$1" --tid="$t" --percentage relative --no-children --sort dso,symbol | awk 'NR <= 15'
            echo "== $who (thread $t): parrot's functions with their callees, of all of parrot's samples"
            report "$1" --tid="$t" --children --no-inline --sort dso,symbol --percent-limit 1 |
                awk '$3 == "parrot" && ++n <= 25'
        done <"$2"
    } >"$1.txt"
}

# load_seconds: "who seconds" lines, the CPU so far of each of the origin's
# nginx processes (the master's children come and go: its cache loader exits
# after a minute) and, as "children", of this shell's finished children
# (around a run: wrk's). No subshell: `times` must speak for this one.
load_seconds() {
    local m p
    m=$(cat "$PEERS_DIR/nginx.pid")
    times >"$tmp/times"
    awk 'NR == 2 { split($1, a, /[ms]/); split($2, b, /[ms]/); print "children", a[1] * 60 + a[2] + b[1] * 60 + b[2] }' "$tmp/times"
    for p in $m $(ps -o pid= --ppid "$m"); do
        { sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true; } | awk -v p="$p" -v hz="$tick" '{ print p, ($12 + $13) / hz }'
    done
}

# cpu_jiffies: "cpuN total idle" per CPU, from /proc/stat.
cpu_jiffies() { awk '/^cpu[0-9]/ { t = 0; for (i = 2; i <= NF; i++) t += $i; print $1, t, $5 + $6 }' /proc/stat; }

# measure NAME ROUND PORT: one wrk run against the parrot on PORT (its pid in
# $tmp/PORT.pid, its threads' names in $tmp/PORT.names), recording the wrk
# result, the CPU each of its threads used and the time it waited for one
# ("NAME ROUND thread-name cpu-share waited-share" in $tmp/cpu, shares of the
# run's wall time), how busy each CPU was ("NAME ROUND
# cpuN busy-share" in $tmp/busy: parrot, the load and anything else), the
# load's CPU ("NAME ROUND cores" in $tmp/load: wrk and the origin) and its
# store counters ("NAME ROUND stored-during-the-run stored-in-all dropped
# misses hits seconds" in $tmp/stores; dropped is - when parrot does not
# count drops).
measure() {
    local name=$1 round=$2 port=$3 pid t0 t1 wall s0 sr s1 d0 d1 m0 m1 h0 h1 q now script=post.lua
    pid=$(cat "$tmp/$port.pid")
    [ "$name" = "${name#real}" ] || script=post_unique.lua
    s0=$(metric "$port" parrot_cache_stores_total)
    d0=$(metric "$port" parrot_cache_stores_dropped_total)
    m0=$(metric "$port" parrot_cache_misses_total)
    h0=$(metric "$port" parrot_cache_hits_total)
    [ -z "${BENCH_PROFILE:-}" ] || profile_start "$pid" "$BENCH_PROFILE/$name-r$round"
    cpu_ticks "$pid" >"$tmp/ticks0"
    cpu_jiffies >"$tmp/jiffies0"
    load_seconds >"$tmp/load0"
    t0=$(date +%s%N)
    SCRIPT=$script run "$name" "$(url "$port")" "$shared/request.json" -t1 -c"$conns"
    t1=$(date +%s%N)
    load_seconds >"$tmp/load1"
    cpu_ticks "$pid" >"$tmp/ticks1"
    cpu_jiffies >"$tmp/jiffies1"
    [ -z "${BENCH_PROFILE:-}" ] || profile_stop "$BENCH_PROFILE/$name-r$round" "$tmp/$port.names"
    sr=$(metric "$port" parrot_cache_stores_total)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    awk -v n="$name $round" -v hz="$tick" -v w="$wall" 'FNR == 1 { f++ }
        f == 1 { who[$1] = $2; next }
        f == 2 { a[$1] = $2; q[$1] = $3; next }
        { printf "%s %s %.4f %.4f\n", n, (($1 in who) ? who[$1] : "parrot"), ($2 - a[$1]) / hz / w,
            ($3 - q[$1]) / 1e9 / w }' \
        "$tmp/$port.names" "$tmp/ticks0" "$tmp/ticks1" >>"$tmp/cpu"
    awk -v n="$name $round" 'FNR == NR { t[$1] = $2; i[$1] = $3; next }
        { printf "%s %s %.4f\n", n, $1, 1 - ($3 - i[$1]) / ($2 - t[$1]) }' \
        "$tmp/jiffies0" "$tmp/jiffies1" >>"$tmp/busy"
    awk -v n="$name $round" -v w="$wall" 'FNR == NR { a[$1] = $2; next } $1 in a { s += $2 - a[$1] }
        END { printf "%s %.4f\n", n, s / w }' "$tmp/load0" "$tmp/load1" >>"$tmp/load"
    [ -n "$s0" ] || return 0 # --cache false has no store counters
    # Stores that finish after the answer (a store queue) may still be under
    # way: wait, at most 5 s, until none is queued (parrot_cache_store_queue,
    # when parrot has it) or else until the counter stops moving.
    s1=$sr
    for _ in $(seq 25); do
        q=$(metric "$port" parrot_cache_store_queue)
        [ "${q:-x}" = 0 ] && break
        sleep 0.2
        now=$(metric "$port" parrot_cache_stores_total)
        [ -z "$q" ] && [ "$now" = "$s1" ] && break
        s1=$now
    done
    s1=$(metric "$port" parrot_cache_stores_total)
    d1=$(metric "$port" parrot_cache_stores_dropped_total)
    m1=$(metric "$port" parrot_cache_misses_total)
    h1=$(metric "$port" parrot_cache_hits_total)
    echo "$name $round $((sr - s0)) $((s1 - s0)) $([ -n "$d0" ] && echo $((d1 - d0)) || echo -)" \
        "$((m1 - m0)) $((h1 - h0)) $wall" >>"$tmp/stores"
}

for r in $(seq "$rounds"); do
    for n in 1 2; do
        cpus=$cpus1
        [ "$n" = 1 ] || cpus=$cpus2
        PIN_PARROT=$cpus start_parrot $pass_port "$tmp/$pass_port.pid" --threads "$n" --cache false
        PIN_PARROT=$cpus start_parrot $real_port "$tmp/$real_port.pid" --threads "$n"
        for port in $pass_port $real_port; do
            thread_names "$(cat "$tmp/$port.pid")" >"$tmp/$port.names"
        done
        measure "pass-t$n" "$r" $pass_port
        measure "real-t$n" "$r" $real_port
        for port in $pass_port $real_port; do
            stop_parrot "$tmp/$port.pid"
            rm -rf "$tmp/data-$port"
        done
    done
    echo "round $r done"
done

# ---- report -----------------------------------------------------------------
two() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
pct() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.0f%%", 100 * v }'; }
# cores NAME: parrot's CPU in cores (all threads), the median over the rounds;
# busiest NAME: the busiest thread's share of a core, the median over rounds.
cores() { awk -v n="$1" '$1 == n { c[$2] += $4 } END { for (r in c) print c[r] }' "$tmp/cpu" | median; }
# load NAME: wrk's and the origin's CPU in cores; others NAME: every CPU's busy
# time less parrot's and the load's (other processes on the machine), medians.
load() { awk -v n="$1" '$1 == n { print $3 }' "$tmp/load" | median; }
others() {
    awk -v n="$1" 'FILENAME ~ /busy$/ && $1 == n { o[$2] += $4 }
        FILENAME ~ /cpu$/ && $1 == n { o[$2] -= $4 }
        FILENAME ~ /load$/ && $1 == n { o[$2] -= $3 }
        END { for (r in o) print (o[r] > 0 ? o[r] : 0) }' "$tmp/busy" "$tmp/cpu" "$tmp/load" | median
}
# busy NAME: each CPU's busy share, medians over the rounds ("cpu0 95%, ...").
busy() {
    local c
    awk -v n="$1" '$1 == n { print $3 }' "$tmp/busy" | sort -u | while read -r c; do
        printf '%s %s\n' "$c" "$(pct "$(awk -v n="$1" -v c="$c" '$1 == n && $3 == c { print $4 }' "$tmp/busy" | median)")"
    done | paste -sd, | sed 's/,/, /g'
}
busiest() { awk -v n="$1" '$1 == n && $4 > m[$2] { m[$2] = $4 } END { for (r in m) print m[r] }' "$tmp/cpu" | median; }
# stores NAME COLUMN: a column of the store lines, the median over the rounds.
stores() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$tmp/stores" | median; }
insert_rate() { awk -v n="$1" '$1 == n { print $3 / $8 }' "$tmp/stores" | median; }
dropped() { # the share of stores dropped, over every round; n/a when not counted
    awk -v n="$1" '$1 == n { if ($5 == "-") na = 1; s += $4; d += $5 }
        END { if (na || s + d == 0) print "n/a"; else printf "%.4f", d / (s + d) }' "$tmp/stores"
}
pass=$(ratio "$(stat pass-t2 2)" "$(stat pass-t1 2)")
real=$(ratio "$(stat real-t2 2)" "$(stat real-t1 2)")
{
    echo "# Scaling: the miss path with 1 and 2 HTTP worker threads"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $ncpu CPUs, $(uname -r). wrk -t1 -c$conns and the nginx origin on CPU"
    echo "$load_cpus; parrot --threads 1 on CPU $cpus1, --threads 2 on CPUs $cpus2$([ "$ncpu" -ge 3 ] || echo " (sharing CPU 0 with the load)")."
    echo "Medians of $rounds alternating rounds of ${secs}s, each on fresh parrots. CPU from /proc/PID/task/*/stat."
    echo
    echo "| kind | worker threads | parrot CPUs | req/s | p50 µs | p99 µs | errors | parrot CPU, cores | busiest thread, of a core | load CPU, cores | others' CPU, cores | CPUs busy |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for kind in pass real; do
        for n in 1 2; do
            c=$cpus1
            [ "$n" = 1 ] || c=$cpus2
            k=$kind-t$n
            echo "| $kind | $n | $c | $(stat "$k" 2) | $(stat "$k" 3) | $(stat "$k" 4) | $(stat "$k" 5) |" \
                "$(two "$(cores "$k")") | $(pct "$(busiest "$k")") | $(two "$(load "$k")") | $(two "$(others "$k")") |" \
                "$(busy "$k") |"
        done
    done
    echo
    echo "Throughput with 2 worker threads / 1 (target >= 1.7): pass-through **$pass**, real misses **$real**."
    echo
    echo "Real misses: stores per second during the run $(insert_rate real-t1 | awk '{ printf "%.0f", $1 }') (1 worker)"
    echo "and $(insert_rate real-t2 | awk '{ printf "%.0f", $1 }') (2 workers); stored / missed $(ratio "$(stores real-t2 4)" "$(stores real-t2 6)") (2 workers);"
    echo "stores dropped, of those attempted (dropped / (stored + dropped)): $(dropped real-t1) / $(dropped real-t2) (1 / 2 workers)$(
        [ "$(dropped real-t2)" != n/a ] || echo "; n/a: this parrot has no parrot_cache_stores_dropped_total")."
    echo
    echo "CPU per thread (means over the rounds; threads by the names parrot gives them, main the main thread):"
    echo
    echo "| kind | worker threads | thread | threads | CPU, of a core | of parrot's CPU | the busiest one, of a core | runnable, waiting for a CPU |"
    echo "|---|---|---|---|---|---|---|---|"
    # Per kind and thread name: how many, their CPU, their share of parrot's,
    # and the busiest one of that name (HTTP workers that do not share the
    # connections evenly show here).
    awk '{ k = $1 SUBSEP $3; cpu[k] += $4; all[$1] += $4; wait[k] += $5; cnt[k]++; rounds[$1 SUBSEP $2] = 1
           if ($4 > top[k SUBSEP $2]) top[k SUBSEP $2] = $4 }
        END { for (r in rounds) { split(r, p, SUBSEP); nr[p[1]]++ }
              for (t in top) { split(t, p, SUBSEP); most[p[1] SUBSEP p[2]] += top[t] }
              for (k in cpu) { split(k, p, SUBSEP); if (cpu[k] / nr[p[1]] >= 0.005)
                  printf "| %s | %s | %s | %d | %.0f%% | %.0f%% | %.0f%% | %.0f%% |\n", substr(p[1], 1, 4),
                      substr(p[1], 7), p[2], cnt[k] / nr[p[1]], 100 * cpu[k] / nr[p[1]], 100 * cpu[k] / all[p[1]],
                      100 * most[k] / nr[p[1]], 100 * wait[k] / nr[p[1]] } }' "$tmp/cpu" | sort -t'|' -k2,2 -k3,3n -k6,6nr
    if awk '$7 > 0 { f = 1 } END { exit !f }' "$tmp/stores"; then
        echo
        echo "Warning: $(awk '{ s += $7 } END { print s }' "$tmp/stores") real-miss requests hit the cache."
    fi
} | tee "$out"
printf 'scaling_pass_ratio %s\nscaling_real_ratio %s\nscaling_real_dropped %s\n' \
    "$pass" "$real" "$(dropped real-t2)" >>"$kv"
