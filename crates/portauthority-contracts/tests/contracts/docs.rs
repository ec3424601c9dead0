//! The examples of docs/bus.md are real messages: each ```json block after a marker
//! `<!-- example: TYPE -->` decodes as that type and matches its schema.

use crate::support::{assert_valid, schema_of};
use portauthority_contracts::{CommandType, EventType, decode_event};
use portauthority_core::api::Problem;
use serde_json::Value;
use std::collections::BTreeMap;

const MARKER: &str = "<!-- example: ";

/// `(marker name, JSON text)` for every marked example, in document order.
fn examples() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/bus.md");
    let doc = std::fs::read_to_string(path).expect("docs/bus.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let name = rest.trim_end_matches("-->").trim().to_owned();
        let fence = lines
            .by_ref()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no block after the marker of {name}"));
        assert_eq!(
            fence.trim(),
            "```json",
            "the marker of {name} must precede a ```json block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push((name, body.join("\n")));
    }
    out
}

#[test]
fn every_command_and_event_type_has_exactly_one_example() {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (name, _) in examples() {
        *count.entry(name).or_default() += 1;
    }
    for name in CommandType::ALL
        .iter()
        .map(|t| t.type_name())
        .chain(EventType::ALL.iter().map(|t| t.type_name()))
    {
        assert_eq!(
            count.get(name),
            Some(&1),
            "examples of {name} in docs/bus.md"
        );
    }
}

#[test]
fn every_example_decodes_as_its_type_and_matches_its_schema() {
    let examples = examples();
    assert!(!examples.is_empty());
    for (name, text) in examples {
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the example of {name} is not JSON: {e}\n{text}"));
        if let Some(ty) = CommandType::parse(&name) {
            let incoming = crate::support::decode(text.as_bytes())
                .unwrap_or_else(|r| panic!("the example of {name} is refused: {r}"));
            assert_eq!(incoming.ty, ty, "the example of {name}");
            assert_valid(&schema_of(&name), &value, &name);
        } else if let Some(ty) = EventType::parse(&name) {
            let event = decode_event(text.as_bytes())
                .unwrap_or_else(|e| panic!("the example of {name} does not decode: {e}"));
            assert_eq!(event.ty, ty.type_name(), "the example of {name}");
            assert_valid(&schema_of(&name), &value, &name);
        } else if name == "deadletter-problem" {
            let problem: Problem = serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("the dead letter problem example: {e}"));
            assert!(
                problem
                    .problem_type
                    .starts_with("urn:portauthority:problem:")
            );
        } else {
            panic!("docs/bus.md marks an example of unknown type {name}");
        }
    }
}
