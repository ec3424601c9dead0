//! Timestamps: UTC, millisecond precision, RFC 3339 on the wire.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, truncated to whole milliseconds since the Unix epoch.
///
/// Truncation happens on the way in, so a value read back from any store compares equal
/// to the value that was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2020-09-18T06:09:27.132Z")]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(with = "chrono::DateTime<chrono::Utc>")
)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn from_datetime<Tz: TimeZone>(dt: &DateTime<Tz>) -> Self {
        Self(dt.timestamp_millis())
    }

    /// Parses RFC 3339 with any offset; the result is in UTC.
    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|dt| Self::from_datetime(&dt))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Timestamp::parse(&s).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "invalid RFC 3339 timestamp {s:?}: {e} (expected e.g. 2020-09-18T06:09:27.132Z)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_converted_to_utc_with_millisecond_precision() {
        let t = Timestamp::parse("2020-09-18T00:09:27.132456-06:00").unwrap();
        assert_eq!(t.to_string(), "2020-09-18T06:09:27.132Z");
    }

    #[test]
    fn the_seeds_malformed_sample_is_refused() {
        assert!(Timestamp::parse("2020-09-18T00:09:27:30.132-06:00").is_err());
    }
}
