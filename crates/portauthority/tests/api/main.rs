//! HTTP integration tests: a real server on port 0 with a fresh database per test, driven
//! through the typed client and raw HTTP. All modules compile into this one binary.

mod helpers;
