//! Validated values. Input is parsed once, at the edge, into these types; code past the
//! edge never checks them again.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Configurable limits on input sizes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest `type` or `namespace`, in characters.
    pub name_max: usize,
    /// Longest `correlation_id`, in characters.
    pub correlation_id_max: usize,
    /// Largest `meta` (or note `data`) object, in bytes of compact JSON.
    pub meta_max_bytes: usize,
    /// Most items in one batch request.
    pub batch_max: usize,
    /// Longest free text (`reason`, `message`, `error`), in characters.
    pub text_max: usize,
    /// Most distinct keys among the `meta.<key>=` filters of one list request. Each key is
    /// one more probe of `job_meta` for every candidate row, and a client chooses how many:
    /// unbounded, 200 of them took PostgreSQL 26 s to plan.
    pub meta_filter_keys_max: usize,
    /// Most `meta.<key>=` parameters in one list request, a repeated key counted each time.
    pub meta_filter_values_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            name_max: 128,
            correlation_id_max: 256,
            meta_max_bytes: 16 * 1024,
            batch_max: 1000,
            text_max: 4096,
            meta_filter_keys_max: 16,
            meta_filter_values_max: 64,
        }
    }
}

/// One problem with one field of the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationError {
    /// Where in the input, e.g. `namespace` or `tasks[3].type`.
    pub field: String,
    pub message: String,
}

/// Everything wrong with one input, collected rather than stopping at the first problem.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl ValidationErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs a check and records its failure under `field`, returning the value if it passed.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    /// Prefixes every field with `prefix` (for items of a list).
    pub fn nest(self, prefix: &str) -> ValidationErrors {
        ValidationErrors(
            self.0
                .into_iter()
                .map(|e| ValidationError {
                    field: format!("{prefix}.{}", e.field),
                    message: e.message,
                })
                .collect(),
        )
    }

    pub fn extend(&mut self, other: ValidationErrors) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

/// A job or task `type` or `namespace`: 1 to `name_max` characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(value: Option<String>, limits: &Limits) -> Result<Name, String> {
        let s = value.ok_or_else(|| "is required".to_owned())?;
        let len = s.chars().count();
        if len == 0 {
            return Err("must not be empty".into());
        }
        if len > limits.name_max {
            return Err(format!("must be at most {} characters", limits.name_max));
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Name(s))
    }

    /// A name read back from a store, which only ever holds parsed names.
    pub fn from_stored(s: String) -> Name {
        Name(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Optional free text bounded by `limit` characters. NUL is refused: no store can keep
/// it faithfully (PostgreSQL text cannot hold it).
pub fn bounded_text(value: Option<String>, limit: usize) -> Result<Option<String>, String> {
    match value {
        Some(s) if s.chars().count() > limit => Err(format!("must be at most {limit} characters")),
        Some(s) if s.contains('\0') => Err(NUL_MESSAGE.into()),
        other => Ok(other),
    }
}

const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Whether any key or string in a JSON value holds NUL.
fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A job's `correlation_id`: absent, or 1 to `correlation_id_max` characters.
pub fn correlation_id(value: Option<String>, limits: &Limits) -> Result<Option<String>, String> {
    match bounded_text(value, limits.correlation_id_max)? {
        Some(s) if s.is_empty() => Err("must not be empty (omit it or send null)".into()),
        other => Ok(other),
    }
}

/// Longest `timeout_seconds` a job or task may have: a year.
pub const TIMEOUT_SECONDS_MAX: i64 = 31_536_000;

/// A job's or task's `timeout_seconds`: absent, or 1 to [`TIMEOUT_SECONDS_MAX`].
pub fn timeout_seconds(value: Option<i64>) -> Result<Option<i64>, String> {
    match value {
        Some(t) if !(1..=TIMEOUT_SECONDS_MAX).contains(&t) => Err(format!(
            "must be between 1 and {TIMEOUT_SECONDS_MAX} seconds"
        )),
        other => Ok(other),
    }
}

/// Client metadata: a JSON object of at most `meta_max_bytes` bytes. Absent or null is `{}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    map: Map<String, Value>,
    json: String,
}

impl Meta {
    pub fn parse(value: Option<Value>, limits: &Limits) -> Result<Meta, String> {
        let map = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err("must be a JSON object".into()),
        };
        if map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
            return Err(NUL_MESSAGE.into());
        }
        let json = serde_json::to_string(&map).map_err(|e| e.to_string())?;
        if json.len() > limits.meta_max_bytes {
            return Err(format!(
                "must be at most {} bytes of JSON (got {})",
                limits.meta_max_bytes,
                json.len()
            ));
        }
        Ok(Meta { map, json })
    }

    pub fn empty() -> Meta {
        Meta {
            map: Map::new(),
            json: "{}".into(),
        }
    }

    /// Compact JSON, as stored.
    /// The meta as raw JSON, as resources carry it.
    pub fn to_raw(&self) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(self.as_json().to_owned()).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("{}".into()).expect("valid")
        })
    }

    pub fn as_json(&self) -> &str {
        &self.json
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Index entries for the `meta.<key>=<value>` filter: one `(key, tagged value)` per
    /// top-level key whose value is a string, number or boolean.
    pub fn index_entries(&self) -> impl Iterator<Item = (&str, String)> {
        self.map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), meta_index_value(v)?)))
    }
}

/// A meta value as the `meta.<key>=<value>` filter sees it: tagged with its JSON type
/// (`s:text`, `n:123`, `b:true`); None for null, arrays and objects, which no filter matches.
pub fn meta_index_value(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => format!("s:{s}"),
        Value::Number(n) => format!("n:{}", canonical_number(n)?),
        Value::Bool(b) => format!("b:{b}"),
        _ => return None,
    })
}

/// Whether `namespace` is within the namespace prefix `prefix`: equal to it, or below it
/// (`com.a` holds `com.a` and `com.a.mail`, not `com.ab`).
pub fn namespace_within(prefix: &str, namespace: &str) -> bool {
    namespace
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The tagged index values a `meta.<key>=<raw>` filter matches: the string itself, and
/// the number or boolean it spells.
pub fn meta_filter_values(raw: &str) -> Vec<String> {
    let mut values = vec![format!("s:{raw}")];
    if let Some(n) = raw
        .trim()
        .parse::<serde_json::Number>()
        .ok()
        .as_ref()
        .and_then(canonical_number)
    {
        values.push(format!("n:{n}"));
    }
    if raw == "true" || raw == "false" {
        values.push(format!("b:{raw}"));
    }
    values
}

/// The `meta.<key>=<value>` filters of a list request, from its parameters in order (`key`
/// without the `meta.` prefix), as `(key, tagged values)` (see [`meta_filter_values`]).
/// Refused: an empty key, more distinct keys than `meta_filter_keys_max`, more parameters
/// than `meta_filter_values_max`. Each refusal is one error naming the first parameter past
/// the limit, however far past it the request goes.
pub fn meta_filters(
    params: Vec<(String, String)>,
    limits: &Limits,
) -> Result<Vec<(String, Vec<String>)>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if params.iter().any(|(k, _)| k.is_empty()) {
        errors.push("meta.", "a meta filter needs a key: meta.<key>=<value>");
    }
    if params.len() > limits.meta_filter_values_max {
        let (key, _) = &params[limits.meta_filter_values_max];
        errors.push(
            format!("meta.{key}"),
            format!(
                "at most {} meta filters may narrow one list, a repeated key counted each time \
                 (got {})",
                limits.meta_filter_values_max,
                params.len()
            ),
        );
    }
    let mut keys = std::collections::HashSet::new();
    let mut first_past = None;
    for (key, _) in &params {
        if keys.insert(key.as_str()) && keys.len() == limits.meta_filter_keys_max + 1 {
            first_past = Some(key);
        }
    }
    if let Some(key) = first_past {
        errors.push(
            format!("meta.{key}"),
            format!(
                "at most {} different meta keys may narrow one list (got {})",
                limits.meta_filter_keys_max,
                keys.len()
            ),
        );
    }
    errors.into_result(|| {
        params
            .into_iter()
            .map(|(k, v)| (k, meta_filter_values(&v)))
            .collect()
    })
}

/// One spelling per numeric value: `123`, `123.0` and `1.23e2` are all `123`.
fn canonical_number(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return Some(i.to_string());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.to_string());
    }
    let f = n.as_f64()?;
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Some((f as i64).to_string());
    }
    Some(f.to_string())
}

/// `application/json`, or any `application/*+json`, with or without parameters: what the
/// HTTP API and the bus (`datacontenttype`) take as JSON.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((ty, sub)) => {
            ty.eq_ignore_ascii_case("application")
                && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/octet-stream"));
        assert!(!is_json_media_type("json"));
    }
    use serde_json::json;

    #[test]
    fn names_are_bounded_and_required() {
        let l = Limits::default();
        assert!(Name::parse(None, &l).is_err());
        assert!(Name::parse(Some(String::new()), &l).is_err());
        assert!(Name::parse(Some("x".repeat(128)), &l).is_ok());
        assert!(Name::parse(Some("x".repeat(129)), &l).is_err());
        assert!(Name::parse(Some("a\nb".into()), &l).is_err());
    }

    #[test]
    fn meta_must_be_a_small_object() {
        let l = Limits::default();
        assert_eq!(Meta::parse(None, &l).unwrap().as_json(), "{}");
        assert!(Meta::parse(Some(json!([1])), &l).is_err());
        assert!(Meta::parse(Some(json!({"a": "x".repeat(17000)})), &l).is_err());
    }

    #[test]
    fn a_meta_filter_matches_the_string_and_the_number_it_spells() {
        let l = Limits::default();
        let m = Meta::parse(
            Some(json!({"release_id": 123, "name": "123", "ok": true, "f": 1.5, "o": {}})),
            &l,
        )
        .unwrap();
        let entries: Vec<(String, String)> =
            m.index_entries().map(|(k, v)| (k.to_owned(), v)).collect();
        assert!(entries.contains(&("release_id".into(), "n:123".into())));
        assert!(entries.contains(&("name".into(), "s:123".into())));
        assert!(entries.contains(&("ok".into(), "b:true".into())));
        assert!(entries.contains(&("f".into(), "n:1.5".into())));
        assert_eq!(entries.len(), 4);
        let wanted = meta_filter_values("123");
        assert!(wanted.contains(&"n:123".to_string()) && wanted.contains(&"s:123".to_string()));
        assert!(meta_filter_values("123.0").contains(&"n:123".to_string()));
        assert!(meta_filter_values("true").contains(&"b:true".to_string()));
        assert_eq!(meta_filter_values("abc"), vec!["s:abc".to_string()]);
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fields(e: &ValidationErrors) -> Vec<&str> {
        e.0.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn meta_filters_up_to_the_limits_are_tagged_in_order() {
        let l = Limits {
            meta_filter_keys_max: 2,
            meta_filter_values_max: 3,
            ..Limits::default()
        };
        let got = meta_filters(params(&[("a", "1"), ("b", "x"), ("a", "1.0")]), &l).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), meta_filter_values("1")),
                ("b".to_owned(), meta_filter_values("x")),
                ("a".to_owned(), meta_filter_values("1.0")),
            ]
        );
        assert_eq!(meta_filters(Vec::new(), &l).unwrap(), vec![]);
    }

    #[test]
    fn a_key_past_the_limit_of_distinct_keys_is_named_once() {
        let l = Limits {
            meta_filter_keys_max: 2,
            ..Limits::default()
        };
        let e = meta_filters(
            params(&[("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("d", "1")]),
            &l,
        )
        .unwrap_err();
        assert_eq!(fields(&e), vec!["meta.c"]);
        assert!(
            e.0[0].message.contains("at most 2 different meta keys"),
            "{e}"
        );
        assert!(e.0[0].message.contains("got 4"), "{e}");
    }

    #[test]
    fn a_key_repeated_past_the_limit_of_values_is_named_once() {
        let l = Limits::default();
        let many: Vec<(String, String)> = (0..2000).map(|i| ("k".into(), i.to_string())).collect();
        let e = meta_filters(many, &l).unwrap_err();
        assert_eq!(fields(&e), vec!["meta.k"]);
        assert!(e.0[0].message.contains("at most 64 meta filters"), "{e}");
        let at_limit: Vec<(String, String)> = (0..64).map(|_| ("k".into(), "v".into())).collect();
        assert_eq!(meta_filters(at_limit, &l).unwrap().len(), 64);
    }

    #[test]
    fn a_meta_filter_without_a_key_is_refused() {
        let e = meta_filters(params(&[("", "1")]), &Limits::default()).unwrap_err();
        assert_eq!(fields(&e), vec!["meta."]);
    }
}
