//! Test support for the core Machine: the one model of its rules, and the drivers that run
//! Machines through it.
//!
//! Every rule of the Machine that can be checked step by step is written once, in
//! [`check`]: a [`check::Checker`] watches a [`Machine`](persistent_connection::Machine)
//! input by input and command by command, keeps its own model of what the Machine may do
//! next, and names the first rule it sees broken. There is no second model anywhere in the
//! tests; everything that drives a Machine checks through it:
//!
//! - the rule tests (`tests/rules/`, one module per rule of `CONTRACT.md`): each drives a
//!   [`Checked`](check::Checked) Machine by hand and compares the exact commands with the
//!   rule, so every hand-written step is checked by the model too;
//! - the property tests (`tests/model.rs`), the determinism tests (`tests/determinism.rs`),
//!   the zero-allocation test (`tests/alloc.rs`) and the corpus replay (`tests/corpus.rs`),
//!   through [`script`];
//! - the fuzz targets (`../fuzz`), through [`script::run_bytes`] and
//!   [`policy::check_policy_bytes`];
//! - the swarm simulation (`tests/swarm.rs`), through [`sim`].
//!
//! A change of rule is one edit in [`check`]. The modules:
//!
//! - [`check`]: the [`Checker`](check::Checker) and the [`Checked`](check::Checked)
//!   wrapper (a Machine plus its Checker).
//! - [`script`]: a scripted environment that turns abstract [`Action`](script::Action)s, or
//!   raw bytes, into inputs (valid and invalid), asking the checker what the Machine is
//!   owed, and runs them through a [`Checked`](check::Checked) Machine.
//! - [`policy`]: the checks of the retry policies and the jitter (the `retry_policy` fuzz
//!   target).
//! - [`sim`]: a virtual clock and event queue, and the seeded swarm of checked Machines on
//!   it.
//! - [`watchdog`]: ends a test binary that runs far too long (a loop that never ends),
//!   armed by the first checker it makes.
//! - [`rng`]: the one seeded random generator of the tests (the simulation, the scripts and
//!   the rule tests' random runs).

pub mod check;
pub mod policy;
pub mod rng;
pub mod script;
pub mod sim;
pub mod watchdog;
