//! Saying that a test skipped, where the person running `cargo test` sees it.
//!
//! A test that finds its outside service unconfigured returns early and so passes. libtest
//! captures what a passing test prints with `println!`/`eprintln!` and throws it away, so a
//! notice printed that way is never seen. The notice here is written straight to the
//! process's standard error, which libtest does not capture: it shows between libtest's
//! own lines, and in a CI log, wherever stderr goes.
//!
//! Each reason is said once per test binary, naming the first test that skipped for it; a
//! suite of a hundred PostgreSQL tests prints one line, not a hundred.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Mutex;

/// The value of the environment variable `var` naming an outside service (a PostgreSQL
/// server, a NATS server), or None after saying that the calling test skips because it is
/// not set. An empty or blank value counts as not set.
pub fn configured(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            because(&format!("{var} is not set"));
            None
        }
    }
}

/// Says, once per test binary and reason, that the calling test and any others skipping
/// for the same `reason` pass without having run.
pub fn because(reason: &str) {
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(reason.to_owned());
    if first {
        say(&notice(reason, std::thread::current().name()));
    }
}

/// Writes `line` where the person running `cargo test` sees it even when the test passes
/// (a figure a long test measured, such as how many cases a generator ran).
pub fn report(line: &str) {
    say(&format!("{line}\n"));
}

/// The line for `reason`; `thread` is the test's name (libtest names each test's thread
/// after it), or the main thread's name outside libtest.
fn notice(reason: &str, thread: Option<&str>) -> String {
    let first = match thread {
        Some(name) if name != "main" => format!(" (the first: {name})"),
        _ => String::new(),
    };
    format!("skipped: {reason}. The tests here that need it pass without running{first}.\n")
}

/// One write of the whole line to the standard error file, past libtest's capture (which
/// only sees the print macros), so that it does not mix with another test's line.
fn say(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::notice;

    #[test]
    fn the_notice_names_the_reason_and_the_first_test() {
        assert_eq!(
            notice("X_URL is not set", Some("jobs::creating_a_job_postgres")),
            "skipped: X_URL is not set. The tests here that need it pass without running \
             (the first: jobs::creating_a_job_postgres).\n"
        );
    }

    #[test]
    fn outside_libtest_the_notice_names_no_test() {
        assert_eq!(
            notice("X_URL is not set", Some("main")),
            "skipped: X_URL is not set. The tests here that need it pass without running.\n"
        );
    }
}
