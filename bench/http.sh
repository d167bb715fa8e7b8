#!/usr/bin/env bash
# bench/http.sh - parrot against nginx, side by side, in one run.
#
# Starts the peers from ../shared/bench (nginx origin :18080, proxy_pass
# :18081, proxy_cache :18082) and two parrots in front of the same origin:
# one with the cache (exact and semantic hits) and one with --cache false
# (the miss path: pure proxying); real misses (post_unique.lua: a new
# question on every request, embedded, forwarded, stored and indexed) go to
# the caching one, against nginx proxy_pass with the same script. Each
# scenario alternates peer and parrot
# BENCH_ROUNDS times with the same wrk command and keeps the medians.
# Prints a markdown table, also written to $1 when given, and, when $2 is
# given, writes the ratios as `key value` lines to $2 (for bench/run.sh, which
# puts the table in bench/results.md).
#
# Needs: nginx, wrk (Debian packages), build/parrot.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/null}
kv=${2:-/dev/null}
# shellcheck source=bench/lib.sh
. bench/lib.sh
hit_port=18190
miss_port=18191
bench_setup
start_parrot $hit_port "$tmp/hit.pid"
start_parrot $miss_port "$tmp/miss.pid" --cache false

req=$shared/request.json
# A paraphrase of the warmed question: a semantic hit, not an exact one (a
# contraction and a WordNet synonym, mention/cite, so the verifier works for
# it). The verifier refuses the earlier paraphrases: one added "city" and
# put the instruction first (a word one side does not account for, and an
# order where the other asks a question); the next said "name", which shares
# only a later sense with "mention" since synonyms count the first four
# senses (docs/quality.md).
sed "s/What is the capital of France? Please answer in one or two sentences and mention one landmark there./What's the capital of France? Please answer in one or two sentences and cite one landmark there./" \
    "$req" >"$tmp/semantic.json"
post() { # url body -> headers
    curl -s -o /dev/null -D - -X POST -H 'Content-Type: application/json' \
        -H 'Authorization: Bearer sk-bench' --data-binary @"$2" "$1"
}
post "http://127.0.0.1:18082/v1/chat/completions" "$req" >/dev/null
post "http://127.0.0.1:$hit_port/v1/chat/completions" "$req" >/dev/null
kind=$(post "http://127.0.0.1:$hit_port/v1/chat/completions" "$tmp/semantic.json" |
    tr -d '\r' | sed -n 's/^Cache-Status: //p')
echo "paraphrase lookup: $kind"
# A verifier change can turn the paraphrase away: the semantic rows would
# then time misses.
case $kind in
*detail=semantic*) ;;
*) echo "bench: the paraphrase is not a semantic hit ($kind)" | tee -a "$tmp/warn" >&2 ;;
esac

# SCRIPT=post_unique.lua makes every request a new question (a real miss).
# /metrics waits for the store queue, so its counters include every answer
# of the run before it.
hits() { metric $hit_port parrot_cache_hits_total; }
stores() { echo "$(metric $hit_port parrot_cache_stores_total) $(metric $hit_port parrot_cache_stores_dropped_total)"; }
for r in $(seq "$rounds"); do
    for load in "-t2 -c64" "-t1 -c1"; do
        tag=$(echo "$load" | tr -d ' -')
        # shellcheck disable=SC2086
        run "nginx-cache-$tag" "$(url 18082)" "$req" $load
        # shellcheck disable=SC2086
        run "parrot-exact-$tag" "$(url $hit_port)" "$req" $load
        # shellcheck disable=SC2086
        run "parrot-semantic-$tag" "$(url $hit_port)" "$tmp/semantic.json" $load
        # shellcheck disable=SC2086
        run "origin-$tag" "$(url 18080)" "$req" $load
        # shellcheck disable=SC2086
        run "nginx-proxy-$tag" "$(url 18081)" "$req" $load
        # shellcheck disable=SC2086
        run "parrot-miss-$tag" "$(url $miss_port)" "$req" $load
        # Real misses: a new question every request, so the caching parrot
        # embeds, looks up, forwards, stores and indexes each one. wrk numbers
        # its questions from 1 in every run, so each run gets a system prompt
        # of its own (a new partition): no question of an earlier run hits.
        sed "s/answers concisely\./answers concisely (run $r $tag)./" "$req" >"$tmp/unique.json"
        grep -q "(run $r $tag)" "$tmp/unique.json" || { echo "bench: request.json changed" >&2; exit 1; }
        # shellcheck disable=SC2086
        SCRIPT=post_unique.lua run "nginx-proxy-unique-$tag" "$(url 18081)" "$tmp/unique.json" $load
        h0=$(hits)
        read -r s0 d0 <<<"$(stores)"
        # shellcheck disable=SC2086
        SCRIPT=post_unique.lua run "parrot-realmiss-$tag" "$(url $hit_port)" "$tmp/unique.json" $load
        [ "$(hits)" = "$h0" ] || echo "bench: $(($(hits) - h0)) real-miss requests hit the cache" | tee -a "$tmp/warn" >&2
        read -r s1 d1 <<<"$(stores)"
        # "TAG stored dropped" per run; dropped is - without the counter
        if [ -n "${d1:-}" ]; then dd=$((d1 - d0)); else dd=-; fi
        echo "$tag $((s1 - s0)) $dd" >>"$tmp/stores"
        # The same without digits in the questions: post_unique.lua's differ
        # only in their numbers, which parrot keeps apart (each question is
        # stored alone); these all go into one HNSW index.
        sed "s/answers concisely\./answers concisely (words $r $tag)./" "$req" >"$tmp/words.json"
        h0=$(hits)
        # shellcheck disable=SC2086
        SCRIPT=bench/post_unique_words.lua run "parrot-realmiss-words-$tag" "$(url $hit_port)" "$tmp/words.json" $load
        [ "$(hits)" = "$h0" ] || echo "bench: $(($(hits) - h0)) real-miss requests (words) hit the cache" | tee -a "$tmp/warn" >&2
    done
    echo "round $r done"
done

# Latency parrot (or nginx) adds over the origin alone: p50 (column 3), or
# the percentile in column $3.
added() { echo $(($(stat "$1-$2" "${3:-3}") - $(stat "origin-$2" "${3:-3}"))); }
# The ratio of two added latencies; n/a when either is not above the origin's
# own (a p99 inside the origin's noise is no measurement, and a negative
# ratio would read as a target met).
ratio_added() { if [ "$1" -gt 0 ] && [ "$2" -gt 0 ]; then ratio "$1" "$2"; else echo n/a; fi; }
{
    echo "# HTTP benchmarks: parrot vs nginx (same run)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), wrk and servers on the same machine;"
    echo "medians of $rounds alternating rounds of ${secs}s. Paraphrase lookup: \`$kind\`."
    echo
    echo "| scenario | load | req/s | p50 µs | p99 µs | errors |"
    echo "|---|---|---|---|---|---|"
    for tag in t2c64 t1c1; do
        for n in nginx-cache parrot-exact parrot-semantic origin nginx-proxy parrot-miss \
            nginx-proxy-unique parrot-realmiss parrot-realmiss-words; do
            echo "| $n | $tag | $(stat "$n-$tag" 2) | $(stat "$n-$tag" 3) | $(stat "$n-$tag" 4) | $(stat "$n-$tag" 5) |"
        done
    done
    echo
    echo "| ratio | t2c64 | t1c1 |"
    echo "|---|---|---|"
    row() { # label key numerator-name denominator-name column
        local a b
        a=$(ratio "$(stat "$3-t2c64" "$5")" "$(stat "$4-t2c64" "$5")")
        b=$(ratio "$(stat "$3-t1c1" "$5")" "$(stat "$4-t1c1" "$5")")
        echo "| $1 | $a | $b |"
        printf '%s_t2c64 %s\n%s_t1c1 %s\n' "$2" "$a" "$2" "$b" >>"$kv"
    }
    row "exact-hit throughput, parrot / nginx proxy_cache (target >= 1.0)" exact_rps parrot-exact nginx-cache 2
    row "exact-hit p99, parrot / nginx proxy_cache (target <= 1.5)" exact_p99 parrot-exact nginx-cache 4
    row "semantic-hit throughput / parrot exact-hit (target >= 0.7)" semantic_rps parrot-semantic parrot-exact 2
    a=$(ratio_added "$(added parrot-miss t2c64)" "$(added nginx-proxy t2c64)")
    b=$(ratio_added "$(added parrot-miss t1c1)" "$(added nginx-proxy t1c1)")
    echo "| pass-through: added p50 latency, parrot / nginx proxy_pass (target <= 1.0) | $a | $b |"
    printf 'miss_p50_t2c64 %s\nmiss_p50_t1c1 %s\n' "$a" "$b" >>"$kv"
    a=$(ratio_added "$(added parrot-miss t2c64 4)" "$(added nginx-proxy t2c64 4)")
    b=$(ratio_added "$(added parrot-miss t1c1 4)" "$(added nginx-proxy t1c1 4)")
    echo "| pass-through: added p99 latency, parrot / nginx proxy_pass (target <= 1.0 at -c1) | $a | $b |"
    printf 'miss_p99_t2c64 %s\nmiss_p99_t1c1 %s\n' "$a" "$b" >>"$kv"
    row "pass-through throughput, parrot / nginx proxy_pass (target >= 1.0 at -c64)" miss_rps parrot-miss nginx-proxy 2
    a=$(ratio_added "$(added parrot-realmiss t2c64)" "$(added nginx-proxy-unique t2c64)")
    b=$(ratio_added "$(added parrot-realmiss t1c1)" "$(added nginx-proxy-unique t1c1)")
    row "real misses (a new question each, stored): throughput, parrot / nginx proxy_pass (target >= 0.5 at -c64)" realmiss_rps parrot-realmiss nginx-proxy-unique 2
    row "real misses without digits (one HNSW index): throughput, parrot / nginx proxy_pass" realmiss_words_rps parrot-realmiss-words nginx-proxy-unique 2
    echo "| real misses: added p50 latency, parrot / nginx proxy_pass (target <= 1.0 at -c1) | $a | $b |"
    printf 'realmiss_p50_t2c64 %s\nrealmiss_p50_t1c1 %s\n' "$a" "$b" >>"$kv"
    a=$(ratio_added "$(added parrot-realmiss t2c64 4)" "$(added nginx-proxy-unique t2c64 4)")
    b=$(ratio_added "$(added parrot-realmiss t1c1 4)" "$(added nginx-proxy-unique t1c1 4)")
    echo "| real misses: added p99 latency, parrot / nginx proxy_pass (target <= 1.0 at -c1) | $a | $b |"
    printf 'realmiss_p99_t2c64 %s\nrealmiss_p99_t1c1 %s\n' "$a" "$b" >>"$kv"
    echo
    for tag in t2c64 t1c1; do
        awk -v t="$tag" '$1 == t { s += $2; if ($3 == "-") na = 1; else d += $3 }
            END { if (na) printf "%s: %d stored, dropped n/a (no parrot_cache_stores_dropped_total)\n", t, s
                  else printf "%s: %d stored, %d dropped (%.2f%%)\n", t, s, d, s + d ? 100 * d / (s + d) : 0 }' "$tmp/stores"
    done | paste -sd ';' | sed 's/;/; /; s/^/Real misses, stores over every round: /; s/$/./'
    echo
    echo "Added p50 over the origin alone, µs (t2c64 / t1c1): pass-through parrot $(added parrot-miss t2c64) / $(added parrot-miss t1c1), nginx proxy_pass $(added nginx-proxy t2c64) / $(added nginx-proxy t1c1); real misses parrot $(added parrot-realmiss t2c64) / $(added parrot-realmiss t1c1), nginx proxy_pass $(added nginx-proxy-unique t2c64) / $(added nginx-proxy-unique t1c1)."
    if [ -s "$tmp/warn" ]; then
        echo
        sed 's/^/Warning: /' "$tmp/warn"
    fi
} | tee "$out"
