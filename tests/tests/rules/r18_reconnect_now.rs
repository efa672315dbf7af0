//! Checks R18 (reconnect now) of CONTRACT.md: when a connection is current it is closed and
//! the next cycle starts without waiting for the retry timer; when waiting for the retry
//! timer (or in the `FailedToConnect` or `Disconnected` handler) the timer counts as fired
//! now and the one out is refused as stale; while an attempt is in flight, or after a stop,
//! nothing changes; after the finish it is refused; the failure count never moves.

use persistent_connection::{
    Config, Expecting, Exponential, Input, InputError, InputKind, Jitter, RetryPolicy, State,
    StopKind, TimerId,
};

use crate::support::*;

/// The timer skipped by `ReconnectNow` fires: refused as stale, naming the timer out.
#[track_caller]
fn stale(m: &mut M, id: u64, outstanding: Option<u64>) {
    let r = reject(m, fire(id));
    assert_eq!(
        r.error,
        InputError::StaleTimer {
            got: TimerId(id),
            outstanding: outstanding.map(TimerId),
        }
    );
}

#[test]
fn r18_reconnect_while_connected_closes_and_starts_the_next_cycle_at_once() {
    let mut m = connected_machine();
    // Timer 1 (10 s) is still out: without R18 the next cycle would wait for it.
    expect(&mut m, reconnect(), vec![close_conn(1, 1)]);
    assert_eq!(m.consecutive_failures(), 0);
    assert_eq!(m.state(), State::Connected, "current until it has closed");
    assert_eq!(m.expecting(), Expecting::ConnectionClosed);
    // Asked once: a second call (or a close) does not close it again.
    expect(&mut m, reconnect(), vec![]);
    stale(&mut m, 1, None);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    assert_eq!(m.consecutive_failures(), 0);
    stale(&mut m, 1, Some(2));
}

#[test]
fn r18_reconnect_then_close_closes_the_connection_once() {
    let mut m = connected_machine();
    expect(&mut m, reconnect(), vec![close_conn(1, 1)]);
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r18_reconnect_while_the_connected_handler_runs() {
    let mut m = dialing();
    expect(&mut m, dialed(1, 4), vec![connected(1, 4)]);
    expect(&mut m, reconnect(), vec![close_conn(1, 4)]);
    // It closes while the handler still runs: Disconnected once the handler is done (R5).
    expect(&mut m, conn_closed(1), vec![]);
    expect(&mut m, handled(), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![attempting()]);
    stale(&mut m, 1, None);
    assert_eq!(m.consecutive_failures(), 0);
}

#[test]
fn r18_reconnect_after_the_connection_closed_during_the_connected_handler() {
    let mut m = dialing();
    expect(&mut m, dialed(1, 4), vec![connected(1, 4)]);
    expect(&mut m, conn_closed(1), vec![]);
    // Already closed: nothing to close, but the retry timer counts as fired.
    expect(&mut m, reconnect(), vec![]);
    expect(&mut m, handled(), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![attempting()]);
    stale(&mut m, 1, None);
}

#[test]
fn r18_reconnect_during_the_failed_to_connect_handler() {
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(m.expecting(), Expecting::EventHandled);
    assert_eq!(
        m.consecutive_failures(),
        1,
        "a reconnect never changes the count"
    );
    stale(&mut m, 1, None);
    // The handler is done: the next attempt starts without waiting for timer 1.
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    assert_eq!(m.consecutive_failures(), 1);
    stale(&mut m, 1, Some(2));
}

#[test]
fn r18_reconnect_while_waiting_for_the_retry_timer_starts_the_next_attempt_at_once() {
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.expecting(), Expecting::RetryTimer);
    // The next attempt, in the same batch.
    expect(&mut m, reconnect(), vec![timer(2, secs(10)), fetch(2)]);
    assert_eq!(m.consecutive_failures(), 1);
    // The old timer fires later: stale, timer 2 is the one out.
    stale(&mut m, 1, Some(2));
    // After a repeated failure (no handler) the same holds.
    expect(
        &mut m,
        address_failed(2, "down"),
        vec![failed_again(2, err("down"))],
    );
    expect(&mut m, reconnect(), vec![timer(3, secs(10)), fetch(3)]);
    stale(&mut m, 2, Some(3));
    assert_eq!(m.consecutive_failures(), 2);
}

#[test]
fn r18_reconnect_between_cycles_starts_the_next_cycle_at_once() {
    // In the Disconnected handler: the cycle starts once it is done.
    let mut m = connected_machine();
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, reconnect(), vec![]);
    expect(&mut m, handled(), vec![attempting()]);
    stale(&mut m, 1, None);

    // Waiting for the retry timer after the Disconnected handler: at once.
    let mut m = connected_machine();
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.state(), State::Disconnected);
    expect(&mut m, reconnect(), vec![attempting()]);
    stale(&mut m, 1, None);
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
}

#[test]
fn r18_reconnect_while_an_attempt_is_in_flight_changes_nothing() {
    // The fetch is out: the retry timer is still out and still counts.
    let mut m = fetching();
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(&mut m, fire(1), vec![]);
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);

    // The dial is out.
    let mut m = dialing();
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);

    // The ObtainedAddress handler runs.
    let mut m = fetching();
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(&mut m, fire(1), vec![]);

    // The AttemptingToConnect handler runs.
    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);

    // A custom policy's retry delay is awaited.
    let mut m = M::new(
        Config::new()
            .retry_policy(RetryPolicy::Custom)
            .jitter(Jitter::Off),
    );
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![compute_delay(1, 0)]);
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(
        &mut m,
        Input::RetryDelay(secs(3)),
        vec![timer(1, secs(3)), fetch(1)],
    );
}

#[test]
fn r18_reconnect_after_a_stop_changes_nothing() {
    // After abort the connection is kept (R12): reconnect_now does not close it.
    let mut m = connected_machine();
    expect(&mut m, Input::Abort, vec![stopped(StopKind::Abort)]);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(m.current_connection(), Some(&1));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);

    // The same after close_when_current_connection_is_closed.
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::CloseWhenCurrentConnectionIsClosed,
        vec![stopped(StopKind::WhenCurrentConnectionCloses)],
    );
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);

    // After close: the connection is being closed already, once.
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 1)],
    );
    let before = snapshot(&m);
    expect(&mut m, reconnect(), vec![]);
    assert_eq!(snapshot(&m), before);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);

    // A stop in the FailedToConnect handler: no next attempt after it.
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, Input::Abort, vec![stopped(StopKind::Abort)]);
    expect(&mut m, reconnect(), vec![]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r18_reconnect_after_the_finish_is_refused() {
    let mut m = fetching();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), cancel(1), finished()],
    );
    let r = reject(&mut m, reconnect());
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::ReconnectNow
        }
    );
}

#[test]
fn r18_reconnect_leaves_the_failure_count_and_the_backoff_alone() {
    let mut m = M::new(
        constant(10).retry_policy(RetryPolicy::Exponential(Exponential {
            initial: secs(1),
            multiplier: 2.0,
            max: secs(60),
        })),
    );
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(1)), fetch(1)]);
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, reconnect(), vec![]);
    expect(&mut m, handled(), vec![timer(2, secs(2)), fetch(2)]);
    expect(
        &mut m,
        address_failed(2, "down"),
        vec![failed_again(2, err("down"))],
    );
    expect(&mut m, reconnect(), vec![timer(3, secs(4)), fetch(3)]);
    assert_eq!(m.consecutive_failures(), 2);
}
