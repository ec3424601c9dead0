//! Flags several client commands share, and the parsers of their values. A value that
//! does not parse is a usage error (exit 2) before any request is sent.

use clap::Args;
use portauthority_client::PageQuery;
use portauthority_core::Status;
use portauthority_core::api::{Progress, SortField, SortOrder};
use serde_json::Value;
use std::str::FromStr;

/// Paging and sorting of a list.
#[derive(Args, Debug, Clone)]
pub struct PageArgs {
    /// Page number, from 1.
    #[arg(long)]
    pub page: Option<u64>,
    /// Items per page, 1 to 1000 (server default 25).
    #[arg(long)]
    pub size: Option<u64>,
    /// Sort by: start_time (default), end_time, created_at, updated_at, type, namespace, status.
    #[arg(long, value_parser = sort_field)]
    pub sort: Option<SortField>,
    /// asc (default) or desc.
    #[arg(long, value_parser = sort_order)]
    pub order: Option<SortOrder>,
    /// Continue after this cursor (a list's `next` in --output json) instead of --page.
    #[arg(long, conflicts_with = "page")]
    pub after: Option<String>,
}

impl PageArgs {
    pub fn query(&self) -> PageQuery {
        PageQuery {
            page: self.page,
            size: self.size,
            sort: self.sort,
            order: self.order,
            after: self.after.clone(),
        }
    }
}

fn sort_field(raw: &str) -> Result<SortField, String> {
    SortField::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = SortField::ALL.iter().map(|f| f.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn sort_order(raw: &str) -> Result<SortOrder, String> {
    [SortOrder::Asc, SortOrder::Desc]
        .into_iter()
        .find(|o| o.as_str().eq_ignore_ascii_case(raw))
        .ok_or_else(|| "expected asc or desc".into())
}

/// A job id in an argument: a UUID, told as such when it is not one.
pub fn job_id(raw: &str) -> Result<portauthority_core::JobId, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("not a job id: expected a UUID such as {EXAMPLE_ID}"))
}

pub fn task_id(raw: &str) -> Result<portauthority_core::TaskId, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("not a task id: expected a UUID such as {EXAMPLE_ID}"))
}

const EXAMPLE_ID: &str = "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10";

/// A status name (`in_progress`, or the seed's `inprogress`).
pub fn status(raw: &str) -> Result<Status, String> {
    Status::from_str(raw).map_err(|e| e.to_string())
}

/// One or more statuses, comma-separated (`failed,cancelled`).
pub fn statuses(raw: &str) -> Result<Vec<Status>, String> {
    raw.split(',').map(|s| status(s.trim())).collect()
}

/// `KEY=VALUE` for a filter: the value is a string, which the server also matches against
/// a number or boolean it spells.
pub fn meta_filter(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// `KEY=VALUE` for a job's or task's meta: a value that reads as a JSON number, `true`,
/// `false` or `null` is stored as that; anything else as a string.
pub fn meta_entry(raw: &str) -> Result<(String, Value), String> {
    let (k, v) = meta_filter(raw)?;
    let value = match serde_json::from_str::<Value>(&v) {
        Ok(j @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => j,
        _ => Value::String(v),
    };
    Ok((k, value))
}

/// A JSON object, for `--meta-json` and `--data`.
pub fn json_object(raw: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("expected a JSON object, e.g. '{\"team\":\"atlas\"}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// The meta object of `--meta` entries over a `--meta-json` object; `None` when neither
/// was given.
pub fn meta(
    json: Option<serde_json::Map<String, Value>>,
    entries: &[(String, Value)],
) -> Option<Value> {
    if json.is_none() && entries.is_empty() {
        return None;
    }
    let mut m = json.unwrap_or_default();
    for (k, v) in entries {
        m.insert(k.clone(), v.clone());
    }
    Some(Value::Object(m))
}

/// An RFC 3339 time, e.g. `2026-12-01T15:44:32Z`.
pub fn timestamp(raw: &str) -> Result<portauthority_core::Timestamp, String> {
    portauthority_core::Timestamp::parse(raw)
        .map_err(|e| format!("{e}: expected an RFC 3339 time such as 2026-12-01T15:44:32Z"))
}

/// `CURRENT` or `CURRENT/TOTAL`, e.g. `3/10`.
pub fn progress(raw: &str) -> Result<Progress, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("expected CURRENT or CURRENT/TOTAL (e.g. 3/10), got {raw:?}"))
    };
    match raw.split_once('/') {
        Some((c, t)) => Ok(Progress {
            current: number(c)?,
            total: Some(number(t)?),
        }),
        None => Ok(Progress {
            current: number(raw)?,
            total: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_values_keep_numbers_and_booleans_and_take_the_rest_as_text() {
        assert_eq!(
            meta_entry("release_id=123"),
            Ok(("release_id".into(), json!(123)))
        );
        assert_eq!(meta_entry("dry=true"), Ok(("dry".into(), json!(true))));
        assert_eq!(
            meta_entry("team=atlas"),
            Ok(("team".into(), json!("atlas")))
        );
        assert_eq!(meta_entry("url=a=b"), Ok(("url".into(), json!("a=b"))));
        assert_eq!(meta_entry("empty="), Ok(("empty".into(), json!(""))));
        assert!(meta_entry("novalue").is_err());
        assert!(meta_entry("=x").is_err());
        let m = meta(
            Some(json_object(r#"{"team":"io","n":1}"#).expect("object")),
            &[("team".into(), json!("atlas"))],
        );
        assert_eq!(m, Some(json!({"team": "atlas", "n": 1})));
        assert_eq!(meta(None, &[]), None);
    }

    #[test]
    fn progress_is_current_with_an_optional_total() {
        assert_eq!(
            progress("3/10"),
            Ok(Progress {
                current: 3,
                total: Some(10)
            })
        );
        assert_eq!(
            progress("7"),
            Ok(Progress {
                current: 7,
                total: None
            })
        );
        assert!(progress("a/b").is_err());
        assert!(progress("-1").is_err());
    }

    #[test]
    fn statuses_accept_the_seed_spelling_and_lists() {
        assert_eq!(
            statuses("failed, inprogress"),
            Ok(vec![Status::Failed, Status::InProgress])
        );
        assert!(statuses("done").is_err());
    }
}
