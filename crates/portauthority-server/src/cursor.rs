//! Keyset cursors: the sort key of a page's last row, opaque to clients.
//!
//! A cursor is base64url (no padding) of a small JSON object naming the sort, the order,
//! the row's sort value and its id. It carries its sort and order so that a cursor used
//! with another sort is refused instead of returning a wrong page.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portauthority_core::api::{SortField, SortOrder};
use portauthority_core::{Status, Timestamp};
use portauthority_store::{Cursor, Paging, SortValue};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Wire {
    s: SortField,
    o: SortOrder,
    /// Milliseconds, text or status code, by sort field; null for an unset `end_time`.
    v: serde_json::Value,
    id: uuid::Uuid,
}

pub(crate) fn encode(paging: &Paging, cursor: &Cursor) -> String {
    let v = match &cursor.value {
        SortValue::Time(t) => t.map_or(serde_json::Value::Null, |t| t.as_millis().into()),
        SortValue::Text(s) => s.clone().into(),
        SortValue::Status(s) => s.code().into(),
    };
    let wire = Wire {
        s: paging.sort,
        o: paging.order,
        v,
        id: cursor.id,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

/// Decodes a cursor made for the same `sort` and `order` as `paging`.
pub(crate) fn decode(raw: &str, paging: &Paging) -> Result<Cursor, ApiError> {
    let bad = || {
        ApiError::invalid_field(
            "after",
            "not a cursor this server made (use the `next` value of a list response)",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .map_err(|_| bad())?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if wire.s != paging.sort || wire.o != paging.order {
        return Err(ApiError::invalid_field(
            "after",
            "this cursor was made for another sort or order; pass the same sort and order",
        ));
    }
    let value = match wire.s {
        SortField::Type | SortField::Namespace => {
            SortValue::Text(wire.v.as_str().ok_or_else(bad)?.to_owned())
        }
        SortField::Status => SortValue::Status(
            wire.v
                .as_i64()
                .and_then(Status::from_code)
                .ok_or_else(bad)?,
        ),
        SortField::EndTime if wire.v.is_null() => SortValue::Time(None),
        _ => SortValue::Time(Some(Timestamp::from_millis(
            wire.v.as_i64().ok_or_else(bad)?,
        ))),
    };
    Ok(Cursor { value, id: wire.id })
}
