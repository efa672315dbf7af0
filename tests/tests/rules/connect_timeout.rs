//! Checks the connect timeout (beyond the seed; off by default) with R4 (failure) and R7
//! (retry delay) of CONTRACT.md: an attempt still in flight when its timeout passes fails
//! with `TimedOut`, its fetch or dial is cancelled, and a late connection is closed.

use std::time::Duration;

use persistent_connection::{Config, Expecting};

use crate::support::*;

#[test]
fn connect_timeout_is_off_by_default() {
    assert_eq!(Config::new().connect_timeout, None);
    assert_eq!(
        Config::new()
            .connect_timeout(Duration::ZERO)
            .connect_timeout,
        None
    );
    assert_eq!(
        Config::new().connect_timeout(Some(secs(3))).connect_timeout,
        Some(secs(3))
    );
    assert_eq!(
        Config::new().connect_timeout(secs(3)).connect_timeout,
        Some(secs(3))
    );
    assert_eq!(
        Config::new()
            .connect_timeout(secs(3))
            .connect_timeout(None)
            .connect_timeout,
        None
    );
    // A zero timeout set on the public field directly is no bound either.
    let mut config = constant(10);
    config.connect_timeout = Some(Duration::ZERO);
    let m = M::new(config);
    assert_eq!(m.config().connect_timeout, None);
    // A dial that hangs past any delay just keeps the attempt open.
    let mut m = dialing();
    expect(&mut m, fire(1), vec![]);
    assert_eq!(m.expecting(), Expecting::DialResult);
    expect(&mut m, dialed(1, 1), vec![connected(1, 1)]);
}

#[test]
fn connect_timeout_fires_first_fails_attempt_and_closes_late_dial() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    // One timer serves both: it fires at the timeout first.
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    // The timeout: the rest of the retry delay, the dial cancelled, the attempt failed.
    let timed_out = timed_out(2);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out.clone())],
    );
    assert!(timed_out.is_timeout());
    assert_eq!(timed_out.error(), None);
    assert_eq!(m.consecutive_failures(), 1);
    // The late dial result, while the FailedToConnect handler runs: closed, not handed out.
    expect(&mut m, dialed(1, 7), vec![close_conn(1, 7)]);
    assert_eq!(m.current_connection(), None);
    expect(&mut m, handled(), vec![]);
    // Only once.
    reject(&mut m, dialed(1, 8));
    // Next attempt 10 s after the first one started.
    expect(&mut m, fire(2), vec![timer(3, secs(2)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    // The same timeout again in this cycle: not reported again.
    expect(
        &mut m,
        fire(3),
        vec![timer(4, secs(8)), cancel(2), failed_again(2, timed_out)],
    );
    // A late failure is swallowed quietly.
    expect(&mut m, dial_failed(2, "refused"), vec![]);
    expect(&mut m, fire(4), vec![timer(5, secs(2)), fetch(3)]);
}

#[test]
fn connect_timeout_late_dial_in_later_attempt_is_closed() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    let timed_out = timed_out(2);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out)],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![timer(3, secs(2)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    // Attempt 1's dial finally succeeds while attempt 2 dials: closed, attempt 2 unaffected.
    expect(&mut m, dialed(1, 5), vec![close_conn(1, 5)]);
    assert_eq!(m.expecting(), Expecting::DialResult);
    expect(&mut m, dialed(2, 6), vec![connected(2, 6)]);
    assert_eq!(m.current_connection(), Some(&6));
}

#[test]
fn connect_timeout_during_fetch_cancels_the_fetch() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    let timed_out = timed_out(2);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out)],
    );
    expect(&mut m, handled(), vec![]);
    // A late address: ignored, no dial, no event.
    expect(&mut m, address(1, "x"), vec![]);
    assert_eq!(m.expecting(), Expecting::RetryTimer);
}

#[test]
fn connect_timeout_in_obtained_address_handler_fails_after_it() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    // Nothing is in flight to cancel, and the handler still gates progress.
    expect(&mut m, fire(1), vec![timer(2, secs(8))]);
    expect(&mut m, handled(), vec![failed(1, timed_out(2))]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![timer(3, secs(2)), fetch(2)]);
}

#[test]
fn connect_timeout_not_reached_leaves_connection_alone() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(&mut m, dialed(1, 3), vec![connected(1, 3)]);
    expect(&mut m, handled(), vec![]);
    // The timeout's deadline passes while connected: only the retry timer is re-armed.
    expect(&mut m, fire(1), vec![timer(2, secs(8))]);
    assert_eq!(m.current_connection(), Some(&3));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![attempting()]);
}

#[test]
fn connect_timeout_longer_than_retry_delay() {
    let mut m = with_timeout(1, 5);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    // The retry delay passes first; the timeout is armed for the rest.
    expect(&mut m, fire(1), vec![timer(2, secs(4))]);
    expect(&mut m, fire(2), vec![cancel(1), failed(1, timed_out(5))]);
    // The retry delay has passed already: the next attempt starts after the handler.
    expect(&mut m, handled(), vec![timer(3, secs(1)), fetch(2)]);
}

#[test]
fn connect_timeout_equal_to_retry_delay_uses_one_timer() {
    let mut m = with_timeout(3, 3);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(3)), fetch(1)]);
    let timed_out = timed_out(3);
    expect(
        &mut m,
        fire(1),
        vec![cancel(1), failed(1, timed_out.clone())],
    );
    expect(&mut m, handled(), vec![timer(2, secs(3)), fetch(2)]);
    // Repeated: the next attempt follows in the same batch.
    expect(
        &mut m,
        fire(2),
        vec![
            cancel(2),
            failed_again(2, timed_out),
            timer(3, secs(3)),
            fetch(3),
        ],
    );
}
