//! JSON Schemas of every message, generated from the very types that decode and encode
//! them, so that they cannot drift. `docs/schemas/` holds them for producers in other
//! languages (a test keeps the files current).

use crate::cloudevent::{CloudEvent, SPECVERSION};
use crate::command::{
    CommandType, HistoryNoteData, JobCreateData, JobStatusData, TaskAddData, TaskHeartbeatData,
    TaskStatusData,
};
use crate::event::{EventData, EventType};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// The schema (JSON Schema draft 2020-12) of every command and event message, keyed by its
/// CloudEvent `type`: commands first, in [`CommandType::ALL`] order, then events.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let mut out = Vec::with_capacity(CommandType::ALL.len() + EventType::ALL.len());
    for ty in CommandType::ALL {
        let schema = match ty {
            CommandType::JobCreate => input::<JobCreateData>(),
            CommandType::JobStatus => input::<JobStatusData>(),
            CommandType::TaskAdd => input::<TaskAddData>(),
            CommandType::TaskStatus => input::<TaskStatusData>(),
            CommandType::TaskHeartbeat => input::<TaskHeartbeatData>(),
            CommandType::HistoryNote => input::<HistoryNoteData>(),
        };
        let about = format!(
            "Port Authority command {}: publish on subject {}.",
            ty.type_name(),
            ty.subject()
        );
        out.push((ty.type_name(), message(schema, ty.type_name(), &about, &[])));
    }
    for ty in EventType::ALL {
        let mut required = vec!["event"];
        if ty.is_task() {
            required.push("task");
        }
        if matches!(
            ty,
            EventType::JobStatusChanged | EventType::TaskStatusChanged
        ) {
            required.extend(["from", "to"]);
        }
        let about = format!(
            "Port Authority event {}: published on subject portauthority.events.<namespace>.{}.",
            ty.type_name(),
            ty.subject_suffix()
        );
        let mut schema = output::<EventData>();
        // Port Authority always sets these on what it publishes.
        if let Some(Value::Array(envelope_required)) = schema.get_mut("required") {
            envelope_required.extend(["time".into(), "datacontenttype".into(), "subject".into()]);
        }
        out.push((
            ty.type_name(),
            message(schema, ty.type_name(), &about, &required),
        ));
    }
    out
}

/// What a producer may send: the schema of what decodes.
fn input<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<CloudEvent<T>>()
        .to_value()
}

/// What Port Authority sends: the schema of what it serializes.
fn output<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<CloudEvent<T>>()
        .to_value()
}

/// Narrows the generic envelope to one message type: its `type` and `specversion` fixed,
/// `data` required to hold `data_required` as well.
fn message(mut schema: Value, type_name: &str, about: &str, data_required: &[&str]) -> Value {
    let Value::Object(root) = &mut schema else {
        unreachable!("schemars makes an object schema for a struct")
    };
    root.insert("title".into(), type_name.into());
    root.insert("description".into(), about.into());
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        props.insert("specversion".into(), json!({ "const": SPECVERSION }));
        props.insert("type".into(), json!({ "const": type_name }));
    }
    if !data_required.is_empty() {
        let data = data_schema(root);
        let required = data
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(required) = required {
            for name in data_required {
                if !required.iter().any(|r| r == name) {
                    required.push((*name).into());
                }
            }
        }
    }
    // Key order as generated, `$schema` first: stable files, readable diffs.
    let mut ordered = Map::new();
    if let Some(s) = root.remove("$schema") {
        ordered.insert("$schema".into(), s);
    }
    ordered.append(root);
    Value::Object(ordered)
}

/// The schema object of `data`: inline, or the definition it refers to (each file holds
/// one message type, so changing that definition changes only this message).
fn data_schema(root: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let reference = root
        .get("properties")
        .and_then(|p| p.get("data"))
        .and_then(|d| d.get("$ref"))
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_owned);
    let target = match reference {
        Some(name) => root.get_mut("$defs").and_then(|d| d.get_mut(&name)),
        None => root.get_mut("properties").and_then(|p| p.get_mut("data")),
    };
    match target {
        Some(Value::Object(obj)) => obj,
        _ => unreachable!("a CloudEvent schema has a data schema"),
    }
}
