#!/bin/sh
# Proves the README's first command on this machine, as a newcomer runs it:
# `make run` installs what it needs, builds parrot and both tables (word
# vectors, WordNet) and serves in the best default mode. Run by .ci/run on a
# fresh machine; the test suite's readme.test.mjs runs the quick-start
# snippets themselves.
set -eu
cd "$(dirname "$0")/.."
port=${PORT:-18181}
log=$(mktemp)
setsid make run ARGS="--listen 127.0.0.1:$port --upstream http://127.0.0.1:9/v1 --persist false" \
    >"$log" 2>&1 &
pid=$!
stop() {
    kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null || true
    pkill -TERM -f -- "--listen 127.0.0.1:$port " 2>/dev/null || true
    rm -f "$log"
}
trap stop EXIT
# The first run downloads the word vectors (118 MB) and builds everything.
i=0
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 $pid 2>/dev/null; then
        echo "readme-run: make run did not serve /healthz" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    sleep 0.5
done
line=$(grep '"msg":"embedder"' "$log" | tail -n 1)
case "$line" in
*'"name":"builtin+vectors"'*'"wordnet":"build/wordnet.bin"'*) ;;
*)
    echo "readme-run: make run is not in the best default mode: $line" >&2
    exit 1
    ;;
esac
echo "readme-run: make run serves in the best default mode (word vectors and WordNet)"
