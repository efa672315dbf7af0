# Sourced by the valgrind scripts (machine-ir.sh, reconnect-cache.sh, reconnect-lines.sh):
# checks for valgrind and builds one bench of `persistent-connection-benches`. Not run on its
# own.

# Exits with a hint unless valgrind is installed; $1 names the calling script.
need_valgrind() {
    if ! command -v valgrind >/dev/null; then
        echo "$1: valgrind is not installed (Debian: apt-get install -y valgrind)" >&2
        exit 2
    fi
}

# Builds the bench named $1 (bench profile) and prints the path of its executable.
bench_exe() {
    cargo bench -q -p persistent-connection-benches --bench "$1" --no-run \
            --message-format=json 2>/dev/null |
        BENCH="$1" python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == os.environ["BENCH"] and m.get("executable"):
        print(m["executable"])'
}

# The reconnect scripts' shared start: "$1" names the calling script, the rest are its
# arguments, [N] [CLIENT...]. Sets n (rounds, default 100), clients (default: ours), exe
# (the reconnect bench, built) and out (a temporary directory, removed on exit).
reconnect_setup() {
    need_valgrind "$1"
    shift
    n=${1:-100}
    shift || true
    clients=("${@:-ours}")
    exe=$(bench_exe reconnect)
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
}
