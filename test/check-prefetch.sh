#!/bin/sh
# check-prefetch.sh BUILD: the prefetches the HNSW walk and the lexical
# table ask for are in the object code. GCC deletes a loop of nothing but
# __builtin_prefetch() calls (cache/base/prefetch.h), which left the walk
# without them, silently, until session 15; this fails the lint instead.
set -eu
build=${1:-build}
fail=0
# object-file function (a prefix: GCC may suffix a clone, ".constprop.0")
for want in cache/index/hnsw.o:search_layer \
    cache/index/hnsw.o:hnsw_search cache/match/terms.o:terms_weigh \
    cache/match/terms.o:termstats_add; do
    obj=$build/${want%%:*}
    fn=${want#*:}
    n=$(objdump -d --no-show-raw-insn "$obj" |
        awk -v fn="$fn" '/^[0-9a-f]+ <.*>:$/ { f = $2; sub(/^</, "", f); sub(/[.>].*$/, "", f) }
                         f == fn && /prefetch/ { n++ } END { print n + 0 }')
    if [ "$n" -eq 0 ]; then
        echo "check-prefetch: no prefetch left in $fn ($obj)" >&2
        fail=1
    fi
done
exit $fail
