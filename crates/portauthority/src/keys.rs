//! `portauthority keys`: create, list and revoke API keys, straight in the database (whoever
//! runs these holds the database URL, which is more than any key grants).

use anyhow::Context;
use clap::{Args, Subcommand};
use portauthority_core::auth::{KeyRecord, TOKEN_RANDOM_BYTES, Token};
use portauthority_core::retention::parse_age;
use portauthority_core::{Clock, Role, Scope, Timestamp};
use portauthority_store::{Store, StoredKey};
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print its token (alone, on stdout). The token is shown only now.
    Create(CreateArgs),
    /// List the keys (never their tokens).
    List(ListArgs),
    /// Revoke a key: running servers refuse it within seconds.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// reader (reads and watches), writer (also creates and changes) or admin (also
    /// webhooks).
    #[arg(long)]
    role: String,
    /// A namespace the key sees: exact (com.a.mail), a prefix (com.a.*) or * (all).
    /// Repeat for several.
    #[arg(long = "namespace", required = true)]
    namespaces: Vec<String>,
    /// A name to tell the key by in `keys list`.
    #[arg(long)]
    name: Option<String>,
    /// Expire the key this long after now: 90s, 15m, 12h, 30d.
    #[arg(long)]
    expires: Option<String>,
    #[command(flatten)]
    db: crate::cli::DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// text (a table) or json (an array, for scripts).
    #[arg(long, default_value = "text")]
    output: String,
    #[command(flatten)]
    db: crate::cli::DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The key id (the 16 hex digits after `pa_` in its token; `keys list` shows it).
    id: String,
    #[command(flatten)]
    db: crate::cli::DatabaseArgs,
}

/// Exit code of a command refused for bad input (the CLI's convention).
const INVALID: u8 = 5;
const NOT_FOUND: u8 = 3;

/// Runs a keys command; `Ok(code)` is the process's exit code.
pub async fn run(cmd: KeysCommand) -> anyhow::Result<u8> {
    match cmd {
        KeysCommand::Create(a) => create(a).await,
        KeysCommand::List(a) => list(a).await,
        KeysCommand::Revoke(a) => revoke(a).await,
    }
}

async fn open(db: &crate::cli::DatabaseArgs) -> anyhow::Result<Arc<dyn Store>> {
    portauthority_store::open(&db.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {}",
                crate::cli::redact(&db.database_url)
            )
        })
}

fn now() -> Timestamp {
    portauthority_store::system::SystemClock.now()
}

async fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let role: Role = match a.role.parse() {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    let scope = match Scope::parse(&a.namespaces) {
        Ok(s) => s,
        Err(e) => return refuse(&e),
    };
    let created_at = now();
    let expires_at = match a.expires.as_deref().map(parse_age).transpose() {
        Ok(d) => d.map(|d| {
            Timestamp::from_millis(
                created_at.as_millis() + d.as_millis().min(i64::MAX as u128) as i64,
            )
        }),
        Err(e) => return refuse(&format!("--expires: {e}")),
    };
    let record = KeyRecord {
        id: String::new(),
        name: a.name,
        role,
        scope,
        created_at,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    let token = store_new_key(&a.db.database_url, record).await?;
    println!("{}", token.reveal());
    eprintln!(
        "created key {} ({role}); this is the only time its token is shown",
        token.key_id()
    );
    Ok(0)
}

/// Makes a token for `record` (its id is the token's) and stores the key.
pub async fn store_new_key(database_url: &str, mut record: KeyRecord) -> anyhow::Result<Token> {
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| anyhow::anyhow!("reading the system's random source: {e}"))?;
    let token = Token::from_random(&random);
    record.id = token.key_id().to_owned();
    let store = portauthority_store::open(database_url)
        .await
        .with_context(|| format!("opening the store at {}", crate::cli::redact(database_url)))?;
    let stored = store
        .create_key(StoredKey {
            record,
            secret_hash: token.secret_hash(),
        })
        .await
        .context("storing the key");
    store.close().await;
    stored?;
    Ok(token)
}

/// An admin key of every namespace, for `bench --with-key`.
pub async fn bench_key(database_url: &str) -> anyhow::Result<Token> {
    store_new_key(
        database_url,
        KeyRecord {
            id: String::new(),
            name: Some("bench".into()),
            role: Role::Admin,
            scope: Scope::all(),
            created_at: now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
    )
    .await
}

fn refuse(message: &str) -> anyhow::Result<u8> {
    eprintln!("error: {message}");
    Ok(INVALID)
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_datetime().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

async fn list(a: ListArgs) -> anyhow::Result<u8> {
    if a.output != "text" && a.output != "json" {
        return refuse(&format!("--output {:?}: expected text or json", a.output));
    }
    let store = open(&a.db).await?;
    let keys: Vec<KeyRecord> = store
        .list_keys()
        .await
        .context("listing the keys")?
        .into_iter()
        .map(|k| k.record)
        .collect();
    store.close().await;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(0);
    }
    println!(
        "{:<16}  {:<6}  {:<24}  {:<20}  {:<20}  {:<20}  {:<20}  NAME",
        "ID", "ROLE", "NAMESPACES", "CREATED", "EXPIRES", "REVOKED", "LAST USED"
    );
    for k in keys {
        println!(
            "{:<16}  {:<6}  {:<24}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
            k.id,
            k.role.as_str(),
            k.scope.to_string(),
            time(Some(k.created_at)),
            time(k.expires_at),
            time(k.revoked_at),
            time(k.last_used_at),
            k.name.unwrap_or_default()
        );
    }
    Ok(0)
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<u8> {
    let store = open(&a.db).await?;
    let revoked = store.revoke_key(&a.id, now()).await;
    store.close().await;
    match revoked {
        Ok(k) => {
            eprintln!(
                "revoked key {} (at {}); servers refuse it within {} s",
                k.record.id,
                time(k.record.revoked_at),
                portauthority_server::auth::CACHE_TTL.as_secs()
            );
            Ok(0)
        }
        Err(portauthority_store::StoreError::NotFound(m)) => {
            eprintln!("error: {m}");
            Ok(NOT_FOUND)
        }
        Err(e) => Err(e).context("revoking the key"),
    }
}
