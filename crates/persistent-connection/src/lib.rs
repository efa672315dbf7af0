//! Keeps a connection to a service alive: looks up where the service is, dials it, hands
//! the connection out, notices when it dies and dials again.
//!
//! This crate is the core: [`Machine`], a pure, deterministic state machine (no I/O, no
//! clock, no allocation, `#![no_std]`) that decides every step of a persistent
//! connection. You feed it [`Input`]s and carry out the [`Command`]s it yields. The driver
//! crate (`persistent-connection-driver`) runs it on any async runtime, and the adapters
//! (`persistent-connection-tokio`, `-async-std`, `-smol`) give you that driver on yours.
//!
//! # Driving the machine by hand
//!
//! The rule: feed one input with [`Machine::handle_input`], then drain
//! [`Machine::poll_command`] until it returns `None`, carrying out each command in order.
//! Every [`Command::Emit`] is answered, once its handler has finished, with exactly one
//! [`Input::EventHandled`]; no other command is.
//!
//! ```
//! use core::time::Duration;
//! use persistent_connection::{
//!     AttemptId, Command, Config, Event, Failure, Input, Jitter, Machine, RetryPolicy,
//! };
//!
//! // Address: a port number; connection: a connection id; error: a static message.
//! let config = Config::new()
//!     .retry_policy(RetryPolicy::Constant(Duration::from_secs(1)))
//!     .jitter(Jitter::Off);
//! // The seed of the jitter is an argument: give each machine its own.
//! let mut m: Machine<u16, u32, &str> = Machine::new(config, 7);
//!
//! // A cycle starts at once: report AttemptingToConnect, and wait for its handler.
//! let attempting = Command::Emit { event: Event::AttemptingToConnect, attempt: None };
//! assert_eq!(m.poll_command(), Some(attempting));
//! m.handle_input(Input::EventHandled).unwrap();
//!
//! // Each attempt starts its retry timer, then fetches the address.
//! let Some(Command::StartTimer { timer, delay }) = m.poll_command() else { panic!() };
//! assert_eq!(delay, Duration::from_secs(1));
//! let first = AttemptId(1);
//! assert_eq!(m.poll_command(), Some(Command::FetchAddress { attempt: first }));
//! m.handle_input(Input::AddressObtained { attempt: first, result: Ok(8080) }).unwrap();
//! let obtained = Command::Emit { event: Event::ObtainedAddress(8080), attempt: Some(first) };
//! assert_eq!(m.poll_command(), Some(obtained));
//! m.handle_input(Input::EventHandled).unwrap();
//!
//! // Dial; the dial fails: the failure goes to the waiters, then it is reported.
//! let dial = Command::Dial { attempt: first, address: 8080, consecutive_failures: 0 };
//! assert_eq!(m.poll_command(), Some(dial));
//! m.handle_input(Input::Dialed { attempt: first, result: Err("refused") }).unwrap();
//! let failed = Event::FailedToConnect(Failure::Error("refused"));
//! assert_eq!(m.poll_command(), Some(Command::Emit { event: failed, attempt: Some(first) }));
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
//! `examples/blocking.rs` drives a Machine on one plain thread with blocking sockets, and
//! `examples/scripted_failover.rs` on virtual time: the templates for a game loop, an
//! embedded main loop or a simulator.
//!
//! # The rules
//!
//! The behaviour is the contract in [`contract`] (the repository's `CONTRACT.md`, rules
//! R1..R19; a port of Jane Street's `Persistent_connection`, with its intended differences
//! stated there): each event goes to one handler that gates progress, the
//! outcome of every attempt reaches the waiters before its event, `ObtainedAddress` and
//! `FailedToConnect` are not repeated within a cycle, the retry timer spaces out the starts
//! of attempts, and `close` cancels what is in flight and closes what is open. See
//! [`Machine`] for the contract of the loop.
#![no_std]
#![forbid(unsafe_code)]

mod machine;
mod policy;
mod queue;
mod rng;
mod types;

pub use machine::{Machine, error_key};

/// The contract: rules R1..R19, as in the repository's `CONTRACT.md`. Every rule has tests
/// named after it.
#[doc = include_str!("../../../CONTRACT.md")]
pub mod contract {}
pub use policy::{Exponential, Jitter, RetryPolicy};
pub use types::{
    AttemptId, Command, Config, Event, Expecting, Failure, Input, InputError, InputKind, Rejected,
    State, StopKind, TimerId,
};
