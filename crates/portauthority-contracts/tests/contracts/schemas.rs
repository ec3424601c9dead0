//! The generated schemas: one per type, current on disk in docs/schemas/, and true of the
//! messages this crate builds.

use crate::support::{JOB, TASK, assert_valid, history, job, schema_of, task, task_id};
use portauthority_contracts::{
    CommandType, EVENT_SOURCE, EventType, command_message, encode_event, schemas,
};
use portauthority_core::EventKind;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas")
}

fn file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap();
    text.push('\n');
    text
}

#[test]
fn there_is_one_schema_per_command_and_event_type() {
    let names: Vec<&str> = schemas().into_iter().map(|(n, _)| n).collect();
    let expected: Vec<&str> = CommandType::ALL
        .iter()
        .map(|t| t.type_name())
        .chain(EventType::ALL.iter().map(|t| t.type_name()))
        .collect();
    assert_eq!(names, expected);
}

/// `PORTAUTHORITY_BLESS=1 cargo test -p portauthority-contracts` rewrites the files.
#[test]
fn the_schema_files_are_up_to_date() {
    let dir = schema_dir();
    let bless = std::env::var_os("PORTAUTHORITY_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let mut wanted = BTreeSet::new();
    for (name, schema) in schemas() {
        let file = format!("{name}.json");
        let path = dir.join(&file);
        let text = file_text(&schema);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(file.clone());
            }
        }
        wanted.insert(file);
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if file.ends_with(".json") && !wanted.contains(&file) {
            if bless {
                std::fs::remove_file(dir.join(&file)).unwrap();
            } else {
                stale.push(format!("{file} (no longer generated)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/schemas is out of date: {stale:?}; regenerate with \
         PORTAUTHORITY_BLESS=1 cargo test -p portauthority-contracts"
    );
}

#[test]
fn every_command_message_matches_the_schema_of_its_type() {
    for ty in CommandType::ALL {
        let data = match ty {
            CommandType::JobCreate => json!({"id": JOB, "type": "t", "namespace": "n",
                "meta": {"a": 1}, "tasks": [{"type": "u", "namespace": "n"}]}),
            CommandType::JobStatus => json!({"job_id": JOB, "status": "failed", "reason": "r"}),
            CommandType::TaskAdd => {
                json!({"job_id": JOB, "id": TASK, "type": "t", "namespace": "n"})
            }
            CommandType::TaskStatus => {
                json!({"job_id": JOB, "task_id": TASK, "status": "completed",
                "progress": {"current": 1, "total": null}})
            }
            CommandType::TaskHeartbeat => json!({"job_id": JOB, "task_id": TASK}),
            CommandType::HistoryNote => json!({"job_id": JOB, "task_id": null, "message": "m"}),
        };
        let message: Value = serde_json::from_slice(&command_message(ty, "1", "/t", data)).unwrap();
        assert_valid(&schema_of(ty.type_name()), &message, ty.type_name());
    }
}

#[test]
fn the_schemas_refuse_what_the_bus_refuses() {
    let schema = schema_of("portauthority.job.create.v1");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let message = |data: Value| -> Value {
        serde_json::from_slice(&command_message(CommandType::JobCreate, "1", "/t", data)).unwrap()
    };
    assert!(validator.is_valid(&message(json!({"id": JOB, "type": "t", "namespace": "n"}))));
    for data in [
        json!({"type": "t", "namespace": "n"}),
        json!({"id": null, "type": "t", "namespace": "n"}),
        json!({"id": "not-a-uuid", "type": "t", "namespace": "n"}),
        json!({"id": JOB, "namespace": "n"}),
        json!({"id": JOB, "type": "t", "namespace": "n", "meta": [1]}),
    ] {
        assert!(!validator.is_valid(&message(data.clone())), "{data}");
    }
    let mut other_type = message(json!({"id": JOB, "type": "t", "namespace": "n"}));
    other_type["type"] = "portauthority.job.status.v1".into();
    assert!(!validator.is_valid(&other_type));
}

#[test]
fn every_event_matches_the_schema_of_its_type() {
    for (kind, task_of) in [
        (EventKind::Created, None),
        (EventKind::TaskAdded, Some(task_id())),
        (EventKind::StatusChanged, None),
        (EventKind::StatusChanged, Some(task_id())),
    ] {
        let out = encode_event(
            &history(kind, task_of),
            &job("a.b"),
            Some(&task()),
            EVENT_SOURCE,
        )
        .unwrap();
        let message: Value = serde_json::from_slice(&out.payload).unwrap();
        assert_valid(&schema_of(out.ty.type_name()), &message, out.ty.type_name());
    }
}
