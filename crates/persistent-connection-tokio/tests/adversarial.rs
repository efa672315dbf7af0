//! Adversarial review of the driver and the Tokio adapter: races, lost wake-ups,
//! cancel-safety, leaks, panics and rule violations (R3, R5, R6, R8, R9, R11..R14 of
//! `CONTRACT.md`).
//!
//! Each test here once exposed a bug or guards against one; they keep asserting the
//! correct behaviour. No sleeps: waits are on explicit signals (a oneshot whose sender
//! lives in the task's hooks tells when the task is gone), paused Tokio time, or a
//! `VirtualClock`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use persistent_connection_tokio::{
    AttemptError, Backoff, Builder, Callback, CloseSignal, ConnectError, Connection, Event, Jitter,
    PersistentConnection, State, Stopped, Tokio, VirtualClock, builder,
};
use tokio::sync::oneshot;

type Pc = PersistentConnection<&'static str, CloseSignal, String>;
type Waiting = Pin<Box<dyn Future<Output = Result<CloseSignal, ConnectError<String>>> + Send>>;

/// Every connection `connect` made, to check they were all closed.
#[derive(Clone, Default)]
struct Made(Arc<Mutex<Vec<CloseSignal>>>);

impl Made {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn all_closed(&self) -> bool {
        self.0.lock().unwrap().iter().all(CloseSignal::is_closed)
    }
}

/// A persistent connection whose dials always succeed at once (recorded in `made`), with
/// no retry delay (so no timer), and whose hooks hold `alive`: when the task is gone, the
/// matching receiver resolves.
fn basic(made: &Made, alive: oneshot::Sender<()>) -> Builder<&'static str, CloseSignal, String> {
    let made = made.clone();
    builder(
        "svc",
        move || {
            let _alive = &alive;
            async { Ok::<_, String>("svc") }
        },
        move |_addr, _ctx| {
            let made = made.clone();
            async move {
                let conn = CloseSignal::new();
                made.0.lock().unwrap().push(conn.clone());
                Ok(conn)
            }
        },
    )
    .retry_policy(Backoff::Constant(Duration::ZERO))
    .jitter(Jitter::Off)
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future + ?Sized>(future: &mut Pin<Box<F>>) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// The output of `future` if it is ready now.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    poll_once(&mut Box::pin(future))
}

/// The stream's next item if one is ready now: `Some(None)` when it has ended.
fn next_now<S: Stream + Unpin>(stream: &mut S) -> Option<Option<S::Item>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(stream).poll_next(&mut cx) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

/// A connection whose `close()` or `closed()` panics when called (not when polled).
#[derive(Clone)]
struct Fragile {
    signal: CloseSignal,
    close_panics: bool,
    closed_panics: bool,
}

impl Connection for Fragile {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        // Closes, then blows up: the panic must be reported, and must not kill the task.
        self.signal.close();
        assert!(!self.close_panics, "close() blew up");
        std::future::ready(())
    }
    fn is_closed(&self) -> bool {
        self.signal.is_closed()
    }
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        assert!(!self.closed_panics, "closed() blew up");
        self.signal.closed()
    }
}

/// Counts live values: one more while a `Live` exists.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------- former bugs

/// R8, R9: once `close()` has been called, the connection being closed is never handed
/// out: `connected()` stays pending (as in the seed), the other forms say `Closed` at once.
#[tokio::test]
async fn r8_r9_nothing_is_handed_out_after_close() {
    let made = Made::default();
    let (alive, _gone) = oneshot::channel();
    let pc = basic(&made, alive).spawn();
    let conn = pc.connected().await;

    let closing = pc.close();
    assert!(pc.is_closed());
    // Asked after close() was called (the task has not run since: one thread).
    let plain = pc.connected();
    let or_closed = pc.connected_or_closed();
    let any = pc.connected_or_failed_to_connect();
    closing.await;

    assert!(conn.is_closed());
    // What each call gave: `Some(true)` = a connection, `Some(false)` = an error,
    // `None` = pending.
    let got = (
        now_or_never(plain).map(|_| true),
        now_or_never(or_closed).map(|r| r.is_ok()),
        now_or_never(any).map(|r| r.is_ok()),
    );
    assert_eq!(
        got,
        (None, Some(false), Some(false)),
        "(connected, connected_or_closed, connected_or_failed_to_connect) after close()"
    );
}

/// `StateChanges` is documented to end after `State::Closed`; the state channel is never
/// closed when the task finishes (only the event channel is), so a
/// `while let Some(state) = states.next().await` loop never exits while any handle lives.
#[tokio::test]
async fn state_changes_end_after_closed() {
    let made = Made::default();
    let (alive, _gone) = oneshot::channel();
    let pc = basic(&made, alive).spawn();
    let mut before = pc.state_changes();
    pc.connected().await;
    pc.close().await;

    let mut seen = Vec::new();
    let mut ended = false;
    for _ in 0..64 {
        match next_now(&mut before) {
            Some(Some(state)) => seen.push(state),
            Some(None) => {
                ended = true;
                break;
            }
            None => break,
        }
    }
    assert_eq!(seen.last(), Some(&State::Closed), "{seen:?}");
    assert!(ended, "the stream is still pending after {seen:?}");

    let mut after = pc.state_changes();
    assert_eq!(next_now(&mut after), Some(Some(State::Closed)));
    assert_eq!(
        next_now(&mut after),
        Some(None),
        "a subscription made after the close must end after Closed"
    );
}

/// R6/R11: a panic in `Connection::close` is meant to be reported to the hook
/// (`Callback::ConnectionClose`) like one in the future it returns. But the driver calls
/// `conn.close()` outside `catch_unwind`, so a panic in the call itself unwinds through the
/// background task: the task dies, the hook never hears of it and `close()` never resolves.
#[tokio::test]
async fn panic_in_connection_close_call_is_reported_and_close_finishes() {
    let (alive, gone) = oneshot::channel::<()>();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let hook = reports.clone();
    let pc = builder(
        "svc",
        move || {
            let _alive = &alive;
            async { Ok::<_, String>("svc") }
        },
        |_addr, _ctx| async {
            Ok(Fragile {
                signal: CloseSignal::new(),
                close_panics: true,
                closed_panics: false,
            })
        },
    )
    .on_callback_panic(move |report| hook.lock().unwrap().push(report.during))
    .spawn();
    let conn = pc.connected().await;

    let closing = pc.close();
    // Resolves once the task is gone, whether it finished or died.
    let _ = gone.await;
    assert!(
        now_or_never(closing).is_some(),
        "the background task is gone but close() never resolves"
    );
    assert!(conn.is_closed());
    assert_eq!(*reports.lock().unwrap(), [Callback::ConnectionClose]);
}

/// The same for `Connection::closed`, called when a connection becomes current: the task
/// dies right after handing the connection out; the `Connected` event is never reported
/// and `close()` hangs.
#[tokio::test]
async fn panic_in_connection_closed_call_is_reported_and_close_finishes() {
    let (alive, gone) = oneshot::channel::<()>();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let hook = reports.clone();
    let dials = Arc::new(AtomicUsize::new(0));
    let pc = builder(
        "svc",
        move || {
            let _alive = &alive;
            async { Ok::<_, String>("svc") }
        },
        move |_addr, _ctx| {
            let first = dials.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                Ok(Fragile {
                    signal: CloseSignal::new(),
                    close_panics: false,
                    closed_panics: first,
                })
            }
        },
    )
    .retry_policy(Backoff::Constant(Duration::ZERO))
    .on_callback_panic(move |report| hook.lock().unwrap().push(report.during))
    .spawn();
    let _conn = pc.connected().await;

    let closing = pc.close();
    let _ = gone.await;
    assert!(
        now_or_never(closing).is_some(),
        "the background task is gone but close() never resolves"
    );
    assert!(
        reports.lock().unwrap().contains(&Callback::ConnectionClose),
        "the panic was not reported"
    );
}

/// A Tokio runtime built without `enable_time()` (an easy mistake with
/// `Builder::new_current_thread().build()`): `tokio::time::sleep` panics when the task
/// starts its first retry timer, the task dies, and every handle hangs silently (the only
/// trace is a panic message on stderr). Correct: refuse at creation (panic in `builder` /
/// `spawn`), or fail the waiters; never a silent hang.
#[test]
fn runtime_without_timers_does_not_hang_silently() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (alive, gone) = oneshot::channel::<()>();
        let made = Made::default();
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            basic(&made, alive)
                .retry_policy(Backoff::Constant(Duration::from_secs(10)))
                .spawn()
        }));
        let Ok(pc) = spawned else {
            return; // Refusing loudly at creation is a fine answer.
        };
        let waiting = pc.connected_or_failed_to_connect();
        let _ = gone.await;
        assert!(
            now_or_never(waiting).is_some(),
            "the task died; a waiter must not hang forever"
        );
        assert!(now_or_never(pc.close_finished()).is_some());
    });
}

/// R13 / R11 when the runtime that runs the task shuts down while handles live on (a handle
/// in a `static`, shared by several `#[tokio::test]`s, is the classic case): the task is
/// dropped, but nothing tells the handles. `close()` never resolves and the connection is
/// never told to close.
#[test]
fn runtime_shutdown_closes_and_resolves_close() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let made = Made::default();
    let (alive, mut gone) = oneshot::channel::<()>();
    let (pc, conn): (Pc, CloseSignal) = runtime.block_on(async {
        let pc = basic(&made, alive).spawn();
        let conn = pc.connected().await;
        (pc, conn)
    });
    drop(runtime);
    assert!(
        matches!(gone.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
        "the task was dropped with its runtime"
    );
    assert!(
        now_or_never(pc.close()).is_some(),
        "close() hangs: the task is gone"
    );
    assert!(conn.is_closed(), "the connection was never closed");
}

// ---------------------------------------------------------------- guards

/// Cancel-safety (issue 3): dropping `connected*` futures, polled or not, loses nothing;
/// the next caller gets the one connection, and exactly one was made.
#[tokio::test]
async fn dropped_waiters_lose_nothing() {
    let gate = CloseSignal::new();
    let made = Made::default();
    let fetch_gate = gate.clone();
    let dial_made = made.clone();
    let pc = builder(
        "svc",
        move || {
            let gate = fetch_gate.clone();
            async move {
                gate.closed().await;
                Ok::<_, String>("svc")
            }
        },
        move |_addr, _ctx| {
            let made = dial_made.clone();
            async move {
                let conn = CloseSignal::new();
                made.0.lock().unwrap().push(conn.clone());
                Ok(conn)
            }
        },
    )
    .spawn();
    for i in 0..100 {
        let mut plain = Box::pin(pc.connected());
        let mut any = Box::pin(pc.connected_or_failed_to_connect());
        if i % 2 == 0 {
            assert!(poll_once(&mut plain).is_none());
            assert!(poll_once(&mut any).is_none());
        }
    }
    gate.close();
    let conn = pc.connected().await;
    assert!(!conn.is_closed());
    assert_eq!(made.count(), 1);
    pc.close().await;
    assert!(conn.is_closed());
}

/// R3, R5: when the handler of `FailedToConnect` (or `Connected`) starts, the waiters
/// registered before already hold that outcome.
#[tokio::test]
async fn r3_r5_waiters_hold_the_outcome_before_its_handler_runs() {
    let slot_f: Arc<Mutex<Option<Waiting>>> = Arc::default();
    let slot_c: Arc<Mutex<Option<Waiting>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ready = CloseSignal::new();
    let dials = Arc::new(AtomicUsize::new(0));
    let (handler_f, handler_c, handler_seen, handler_ready) =
        (slot_f.clone(), slot_c.clone(), seen.clone(), ready.clone());
    let pc = builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        move |_addr, _ctx| {
            let first = dials.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err("refused".to_string())
                } else {
                    Ok(CloseSignal::new())
                }
            }
        },
    )
    .retry_policy(Backoff::Constant(Duration::ZERO))
    .on_event(move |event| {
        let (slot_f, slot_c, seen, ready) = (
            handler_f.clone(),
            handler_c.clone(),
            handler_seen.clone(),
            handler_ready.clone(),
        );
        async move {
            let slot = match event {
                Event::AttemptingToConnect => {
                    ready.closed().await;
                    return;
                }
                Event::FailedToConnect(_) => slot_f,
                Event::Connected(_) => slot_c,
                _ => return,
            };
            let mut waiting = slot.lock().unwrap().take().expect("a waiter");
            let outcome = poll_once(&mut waiting).map(|r| r.is_ok());
            seen.lock().unwrap().push(outcome);
        }
    })
    .spawn();
    *slot_f.lock().unwrap() = Some(Box::pin(pc.connected_or_failed_to_connect()));
    let plain = pc.connected();
    *slot_c.lock().unwrap() = Some(Box::pin(async move { Ok(plain.await) }));
    ready.close();

    pc.connected().await;
    pc.close().await;
    assert_eq!(
        *seen.lock().unwrap(),
        [Some(false), Some(true)],
        "F handler saw the failure, C handler saw the connection, both already delivered"
    );
}

/// R11: `close()` resolves only after the `Disconnected` handler it causes has finished;
/// then the event stream has ended, and a subscription made afterwards ends at once.
#[tokio::test]
async fn r11_close_waits_for_the_disconnected_handler() {
    let entered = CloseSignal::new();
    let release = CloseSignal::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (h_entered, h_release, h_finished) = (entered.clone(), release.clone(), finished.clone());
    let made = Made::default();
    let (alive, _gone) = oneshot::channel();
    let pc = basic(&made, alive)
        .on_event(move |event| {
            let (entered, release, finished) =
                (h_entered.clone(), h_release.clone(), h_finished.clone());
            async move {
                if matches!(event, Event::Disconnected) {
                    entered.close();
                    release.closed().await;
                    finished.store(true, Ordering::SeqCst);
                }
            }
        })
        .spawn();
    let mut events = pc.events();
    let conn = pc.connected().await;

    let mut closing = Box::pin(pc.close());
    entered.closed().await;
    assert!(conn.is_closed());
    assert!(
        poll_once(&mut closing).is_none(),
        "resolved during a handler"
    );
    assert!(now_or_never(pc.close_finished()).is_none());
    release.close();
    closing.await;
    assert!(finished.load(Ordering::SeqCst));
    assert_eq!(pc.state(), State::Closed);
    assert!(pc.current_connection().is_none());

    let mut names = Vec::new();
    for _ in 0..16 {
        match next_now(&mut events) {
            Some(Some(Ok(event))) => names.push(event.name()),
            Some(Some(Err(lagged))) => panic!("{lagged}"),
            Some(None) => break,
            None => panic!("the event stream did not end after close: {names:?}"),
        }
    }
    // Subscribed before the task first ran (one thread), so it saw every event.
    assert_eq!(
        names,
        [
            "AttemptingToConnect",
            "ObtainedAddress",
            "Connected",
            "Disconnected"
        ]
    );
    assert!(matches!(next_now(&mut pc.events()), Some(None)));
}

/// R12: a dial that succeeds right after `abort` (same poll) is closed at once, never
/// handed out, and never reported; waiters get the reason; the task ends.
#[tokio::test]
async fn r12_dial_that_succeeds_after_abort_is_closed_at_once() {
    let made = Made::default();
    let dial_made = made.clone();
    let (alive, gone) = oneshot::channel::<()>();
    let names = Arc::new(Mutex::new(Vec::new()));
    let log = names.clone();
    let pc = builder(
        "svc",
        move || {
            let _alive = &alive;
            async { Ok::<_, String>("svc") }
        },
        move |_addr, ctx| {
            let made = dial_made.clone();
            async move {
                ctx.abort("decommissioned".to_string());
                let conn = CloseSignal::new();
                made.0.lock().unwrap().push(conn.clone());
                Ok(conn)
            }
        },
    )
    .on_event(move |event| {
        log.lock().unwrap().push(event.name());
        async {}
    })
    .spawn();
    match pc.connected_or_failed_to_connect().await {
        Err(ConnectError::Stopped(Stopped::Aborted(reason))) => {
            assert_eq!(*reason, "decommissioned")
        }
        other => panic!("expected the abort reason, got {other:?}"),
    }
    let _ = gone.await;
    assert_eq!(made.count(), 1);
    assert!(made.all_closed(), "the late connection was not closed");
    assert!(pc.current_connection().is_none());
    assert!(now_or_never(pc.close_finished()).is_some());
    assert_eq!(
        *names.lock().unwrap(),
        ["AttemptingToConnect", "ObtainedAddress"]
    );
}

/// R11, R13 under contention: `close()` or dropping every handle races dials that complete
/// on the other worker thread, and connections that die in their `Connected` handler.
/// Whatever the interleaving: every connection `connect` returned is closed once the close
/// has finished (or the task has ended), no hook is entered after that, and the task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_r13_close_or_drop_racing_dials_leaves_nothing_open() {
    for round in 0..200_usize {
        let made = Made::default();
        let done = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicUsize::new(0));
        let (alive, gone) = oneshot::channel::<()>();
        let (f_done, f_late) = (done.clone(), late.clone());
        let (d_done, d_late, d_made) = (done.clone(), late.clone(), made.clone());
        let (h_done, h_late) = (done.clone(), late.clone());
        let pc = builder(
            "svc",
            move || {
                let _alive = &alive;
                if f_done.load(Ordering::SeqCst) {
                    f_late.fetch_add(1, Ordering::SeqCst);
                }
                async { Ok::<_, String>("svc") }
            },
            move |_addr, _ctx| {
                if d_done.load(Ordering::SeqCst) {
                    d_late.fetch_add(1, Ordering::SeqCst);
                }
                let made = d_made.clone();
                async move {
                    tokio::task::yield_now().await;
                    let conn = CloseSignal::new();
                    made.0.lock().unwrap().push(conn.clone());
                    Ok(conn)
                }
            },
        )
        .retry_policy(Backoff::Constant(Duration::ZERO))
        .jitter(Jitter::Off)
        .on_event(move |event| {
            if h_done.load(Ordering::SeqCst) {
                h_late.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if let Event::Connected(conn) = event {
                    if round % 3 != 0 {
                        conn.close(); // dies young: the cycle goes round again
                    }
                }
            }
        })
        .spawn();
        let yields = round % 13;
        let closer = tokio::spawn(async move {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            if round % 2 == 0 {
                pc.close().await;
            } else {
                drop(pc);
            }
        });
        closer.await.unwrap();
        let _ = gone.await;
        done.store(true, Ordering::SeqCst);
        assert!(
            made.all_closed(),
            "round {round}: a connection was left open"
        );
        assert_eq!(late.load(Ordering::SeqCst), 0, "round {round}");
    }
}

/// No lost wake-ups: many waiters registered from both worker threads while the
/// persistent connection connects and is closed concurrently all resolve, each with a
/// connection or `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_racing_close_all_resolve() {
    for round in 0..50 {
        let made = Made::default();
        let (alive, _gone) = oneshot::channel();
        let pc = basic(&made, alive).spawn();
        let mut waiters = Vec::new();
        for i in 0..32 {
            let waiter = pc.clone();
            waiters.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    waiter
                        .connected_or_closed()
                        .await
                        .map(drop)
                        .map_err(ConnectError::from)
                } else {
                    waiter.connected_or_failed_to_connect().await.map(drop)
                }
            }));
            if i == round % 32 {
                let closer = pc.clone();
                drop(tokio::spawn(async move { closer.close().await }));
            }
        }
        for waiter in waiters {
            let result = waiter.await.unwrap();
            assert!(
                matches!(result, Ok(()) | Err(ConnectError::Stopped(Stopped::Closed))),
                "round {round}: {result:?}"
            );
        }
        pc.close().await;
        assert!(made.all_closed());
    }
}

/// R13: dropping every handle while the `Connected` handler runs closes the connection at
/// once, reports `Disconnected` only after that handler (R5), ends the task and the event
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_drop_during_connected_handler_ends_everything() {
    let entered = CloseSignal::new();
    let release = CloseSignal::new();
    let (h_entered, h_release) = (entered.clone(), release.clone());
    let made = Made::default();
    let (alive, gone) = oneshot::channel::<()>();
    let pc = basic(&made, alive)
        .on_event(move |event| {
            let (entered, release) = (h_entered.clone(), h_release.clone());
            async move {
                if matches!(event, Event::Connected(_)) {
                    entered.close();
                    release.closed().await;
                }
            }
        })
        .spawn();
    let mut events = pc.events();
    let conn = pc.connected().await;
    entered.closed().await;
    drop(pc);
    conn.closed().await; // closed while its handler still runs
    release.close();
    let _ = gone.await;

    let mut names = Vec::new();
    loop {
        let item = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
        match item {
            Some(Ok(event)) => names.push(event.name()),
            Some(Err(lagged)) => panic!("{lagged}"),
            None => break,
        }
        assert!(names.len() < 16, "{names:?}");
    }
    assert_eq!(names.last(), Some(&"Disconnected"), "{names:?}");
    assert_eq!(made.count(), 1);
    assert!(made.all_closed());
}

/// The connect timeout on paused Tokio time: each hung dial's future is dropped by the time
/// its waiter hears `TimedOut` (no leaked dials), repeated timeouts still reach waiters
/// (R3), and close drops nothing it should keep.
#[tokio::test(start_paused = true)]
async fn connect_timeout_drops_each_hung_dial() {
    let live = Arc::new(AtomicUsize::new(0));
    let dial_live = live.clone();
    let pc = builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        move |_addr, _ctx| {
            let guard = Live::new(&dial_live);
            async move {
                let _guard = guard;
                std::future::pending::<Result<CloseSignal, String>>().await
            }
        },
    )
    .connect_timeout(Duration::from_secs(1))
    .retry_policy(Backoff::Constant(Duration::from_secs(2)))
    .jitter(Jitter::Off)
    .spawn();
    for _ in 0..3 {
        // Bounded on paused time (a timer that is never armed would hang it otherwise).
        let outcome =
            tokio::time::timeout(Duration::from_secs(60), pc.connected_or_failed_to_connect())
                .await
                .expect("the attempt's connect timeout to fire within 60 s of paused time");
        match outcome {
            Err(ConnectError::Attempt(AttemptError::TimedOut(after))) => {
                assert_eq!(after, Duration::from_secs(1))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(live.load(Ordering::SeqCst), 0, "a timed-out dial was kept");
    }
    pc.close().await;
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// Closing during a long retry delay on a `VirtualClock` finishes without moving time and
/// leaves no timer behind.
#[tokio::test]
async fn close_during_virtual_retry_delay_leaves_no_timer() {
    let clock = VirtualClock::new();
    let pc = builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        |_addr, _ctx| async { Err::<CloseSignal, _>("refused".to_string()) },
    )
    .runtime(clock.runtime(Tokio::current()))
    .retry_policy(Backoff::Constant(Duration::from_secs(10)))
    .spawn();
    assert!(matches!(
        pc.connected_or_failed_to_connect().await,
        Err(ConnectError::Attempt(AttemptError::Connect(_)))
    ));
    clock.next_timer().await;
    pc.close().await;
    assert_eq!(clock.now(), Duration::ZERO);
    assert_eq!(clock.pending_timers(), 0);
}

/// `state_changes()` promises "the current state, then every change". It once activated
/// its receiver before reading the state, so a change in between showed up twice and the
/// state seemed to go backwards. Here every step waits for the test (the handlers gate
/// progress, R6), so a subscription made at any step must see exactly the states that
/// follow, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_start_at_the_current_state_then_follow_every_change() {
    let made = Made::default();
    let (alive, _gone) = oneshot::channel();
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let pc = basic(&made, alive)
        .on_event(move |event| {
            let (entered_tx, go_rx) = (entered_tx.clone(), go_rx.clone());
            async move {
                let _ = entered_tx.send(event.name());
                // Each handler waits for the test's go-ahead.
                let _ = tokio::task::spawn_blocking(move || go_rx.lock().unwrap().recv()).await;
                if let Event::Connected(conn) = event {
                    conn.close(); // dies in its handler: Disconnected follows it
                }
            }
        })
        .spawn();
    let mut states = pc.state_changes();
    let mut seen = Vec::new();
    let mut late_subscribers = Vec::new();
    for _ in 0..9 {
        // A handler is running and waits for us: nothing moves while we look.
        let event = tokio::time::timeout(Duration::from_secs(20), entered.recv())
            .await
            .expect("the next handler")
            .expect("the task runs");
        while let Some(Some(state)) = next_now(&mut states) {
            seen.push(state);
        }
        let now = pc.state();
        assert_eq!(
            seen.last(),
            Some(&now),
            "in the {event} handler, after {seen:?}"
        );
        // A subscriber made now starts with exactly this state.
        let mut late = pc.state_changes();
        assert_eq!(
            next_now(&mut late),
            Some(Some(now)),
            "in the {event} handler"
        );
        late_subscribers.push((seen.len(), late));
        go_tx.send(()).unwrap();
    }
    assert_eq!(
        seen,
        [
            State::Connecting,
            State::Connected,
            State::Disconnected,
            State::Connecting,
            State::Connected,
            State::Disconnected,
            State::Connecting,
        ]
    );
    // Each late subscriber then saw exactly the states that followed its first.
    for (at, mut late) in late_subscribers {
        let mut rest = Vec::new();
        while let Some(Some(state)) = next_now(&mut late) {
            rest.push(state);
        }
        assert_eq!(rest[..], seen[at..seen.len().min(at + rest.len())]);
        assert!(
            rest.len() + at >= seen.len(),
            "a late subscriber missed a change"
        );
    }
    drop(go_tx);
    pc.close().await;
}
