//! Checks R14 (events as a stream) of `CONTRACT.md`: the event and state streams are made
//! on first subscription, see everything from then on, and end when the persistent
//! connection has finished, also for a subscriber that comes after the end.

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use persistent_connection_tokio::{CloseSignal, Event, State, builder};

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(
        Duration::from_secs(20),
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)),
    )
    .await
    .expect("waited 20 s for the next item of a stream")
}

fn signals() -> persistent_connection_tokio::Builder<&'static str, CloseSignal, String> {
    builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        |_addr, _ctx| async { Ok(CloseSignal::new()) },
    )
    .retry_delay(|_| Duration::from_millis(1))
}

#[tokio::test]
async fn r14_a_subscriber_sees_the_events_from_its_subscription_on() {
    let pc = signals().spawn();
    let conn = pc.connected().await;
    let mut events = pc.events();
    conn.close();
    let names: Vec<&str> = [
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
    ]
    .iter()
    .map(|e| e.as_ref().unwrap().as_ref().unwrap().name())
    .collect();
    assert_eq!(
        names,
        ["Disconnected", "AttemptingToConnect", "ObtainedAddress"]
    );
    pc.close().await;
    // Connected, Disconnected of the second connection, then the end.
    loop {
        match next(&mut events).await {
            Some(Ok(_)) => continue,
            Some(Err(lagged)) => panic!("a 32-event buffer lagged: {lagged}"),
            None => break,
        }
    }
}

#[tokio::test]
async fn r14_streams_asked_for_after_the_end_end_at_once() {
    let pc = signals().spawn();
    pc.connected().await;
    pc.close().await;
    let mut events = pc.events();
    assert!(next(&mut events).await.is_none(), "the events stream ended");
    let mut states = pc.state_changes();
    assert_eq!(next(&mut states).await, Some(State::Closed));
    assert_eq!(next(&mut states).await, None, "the state stream ended");
}

#[tokio::test]
async fn r14_builder_subscription_sees_the_first_event() {
    let b = signals();
    let mut events = b.events();
    let pc = b.spawn();
    assert!(matches!(
        next(&mut events).await,
        Some(Ok(Event::AttemptingToConnect))
    ));
    pc.close().await;
}
