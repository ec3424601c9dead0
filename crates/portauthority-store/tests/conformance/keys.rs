//! API keys: stored by id with the hash of their secret only, listed, revoked, touched.

use crate::harness::assert_err;
use portauthority_core::auth::{KeyRecord, TOKEN_RANDOM_BYTES, Token};
use portauthority_core::{Role, Scope, Timestamp};
use portauthority_store::{Store, StoredKey};
use std::sync::Arc;

conformance!(a_key_is_stored_found_by_id_revoked_and_touched);

fn key(token: &Token, role: Role) -> StoredKey {
    StoredKey {
        record: KeyRecord {
            id: token.key_id().to_owned(),
            name: Some("ci".into()),
            role,
            scope: Scope::parse(&["com.a.*", "org.x"]).unwrap(),
            created_at: Timestamp::from_millis(1_000),
            expires_at: Some(Timestamp::from_millis(9_000_000_000_000)),
            revoked_at: None,
            last_used_at: None,
        },
        secret_hash: token.secret_hash(),
    }
}

async fn a_key_is_stored_found_by_id_revoked_and_touched(store: Arc<dyn Store>) {
    assert!(!store.has_keys().await.unwrap());
    let t1 = Token::from_random(&[1; TOKEN_RANDOM_BYTES]);
    let t2 = Token::from_random(&[2; TOKEN_RANDOM_BYTES]);
    store.create_key(key(&t1, Role::Reader)).await.unwrap();
    store.create_key(key(&t2, Role::Admin)).await.unwrap();
    assert_err!(store.create_key(key(&t1, Role::Admin)).await, Conflict);
    assert!(store.has_keys().await.unwrap());
    let found = store.find_key(t1.key_id()).await.unwrap().unwrap();
    assert_eq!(found.record, key(&t1, Role::Reader).record);
    assert!(t1.verifies(&found.secret_hash));
    assert!(!t2.verifies(&found.secret_hash));
    assert!(store.find_key("0000000000000000").await.unwrap().is_none());
    let ids: Vec<String> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.record.id)
        .collect();
    assert_eq!(ids.len(), 2);
    // Touching never moves last_used_at back.
    store
        .touch_key(t1.key_id(), Timestamp::from_millis(5_000))
        .await
        .unwrap();
    store
        .touch_key(t1.key_id(), Timestamp::from_millis(4_000))
        .await
        .unwrap();
    let touched = store.find_key(t1.key_id()).await.unwrap().unwrap();
    assert_eq!(
        touched.record.last_used_at,
        Some(Timestamp::from_millis(5_000))
    );
    // A revoked key keeps its row and its first revocation time; the database still has keys.
    let revoked = store
        .revoke_key(t1.key_id(), Timestamp::from_millis(6_000))
        .await
        .unwrap();
    assert_eq!(
        revoked.record.revoked_at,
        Some(Timestamp::from_millis(6_000))
    );
    let again = store
        .revoke_key(t1.key_id(), Timestamp::from_millis(7_000))
        .await
        .unwrap();
    assert_eq!(again.record.revoked_at, Some(Timestamp::from_millis(6_000)));
    assert_err!(
        store
            .revoke_key("0000000000000000", Timestamp::from_millis(1))
            .await,
        NotFound
    );
    store
        .revoke_key(t2.key_id(), Timestamp::from_millis(6_000))
        .await
        .unwrap();
    assert!(store.has_keys().await.unwrap());
}
