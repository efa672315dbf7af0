//! Real clients kept alive by a persistent connection (placeholder; see the examples).
