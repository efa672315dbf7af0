//! The scenario suite lives in `tests/`: `tests/scenario/` holds the scenarios, written once
//! against the driver's API, and `tests/{tokio,async_std,smol}.rs` run them on each
//! runtime. Each scenario is named after the rule of `CONTRACT.md` it checks.
