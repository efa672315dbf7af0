//! The user's callbacks, boxed once by the builder and called by the task.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::catch::panic_message;
use crate::context::AttemptContext;
use crate::error::{DriverEvent, PanicReport};
use crate::health::{HealthCheck, ProbeFn};
use crate::runtime::BoxFuture;

pub(crate) type OnEventFn<A, C, E> = dyn Fn(DriverEvent<A, C, E>) -> BoxFuture<()> + Send + Sync;
pub(crate) type RetryDelayFn = dyn Fn(u32) -> Duration + Send + Sync;
pub(crate) type PanicHookFn = dyn Fn(&PanicReport) + Send + Sync;

/// The callbacks the task calls.
pub(crate) struct Hooks<A, C, E> {
    /// `get_address` and `connect`, with the room for their futures.
    pub(crate) attempts: Box<dyn Attempts<A, C, E>>,
    pub(crate) on_event: Option<Box<OnEventFn<A, C, E>>>,
    pub(crate) retry_delay: Option<Box<RetryDelayFn>>,
    pub(crate) panic_hook: Option<Box<PanicHookFn>>,
    /// Boxed once more: most persistent connections have none, and pay one word for it.
    pub(crate) health: Option<Box<(HealthCheck, Box<ProbeFn<C>>)>>,
}

/// What the future of an attempt in flight gave; `Err(message)` if the user's code
/// panicked.
pub(crate) enum Outcome<A, C, E> {
    Address(Result<Result<A, E>, Arc<str>>),
    Dialed(Result<Result<C, E>, Arc<str>>),
}

/// The user's `get_address` and `connect`, and the future of the attempt in flight. The
/// futures of one cycle of attempts (a fetch, a dial, and again after each failure) share
/// one allocation, made when the cycle starts and freed once it has connected, so a retry
/// allocates nothing and an idle connection keeps no room for them. Panics in the user's
/// code come back as `Err(message)`.
pub(crate) trait Attempts<A, C, E>: Send + Sync {
    /// Calls `get_address`; its future replaces any in flight (a panic in the call is the
    /// next outcome).
    fn fetch(&mut self);
    /// Calls `connect`; its future replaces any in flight (a panic in the call is the
    /// next outcome).
    fn dial(&mut self, address: A, ctx: AttemptContext<E>);
    /// Polls the future in flight (pending if there is none); it is dropped once done.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<A, C, E>>;
    /// Drops the future in flight (a cancelled attempt).
    fn cancel(&mut self);
}

pin_project_lite::pin_project! {
    #[project = InFlightProj]
    enum InFlight<GF, KF> {
        Idle,
        Fetch { #[pin] future: GF },
        Dial { #[pin] future: KF },
        // The call that was to make the future panicked: the outcome of the next poll.
        FetchPanicked { message: Arc<str> },
        DialPanicked { message: Arc<str> },
    }
}

/// [`Attempts`] for the user's closures `G` and `K`, whose futures are `GF` and `KF`.
pub(crate) struct AttemptSlot<G, GF, K, KF> {
    get_address: G,
    connect: K,
    /// In a `Mutex` only so that the builder stays `Sync` whatever the futures are: it is
    /// reached through `&mut self` (`get_mut`), never locked.
    in_flight: Mutex<Room<GF, KF>>,
}

/// The room for an attempt's future, while a cycle of attempts runs.
type Room<GF, KF> = Option<Pin<Box<InFlight<GF, KF>>>>;

impl<G, GF, K, KF> AttemptSlot<G, GF, K, KF> {
    pub(crate) fn new(get_address: G, connect: K) -> Self {
        AttemptSlot {
            get_address,
            connect,
            in_flight: Mutex::new(None),
        }
    }

    fn in_flight(&mut self) -> &mut Room<GF, KF> {
        self.in_flight
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The room for the next future, emptied (made at the start of a cycle).
    fn room(&mut self) -> Pin<&mut InFlight<GF, KF>> {
        let room = self
            .in_flight()
            .get_or_insert_with(|| Box::pin(InFlight::Idle));
        room.set(InFlight::Idle);
        room.as_mut()
    }
}

impl<A, C, E, G, GF, K, KF> Attempts<A, C, E> for AttemptSlot<G, GF, K, KF>
where
    G: Fn() -> GF + Send + Sync,
    GF: Future<Output = Result<A, E>> + Send,
    K: Fn(A, AttemptContext<E>) -> KF + Send + Sync,
    KF: Future<Output = Result<C, E>> + Send,
{
    fn fetch(&mut self) {
        let called = catch_unwind(AssertUnwindSafe(|| (self.get_address)()));
        self.room().set(match called {
            Ok(future) => InFlight::Fetch { future },
            Err(payload) => InFlight::FetchPanicked {
                message: panic_message(payload),
            },
        });
    }

    fn dial(&mut self, address: A, ctx: AttemptContext<E>) {
        let called = catch_unwind(AssertUnwindSafe(|| (self.connect)(address, ctx)));
        self.room().set(match called {
            Ok(future) => InFlight::Dial { future },
            Err(payload) => InFlight::DialPanicked {
                message: panic_message(payload),
            },
        });
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<A, C, E>> {
        let Some(room) = self.in_flight() else {
            return Poll::Pending;
        };
        let mut room = room.as_mut();
        let outcome = match room.as_mut().project() {
            InFlightProj::Idle => return Poll::Pending,
            InFlightProj::FetchPanicked { message } => Outcome::Address(Err(message.clone())),
            InFlightProj::DialPanicked { message } => Outcome::Dialed(Err(message.clone())),
            InFlightProj::Fetch { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => Outcome::Address(Ok(result)),
                    Err(payload) => Outcome::Address(Err(panic_message(payload))),
                }
            }
            InFlightProj::Dial { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => Outcome::Dialed(Ok(result)),
                    Err(payload) => Outcome::Dialed(Err(panic_message(payload))),
                }
            }
        };
        if matches!(outcome, Outcome::Dialed(Ok(Ok(_)))) {
            // Connected: the cycle is over; an idle connection keeps no room.
            *self.in_flight() = None;
        } else {
            room.set(InFlight::Idle);
        }
        Poll::Ready(outcome)
    }

    fn cancel(&mut self) {
        if let Some(room) = self.in_flight() {
            room.set(InFlight::Idle);
        }
    }
}
