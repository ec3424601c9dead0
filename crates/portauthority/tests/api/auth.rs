//! API keys against the real server: the auth matrix (every route × every kind of caller),
//! no leak of jobs outside a key's namespaces, the dashboard session cookie, and `serve`'s
//! safe default (the real binary: no key → loopback only).

use crate::helpers::{TestApp, assert_problem};
use crate::portauthority;
use portauthority_core::auth::{KeyRecord, TOKEN_RANDOM_BYTES, Token};
use portauthority_core::{Role, Scope, Timestamp};
use portauthority_store::StoredKey;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Creates a key with the real `portauthority keys create` and returns its token.
fn keys_create(database_url: &str, role: &str, namespaces: &[&str]) -> String {
    let mut cmd = Command::new(portauthority());
    cmd.args([
        "keys",
        "create",
        "--role",
        role,
        "--database-url",
        database_url,
    ]);
    for ns in namespaces {
        cmd.args(["--namespace", ns]);
    }
    let out = cmd.output().expect("run keys create");
    assert!(out.status.success(), "keys create: {out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim_end_matches('\n');
    assert!(
        Token::parse(token).is_some() && !token.contains('\n'),
        "the token alone on stdout: {token:?}"
    );
    token.to_owned()
}

fn keys(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(portauthority())
        .arg("keys")
        .args(args)
        .args(["--database-url", database_url])
        .output()
        .expect("run keys")
}

/// A key that expired a minute ago, stored directly (the CLI only makes future expiries).
async fn expired_key(database_url: &str) -> String {
    let token = Token::from_random(&[9; TOKEN_RANDOM_BYTES]);
    let store = portauthority_store::open(database_url).await.unwrap();
    let now = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    store
        .create_key(StoredKey {
            record: KeyRecord {
                id: token.key_id().to_owned(),
                name: None,
                role: Role::Admin,
                scope: Scope::all(),
                created_at: Timestamp::from_millis(now.as_millis() - 120_000),
                expires_at: Some(Timestamp::from_millis(now.as_millis() - 60_000)),
                revoked_at: None,
                last_used_at: None,
            },
            secret_hash: token.secret_hash(),
        })
        .await
        .unwrap();
    store.close().await;
    token.reveal()
}

/// Sends a request with `token` (if any) as the bearer.
async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut rb = app.http.request(method, app.url(path));
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.expect("request sent");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value, headers)
}

/// Who calls: an invalid token of some kind, or a key.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    NoToken,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Reader,
    Writer,
    Admin,
    /// A writer of another namespace (`com.b.*`).
    Other,
}

impl Who {
    const ALL: [Who; 9] = [
        Who::NoToken,
        Who::Malformed,
        Who::Unknown,
        Who::Revoked,
        Who::Expired,
        Who::Reader,
        Who::Writer,
        Who::Admin,
        Who::Other,
    ];

    fn role(self) -> Option<Role> {
        match self {
            Who::Reader => Some(Role::Reader),
            Who::Writer | Who::Other => Some(Role::Writer),
            Who::Admin => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this caller's key sees `namespace`.
    fn sees(self, namespace: &str) -> bool {
        match self {
            Who::Other => namespace.starts_with("com.b."),
            _ => namespace.starts_with("com.a."),
        }
    }
}

struct Tokens {
    root: String,
    reader: String,
    writer: String,
    admin: String,
    other: String,
    revoked: String,
    expired: String,
}

impl Tokens {
    fn of(&self, who: Who) -> Option<String> {
        match who {
            Who::NoToken => None,
            Who::Malformed => Some("pa_not-a-token".into()),
            // Well-formed, but no such key.
            Who::Unknown => Some(Token::from_random(&[3; TOKEN_RANDOM_BYTES]).reveal()),
            Who::Revoked => Some(self.revoked.clone()),
            Who::Expired => Some(self.expired.clone()),
            Who::Reader => Some(self.reader.clone()),
            Who::Writer => Some(self.writer.clone()),
            Who::Admin => Some(self.admin.clone()),
            Who::Other => Some(self.other.clone()),
        }
    }
}

async fn app_with_keys() -> (TestApp, Tokens) {
    let app = TestApp::spawn_with(|c| {
        c.worker = None;
        c.webhooks_allow_private = true;
    })
    .await;
    let db = app.database_url.clone();
    let revoked = keys_create(&db, "writer", &["com.a.*"]);
    let revoked_id = Token::parse(&revoked).unwrap().key_id().to_owned();
    assert!(keys(&db, &["revoke", &revoked_id]).status.success());
    let tokens = Tokens {
        root: keys_create(&db, "admin", &["*"]),
        reader: keys_create(&db, "reader", &["com.a.*"]),
        writer: keys_create(&db, "writer", &["com.a.*"]),
        admin: keys_create(&db, "admin", &["com.a.*"]),
        other: keys_create(&db, "writer", &["com.b.*"]),
        revoked,
        expired: expired_key(&db).await,
    };
    (app, tokens)
}

/// A job of `namespace` with one task, made by the root key: (job id, task id).
async fn fixture(app: &TestApp, root: &str, namespace: &str) -> (String, String) {
    let (status, body, _) = call(
        app,
        Some(root),
        Method::POST,
        "/v1/jobs",
        Some(json!({"type": "build", "namespace": namespace,
                    "tasks": [{"type": "step", "namespace": format!("{namespace}.tasks")}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let job = body["job"]["id"].as_str().unwrap().to_owned();
    let (_, tasks, _) = call(
        app,
        Some(root),
        Method::GET,
        &format!("/v1/jobs/{job}/tasks"),
        None,
    )
    .await;
    (job, tasks["tasks"][0]["id"].as_str().unwrap().to_owned())
}

async fn webhook(app: &TestApp, token: &str) -> String {
    let (status, body, _) = call(
        app,
        Some(token),
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["webhook"]["id"].as_str().unwrap().to_owned()
}

/// What a route does, for the expected status.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Read,
    Write,
    /// Creates a job in the target's namespace.
    Create,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_kind_of_caller_as_its_key_allows() {
    let (app, t) = app_with_keys().await;
    let hook_a = webhook(&app, &t.admin).await;
    let hook_root = webhook(&app, &t.root).await;
    let mut checked = 0;
    for who in Who::ALL {
        let token = t.of(who);
        for namespace in ["com.a.mail", "com.b.mail"] {
            // Fresh jobs for each caller, so that no earlier change decides a status.
            let (job, task) = fixture(&app, &t.root, namespace).await;
            let fresh = || uuid::Uuid::now_v7().to_string();
            let task_body = json!({"type": "step", "namespace": format!("{namespace}.tasks")});
            let routes: Vec<(Kind, Method, String, Option<Value>, u16)> = vec![
                (
                    Kind::Create,
                    Method::POST,
                    "/v1/jobs".into(),
                    Some(json!({"type": "build", "namespace": format!("{namespace}.new")})),
                    200,
                ),
                (
                    Kind::Read,
                    Method::GET,
                    format!("/v1/jobs/{job}"),
                    None,
                    200,
                ),
                (
                    Kind::Read,
                    Method::GET,
                    format!("/v1/jobs/{job}/tasks"),
                    None,
                    200,
                ),
                (
                    Kind::Read,
                    Method::GET,
                    format!("/v1/jobs/{job}/tasks/{task}"),
                    None,
                    200,
                ),
                (
                    Kind::Read,
                    Method::GET,
                    format!("/v1/jobs/{job}/history"),
                    None,
                    200,
                ),
                (
                    Kind::Read,
                    Method::GET,
                    format!("/v1/jobs/{job}/tasks/{task}/history"),
                    None,
                    200,
                ),
                (
                    Kind::Write,
                    Method::POST,
                    format!("/v1/jobs/{job}/tasks"),
                    Some(
                        json!({"id": fresh(), "type": "step", "namespace": format!("{namespace}.tasks")}),
                    ),
                    200,
                ),
                (
                    Kind::Write,
                    Method::POST,
                    format!("/v1/jobs/{job}/tasks/batch"),
                    Some(json!({"tasks": [task_body]})),
                    200,
                ),
                (
                    Kind::Write,
                    Method::PUT,
                    format!("/v1/jobs/{job}/tasks/{task}/status"),
                    Some(json!({"status": "in_progress"})),
                    200,
                ),
                (
                    Kind::Write,
                    Method::POST,
                    format!("/v1/jobs/{job}/tasks/{task}/heartbeat"),
                    Some(json!({"message": "alive"})),
                    200,
                ),
                (
                    Kind::Write,
                    Method::POST,
                    format!("/v1/jobs/{job}/history"),
                    Some(json!({"message": "a note"})),
                    200,
                ),
                (
                    Kind::Write,
                    Method::POST,
                    format!("/v1/jobs/{job}/tasks/{task}/history"),
                    Some(json!({"message": "a note"})),
                    200,
                ),
                (
                    Kind::Write,
                    Method::PUT,
                    format!("/v1/jobs/{job}/status"),
                    Some(json!({"status": "cancelled"})),
                    200,
                ),
            ];
            for (kind, method, path, body, ok) in routes {
                let (status, got, headers) =
                    call(&app, token.as_deref(), method.clone(), &path, body).await;
                let expected = match (who.role(), kind) {
                    (None, _) => 401,
                    (Some(Role::Reader), Kind::Write | Kind::Create) => 403,
                    (Some(_), Kind::Create) if !who.sees(namespace) => 403,
                    (Some(_), _) if !who.sees(namespace) => 404,
                    _ => ok,
                };
                assert_eq!(
                    status, expected,
                    "{who:?} {method} {path} ({namespace}): {got}"
                );
                if expected >= 400 {
                    assert_problem(status, &got, expected);
                }
                if expected == 401 {
                    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap());
                    assert!(
                        challenge.is_some_and(|c| c.starts_with("Bearer")),
                        "{who:?} {path}: WWW-Authenticate {challenge:?}"
                    );
                }
                checked += 1;
            }
        }
        // The batch update across jobs, the job list, and the webhooks.
        let (a, ta) = fixture(&app, &t.root, "com.a.mail").await;
        let (status, got, _) = call(
            &app,
            token.as_deref(),
            Method::POST,
            "/v1/tasks/status",
            Some(json!({"updates": [{"job_id": a, "task_id": ta, "status": "in_progress"}]})),
        )
        .await;
        let expected = match who.role() {
            None => 401,
            Some(Role::Reader) => 403,
            _ => 200,
        };
        assert_eq!(status, expected, "{who:?} batch: {got}");
        if expected == 200 {
            let item = got["results"][0]["status"].as_u64().unwrap();
            assert_eq!(
                item,
                if who.sees("com.a.") { 200 } else { 404 },
                "{who:?}: {got}"
            );
        }
        let (status, _, _) = call(&app, token.as_deref(), Method::GET, "/v1/jobs", None).await;
        assert_eq!(
            status,
            if who.role().is_some() { 200 } else { 401 },
            "{who:?} list"
        );
        // Webhooks are admin business; the com.a admin's own is visible to it, the root
        // key's (every namespace) is not.
        let retry = uuid::Uuid::now_v7();
        let webhook_routes: Vec<(Method, String, u16)> = vec![
            (Method::GET, "/v1/webhooks".into(), 200),
            (Method::GET, format!("/v1/webhooks/{hook_a}"), 200),
            (Method::GET, format!("/v1/webhooks/{hook_root}"), 404),
            (
                Method::GET,
                format!("/v1/webhooks/{hook_root}/deliveries"),
                404,
            ),
            (
                Method::GET,
                format!("/v1/webhooks/{hook_a}/deliveries"),
                200,
            ),
            (
                Method::POST,
                format!("/v1/webhooks/{hook_root}/deliveries/{retry}/retry"),
                404,
            ),
            (Method::DELETE, format!("/v1/webhooks/{hook_root}"), 404),
        ];
        for (method, path, for_admin) in webhook_routes {
            let (status, got, _) = call(&app, token.as_deref(), method.clone(), &path, None).await;
            let expected = match who.role() {
                None => 401,
                Some(Role::Admin) => for_admin,
                Some(_) => 403,
            };
            assert_eq!(status, expected, "{who:?} {method} {path}: {got}");
            checked += 1;
        }
    }
    assert!(checked > 9 * 30, "{checked} checks");
    // The root key still sees its webhook, which the com.a admin could not delete.
    let (status, _, _) = call(
        &app,
        Some(&t.root),
        Method::GET,
        &format!("/v1/webhooks/{hook_root}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cannot_learn_that_a_job_of_another_namespace_exists() {
    let (app, t) = app_with_keys().await;
    let (a, _) = fixture(&app, &t.root, "com.a.mail").await;
    let (b, tb) = fixture(&app, &t.root, "com.b.mail").await;
    fixture(&app, &t.root, "com.b.other").await;
    let hook_root = webhook(&app, &t.root).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let reader = Some(t.reader.as_str());
    // Get, tasks and history of the com.b job answer exactly as for a job that does not
    // exist (the same status and problem type; the detail names only the id asked for).
    for (existing, missing) in [
        (format!("/v1/jobs/{b}"), format!("/v1/jobs/{unknown}")),
        (
            format!("/v1/jobs/{b}/tasks"),
            format!("/v1/jobs/{unknown}/tasks"),
        ),
        (
            format!("/v1/jobs/{b}/tasks/{tb}"),
            format!("/v1/jobs/{unknown}/tasks/{tb}"),
        ),
        (
            format!("/v1/jobs/{b}/history"),
            format!("/v1/jobs/{unknown}/history"),
        ),
        (
            format!("/v1/jobs/{b}/tasks/{tb}/history"),
            format!("/v1/jobs/{unknown}/tasks/{tb}/history"),
        ),
    ] {
        let (s1, p1, _) = call(&app, reader, Method::GET, &existing, None).await;
        let (s2, p2, _) = call(&app, reader, Method::GET, &missing, None).await;
        assert_eq!(
            (s1, &p1["type"]),
            (s2, &p2["type"]),
            "{existing}: {p1} vs {p2}"
        );
        assert_eq!(s1, 404);
        assert_eq!(
            p1["detail"].as_str().unwrap().replace(&b, "ID"),
            p2["detail"].as_str().unwrap().replace(&unknown, "ID")
        );
    }
    // Lists and their totals leave the com.b jobs out, whatever the filter.
    for query in [
        "",
        "?namespace=com.b.mail",
        "?status=pending",
        "?sort=namespace&size=1000",
    ] {
        let (status, page, _) =
            call(&app, reader, Method::GET, &format!("/v1/jobs{query}"), None).await;
        assert_eq!(status, 200);
        let ids: Vec<&str> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = if query.contains("com.b") {
            vec![]
        } else {
            vec![a.as_str()]
        };
        assert_eq!(ids, expected, "{query}");
        assert_eq!(page["total_items"], expected.len(), "{query}: {page}");
    }
    // A batch update answers the com.b item as not found, as it does an unknown job's.
    let (_, got, _) = call(
        &app,
        Some(&t.writer),
        Method::POST,
        "/v1/tasks/status",
        Some(json!({"updates": [
            {"job_id": b, "task_id": tb, "status": "in_progress"},
            {"job_id": unknown, "task_id": tb, "status": "in_progress"},
        ]})),
    )
    .await;
    let r = &got["results"];
    assert_eq!(
        (r[0]["status"].as_u64(), r[1]["status"].as_u64()),
        (Some(404), Some(404)),
        "{got}"
    );
    assert_eq!(r[0]["error"]["type"], r[1]["error"]["type"]);
    // Nothing changed in com.b.
    let (_, job, _) = call(
        &app,
        Some(&t.root),
        Method::GET,
        &format!("/v1/jobs/{b}"),
        None,
    )
    .await;
    assert_eq!(job["job"]["status"], "pending");
    // Webhooks: the com.a admin sees only its own.
    let mine = webhook(&app, &t.admin).await;
    let (_, list, _) = call(&app, Some(&t.admin), Method::GET, "/v1/webhooks", None).await;
    let ids: Vec<&str> = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    assert!(!list.to_string().contains(&hook_root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_into_a_cookie_that_authorizes_like_the_header() {
    let (app, t) = app_with_keys().await;
    let (a, _) = fixture(&app, &t.root, "com.a.mail").await;
    fixture(&app, &t.root, "com.b.mail").await;
    let post_session = |token: &str, proto: Option<&str>| {
        let mut rb = app
            .http
            .post(app.url("/session"))
            .json(&json!({"token": token}));
        if let Some(p) = proto {
            rb = rb.header("x-forwarded-proto", p);
        }
        rb.send()
    };
    let bad = post_session("pa_nope", None).await.unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let res = post_session(&t.writer, None).await.unwrap();
    assert_eq!(res.status(), 204);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("pa_session={}", t.writer)),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let https = post_session(&t.writer, Some("https")).await.unwrap();
    assert!(
        https.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let session = format!("pa_session={}", t.writer);
    // Reads by cookie see what the key sees.
    let list: Value = app
        .http
        .get(app.url("/v1/jobs"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total_items"], 1, "{list}");
    assert_eq!(list["jobs"][0]["id"], a.as_str());
    // A change by cookie needs the server's own Origin (CSRF); by header it does not.
    let note = json!({"message": "from the dashboard"});
    let path = app.url(&format!("/v1/jobs/{a}/history"));
    let no_origin = app
        .http
        .post(&path)
        .header("cookie", &session)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 403);
    let foreign = app
        .http
        .post(&path)
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let own = app
        .http
        .post(&path)
        .header("cookie", &session)
        .header("origin", format!("http://{}", app.addr))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    // Signing out clears the cookie.
    let out = app.http.delete(app.url("/session")).send().await.unwrap();
    assert_eq!(out.status(), 204);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("pa_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // A revoked key's cookie stops working within the cache bound.
    let id = Token::parse(&t.writer).unwrap().key_id().to_owned();
    assert!(keys(&app.database_url, &["revoke", &id]).status.success());
    let until = Instant::now() + portauthority_server::auth::CACHE_TTL + Duration::from_secs(5);
    loop {
        let s = app
            .http
            .get(app.url("/v1/jobs"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .status();
        if s == 401 {
            break;
        }
        assert!(Instant::now() < until, "a revoked key still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_shows_every_key_and_never_a_token() {
    let (app, t) = app_with_keys().await;
    let out = keys(&app.database_url, &["list", "--output", "json"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(list.len(), 7);
    for token in [
        &t.root, &t.reader, &t.writer, &t.admin, &t.other, &t.revoked,
    ] {
        let secret = &token[20..];
        assert!(!text.contains(secret), "a secret in keys list");
        let id = Token::parse(token).unwrap().key_id().to_owned();
        assert!(list.iter().any(|k| k["id"] == id.as_str()));
    }
    let revoked = list.iter().filter(|k| !k["revoked_at"].is_null()).count();
    assert_eq!(revoked, 1);
    let reader = list.iter().find(|k| k["role"] == "reader").unwrap();
    assert_eq!(reader["scope"], json!(["com.a.*"]));
    // Unknown id: not found (3); bad role: invalid (5).
    assert_eq!(
        keys(&app.database_url, &["revoke", "0000000000000000"])
            .status
            .code(),
        Some(3)
    );
    let bad = keys(
        &app.database_url,
        &["create", "--role", "root", "--namespace", "*"],
    );
    assert_eq!(bad.status.code(), Some(5));
}

/// A free TCP port (another process may take it before us; the tests retry nothing).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_public_address_without_keys_unless_told_and_then_requires_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(&dir).await;
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    // No key: refused, naming both ways out.
    let out = Command::new(portauthority())
        .args([
            "serve",
            "--listen",
            &listen,
            "--database-url",
            &db,
            "--no-worker",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("portauthority keys create") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    // --insecure-no-auth: starts, warns, serves without a key.
    let mut server = portauthority_testkit::server::Process::spawn(
        portauthority(),
        &[
            "serve",
            "--listen",
            &listen,
            "--database-url",
            &db,
            "--no-worker",
            "--insecure-no-auth",
        ],
        dir.path(),
        "insecure",
    );
    assert!(
        server
            .wait_for_log("listening on", Duration::from_secs(30))
            .await,
        "{}",
        server.log_text()
    );
    assert!(server.log_text().contains("WARN") && server.log_text().contains("--insecure-no-auth"));
    let http = portauthority_client::http_builder().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/jobs");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    server.kill();
    // With a key: starts on the public address and requires it; the token is never logged.
    let token = keys_create(&db, "reader", &["*"]);
    let mut server = portauthority_testkit::server::Process::spawn(
        portauthority(),
        &[
            "serve",
            "--listen",
            &listen,
            "--database-url",
            &db,
            "--no-worker",
        ],
        dir.path(),
        "keyed",
    );
    assert!(
        server
            .wait_for_log("listening on", Duration::from_secs(30))
            .await,
        "{}",
        server.log_text()
    );
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let healthz = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200, "health stays open");
    let bad = http
        .get(&url)
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    server.kill();
    let log = server.log_text();
    assert!(
        !log.contains(&token[20..]),
        "the token's secret in the server log:\n{log}"
    );
}
