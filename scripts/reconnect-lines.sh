#!/usr/bin/env bash
# The code each client of the `reconnect` bench runs every round, counted by callgrind
# rather than modelled: distinct instructions, their bytes, the 64-byte lines and 4 KiB
# pages they lie on, and, for each client, what it runs that the hand-written loop does not,
# by function (scripts/code-lines.py). Where reconnect-cache.sh counts misses in a model,
# this says which code a round needs at all, and how densely it lies (BENCHMARKS.md, F7).
# Each client runs with stubborn-io's rounds between its own, as in reconnect-cache.sh.
#
# Usage: scripts/reconnect-lines.sh [N] [CLIENT...]   (default N = 100, clients: ours)
# Needs valgrind (Debian: apt-get install -y valgrind) and binutils (objdump, nm).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/valgrind-bench.sh
. scripts/valgrind-bench.sh
reconnect_setup reconnect-lines.sh "$@"
specs=()
for client in hand "${clients[@]}"; do
    for rounds in "$n" $((2 * n)); do
        RECONNECT_ONLY="$client,stubborn" RECONNECT_ROUNDS="$rounds" valgrind \
            --tool=callgrind --dump-instr=yes --dump-line=no --compress-pos=no \
            --compress-strings=no --callgrind-out-file="$out/$client.$rounds" "$exe" --bench \
            >/dev/null 2>&1
    done
    specs+=("$client=$out/$client")
done
python3 scripts/code-lines.py "$exe" "$n" hand "${specs[@]}"
