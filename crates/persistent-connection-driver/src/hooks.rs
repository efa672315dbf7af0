//! The user's callbacks, boxed once by the builder and called by the task.

use std::time::Duration;

use crate::context::AttemptContext;
use crate::error::{DriverEvent, PanicReport};
use crate::health::{HealthCheck, ProbeFn};
use crate::runtime::BoxFuture;

pub(crate) type GetAddressFn<A, E> = dyn Fn() -> BoxFuture<Result<A, E>> + Send + Sync;
pub(crate) type ConnectFn<A, C, E> =
    dyn Fn(A, AttemptContext<E>) -> BoxFuture<Result<C, E>> + Send + Sync;
pub(crate) type OnEventFn<A, C, E> = dyn Fn(DriverEvent<A, C, E>) -> BoxFuture<()> + Send + Sync;
pub(crate) type RetryDelayFn = dyn Fn(u32) -> Duration + Send + Sync;
pub(crate) type PanicHookFn = dyn Fn(&PanicReport) + Send + Sync;

/// The callbacks the task calls.
pub(crate) struct Hooks<A, C, E> {
    pub(crate) get_address: Box<GetAddressFn<A, E>>,
    pub(crate) connect: Box<ConnectFn<A, C, E>>,
    pub(crate) on_event: Option<Box<OnEventFn<A, C, E>>>,
    pub(crate) retry_delay: Option<Box<RetryDelayFn>>,
    pub(crate) panic_hook: Option<Box<PanicHookFn>>,
    /// Boxed once more: most persistent connections have none, and pay one word for it.
    pub(crate) health: Option<Box<(HealthCheck, Box<ProbeFn<C>>)>>,
}
