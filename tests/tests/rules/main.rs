//! Checks R1 (cycle), R2 (attempt), R3 (outcomes), R4 (failure), R5 (success), R6
//! (handlers), R7 (retry delay), R9 (`connected_or_failed_to_connect`), R10
//! (`current_connection`), R11 (close), R12 (abort), R15 (determinism), R16 (bad input),
//! R18 (reconnect now) and R19 (healthy uptime) of CONTRACT.md, and the connect timeout, on
//! the core Machine: one module per rule, named after it (`r04_failure`), each test named
//! after its rule (`r4_...`; the connect timeout's `connect_timeout_...`). The driver's
//! rules (R8, R13, R14, R17) and the driver's side of R18 and R19 are checked by the
//! driver's and the scenario suite's tests.
//!
//! Each test drives a Machine by hand, the way a driver would, and compares the exact
//! commands it yields with what its rule requires; every step also goes through the one
//! rule checker of `persistent-connection-tests` (see [`support::M`]), so a hand-driven test
//! is checked against every rule, not only its own.

mod support;

mod connect_timeout;
mod display;
mod r01_cycle;
mod r02_attempt;
mod r03_outcomes;
mod r04_failure;
mod r05_success;
mod r06_handlers;
mod r07_retry_delay;
mod r09_connected_or_failed;
mod r10_current_connection;
mod r11_close;
mod r12_abort;
mod r15_determinism;
mod r16_bad_input;
mod r18_reconnect_now;
mod r19_healthy_uptime;
