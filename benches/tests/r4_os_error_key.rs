//! R4 through the driver: failed dials are compared by a key, and for an OS error (what a
//! refused dial gives) the driver's key is made without formatting the error, whose
//! `Debug` text holds the OS message in a heap-allocated `String`. Checked by counting the
//! process's allocations per failed attempt, against the same loop with an error whose
//! `Debug` allocates nothing. This file holds one test: the counter is process-wide.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use persistent_connection_benches::ALLOCATIONS;
use persistent_connection_tokio::{AttemptError, Backoff, CloseSignal, ConnectError, builder};

#[global_allocator]
static GLOBAL: persistent_connection_benches::CountingAlloc =
    persistent_connection_benches::CountingAlloc;

/// Failed attempts counted after the warm-up.
const ATTEMPTS: u64 = 2_000;

/// Allocations per failed attempt of a persistent connection whose every dial fails with
/// `make()`; the retry delay is zero, so no timer is involved and the attempts follow one
/// another while the test waits on them.
async fn allocations_per_failed_attempt(make: fn() -> io::Error) -> f64 {
    let pc = builder(
        "refusing",
        || async { Ok::<u16, io::Error>(7) },
        move |_addr, _ctx| async move { Err::<CloseSignal, io::Error>(make()) },
    )
    .retry_policy(Backoff::Constant(Duration::ZERO))
    .spawn();
    // Waits until `n` more attempts have failed (or 10 s have passed: a failure).
    let failures = |n: u64| {
        let pc = &pc;
        async move {
            let until = pc.stats().failures + n;
            while pc.stats().failures < until {
                let outcome = tokio::time::timeout(
                    Duration::from_secs(10),
                    pc.connected_or_failed_to_connect(),
                )
                .await
                .expect("a failed attempt within 10 s");
                assert!(
                    matches!(
                        outcome,
                        Err(ConnectError::Attempt(AttemptError::Connect(_)))
                    ),
                    "every dial fails: {outcome:?}"
                );
            }
        }
    };
    failures(20).await; // warm up
    let (allocations, failed) = (ALLOCATIONS.load(Ordering::Relaxed), pc.stats().failures);
    failures(ATTEMPTS).await;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    let failed = pc.stats().failures - failed;
    tokio::time::timeout(Duration::from_secs(10), pc.close())
        .await
        .expect("close finishes within 10 s");
    allocations as f64 / failed as f64
}

#[test]
fn r4_os_errors_are_keyed_without_allocating() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    // ECONNREFUSED on Linux; the code matters only in that it is an OS error.
    let os = rt.block_on(allocations_per_failed_attempt(|| {
        io::Error::from_raw_os_error(111)
    }));
    let kind = rt.block_on(allocations_per_failed_attempt(|| {
        io::ErrorKind::ConnectionRefused.into()
    }));
    eprintln!("allocations per failed attempt: OS error {os}, plain kind {kind}");
    assert!(
        os < kind + 0.5,
        "a failed attempt with an OS error allocates {os} times, with a plain kind {kind}: \
         the key formats the OS error"
    );
}
