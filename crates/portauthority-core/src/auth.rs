//! API keys: roles, namespace patterns and scopes, and the token format.
//!
//! Pure rules only. Which namespaces a key sees ([`Scope::allows`], and its SQL-side form
//! [`Scope::ranges`] for list queries), what a role may do ([`Role::may`]), and whether a
//! stored key may be used now ([`KeyRecord::check`]). The stores apply the scope where a
//! namespace is known (the planners in `plan.rs`, the list queries); the server only finds
//! out who is calling.
//!
//! A token is `pa_<key id>_<secret>`: the key id (16 hex digits) is how the key is looked
//! up, the secret (64 hex digits, 256 bits) is what proves it. Only the SHA-256 of the
//! secret is stored; a high-entropy secret needs no slow hash. The comparison is constant
//! time. A token never appears in a `Debug` or `Display` output of this module.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// What a key may do, each role including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and watches.
    Reader,
    /// Also creates and changes jobs, tasks and history.
    Writer,
    /// Also manages webhooks (and keys, with the CLI).
    Admin,
}

/// The kind of thing a request does, for [`Role::may`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Write => self >= Role::Writer,
            Action::Admin => self == Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected reader, writer or admin"
            )),
        }
    }
}

/// A namespace pattern: exact (`com.a.mail`), a prefix (`com.a.*`: every namespace that
/// begins `com.a.`), or `*` (every namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    All,
    Exact(String),
    /// The text before the `*`, never empty.
    Prefix(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("a namespace pattern must not be empty".into());
        }
        if s.chars().any(char::is_control) {
            return Err("a namespace pattern must not contain control characters".into());
        }
        if s == "*" {
            return Ok(Pattern::All);
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err(bad_star(s)),
            Some(prefix) => Ok(Pattern::Prefix(prefix.to_owned())),
            None if s.contains('*') => Err(bad_star(s)),
            None => Ok(Pattern::Exact(s.to_owned())),
        }
    }

    pub fn matches(&self, namespace: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(n) => n == namespace,
            Pattern::Prefix(p) => namespace.starts_with(p.as_str()),
        }
    }

    /// Whether every namespace `other` matches, this one matches too.
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::All, _) => true,
            (_, Pattern::All) => false,
            (p, Pattern::Exact(n)) => p.matches(n),
            (Pattern::Prefix(p), Pattern::Prefix(q)) => q.starts_with(p.as_str()),
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
        }
    }
}

fn bad_star(s: &str) -> String {
    format!("namespace pattern {s:?}: `*` may only end a pattern (`com.a.*`) or stand alone")
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::All => f.write_str("*"),
            Pattern::Exact(n) => f.write_str(n),
            Pattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One namespace condition a store turns into SQL: equality, or a half-open byte range
/// (`from <= namespace < to`; `to` `None`: no upper bound). Both are index ranges over a
/// namespace column in byte order (SQLite's default collation, PostgreSQL's `COLLATE "C"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceRange {
    Exact(String),
    Range { from: String, to: Option<String> },
}

impl NamespaceRange {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            NamespaceRange::Exact(n) => n == namespace,
            NamespaceRange::Range { from, to } => {
                namespace >= from.as_str() && to.as_deref().is_none_or(|to| namespace < to)
            }
        }
    }
}

/// The smallest string greater than every string that begins with `prefix`: the prefix
/// with its last character replaced by the next one (dropping characters that have none).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The namespaces a key sees: any of its patterns matches. Trusted callers (the bus, the
/// background loops, a server without keys) act with [`Scope::all`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scope {
    patterns: Vec<Pattern>,
}

impl Scope {
    pub fn all() -> Scope {
        Scope {
            patterns: vec![Pattern::All],
        }
    }

    /// [`Scope::all`], borrowed for as long as needed (trusted callers pass it down).
    pub fn all_ref() -> &'static Scope {
        static ALL: std::sync::LazyLock<Scope> = std::sync::LazyLock::new(Scope::all);
        &ALL
    }

    /// A scope of these patterns; none is refused (a key must see something).
    pub fn new(patterns: Vec<Pattern>) -> Result<Scope, String> {
        if patterns.is_empty() {
            return Err("a key needs at least one namespace pattern".into());
        }
        if patterns.contains(&Pattern::All) {
            return Ok(Scope::all());
        }
        let mut kept: Vec<Pattern> = Vec::with_capacity(patterns.len());
        for p in patterns {
            if !kept.iter().any(|k| k.covers(&p)) {
                kept.retain(|k| !p.covers(k));
                kept.push(p);
            }
        }
        Ok(Scope { patterns: kept })
    }

    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Scope, String> {
        Scope::new(
            patterns
                .iter()
                .map(|p| Pattern::parse(p.as_ref()))
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    pub fn is_all(&self) -> bool {
        self.patterns.contains(&Pattern::All)
    }

    /// Whether a job (or event) of `namespace` is visible to this scope: the rule every
    /// store check, list query and stream filter applies.
    pub fn allows(&self, namespace: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(namespace))
    }

    /// Whether every namespace `other` allows, this scope allows too.
    pub fn covers(&self, other: &Scope) -> bool {
        other
            .patterns
            .iter()
            .all(|o| self.patterns.iter().any(|p| p.covers(o)))
    }

    /// The SQL-side form of [`Scope::allows`]: `None` when every namespace is allowed (no
    /// condition), else the ranges of which a namespace must be in one.
    pub fn ranges(&self) -> Option<Vec<NamespaceRange>> {
        if self.is_all() {
            return None;
        }
        Some(
            self.patterns
                .iter()
                .map(|p| match p {
                    Pattern::Exact(n) => NamespaceRange::Exact(n.clone()),
                    Pattern::Prefix(p) => NamespaceRange::Range {
                        from: p.clone(),
                        to: prefix_end(p),
                    },
                    Pattern::All => unreachable!("is_all was checked"),
                })
                .collect(),
        )
    }

    /// Stored form: the patterns as a JSON array (unambiguous whatever a namespace holds).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).expect("patterns serialize")
    }

    pub fn from_stored(s: &str) -> Result<Scope, String> {
        let patterns: Vec<Pattern> =
            serde_json::from_str(s).map_err(|e| format!("stored scope {s:?}: {e}"))?;
        Scope::new(patterns)
    }
}

impl Default for Scope {
    fn default() -> Scope {
        Scope::all()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.patterns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Hex digits of the key id in a token.
const KEY_ID_LEN: usize = 16;
/// Hex digits of the secret in a token (256 bits).
const SECRET_LEN: usize = 64;
/// Random bytes a new token takes: the key id's, then the secret's.
pub const TOKEN_RANDOM_BYTES: usize = KEY_ID_LEN / 2 + SECRET_LEN / 2;

/// A bearer token as a client presents it. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    key_id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, <secret>)", self.key_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Token {
    /// A new token from random bytes (the caller's random source: core reads none).
    pub fn from_random(random: &[u8; TOKEN_RANDOM_BYTES]) -> Token {
        let (id, secret) = random.split_at(KEY_ID_LEN / 2);
        Token {
            key_id: hex(id),
            secret: hex(secret),
        }
    }

    /// Parses `pa_<16 hex>_<64 hex>`; `None` for anything else (a malformed token).
    pub fn parse(s: &str) -> Option<Token> {
        let rest = s.strip_prefix("pa_")?;
        let (id, secret) = rest.split_once('_')?;
        (is_lower_hex(id, KEY_ID_LEN) && is_lower_hex(secret, SECRET_LEN)).then(|| Token {
            key_id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The full token, to be shown once to whoever created the key.
    pub fn reveal(&self) -> String {
        format!("pa_{}_{}", self.key_id, self.secret)
    }

    /// What is stored of the secret.
    pub fn secret_hash(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    /// Whether this token's secret hashes to `stored`, compared in constant time.
    pub fn verifies(&self, stored: &[u8]) -> bool {
        self.secret_hash().ct_eq(stored).into()
    }
}

/// A stored key as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: Option<String>,
    pub role: Role,
    pub scope: Scope,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

/// Why a token was not accepted (all are 401; the detail is for logs and the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token: expected pa_<key id>_<secret>")]
    Malformed,
    #[error("unknown or wrong token")]
    Unknown,
    #[error("the key of this token was revoked")]
    Revoked,
    #[error("the key of this token has expired")]
    Expired,
}

impl KeyRecord {
    /// Whether the key may be used at `now`.
    pub fn check(&self, now: Timestamp) -> Result<(), KeyRefusal> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            return Err(KeyRefusal::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(KeyRefusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(p: &[&str]) -> Scope {
        Scope::parse(p).unwrap()
    }

    #[test]
    fn patterns_match_exactly_by_prefix_or_everything() {
        assert!(Pattern::parse("com.a.mail").unwrap().matches("com.a.mail"));
        assert!(!Pattern::parse("com.a.mail").unwrap().matches("com.a.mail2"));
        let p = Pattern::parse("com.a.*").unwrap();
        assert!(p.matches("com.a.mail") && p.matches("com.a."));
        assert!(!p.matches("com.a") && !p.matches("com.ab.x") && !p.matches("com.b.x"));
        assert!(Pattern::parse("*").unwrap().matches("anything"));
        assert!(Pattern::parse("com.*.x").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn the_sql_ranges_select_what_allows_selects() {
        let s = scope(&["com.a.*", "org.x", "z\u{10FFFF}*"]);
        let ranges = s.ranges().unwrap();
        for ns in [
            "com.a.",
            "com.a.b",
            "com.a/",
            "com.a",
            "com.b",
            "org.x",
            "org.xy",
            "z",
            "z\u{10FFFF}",
            "z\u{10FFFF}q",
            "zz",
        ] {
            assert_eq!(
                ranges.iter().any(|r| r.contains(ns)),
                s.allows(ns),
                "namespace {ns:?}"
            );
        }
        assert_eq!(Scope::all().ranges(), None);
    }

    #[test]
    fn a_scope_keeps_only_the_patterns_not_covered_by_others() {
        assert_eq!(scope(&["com.a.x", "com.a.*"]), scope(&["com.a.*"]));
        assert_eq!(scope(&["com.a.*", "*"]), Scope::all());
        assert!(scope(&["com.*"]).covers(&scope(&["com.a.*", "com.b"])));
        assert!(!scope(&["com.a.*"]).covers(&scope(&["com.*"])));
        assert!(!scope(&["com.a.x"]).covers(&Scope::all()));
        assert!(Scope::parse::<&str>(&[]).is_err());
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Reader.may(Action::Read) && !Role::Reader.may(Action::Write));
        assert!(Role::Writer.may(Action::Write) && !Role::Writer.may(Action::Admin));
        assert!(Role::Admin.may(Action::Admin));
    }

    #[test]
    fn a_token_round_trips_and_verifies_only_its_own_secret() {
        let t = Token::from_random(&[7; TOKEN_RANDOM_BYTES]);
        let shown = t.reveal();
        assert!(shown.starts_with("pa_0707070707070707_"));
        let parsed = Token::parse(&shown).unwrap();
        assert!(parsed.verifies(&t.secret_hash()));
        let other = Token::from_random(&[8; TOKEN_RANDOM_BYTES]);
        assert!(!parsed.verifies(&other.secret_hash()));
        assert!(!format!("{parsed:?}").contains(&shown[20..]));
        for bad in [
            "",
            "pa_",
            "pa_x_y",
            &shown[1..],
            &shown.to_uppercase(),
            &format!("{shown}0"),
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_scope_survives_its_stored_form() {
        let s = scope(&["com.a.*", "org,x"]);
        assert_eq!(Scope::from_stored(&s.to_stored()).unwrap(), s);
    }
}
