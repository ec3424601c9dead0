//! Hostile input: what an attacker sends gets a clear 4xx problem, changes nothing, and never
//! takes the server down.

use crate::helpers::{TestApp, assert_problem};
use serde_json::{Value, json};

async fn raw(app: &TestApp, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let res = app
        .http
        .request(method, app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn still_serves(app: &TestApp) {
    let (status, _) = app.get("/v1/jobs?size=1").await;
    assert_eq!(status, 200, "the server still answers");
}

#[tokio::test]
async fn deeply_nested_meta_is_refused_without_harm() {
    let app = TestApp::spawn().await;
    for depth in [200usize, 100_000] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let body =
            format!(r#"{{"type":"t","namespace":"com.example.hostile","meta":{{"x":{nested}}}}}"#);
        let (status, problem) =
            raw(&app, reqwest::Method::POST, "/v1/jobs", body.into_bytes()).await;
        assert!(
            matches!(status, 400 | 413 | 422),
            "depth {depth}: {status} {problem}"
        );
        assert_problem(status, &problem, status);
    }
    let (_, page) = app.get("/v1/jobs?namespace=com.example.hostile").await;
    assert_eq!(page["total_items"], 0, "nothing was written");
    still_serves(&app).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_body_is_a_clear_problem() {
    let app = TestApp::spawn().await;
    let mut body = br#"{"type":"t","namespace":"com.example.hostile","meta":{"x":""#.to_vec();
    body.extend([0xff, 0xfe, 0xc3]);
    body.extend(br#""}}"#);
    let (status, problem) = raw(&app, reqwest::Method::POST, "/v1/jobs", body).await;
    assert!(matches!(status, 400 | 422), "{status} {problem}");
    assert_problem(status, &problem, status);
    still_serves(&app).await;
}

/// The status code the server answers a raw HTTP/1.1 request with (0: no answer).
async fn raw_status(app: &TestApp, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut head))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn ten_thousand_query_parameters_are_refused_quickly() {
    let app = TestApp::spawn().await;
    let query: Vec<String> = (0..10_000).map(|i| format!("p{i}=x")).collect();
    let started = std::time::Instant::now();
    let status = raw_status(
        &app,
        format!(
            "GET /v1/jobs?{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            query.join("&")
        ),
    )
    .await;
    assert!(matches!(status, 0 | 400 | 414 | 422 | 431), "{status}");
    assert!(
        started.elapsed().as_secs() < 5,
        "answered in {:?}",
        started.elapsed()
    );
    still_serves(&app).await;
}

#[tokio::test]
async fn a_thousand_headers_do_not_take_the_server_down() {
    let app = TestApp::spawn().await;
    let mut request = app.http.get(app.url("/v1/jobs?size=1"));
    for i in 0..1000 {
        request = request.header(format!("x-h{i}"), "v");
    }
    // Refused (431) or served; the connection may also be closed. Either way the next
    // client is served.
    if let Ok(res) = request.send().await {
        assert!(
            matches!(res.status().as_u16(), 200 | 400 | 431),
            "{}",
            res.status()
        );
    }
    still_serves(&app).await;
}

#[tokio::test]
async fn out_of_range_paging_is_a_clear_problem() {
    let app = TestApp::spawn().await;
    for query in [
        "page=9223372036854775808",
        "page=18446744073709551616",
        "page=9223372036854775807",
        "page=-1",
        "size=0",
        "size=1001",
        "page=1e3",
    ] {
        let (status, problem) = app.get(&format!("/v1/jobs?{query}")).await;
        assert!(
            matches!(status, 200 | 400 | 422),
            "{query}: {status} {problem}"
        );
        if status != 200 {
            assert_problem(status, &problem, status);
        }
    }
    let (status, _) = app.get("/v1/jobs?page=9223372036854775807").await;
    assert_ne!(status, 500);
    still_serves(&app).await;
}

#[tokio::test]
async fn a_body_of_the_wrong_json_type_everywhere_is_a_422() {
    let app = TestApp::spawn().await;
    for body in [
        json!([]),
        json!("x"),
        json!(1),
        json!(null),
        json!({"type": 1}),
    ] {
        let (status, problem) = app.post("/v1/jobs", body.clone()).await;
        assert!(matches!(status, 400 | 422), "{body}: {status}");
        assert_problem(status, &problem, status);
    }
}
