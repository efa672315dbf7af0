#!/usr/bin/env bash
# Mutation testing of the persistent-connection core (or of the driver) with cargo-mutants.
#
# Usage:
#   scripts/mutants.sh [--driver] [--jobs N] [--timeout SECS] [--shard K/N]
#                      [--out DIR] [FILE...] [-- EXTRA-CARGO-MUTANTS-ARGS...]
#
#   FILE...        Files to mutate, relative to the workspace root. Default (core mode):
#                    crates/persistent-connection/src/machine.rs
#                    crates/persistent-connection/src/policy.rs
#                    crates/persistent-connection/src/types.rs
#                    crates/persistent-connection/src/queue.rs
#                  Default (--driver mode): every file of crates/persistent-connection-driver/src
#                  (the whole package; no --file is passed).
#   --driver       Mutate the driver crate (crates/persistent-connection-driver/src) and test
#                  each mutant with the tests of the driver, the Tokio and smol adapters
#                  (persistent-connection-tokio, -smol: the async-io timer), the scenario suite
#                  (persistent-connection-scenarios) and the driver simulation
#                  (persistent-connection-driver-sim).
#                  Without it (core mode), the core (package persistent-connection) is mutated
#                  and each mutant is tested with the core's own tests and doctests plus the
#                  tests crate (persistent-connection-tests: rule tests, property tests).
#   --jobs N       Mutants built and tested in parallel (default 2; each job copies the tree
#                  and has its own target directory, so keep it at most the number of cores).
#   --timeout S    Seconds a mutant's build or test run may take before it counts as a
#                  timeout (default: 4 x the unmutated test run the script times first, at
#                  least 90: the scenario suite's own hang guards fire within 30 s and must
#                  fail the run before this does). A hang therefore counts as "timeout" and never stalls the run.
#   --shard K/N    Test only the K-th of N shards of the mutants (0-based), to sample a
#                  large file such as machine.rs, or to split the run across machines.
#   --out DIR      Where cargo-mutants writes its mutants.out directory
#                  (default: target/mutants, or target/mutants-driver with --driver).
#   -- ARGS        Passed to `cargo mutants` as they are (e.g. `-- --list`, `-- --re delay`,
#                  or `-- --iterate` to resume: mutants caught or unviable in DIR are skipped,
#                  and the score is then of the rest).
#
# cargo-mutants is installed with `cargo install cargo-mutants --locked` if missing. This is
# not part of the default CI path: run it by hand or from a scheduled job.
#
# At the end it prints the number of caught, missed, timed-out and unviable mutants and the
# score, caught / (caught + missed + timeout); unviable mutants (those that do not build)
# do not count. The missed mutants are listed from DIR/mutants.out/missed.txt.
# Missed mutants that no test can tell apart (equivalent mutants) are listed, each with
# why, in scripts/mutants-equivalent.txt; the score is printed with and without them.
#
# Exit status: 0 whatever the score (the score is the output), non-zero if cargo-mutants
# itself fails (e.g. the unmutated tree does not build or its tests fail).
#
# Examples:
#   scripts/mutants.sh                                              # the four core files
#   scripts/mutants.sh crates/persistent-connection/src/queue.rs   # one file
#   scripts/mutants.sh --shard 0/4 crates/persistent-connection/src/machine.rs
#   scripts/mutants.sh --driver --jobs 1

set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=core
jobs=2
timeout=""
shard=""
out=""
files=()
extra=()

while [ $# -gt 0 ]; do
    case "$1" in
        --driver) mode=driver; shift ;;
        --jobs) jobs="$2"; shift 2 ;;
        --jobs=*) jobs="${1#*=}"; shift ;;
        --timeout) timeout="$2"; shift 2 ;;
        --timeout=*) timeout="${1#*=}"; shift ;;
        --shard) shard="$2"; shift 2 ;;
        --shard=*) shard="${1#*=}"; shift ;;
        --out) out="$2"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "mutants.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) files+=("$1"); shift ;;
    esac
done

# No debug info: a mutant's build is mostly linking test binaries, and debug info would only
# slow it (about a third of each build here); nothing reads it.
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
# The core's test binaries end themselves after this long (tests/src/watchdog.rs): a mutant
# that makes a test loop forever then fails within the mutant's timeout instead of using
# it up.
export PC_TEST_WATCHDOG_SECS="${PC_TEST_WATCHDOG_SECS:-40}"

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: installing cargo-mutants" >&2
    cargo install cargo-mutants --locked
fi
echo "mutants.sh: $(cargo mutants --version)" >&2

if [ "$mode" = core ]; then
    mutate_pkg=persistent-connection
    test_pkgs=(persistent-connection persistent-connection-tests)
    if [ ${#files[@]} -eq 0 ]; then
        files=(
            crates/persistent-connection/src/machine.rs
            crates/persistent-connection/src/policy.rs
            crates/persistent-connection/src/types.rs
            crates/persistent-connection/src/queue.rs
        )
    fi
    : "${out:=target/mutants}"
else
    mutate_pkg=persistent-connection-driver
    test_pkgs=(
        persistent-connection-driver
        persistent-connection-tokio
        persistent-connection-smol
        persistent-connection-scenarios
        persistent-connection-driver-sim
    )
    # No --file: every file of the package (crates/persistent-connection-driver/src/**).
    : "${out:=target/mutants-driver}"
fi

# Our own baseline. cargo-mutants' baseline (27.1) tests only the mutated package, not the
# --test-package ones, so it neither checks that the tests crate passes unmutated nor sets a
# test timeout that fits it (it fell to its 20 s floor and real passes timed out). So: build,
# then time one unmutated run of exactly the tests each mutant gets, and give cargo-mutants
# --timeout = max(60, 4 x that) unless --timeout was given.
pkg_args=()
for p in "${test_pkgs[@]}"; do
    pkg_args+=(-p "$p")
done
echo "mutants.sh: baseline: cargo test ${pkg_args[*]}" >&2
cargo test --no-run "${pkg_args[@]}" >&2
b0=$(date +%s)
cargo test "${pkg_args[@]}" >/dev/null 2>&1 || {
    echo "mutants.sh: the unmutated tests fail: cargo test ${pkg_args[*]}" >&2
    exit 1
}
base=$(( $(date +%s) - b0 ))
if [ -z "$timeout" ]; then
    timeout=$(( base * 4 ))
    [ "$timeout" -lt 90 ] && timeout=90
fi
echo "mutants.sh: baseline tests took ${base}s; timeout per mutant ${timeout}s" >&2

args=(--package "$mutate_pkg" --jobs "$jobs" --output "$out" --baseline skip)
for p in "${test_pkgs[@]}"; do
    args+=(--test-package "$p")
done
for f in ${files[@]+"${files[@]}"}; do
    args+=(--file "$f")
done
args+=(--timeout "$timeout")
[ -n "$shard" ] && args+=(--shard "$shard")

mkdir -p "$out"
echo "mutants.sh: cargo mutants ${args[*]} ${extra[*]:-}" >&2
start=$(date +%s)
status=0
# cargo-mutants exits 2 when some mutants are missed and 3 when some time out: that is a
# result, not a failure of the run.
cargo mutants "${args[@]}" ${extra[@]+"${extra[@]}"} || status=$?
elapsed=$(( $(date +%s) - start ))
case "$status" in
    0|2|3) ;;
    *) echo "mutants.sh: cargo mutants failed (exit $status)" >&2; exit "$status" ;;
esac

dir="$out/mutants.out"
count() { if [ -f "$dir/$1.txt" ]; then grep -c . "$dir/$1.txt" || true; else echo 0; fi; }
caught=$(count caught)
missed=$(count missed)
timedout=$(count timeout)
unviable=$(count unviable)
tested=$((caught + missed + timedout))
total=$((tested + unviable))

echo
echo "== mutants: $mode mode, ${#files[@]} file(s) given =="
echo "caught:   $caught"
echo "missed:   $missed"
echo "timeout:  $timedout"
echo "unviable: $unviable"
# Equivalent mutants: missed ones that no test can tell from the original, listed with
# why in scripts/mutants-equivalent.txt as "file: description -- why: ..." (the name
# cargo-mutants prints, without its line and column, so edits elsewhere do not break it).
equivalents="$root/scripts/mutants-equivalent.txt"
strip() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }
is_equivalent() {
    [ -f "$equivalents" ] || return 1
    grep -v '^#' "$equivalents" | sed 's/ -- why: .*//' | grep -qxF -- "$(printf '%s\n' "$1" | strip)"
}
equivalent=0
if [ -f "$dir/missed.txt" ]; then
    while IFS= read -r m; do
        [ -n "$m" ] && is_equivalent "$m" && equivalent=$((equivalent + 1))
    done < "$dir/missed.txt"
fi
percent() { local n=$1 d=$2; local pm=$(( (n * 1000 + d / 2) / d )); echo "$((pm / 10)).$((pm % 10))%"; }
if [ "$tested" -gt 0 ]; then
    echo "score:    $caught / $tested = $(percent "$caught" "$tested")"
    if [ "$equivalent" -gt 0 ] && [ "$tested" -gt "$equivalent" ]; then
        echo "          $equivalent missed mutants are equivalent (scripts/mutants-equivalent.txt);"
        echo "          without them: $caught / $((tested - equivalent)) = $(percent "$caught" $((tested - equivalent)))"
    fi
else
    echo "score:    n/a (no viable mutant)"
fi
if [ ${#files[@]} -gt 1 ]; then
    echo
    echo "per file (caught / missed / timeout / unviable, score):"
    for f in ${files[@]+"${files[@]}"}; do
        fc() { if [ -f "$dir/$1.txt" ]; then grep -c "^$f:" "$dir/$1.txt" || true; else echo 0; fi; }
        c=$(fc caught); m=$(fc missed); t=$(fc timeout); u=$(fc unviable)
        n=$((c + m + t))
        if [ "$n" -gt 0 ]; then
            pm=$(( (c * 1000 + n / 2) / n ))
            echo "  $f: $c / $m / $t / $u, $((pm / 10)).$((pm % 10))%"
        else
            echo "  $f: $c / $m / $t / $u, n/a"
        fi
    done
fi
if [ "$total" -gt 0 ]; then
    echo "time:     ${elapsed}s wall, $((elapsed / total))s wall per mutant with $jobs job(s) (one mutant's build + test: see the log)"
fi
if [ "$missed" -gt 0 ]; then
    echo
    echo "missed mutants (= equivalent, listed with why in scripts/mutants-equivalent.txt):"
    while IFS= read -r m; do
        [ -z "$m" ] && continue
        if is_equivalent "$m"; then echo "  = $m"; else echo "    $m"; fi
    done < "$dir/missed.txt"
fi
