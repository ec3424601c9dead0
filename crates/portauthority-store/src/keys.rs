//! API keys as the `Store` trait shows them: the record the rules read
//! (`portauthority_core::auth::KeyRecord`) and the hash of its secret. Dialect-free.

use crate::StoreError;
use portauthority_core::auth::KeyRecord;
use portauthority_core::{Role, Scope};

/// A key as stored: its record and the SHA-256 of its secret (never the secret).
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub secret_hash: Vec<u8>,
}

pub(crate) fn key_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("key {id} not found"))
}

/// A role and a scope from their stored forms.
pub(crate) fn parse_stored(role: &str, scope: &str) -> Result<(Role, Scope), String> {
    Ok((role.parse()?, Scope::from_stored(scope)?))
}
