#!/bin/sh
# Side-by-side cost benchmark of stapler against nginx, HAProxy, hitch and h2o on loopback.
#   tests/bench/run.sh [--quick] [--stapler-fast build-fast/stapler] [bench.py options...]
# (see tests/bench/README.md)
# As root, installs the Debian packages it needs when they are missing; then runs bench.py
# with /usr/bin/python3 (Debian's, not a python3 earlier on PATH), pinned to CPU 1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# command -> Debian package
need="hitch:hitch haproxy:haproxy nginx:nginx h2o:h2o wrk:wrk h2load:nghttp2-client
strace:strace openssl:openssl curl:curl taskset:util-linux /usr/bin/python3:python3"
missing=""
for pair in $need; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "run.sh: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "run.sh: installing$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
    # Debian starts nginx, haproxy and h2o as system services on install (nginx and h2o on
    # port 80): they take no part in the benchmark and would only add noise. Stop them.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        for svc in nginx haproxy h2o hitch; do
            if systemctl is-active --quiet "$svc" 2>/dev/null; then
                echo "run.sh: stopping the $svc system service" >&2
                systemctl stop "$svc" || true
            fi
        done
    fi
fi

if [ ! -x "$repo/build/stapler" ]; then
    echo "run.sh: $repo/build/stapler missing: running make build" >&2
    make -C "$repo" build >&2
fi

if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: warning: fewer than 2 CPUs; proxy and load generator will share one" >&2
    exec /usr/bin/python3 "$here/bench.py" --stapler "$repo/build/stapler" "$@"
fi
exec taskset -c 1 /usr/bin/python3 "$here/bench.py" --stapler "$repo/build/stapler" "$@"
