//! The command-line client end to end: the real `portauthority` binary as the client,
//! against a real `portauthority serve` child process with its own SQLite file per test.
//! Each command's table and JSON output, every exit code caused for real, and a scripted
//! run from job creation to completion.

mod e2e;
mod exit_codes;
mod harness;
mod history;
mod jobs;
mod tasks;
mod unavailable;
mod watch;
