#!/bin/sh
# Compiles Princeton WordNet 3.0 (Debian's wordnet-base: /usr/share/wordnet;
# WordNet licence, permissive) into the table the hit verifier reads
# (cache/match/wordnet.c documents the format): lemmas, synsets, hypernyms,
# instances, antonyms, derivations and the exception lists, about 7.5 MB.
#
#   deploy/fetch-wordnet.sh [OUT] [DICTDIR]
#       default OUT: build/wordnet.bin; DICTDIR: /usr/share/wordnet
#
# deploy/install-deps.sh installs wordnet-base. Nothing is downloaded here;
# needs a C compiler and make.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/build/wordnet.bin}
dict=${2:-/usr/share/wordnet}
build=${BUILD:-build}

if [ ! -f "$dict/data.noun" ]; then
    echo "fetch-wordnet: no WordNet under $dict (apt-get install wordnet-base, or deploy/install-deps.sh)" >&2
    exit 1
fi
make -s -C "$here" "$build/deploy/wordnet_convert"
mkdir -p "$(dirname "$out")"
# Written next to OUT and renamed: a reader never sees half a table.
"$here/$build/deploy/wordnet_convert" "$dict" "$out.tmp"
mv "$out.tmp" "$out"
