//! The async-io timer (smol and async-std) as the driver's retry timer (R7): it can be moved,
//! so the retry timer allocates once. Real time, but short, and bounded: a timer that does
//! not fire fails the test after 10 s instead of hanging.

use std::time::{Duration, Instant};

use persistent_connection_smol::{Runtime, Smol};

/// async-io's timers wait on `Instant::now()`, the runtime's `now`: the driver may hold
/// its retry timers back.
#[test]
fn async_io_runtime_can_hold_timers() {
    assert!(Smol.can_hold_timers());
    let before = Instant::now();
    let now = Smol.now();
    assert!(
        before <= now && now <= Instant::now(),
        "now() is Instant::now()"
    );
}

#[test]
fn async_io_timers_move_to_their_new_deadline() {
    smol::block_on(async {
        let start = Instant::now();
        let mut timer = Smol.timer(Duration::from_secs(3600));
        assert!(
            timer.as_mut().reset(Duration::from_millis(20)),
            "async-io timers move"
        );
        let fired = smol::future::or(
            async {
                timer.as_mut().await;
                true
            },
            async {
                smol::Timer::after(Duration::from_secs(10)).await;
                false
            },
        )
        .await;
        assert!(fired, "waited 10 s for a timer moved to 20 ms");
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "not before its new deadline"
        );
    });
}
