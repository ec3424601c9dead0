//! Why a command message can never apply, in the forms a dead letter carries it.

use portauthority_core::api::Problem;
use serde_json::Value;
use std::fmt;

/// Why a command message is dead-lettered: the first four are found by decoding and mean it
/// can never apply, however often it is delivered; the others are found by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// The payload is not JSON at all.
    NotJson,
    /// JSON, but not a CloudEvents 1.0 structured-mode event (no `specversion` "1.0", or a
    /// required attribute missing, empty or mistyped).
    NotCloudEvent,
    /// A CloudEvent whose `type` is not one of the command types.
    UnknownType,
    /// A known command whose `data` is missing, malformed or invalid (the HTTP API would
    /// have answered 400 or 422).
    InvalidData,
    /// A valid command about a job or task that does not exist (HTTP 404). Found by the
    /// worker when it applies the command, never by [`crate::decode_command`].
    NotFound,
    /// A valid command the current state refuses, such as a task added to a finished job
    /// (HTTP 409). Found by the worker, never by [`crate::decode_command`].
    Conflict,
    /// A command that kept failing for a transient reason until its delivery limit ran out.
    /// It may apply if it is published again once the cause is fixed.
    Undeliverable,
}

impl RejectKind {
    pub const ALL: [RejectKind; 7] = [
        RejectKind::NotJson,
        RejectKind::NotCloudEvent,
        RejectKind::UnknownType,
        RejectKind::InvalidData,
        RejectKind::NotFound,
        RejectKind::Conflict,
        RejectKind::Undeliverable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RejectKind::NotJson => "not_json",
            RejectKind::NotCloudEvent => "not_cloudevent",
            RejectKind::UnknownType => "unknown_type",
            RejectKind::InvalidData => "invalid_data",
            RejectKind::NotFound => "not_found",
            RejectKind::Conflict => "conflict",
            RejectKind::Undeliverable => "undeliverable",
        }
    }

    const fn title(self) -> &'static str {
        match self {
            RejectKind::NotJson => "Not JSON",
            RejectKind::NotCloudEvent => "Not a CloudEvent",
            RejectKind::UnknownType => "Unknown command type",
            RejectKind::InvalidData => "Invalid command data",
            RejectKind::NotFound => "Not Found",
            RejectKind::Conflict => "Conflict",
            RejectKind::Undeliverable => "Undeliverable",
        }
    }

    /// The HTTP status the same mistake earns from the HTTP API: a body that cannot be
    /// read is 400, one that reads but cannot apply is 422; a transient failure is 503.
    const fn status(self) -> u16 {
        match self {
            RejectKind::NotJson | RejectKind::NotCloudEvent => 400,
            RejectKind::UnknownType | RejectKind::InvalidData => 422,
            RejectKind::NotFound => 404,
            RejectKind::Conflict => 409,
            RejectKind::Undeliverable => 503,
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message refused for good: it goes to the dead letter subject and is acked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Rejection {
    pub kind: RejectKind,
    /// One line, for a person.
    pub detail: String,
    /// The CloudEvent id, when the message had a readable one.
    pub id: Option<String>,
}

impl Rejection {
    /// The value of the dead letter's `Portauthority-Reason` header: `<kind>: <detail>`,
    /// one line of printable ASCII (anything else escaped), so any NATS client can carry it.
    pub fn reason(&self) -> String {
        header_safe(&format!("{}: {}", self.kind, self.detail))
    }

    /// The refusal as RFC 9457 problem details, typed like the HTTP API's problems.
    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: format!(
                "urn:portauthority:problem:{}",
                self.kind.as_str().replace('_', "-")
            ),
            title: self.kind.title().to_owned(),
            status: self.kind.status(),
            detail: self.detail.clone(),
            errors: None,
            request_id: None,
        }
    }

    /// The value of the dead letter's `Portauthority-Problem` header: [`Rejection::problem`]
    /// as compact JSON, one line of ASCII (non-ASCII characters as `\u` escapes).
    pub fn problem_header(&self) -> String {
        let json = serde_json::to_string(&self.problem()).unwrap_or_default();
        ascii_json(&json)
    }
}

/// Longest stretch of a producer's own text repeated in a detail.
const ECHO_MAX: usize = 120;

/// A producer's value, quoted for a detail: JSON, one line, cut short when long.
pub(crate) fn quoted(value: &Value) -> String {
    let json = value.to_string();
    if json.chars().count() <= ECHO_MAX {
        return json;
    }
    let cut: String = json.chars().take(ECHO_MAX).collect();
    format!("{cut}...")
}

/// Longest detail, in characters: a dead letter's header is no place for a whole payload.
const DETAIL_MAX: usize = 1000;

/// Makes a detail one line (line breaks and other control characters become spaces) of at
/// most [`DETAIL_MAX`] characters.
pub(crate) fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(DETAIL_MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(DETAIL_MAX).is_some() {
        out.push_str("...");
    }
    out
}

fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    out
}

/// Escapes every non-ASCII character of a JSON text as `\uXXXX` (UTF-16, as JSON spells
/// it). Only strings hold such characters, so the result is the same JSON value.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut units = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(detail: &str) -> Rejection {
        Rejection {
            kind: RejectKind::UnknownType,
            detail: detail.to_owned(),
            id: None,
        }
    }

    #[test]
    fn the_reason_header_is_one_line_of_printable_ascii() {
        let r = rejection("type \"caf\u{e9}\nbar\" \u{1F680}");
        let reason = r.reason();
        assert!(reason.chars().all(|c| (' '..='~').contains(&c)), "{reason}");
        assert!(reason.starts_with("unknown_type: type \"caf\\u{e9} bar\""));
    }

    #[test]
    fn the_problem_header_is_ascii_json_of_the_same_problem() {
        let r = rejection("caf\u{e9} \u{1F680}\nx");
        let header = r.problem_header();
        assert!(header.is_ascii() && !header.contains('\n'), "{header}");
        let back: Problem = serde_json::from_str(&header).unwrap();
        assert_eq!(back, r.problem());
        assert_eq!(back.problem_type, "urn:portauthority:problem:unknown-type");
        assert_eq!(back.status, 422);
    }

    #[test]
    fn long_values_are_cut_short_in_details() {
        let q = quoted(&Value::String("x".repeat(1000)));
        assert!(q.len() < 130 && q.ends_with("..."), "{q}");
    }
}
