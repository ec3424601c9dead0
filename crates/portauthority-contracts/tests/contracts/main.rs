//! The contracts crate's tests, in one binary: decoding every command type, every way a
//! message is refused, the events, the generated schemas and the examples of docs/bus.md.

mod commands;
mod docs;
mod events;
mod rejections;
mod schemas;
mod support;
