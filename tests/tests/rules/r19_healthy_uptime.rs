//! Checks R19 (healthy uptime) of CONTRACT.md: with `min_uptime`, a success does not reset
//! the failure count; the uptime timer is asked for right before `Connected`; the count
//! goes back to 0 when it fires while that connection is current, and a connection that
//! closes sooner adds one to the count (the backoff grows accordingly), without any
//! `FailedToConnect`; a reconnect (R18) does not count as dying young; without the option
//! the count resets on `Connected` (R5).

use std::time::Duration;

use persistent_connection::{
    AttemptId, Config, Expecting, Exponential, Input, InputError, InputKind, Jitter, RetryPolicy,
    StopKind,
};

use crate::support::*;

const UPTIME: Duration = Duration::from_secs(30);

/// Exponential backoff 1 s, x2, max 60 s, no jitter, min uptime 30 s.
fn config() -> Config {
    Config::new()
        .retry_policy(RetryPolicy::Exponential(Exponential {
            initial: secs(1),
            multiplier: 2.0,
            max: secs(60),
        }))
        .jitter(Jitter::Off)
        .min_uptime(UPTIME)
}

/// From the `AttemptingToConnect` handler of a cycle, attempt `n` (waiting `delay`, after
/// `failures` failures) connects with `c`, and its `Connected` handler finishes.
#[track_caller]
fn connect(m: &mut M, n: u64, c: Conn, delay: Duration, failures: u32) {
    expect(m, handled(), vec![timer(n, delay), fetch(n)]);
    expect(m, address(n, "x"), vec![obtained(n, "x")]);
    expect(m, handled(), vec![dial(n, "x", failures)]);
    expect(
        m,
        dialed(n, c),
        vec![uptime_timer(n, UPTIME), connected(n, c)],
    );
    expect(m, handled(), vec![]);
}

/// The connection of attempt `n` dies young; the next cycle starts when timer `n` fires.
#[track_caller]
fn dies_young(m: &mut M, n: u64) {
    expect(m, conn_closed(n), vec![disconnected(n)]);
    expect(m, handled(), vec![]);
    expect(m, fire(n), vec![attempting()]);
}

fn uptime_rejected_as_unexpected(expected: Expecting) -> InputError {
    InputError::Unexpected {
        got: InputKind::UptimeReached,
        expected,
    }
}

#[test]
fn r19_young_deaths_grow_the_count_and_the_backoff() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    for n in 1..=6u64 {
        let f = u32::try_from(n - 1).unwrap();
        connect(&mut m, n, 10 + n as Conn, secs(1 << (n - 1)), f);
        assert_eq!(
            m.consecutive_failures(),
            f,
            "a success does not reset the count"
        );
        assert!(m.uptime_pending());
        // No FailedToConnect for it: only Disconnected.
        expect(&mut m, conn_closed(n), vec![disconnected(n)]);
        assert_eq!(m.consecutive_failures(), f + 1);
        assert!(!m.uptime_pending());
        expect(&mut m, handled(), vec![]);
        expect(&mut m, fire(n), vec![attempting()]);
    }
    // 1, 2, 4, 8, 16, 32 s so far; the next waits 60 s (the cap).
    expect(&mut m, handled(), vec![timer(7, secs(60)), fetch(7)]);
}

#[test]
fn r19_young_deaths_and_failed_attempts_add_up() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(2)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
    expect(&mut m, handled(), vec![dial(2, "x", 1)]);
    expect(
        &mut m,
        dialed(2, 7),
        vec![uptime_timer(2, UPTIME), connected(2, 7)],
    );
    assert_eq!(m.consecutive_failures(), 1);
    expect(&mut m, handled(), vec![]);
    dies_young(&mut m, 2);
    assert_eq!(m.consecutive_failures(), 2);
    // The new cycle reports the same error again (a new cycle), and counts it.
    expect(&mut m, handled(), vec![timer(3, secs(4)), fetch(3)]);
    expect(
        &mut m,
        address_failed(3, "down"),
        vec![failed(3, err("down"))],
    );
    assert_eq!(m.consecutive_failures(), 3);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(3), vec![timer(4, secs(8)), fetch(4)]);
}

#[test]
fn r19_uptime_reached_resets_the_count() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    connect(&mut m, 1, 1, secs(1), 0);
    dies_young(&mut m, 1);
    connect(&mut m, 2, 2, secs(2), 1);
    dies_young(&mut m, 2);
    connect(&mut m, 3, 3, secs(4), 2);
    assert_eq!(m.consecutive_failures(), 2);
    expect(&mut m, uptime(3), vec![]);
    assert_eq!(m.consecutive_failures(), 0);
    assert!(!m.uptime_pending());
    // It may close any time now: not young, the count stays 0, the backoff starts over.
    expect(&mut m, conn_closed(3), vec![disconnected(3)]);
    assert_eq!(m.consecutive_failures(), 0);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(3), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(4, secs(1)), fetch(4)]);
}

#[test]
fn r19_uptime_reached_while_the_connected_handler_runs() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    connect(&mut m, 1, 1, secs(1), 0);
    dies_young(&mut m, 1);
    expect(&mut m, handled(), vec![timer(2, secs(2)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
    expect(&mut m, handled(), vec![dial(2, "x", 1)]);
    expect(
        &mut m,
        dialed(2, 2),
        vec![uptime_timer(2, UPTIME), connected(2, 2)],
    );
    expect(&mut m, uptime(2), vec![]);
    assert_eq!(m.consecutive_failures(), 0);
    expect(&mut m, handled(), vec![]);
}

#[test]
fn r19_uptime_reached_refused_when_late_or_for_another_attempt() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    // Before any connection.
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    let r = reject(&mut m, uptime(1));
    assert_eq!(r.error, uptime_rejected_as_unexpected(Expecting::Address));
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(
        &mut m,
        dialed(1, 1),
        vec![uptime_timer(1, UPTIME), connected(1, 1)],
    );
    expect(&mut m, handled(), vec![]);
    // Late: the connection has closed and Disconnected was reported.
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    let r = reject(&mut m, uptime(1));
    assert_eq!(
        r.error,
        uptime_rejected_as_unexpected(Expecting::EventHandled)
    );
    expect(&mut m, handled(), vec![]);
    let r = reject(&mut m, uptime(1));
    assert_eq!(
        r.error,
        uptime_rejected_as_unexpected(Expecting::RetryTimer)
    );
    expect(&mut m, fire(1), vec![attempting()]);
    connect(&mut m, 2, 2, secs(2), 1);
    // For another connection than the current one.
    let r = reject(&mut m, uptime(1));
    assert_eq!(
        r.error,
        InputError::UnknownAttempt {
            got: InputKind::UptimeReached,
            attempt: AttemptId(1),
            current: AttemptId(2),
        }
    );
    // Taken once, then refused.
    expect(&mut m, uptime(2), vec![]);
    let r = reject(&mut m, uptime(2));
    assert_eq!(
        r.error,
        uptime_rejected_as_unexpected(Expecting::ConnectionClosed)
    );
    assert_eq!(m.consecutive_failures(), 0);
}

#[test]
fn r19_uptime_reached_refused_after_the_connection_closed_during_its_handler() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(
        &mut m,
        dialed(1, 1),
        vec![uptime_timer(1, UPTIME), connected(1, 1)],
    );
    expect(&mut m, conn_closed(1), vec![]);
    let r = reject(&mut m, uptime(1));
    assert_eq!(
        r.error,
        uptime_rejected_as_unexpected(Expecting::EventHandled)
    );
    expect(&mut m, handled(), vec![disconnected(1)]);
    assert_eq!(m.consecutive_failures(), 1, "it died young");
}

#[test]
fn r19_without_min_uptime_no_uptime_timer_and_the_count_resets_on_connected() {
    // Set directly on the field: zero still means none.
    let mut zero = constant(10);
    zero.min_uptime = Some(Duration::ZERO);
    for config in [
        constant(10),
        constant(10).min_uptime(Duration::ZERO),
        constant(10).min_uptime(secs(5)).min_uptime(None),
        zero,
    ] {
        let mut m = M::new(config);
        assert_eq!(m.config().min_uptime, None);
        assert_eq!(drain(&mut m), vec![attempting()]);
        expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);
        expect(
            &mut m,
            address_failed(1, "down"),
            vec![failed(1, err("down"))],
        );
        expect(&mut m, handled(), vec![]);
        expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
        expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
        expect(&mut m, handled(), vec![dial(2, "x", 1)]);
        expect(&mut m, dialed(2, 5), vec![connected(2, 5)]);
        assert_eq!(m.consecutive_failures(), 0);
        assert!(!m.uptime_pending());
        let r = reject(&mut m, uptime(2));
        assert_eq!(
            r.error,
            uptime_rejected_as_unexpected(Expecting::EventHandled)
        );
        // It dies at once: not counted.
        expect(&mut m, conn_closed(2), vec![]);
        expect(&mut m, handled(), vec![disconnected(2)]);
        assert_eq!(m.consecutive_failures(), 0);
    }
    assert_eq!(Config::new().min_uptime(secs(5)).min_uptime, Some(secs(5)));
}

#[test]
fn r19_reconnect_now_on_a_young_connection_does_not_count_it() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    connect(&mut m, 1, 1, secs(1), 0);
    dies_young(&mut m, 1);
    connect(&mut m, 2, 2, secs(2), 1);
    assert!(m.uptime_pending());
    expect(&mut m, reconnect(), vec![close_conn(2, 2)]);
    assert!(!m.uptime_pending(), "the uptime wait is cancelled");
    let r = reject(&mut m, uptime(2));
    assert_eq!(
        r.error,
        uptime_rejected_as_unexpected(Expecting::ConnectionClosed)
    );
    expect(&mut m, conn_closed(2), vec![disconnected(2)]);
    assert_eq!(m.consecutive_failures(), 1, "not a young death");
    expect(&mut m, handled(), vec![attempting()]);
    // The backoff is where it was: one failure, 2 s.
    expect(&mut m, handled(), vec![timer(3, secs(2)), fetch(3)]);
}

#[test]
fn r19_reconnect_now_in_the_connected_handler_does_not_count_it() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(
        &mut m,
        dialed(1, 1),
        vec![uptime_timer(1, UPTIME), connected(1, 1)],
    );
    expect(&mut m, reconnect(), vec![close_conn(1, 1)]);
    expect(&mut m, conn_closed(1), vec![]);
    expect(&mut m, handled(), vec![disconnected(1)]);
    assert_eq!(m.consecutive_failures(), 0);
    expect(&mut m, handled(), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(2, secs(1)), fetch(2)]);
}

#[test]
fn r19_a_young_connection_closed_by_close_still_counts() {
    let mut m = M::new(config());
    assert_eq!(drain(&mut m), vec![attempting()]);
    connect(&mut m, 1, 1, secs(1), 0);
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 1)],
    );
    // Still current and not reported closed: its uptime timer may still be taken.
    assert!(m.uptime_pending());
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    assert_eq!(m.consecutive_failures(), 1);
    expect(&mut m, handled(), vec![finished()]);
}
