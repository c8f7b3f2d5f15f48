//! Shared helpers for the host-side integration tests.
