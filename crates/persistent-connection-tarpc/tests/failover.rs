//! Failover of a tarpc client over 127.0.0.1: when the live replica dies, the persistent
//! connection finds the next one in the catalog; calls made meanwhile fail with an error
//! instead of hanging; close leaves nothing behind. The `Disconnected` handler reads why
//! each connection ended (`last_ending`) through a weak handle.

mod support;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use persistent_connection_tarpc::{
    ConnectError, DriverEvent, Ending, Event, PersistentRpc, RpcConnection,
    WeakPersistentConnection,
};
use support::{Catalog, GreeterClient, Replica};
use tarpc::client::RpcError;
use tarpc::context;
use tokio::sync::mpsc;

/// Bounds every wait: a failure to make progress fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(5);

type Ev = DriverEvent<SocketAddr, RpcConnection<GreeterClient>, io::Error>;

/// An event, reduced to what the test compares.
fn show(event: &Ev) -> String {
    match event {
        Event::AttemptingToConnect => "AttemptingToConnect".into(),
        Event::ObtainedAddress(addr) => format!("ObtainedAddress({addr})"),
        Event::FailedToConnect(e) => format!("FailedToConnect({e})"),
        Event::Connected(_) => "Connected".into(),
        Event::Disconnected => "Disconnected".into(),
    }
}

/// The next `n` events, as `on_event` got them.
async fn next_events(events: &mut mpsc::UnboundedReceiver<Ev>, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let event = tokio::time::timeout(BOUND, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {BOUND:?}; seen {seen:?}"))
            .unwrap_or_else(|| panic!("the persistent connection finished; seen {seen:?}"));
        seen.push(show(&event));
    }
    seen
}

/// The next `Ending` the `Disconnected` handler read with `last_ending`.
async fn next_ending(endings: &mut mpsc::UnboundedReceiver<Option<Ending>>) -> Option<Ending> {
    bounded("the Disconnected handler", endings.recv())
        .await
        .expect("the Disconnected handler is still there")
}

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {BOUND:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_replica_and_calls_meanwhile_fail_fast() {
    let catalog = Catalog::default();
    let a = Replica::start("a").await.unwrap();
    let b = Replica::start("b").await.unwrap();
    catalog.publish(&a);
    catalog.publish(&b);
    let (a_addr, b_addr) = (a.addr, b.addr);

    let lookup = catalog.clone();
    let (tx, mut events) = mpsc::unbounded_channel();
    // The `Disconnected` handler reads `last_ending` through a weak handle (a strong one
    // would keep the persistent connection alive) and sends what it read here.
    let (ending_tx, mut endings) = mpsc::unbounded_channel();
    let weak: Arc<
        OnceLock<WeakPersistentConnection<SocketAddr, RpcConnection<GreeterClient>, io::Error>>,
    > = Arc::default();
    let handler_weak = weak.clone();
    let greeter: PersistentRpc<SocketAddr, GreeterClient> = persistent_connection_tarpc::builder(
        "greeter",
        move || {
            let catalog = lookup.clone();
            async move { catalog.lookup().await }
        },
        GreeterClient::new,
    )
    .retry_delay(|_| Duration::from_millis(20))
    .on_event(move |event| {
        if let Event::Disconnected = event {
            let greeter = handler_weak
                .get()
                .and_then(WeakPersistentConnection::upgrade);
            let _ = ending_tx.send(greeter.and_then(|g| g.last_ending()));
        }
        let _ = tx.send(event);
        async {}
    })
    .spawn();
    weak.set(greeter.downgrade()).unwrap();

    // First cycle: replica a.
    let client = bounded("connected", greeter.connected()).await;
    assert_eq!(
        client.replica(context::current()).await.unwrap(),
        "a",
        "the catalog lists a first"
    );
    assert_eq!(
        next_events(&mut events, 3).await,
        [
            "AttemptingToConnect".to_string(),
            format!("ObtainedAddress({a_addr})"),
            "Connected".into()
        ]
    );

    // A call in flight when a dies fails; it does not hang.
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.stall(context::current()).await })
    };
    bounded("the stall call reaches a", a.stalled.notified()).await;
    catalog.withdraw(&a);
    a.kill().await;
    let result = bounded("the call in flight", in_flight).await.unwrap();
    assert!(
        matches!(result, Err(RpcError::Shutdown | RpcError::Channel(_))),
        "the call in flight fails with a connection error, got {result:?}"
    );

    // The persistent connection moves to b on its own.
    assert_eq!(
        next_events(&mut events, 4).await,
        [
            "Disconnected".to_string(),
            "AttemptingToConnect".into(),
            format!("ObtainedAddress({b_addr})"),
            "Connected".into()
        ]
    );
    // The handler saw why: the dispatch finished (the server closed the socket) or failed
    // (a transport error); the old client says the same.
    let ending = next_ending(&mut endings).await;
    assert!(
        matches!(ending, Some(Ending::Finished | Ending::Failed(_))),
        "the dispatch ended on its own, got {ending:?}"
    );
    assert!(
        matches!(client.ending(), Some(Ending::Finished | Ending::Failed(_))),
        "{:?}",
        client.ending()
    );
    // The old client is dead: a call on it fails at once.
    assert!(client.is_closed());
    let stale = bounded(
        "a call on the dead client",
        client.replica(context::current()),
    )
    .await;
    assert!(matches!(stale, Err(RpcError::Shutdown)), "got {stale:?}");
    let client = bounded("connected", greeter.connected()).await;
    assert_eq!(client.replica(context::current()).await.unwrap(), "b");

    // Outage: no replica at all. Calls fail with an error, and waiting for the next
    // attempt's outcome gives the lookup's error.
    catalog.withdraw(&b);
    b.kill().await;
    assert_eq!(
        next_events(&mut events, 3).await,
        [
            "Disconnected",
            "AttemptingToConnect",
            "FailedToConnect(could not get the address: no replica in the catalog)"
        ]
    );
    let ending = next_ending(&mut endings).await;
    assert!(
        matches!(ending, Some(Ending::Finished | Ending::Failed(_))),
        "the dispatch ended on its own, got {ending:?}"
    );
    let stale = bounded(
        "a call during the outage",
        client.hello(context::current(), "x".into()),
    )
    .await;
    assert!(matches!(stale, Err(RpcError::Shutdown)), "got {stale:?}");
    let outcome = bounded(
        "connected_or_failed_to_connect during the outage",
        greeter.connected_or_failed_to_connect(),
    )
    .await;
    let err = outcome.expect_err("no replica is up");
    assert!(!err.is_stopped());
    let ConnectError::Attempt(err) = err else {
        panic!("an attempt failed, not a stop: {err}")
    };
    assert_eq!(err.user_error().unwrap().kind(), io::ErrorKind::NotFound);

    // A new replica publishes itself: the next attempt finds it.
    let c = Replica::start("c").await.unwrap();
    catalog.publish(&c);
    let client = bounded("connected after the outage", greeter.connected()).await;
    assert_eq!(
        client
            .hello(context::current(), "you".into())
            .await
            .unwrap(),
        "c: hello, you"
    );
    // Failed attempts with the same error are reported once; then c is found.
    assert_eq!(
        next_events(&mut events, 2).await,
        [format!("ObtainedAddress({})", c.addr), "Connected".into()]
    );

    // Close: the client is closed, Disconnected is reported, and then nothing.
    bounded("close", greeter.close()).await;
    assert!(client.is_closed());
    assert!(
        matches!(client.ending(), Some(Ending::Closed)),
        "closed by us, not by a failure: {:?}",
        client.ending()
    );
    assert_eq!(next_events(&mut events, 1).await, ["Disconnected"]);
    let ending = next_ending(&mut endings).await;
    assert!(matches!(ending, Some(Ending::Closed)), "got {ending:?}");
    assert!(
        bounded("the end of the events", events.recv())
            .await
            .is_none(),
        "nothing is reported after close"
    );
    let after = bounded("a call after close", client.replica(context::current())).await;
    assert!(matches!(after, Err(RpcError::Shutdown)), "got {after:?}");
    c.kill().await;
}
