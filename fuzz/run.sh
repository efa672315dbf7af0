#!/usr/bin/env bash
# Runs every cargo-fuzz target of this project for a bounded time and fails on any crash
# (a broken rule, a panic, an overflow, a timeout). CI calls it; so can you.
#
#   fuzz/run.sh [seconds per target]     (default 60)
#
# Each target runs on one core, one after the other. At the end it prints, per target, the
# executions, the executions per second and, for the `machine` target, the Machine inputs
# fed (every `Input` handed to `handle_input`, valid or not; the target counts them).
#
# New inputs go to a temporary corpus, so the committed seed corpus (corpus/<target>/)
# stays small; a crash is saved under artifacts/<target>/, where the regression test
# (tests/tests/corpus.rs) replays it in every `cargo test` once it is committed.
#
# Speed (it decides how much a run explores):
# - no sanitizer (`-s none`): the crates forbid `unsafe`, so AddressSanitizer finds
#   nothing that safe Rust does not already catch; it only slows every run down. Debug
#   assertions and overflow checks stay on (cargo-fuzz's default).
# - no compare tracing (`--no-trace-compares`): the targets decode bytes into small
#   choices (`byte % n`), with no magic values for it to find, and it made the `machine`
#   target three to four times slower. FUZZ_TRACE_COMPARES=1 turns it back on.
# - `machine`: `-max_len=526`, the most bytes its decoder reads (MAX_INPUT_LEN of
#   tests/src/script.rs: a 14-byte configuration and 256 two-byte actions; a unit test
#   there checks this number); longer inputs would only repeat.
set -euo pipefail

secs="${1:-60}"
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=..., -Cllvm-args=...); RUSTC_BOOTSTRAP
# lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

build=(-s none)
if [[ "${FUZZ_TRACE_COMPARES:-0}" == 0 ]]; then
    build+=(--no-trace-compares)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The number after the last match of the pattern $1 in the log $2, or "-".
field() {
    local v
    v="$(grep -o "$1 *[0-9]*" "$2" | tail -n 1 | grep -o '[0-9]*$' || true)"
    echo "${v:--}"
}

failed=()
summary=()
for target in $(cargo fuzz list); do
    mkdir -p "$work/$target" "corpus/$target"
    extra=()
    case "$target" in
        machine) extra+=(-max_len=526) ;;
    esac
    echo "== fuzz target $target: ${secs}s"
    # Built first, so that the build is not part of the run's time.
    cargo fuzz build "${build[@]}" "$target"
    log="$work/$target.log"
    if ! cargo fuzz run "${build[@]}" "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" 2>&1 |
        tee "$log"; then
        failed+=("$target")
    fi
    summary+=("$(printf '%-14s %12s %10s %16s' "$target" \
        "$(field 'stat::number_of_executed_units:' "$log")" \
        "$(field 'stat::average_exec_per_sec:' "$log")" \
        "$(field 'machine-stats: .* inputs=' "$log")")")
done

echo
echo "== fuzz summary (${secs}s per target, one core each)"
printf '%-14s %12s %10s %16s\n' target executions exec/s "Machine inputs"
printf '%s\n' "${summary[@]}"

if ((${#failed[@]})); then
    echo "fuzz targets that crashed: ${failed[*]} (inputs saved under fuzz/artifacts/)" >&2
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>" >&2
    exit 1
fi
echo "fuzz: every target ran ${secs}s without a crash"
