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
    /// The optional callbacks, boxed together and only if one is set: most persistent
    /// connections set none, and pay one word for them instead of seven.
    optional: Option<Box<Optional<A, C, E>>>,
}

/// The callbacks a persistent connection may go without.
struct Optional<A, C, E> {
    /// `on_event`'s handler (default: none, events are handled at once).
    on_event: Option<Box<OnEventFn<A, C, E>>>,
    /// `retry_delay`'s closure (default: none, the retry policy gives the delay).
    retry_delay: Option<Box<RetryDelayFn>>,
    /// `on_callback_panic`'s hook (default: print to stderr).
    panic_hook: Option<Box<PanicHookFn>>,
    /// The health check and its probe (default: none).
    health: Option<(HealthCheck, Box<ProbeFn<C>>)>,
}

impl<A, C, E> Hooks<A, C, E> {
    /// `get_address` and `connect`, with no optional callback.
    pub(crate) fn new(attempts: Box<dyn Attempts<A, C, E>>) -> Self {
        Hooks {
            attempts,
            optional: None,
        }
    }

    /// The event handler, if one is set.
    pub(crate) fn on_event(&self) -> Option<&OnEventFn<A, C, E>> {
        self.optional.as_ref()?.on_event.as_deref()
    }

    /// The retry-delay closure, if one is set.
    pub(crate) fn retry_delay(&self) -> Option<&RetryDelayFn> {
        self.optional.as_ref()?.retry_delay.as_deref()
    }

    /// The panic hook, if one is set.
    pub(crate) fn panic_hook(&self) -> Option<&PanicHookFn> {
        self.optional.as_ref()?.panic_hook.as_deref()
    }

    /// The health check and its probe, if one is configured (R17).
    pub(crate) fn health(&self) -> Option<(&HealthCheck, &ProbeFn<C>)> {
        let (check, probe) = self.optional.as_ref()?.health.as_ref()?;
        Some((check, &**probe))
    }

    /// Sets the event handler.
    pub(crate) fn set_on_event(&mut self, on_event: Box<OnEventFn<A, C, E>>) {
        self.optional_mut().on_event = Some(on_event);
    }

    /// Sets the retry-delay closure, or removes it (`None`).
    pub(crate) fn set_retry_delay(&mut self, retry_delay: Option<Box<RetryDelayFn>>) {
        match retry_delay {
            Some(f) => self.optional_mut().retry_delay = Some(f),
            None => {
                if let Some(optional) = &mut self.optional {
                    optional.retry_delay = None;
                    // The box exists only while it holds a callback.
                    if optional.is_empty() {
                        self.optional = None;
                    }
                }
            }
        }
    }

    /// Sets the panic hook.
    pub(crate) fn set_panic_hook(&mut self, panic_hook: Box<PanicHookFn>) {
        self.optional_mut().panic_hook = Some(panic_hook);
    }

    /// Sets the health check and its probe.
    pub(crate) fn set_health(&mut self, check: HealthCheck, probe: Box<ProbeFn<C>>) {
        self.optional_mut().health = Some((check, probe));
    }

    /// The optional callbacks, their box made by the first one set (at build time).
    fn optional_mut(&mut self) -> &mut Optional<A, C, E> {
        self.optional.get_or_insert_with(|| {
            Box::new(Optional {
                on_event: None,
                retry_delay: None,
                panic_hook: None,
                health: None,
            })
        })
    }
}

impl<A, C, E> Optional<A, C, E> {
    /// No callback is set: the box is not needed.
    fn is_empty(&self) -> bool {
        self.on_event.is_none()
            && self.retry_delay.is_none()
            && self.panic_hook.is_none()
            && self.health.is_none()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    type H = Hooks<u16, u32, String>;

    fn hooks() -> H {
        let get_address = || std::future::ready(Ok::<u16, String>(1));
        let connect = |_: u16, _: AttemptContext<String>| std::future::ready(Err("no".to_owned()));
        Hooks::new(Box::new(AttemptSlot::new(get_address, connect)))
    }

    fn retry_delay() -> Option<Box<RetryDelayFn>> {
        Some(Box::new(|_| Duration::from_secs(1)))
    }

    #[test]
    fn the_optional_box_exists_only_while_a_callback_is_set() {
        let mut h = hooks();
        assert!(h.optional.is_none(), "nothing set, nothing boxed");
        h.set_retry_delay(retry_delay());
        assert!(h.retry_delay().is_some());
        h.set_retry_delay(None); // what `retry_policy` does
        assert!(h.retry_delay().is_none());
        assert!(
            h.optional.is_none(),
            "the last callback gone, the box is freed"
        );
    }

    #[test]
    fn clearing_the_retry_delay_keeps_the_other_callbacks() {
        let mut h = hooks();
        h.set_on_event(Box::new(|_| Box::pin(async {})));
        h.set_retry_delay(retry_delay());
        h.set_retry_delay(None);
        assert!(h.on_event().is_some(), "on_event survives retry_policy");
        assert!(h.retry_delay().is_none());

        let mut h = hooks();
        h.set_panic_hook(Box::new(|_| {}));
        h.set_retry_delay(None);
        assert!(
            h.panic_hook().is_some(),
            "the panic hook survives retry_policy"
        );
        assert!(h.on_event().is_none() && h.health().is_none());
    }
}
