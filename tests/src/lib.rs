//! Test support shared by the property tests, the scenario suite and the fuzz targets.
//!
//! Every rule of the Machine that can be checked step by step is written once, in
//! [`check`]: a [`check::Checker`] watches a [`Machine`](persistent_connection::Machine)
//! input by input and command by command and names the first rule it sees broken. The
//! property tests (`tests/model.rs`), the fuzz targets (`../fuzz`), the corpus replay
//! (`tests/corpus.rs`) and the swarm simulation (`tests/swarm.rs`) all drive Machines
//! through it.
//!
//! - [`check`]: the [`Checker`](check::Checker) and the [`Checked`](check::Checked)
//!   wrapper (a Machine plus its Checker).
//! - [`script`]: a scripted environment that turns abstract [`Action`](script::Action)s, or
//!   raw bytes, into inputs (valid and invalid) and runs them through a
//!   [`Checked`](check::Checked) Machine.
//! - [`policy`]: the checks of the retry policies and the jitter (the `retry_policy` fuzz
//!   target).
//! - [`sim`]: a virtual clock and event queue, and the seeded swarm of Machines on it.
//! - [`rng`]: a tiny seeded random generator for the simulation and the scripts.

pub mod check;
pub mod policy;
pub mod rng;
pub mod script;
pub mod sim;
