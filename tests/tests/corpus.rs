//! Checks R16 (bad input) of CONTRACT.md, and through the one rule checker every rule it
//! models (R1..R7, R11, R12, R18, R19), on the fuzzers' inputs: replays every committed
//! fuzz input, and every crash the fuzzer ever saved, through the same library functions
//! the fuzz targets call: `fuzz/corpus/<target>/*` and `fuzz/artifacts/<target>/*` (when
//! present). A new target must be added to [`replay`].

use std::fs;
use std::path::{Path, PathBuf};

use persistent_connection_tests::policy::check_policy_bytes;
use persistent_connection_tests::script::run_bytes;

/// Runs one input through the target named by its folder; `Err` describes the failure.
fn replay(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "machine" => run_bytes(data).map(drop).map_err(|v| v.to_string()),
        "retry_policy" => check_policy_bytes(data),
        other => Err(format!(
            "unknown fuzz target {other:?}: add it to corpus.rs"
        )),
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files under `fuzz/<kind>/<target>/`, with their target's name.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(targets) = fs::read_dir(fuzz_dir().join(kind)) else {
        return out;
    };
    for target in targets.flatten() {
        if !target.path().is_dir() {
            continue;
        }
        let name = target.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(target.path()).into_iter().flatten().flatten() {
            if file.path().is_file() {
                out.push((name.clone(), file.path()));
            }
        }
    }
    out.sort();
    out
}

fn replay_all(kind: &str) -> usize {
    let files = inputs(kind);
    let mut failures = Vec::new();
    for (target, path) in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = replay(target, &data) {
            failures.push(format!("{} ({target}):\n{e}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

/// R16: every input of the committed seed corpus keeps the rules.
#[test]
fn r16_fuzz_corpus_replays_clean() {
    let n = replay_all("corpus");
    assert!(
        n >= 4,
        "only {n} corpus files found under {}",
        fuzz_dir().display()
    );
    for target in ["machine", "retry_policy"] {
        assert!(
            inputs("corpus").iter().any(|(t, _)| t == target),
            "no corpus for the {target} target"
        );
    }
}

/// R16: every crash the fuzzer ever found (kept in `fuzz/artifacts/`) stays fixed.
#[test]
fn r16_fuzz_artifacts_replay_clean() {
    replay_all("artifacts");
}
