//! The CloudEvents 1.0 envelope, structured JSON mode, and the checks an incoming one must
//! pass before its `data` is looked at.

use crate::reject::{RejectKind, Rejection, quoted};
use portauthority_core::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only CloudEvents version spoken here.
pub const SPECVERSION: &str = "1.0";

/// A CloudEvents 1.0 message in structured JSON mode: the attributes and the `data` in one
/// JSON object. Extension attributes a producer adds are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloudEvent<T> {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per message: a retry of the same message keeps it, a new message gets a new
    /// one. Port Authority records the ids of the commands it applied, so a duplicate has
    /// no second effect. Use a UUID.
    pub id: String,
    /// Who sent it, a URI reference such as `/billing/worker-7`.
    pub source: String,
    /// What it is, e.g. `portauthority.job.create.v1`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the occurrence happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// `application/json` (the default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// What the message is about: on events, the job id, or `<job id>/<task id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub data: T,
}

/// An incoming message whose attributes passed; its `data` is checked once its type is
/// known to be a command (an unknown type is reported as such, whatever its data).
pub(crate) struct Envelope {
    pub event: CloudEvent<Option<Value>>,
    data_base64: bool,
}

impl Envelope {
    /// The `data`, as JSON.
    pub fn data(&mut self) -> Result<Value, String> {
        if let Some(ct) = &self.event.datacontenttype
            && !portauthority_core::validate::is_json_media_type(ct)
        {
            return Err(format!(
                "datacontenttype must be application/json (got {})",
                quoted(&Value::String(ct.clone()))
            ));
        }
        match self.event.data.take() {
            Some(data) => Ok(data),
            None if self.data_base64 => Err(
                "data must be JSON in the data attribute; data_base64 is not accepted".to_owned(),
            ),
            None => Err("data is required".to_owned()),
        }
    }
}

/// Reads the envelope of an incoming message: JSON, `specversion` "1.0", the required
/// attributes present and non-empty, the optional ones well typed.
pub(crate) fn envelope(payload: &[u8]) -> Result<Envelope, Rejection> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejection {
        kind: RejectKind::NotJson,
        detail: format!("the message is not JSON: {e}"),
        id: None,
    })?;
    let Value::Object(mut map) = value else {
        return Err(not_cloudevent(
            None,
            "a CloudEvent is a JSON object".to_owned(),
        ));
    };
    // The id first, so that every later refusal can name the message it refuses.
    let id = match map.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let refuse = |detail: String| not_cloudevent(id.clone(), detail);

    match map.get("specversion") {
        Some(Value::String(v)) if v == SPECVERSION => {}
        Some(other) => {
            return Err(refuse(format!(
                "specversion must be \"1.0\" (got {})",
                quoted(other)
            )));
        }
        None => return Err(refuse("specversion is required (\"1.0\")".to_owned())),
    }
    let id = required_string(&map, "id").map_err(&refuse)?;
    let source = required_string(&map, "source").map_err(&refuse)?;
    let ty = required_string(&map, "type").map_err(&refuse)?;
    let time = match map.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Timestamp::parse(s).map_err(|e| {
            refuse(format!(
                "time must be an RFC 3339 timestamp (got {}: {e})",
                quoted(&Value::String(s.clone()))
            ))
        })?),
        Some(other) => {
            return Err(refuse(format!(
                "time must be an RFC 3339 timestamp string (got {})",
                quoted(other)
            )));
        }
    };
    let subject = optional_string(&map, "subject").map_err(&refuse)?;
    let datacontenttype = optional_string(&map, "datacontenttype").map_err(&refuse)?;

    Ok(Envelope {
        data_base64: map.contains_key("data_base64"),
        event: CloudEvent {
            specversion: SPECVERSION.to_owned(),
            id,
            source,
            ty,
            time,
            datacontenttype,
            subject,
            data: map.remove("data"),
        },
    })
}

fn not_cloudevent(id: Option<String>, detail: String) -> Rejection {
    Rejection {
        kind: RejectKind::NotCloudEvent,
        detail,
        id,
    }
}

fn required_string(map: &Map<String, Value>, name: &str) -> Result<String, String> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{name} must not be empty")),
        Some(other) => Err(format!("{name} must be a string (got {})", quoted(other))),
        None => Err(format!("{name} is required")),
    }
}

fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{name} must be a string (got {})", quoted(other))),
    }
}
