//! Keeps a connection to a service alive: looks up where the service is, dials it, hands
//! the connection out, notices when it dies and dials again.
//!
//! This crate is the core: [`Machine`], a pure, deterministic state machine (no I/O, no
//! clock, no allocation, `#![no_std]`) that decides every step of a persistent
//! connection. You feed it [`Input`]s and carry out the [`Command`]s it yields. Runtime
//! adapters (`persistent-connection-tokio`, `-async-std`, `-smol`) drive it for you.
//!
//! # Driving the machine by hand
//!
//! The rule: feed one input with [`Machine::handle_input`], then drain
//! [`Machine::poll_command`] until it returns `None`, carrying out each command in order.
//!
//! ```
//! use core::time::Duration;
//! use persistent_connection::{
//!     AttemptId, Command, Config, Event, Input, Jitter, Machine, Outcome, RetryPolicy,
//! };
//!
//! // Address: a port number; connection: a connection id; error: a static message.
//! let config = Config::new()
//!     .retry_policy(RetryPolicy::Constant(Duration::from_secs(1)))
//!     .jitter(Jitter::Off);
//! let mut m: Machine<u16, u32, &str> = Machine::new(config);
//!
//! // A cycle starts at once: report AttemptingToConnect, and wait for its handler.
//! assert_eq!(m.poll_command(), Some(Command::Emit(Event::AttemptingToConnect)));
//! m.handle_input(Input::EventHandled).unwrap();
//!
//! // Each attempt starts its retry timer, then fetches the address.
//! let Some(Command::StartTimer { timer, delay }) = m.poll_command() else { panic!() };
//! assert_eq!(delay, Duration::from_secs(1));
//! assert_eq!(m.poll_command(), Some(Command::FetchAddress { attempt: AttemptId(1) }));
//! m.handle_input(Input::AddressObtained { attempt: AttemptId(1), result: Ok(8080) }).unwrap();
//! assert_eq!(m.poll_command(), Some(Command::Emit(Event::ObtainedAddress(8080))));
//! m.handle_input(Input::EventHandled).unwrap();
//!
//! // Dial; the dial fails: waiters get the error, then FailedToConnect is reported.
//! assert_eq!(m.poll_command(), Some(Command::Dial { attempt: AttemptId(1), address: 8080 }));
//! m.handle_input(Input::Dialed { attempt: AttemptId(1), result: Err("refused") }).unwrap();
//! let Some(Command::Outcome(Outcome::Failed { repeated: false, .. })) = m.poll_command()
//! else { panic!() };
//! m.handle_input(Input::EventHandled).unwrap();
//!
//! // The next attempt waits for the retry timer.
//! assert_eq!(m.poll_command(), None);
//! m.handle_input(Input::TimerFired(timer)).unwrap();
//! assert!(matches!(m.poll_command(), Some(Command::StartTimer { .. })));
//! assert_eq!(m.poll_command(), Some(Command::FetchAddress { attempt: AttemptId(2) }));
//! assert_eq!(m.consecutive_failures(), 1);
//! ```
//!
//! # The rules
//!
//! The behaviour follows rules R1..R16 of the project's design (a port of Jane Street's
//! `Persistent_connection`): each event goes to one handler that gates progress, the
//! outcome of every attempt reaches the waiters before its event, `ObtainedAddress` and
//! `FailedToConnect` are not repeated within a cycle, the retry timer spaces out the
//! starts of attempts, and `close` cancels what is in flight and closes what is open.
//! See [`Machine`] for the contract of the loop.
//!
//! # The driver (feature `std`, on by default)
//!
//! [`driver`] runs a Machine for you on any async runtime, through the small
//! [`driver::Runtime`] trait (spawn a task, sleep): it calls your `get_address`, `connect`
//! and `on_event`, watches the connection ([`driver::Connection`]) and serves the
//! [`driver::PersistentConnection`] handle. The adapter crates only implement `Runtime`.
//! [`driver::VirtualClock`] lets tests run it on virtual time. Without default features
//! the crate is `#![no_std]` and has no allocator needs.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "std")]
extern crate std;

mod machine;
mod policy;
mod queue;
mod types;

pub use machine::{Machine, error_key};
pub use policy::{Exponential, Jitter, RetryPolicy};
pub use types::{
    AttemptError, AttemptId, Command, Config, Event, Expecting, Input, InputError, InputKind,
    Outcome, Rejected, State, StopKind, TimerId,
};

#[cfg(feature = "std")]
pub mod driver;
