//! The PostgreSQL server tests may use, and scratch databases on it: each test (or
//! benchmark run) creates an empty database of its own and drops it afterwards, so tests
//! run in parallel without seeing each other's rows.
//!
//! Only whole databases are created and dropped here; what goes into them is the store's
//! business (its migrations run when a store opens the scratch URL).

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::str::FromStr;

/// The environment variable naming a PostgreSQL server the tests may create databases on,
/// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const DATABASE_URL_VAR: &str = "PORTAUTHORITY_TEST_DATABASE_URL";

/// The server named by [`DATABASE_URL_VAR`], or None after saying (see [`crate::skip`])
/// that the calling test skips.
pub fn admin_url() -> Option<String> {
    crate::skip::configured(DATABASE_URL_VAR)
}

/// Creates a new, empty database named `{prefix}_{32 hex digits}` on the server
/// `admin_url` points at and returns its URL. `.ci/run` drops what an aborted run leaves
/// behind by that name pattern, so a new prefix belongs in its list too.
pub async fn scratch_database(admin_url: &str, prefix: &str) -> Result<String, sqlx::Error> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = connect(admin_url).await?;
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    created?;
    let mut url = url_without_database(admin_url);
    url.push('/');
    url.push_str(&name);
    Ok(url)
}

/// Drops a database made by [`scratch_database`], closing the connections still open to
/// it (a store that did not shut down cleanly) instead of failing on them.
pub async fn drop_scratch_database(admin_url: &str, url: &str) -> Result<(), sqlx::Error> {
    let name = database_name(url);
    let mut conn = connect(admin_url).await?;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    )))
    .execute(&mut conn)
    .await;
    let _ = conn.close().await;
    dropped.map(drop)
}

/// Runs one statement on the server `admin_url` points at, as its administrator (tests that
/// change a database's settings or end its connections).
pub async fn execute(admin_url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = connect(admin_url).await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    done.map(drop)
}

/// The name of the database a URL points at.
pub fn database_of(url: &str) -> String {
    database_name(url).to_owned()
}

async fn connect(admin_url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&PgConnectOptions::from_str(admin_url)?).await
}

/// `postgres://user@host:port/db?x=y` → `postgres://user@host:port` (query dropped).
fn url_without_database(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    let scheme_end = no_query.find("://").map(|i| i + 3).unwrap_or(0);
    match no_query[scheme_end..].find('/') {
        Some(slash) => no_query[..scheme_end + slash].to_owned(),
        None => no_query.to_owned(),
    }
}

/// `postgres://user@host:port/db?x=y` → `db`.
fn database_name(url: &str) -> &str {
    url.split('?')
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{database_name, url_without_database};

    #[test]
    fn the_server_url_loses_its_database_and_query() {
        for (url, server) in [
            (
                "postgres://u@h:5432/db?sslmode=disable",
                "postgres://u@h:5432",
            ),
            ("postgres://u@h:5432/db", "postgres://u@h:5432"),
            ("postgres://u@h:5432", "postgres://u@h:5432"),
            ("postgres://u:p@h/db", "postgres://u:p@h"),
        ] {
            assert_eq!(url_without_database(url), server, "{url}");
        }
    }

    #[test]
    fn the_database_name_is_the_last_path_segment() {
        assert_eq!(database_name("postgres://u@h:5432/pa_x_0f?a=b"), "pa_x_0f");
        assert_eq!(database_name("postgres://u@h/pa_x_0f"), "pa_x_0f");
    }
}
