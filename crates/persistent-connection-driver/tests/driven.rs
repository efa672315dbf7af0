//! `Driven` on its own (R1's "notices when it dies", R11's close): the driving future's end
//! is the connection's death, `close` drops the future, and `ending` says why. See
//! `CONTRACT.md`. Runs on plain threads: the driver needs no runtime of any one kind.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use persistent_connection_driver::{BoxFuture, CloseSignal, Connection, Driven, Ending, Runtime};

/// Polls on this thread until done; parks between wake-ups, at most 5 s in all.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 5 s for a future"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Every task on a thread of its own; no timers needed here.
struct Threads;

impl Runtime for Threads {
    fn spawn(&self, task: BoxFuture<()>) {
        std::thread::spawn(move || block_on(task));
    }
    fn sleep(&self, _: Duration) -> BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reset by peer")]
struct Reset;

#[test]
fn the_end_of_the_driving_future_is_the_connections_death() {
    let peer = CloseSignal::new();
    let gone = peer.clone();
    let conn = Driven::new("handle", async move {
        gone.closed().await;
        Err::<(), _>(Reset)
    });
    assert_eq!(*conn, "handle");
    assert!(!conn.is_closed());
    conn.start(&Threads);
    conn.start(&Threads); // once only
    assert!(!conn.is_closed(), "it runs until the peer goes");
    peer.close();
    block_on(conn.closed());
    assert!(conn.is_closed());
    match conn.ending() {
        Some(Ending::Failed(e)) => assert_eq!(e.to_string(), "reset by peer"),
        other => panic!("expected the driving future's error, got {other:?}"),
    }
}

/// Raises its signal when dropped: tells a test that a driving future was dropped.
struct Dropped(CloseSignal);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[test]
fn close_drops_the_running_future_and_says_so() {
    let dropped = CloseSignal::new();
    let guard = Dropped(dropped.clone());
    let conn = Driven::new((), async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    conn.start(&Threads);
    block_on(conn.close());
    assert!(
        dropped.is_closed(),
        "close resolves once the future is gone"
    );
    assert!(matches!(conn.ending(), Some(Ending::Closed)));
    assert_eq!(conn.ending().unwrap().to_string(), "closed from this side");
}

#[test]
fn a_connection_closed_before_it_started_never_runs() {
    let ran = CloseSignal::new();
    let flag = ran.clone();
    let conn = Driven::new((), async move { flag.close() });
    block_on(conn.close());
    conn.start(&Threads);
    assert!(conn.is_closed());
    assert!(
        !ran.is_closed(),
        "a closed connection's future is never started"
    );
    assert!(matches!(conn.ending(), Some(Ending::Closed)));
    assert!(conn.take_driver().is_none());
}

#[test]
fn a_panicking_driving_future_ends_the_connection_with_its_message() {
    let conn = Driven::new((), async {
        if true {
            panic!("driver blew up");
        }
    });
    conn.start(&Threads);
    block_on(conn.closed());
    match conn.ending() {
        Some(Ending::Panicked(message)) => assert_eq!(&*message, "driver blew up"),
        other => panic!("expected the panic, got {other:?}"),
    }
}

#[test]
fn a_future_that_ends_cleanly_says_the_peer_closed() {
    let conn = Driven::new(7u8, async {});
    conn.start(&Threads);
    block_on(conn.closed());
    assert!(matches!(conn.ending(), Some(Ending::Finished)));
    assert_eq!(
        conn.ending().unwrap().to_string(),
        "the peer closed the connection"
    );
    assert_eq!(*conn.clone().handle(), 7);
}

#[test]
fn a_handle_that_knows_it_is_dead_is_closed_before_the_future_ends() {
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conn = Driven::new(dead.clone(), std::future::pending::<()>())
        .closed_when(|h| h.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!conn.is_closed());
    dead.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(conn.is_closed(), "the handle's own verdict counts");
    assert!(Connection::is_closed(&conn));
}

#[test]
fn clones_are_the_same_connection() {
    let a = Driven::new(1u8, async {});
    let b = a.clone();
    let c = Driven::new(1u8, async {});
    assert!(Driven::ptr_eq(&a, &b));
    assert!(!Driven::ptr_eq(&a, &c));
}

#[test]
fn a_failure_prints_its_causes() {
    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Db(#[source] Reset);
    let conn = Driven::new((), async { Err::<(), _>(Db(Reset)) });
    conn.start(&Threads);
    block_on(conn.closed());
    assert_eq!(
        conn.ending().unwrap().to_string(),
        "the connection failed: db error: reset by peer"
    );
}

#[test]
fn a_connection_dropped_before_it_started_frees_its_future() {
    let dropped = CloseSignal::new();
    let guard = Dropped(dropped.clone());
    let conn = Driven::new((), async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    let driver = conn.take_driver().expect("the driving future, once");
    assert!(conn.take_driver().is_none(), "it is handed over once");
    drop(conn);
    // Every clone is gone: the driving future ends at once, and drops the user's future.
    block_on(driver);
    assert!(dropped.is_closed(), "the user's future was dropped");
}

#[test]
fn closed_when_holds_for_every_clone_and_is_set_once() {
    let conn = Driven::new(5u32, std::future::pending::<()>());
    let clone = conn.clone().closed_when(|n| *n == 5);
    assert!(conn.is_closed(), "set through a clone, seen by all");
    assert!(Connection::is_closed(&clone));
    let conn = conn.closed_when(|_| false);
    assert!(conn.is_closed(), "a second call changes nothing");
}

/// Counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Takes `conn`'s driving future and polls it once with a counting waker (it must be
/// pending): the future, and the count (the test holds the waker's only other reference).
fn polled_once<H>(conn: &Driven<H>) -> (BoxFuture<()>, Arc<Count>)
where
    H: Send + Sync + 'static,
{
    let mut driver = conn.take_driver().expect("the driving future");
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let first = driver.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(first.is_pending(), "the driving future waits at first");
    (driver, count)
}

#[test]
fn close_wakes_the_running_driving_future() {
    let conn = Driven::new((), std::future::pending::<()>());
    let (mut driver, count) = polled_once(&conn);
    let _closing = Connection::close(&conn);
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "close woke the driving future"
    );
    let next = driver
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(next.is_ready(), "woken, it stops");
    assert!(matches!(conn.ending(), Some(Ending::Closed)));
    assert!(conn.is_closed());
}

#[test]
fn a_driving_future_that_ends_keeps_no_waker() {
    let peer = CloseSignal::new();
    let conn = Driven::new((), peer.closed());
    let (mut driver, count) = polled_once(&conn);
    peer.close();
    let next = driver
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(next.is_ready(), "the peer went: it ends");
    assert!(matches!(conn.ending(), Some(Ending::Finished)));
    assert_eq!(
        Arc::strong_count(&count),
        1,
        "the waker left for close is dropped with the finished future (it would keep its \
         task's memory alive)"
    );
}
