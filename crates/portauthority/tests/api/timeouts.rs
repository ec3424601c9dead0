//! Clients that stall: half-sent heads, trickled bodies, idle connections, oversized declared
//! bodies, and a shutdown with stalled clients. Each is answered (408/413 problem JSON) or
//! closed within its timeout while other clients are served, over raw TCP where a client
//! library would not misbehave. Timeouts are a few hundred milliseconds; upper bounds are
//! generous, lower bounds follow from timers never firing early.

use crate::helpers::{TestApp, fresh_database_url, job_request};
use portauthority_server::{App, Config};
use portauthority_testkit::postgres::{DATABASE_URL_VAR, drop_scratch_database};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(30);
/// How long a test waits for what should happen within `SHORT`, on a loaded machine.
const BOUND: Duration = Duration::from_secs(3);

/// A response read off the wire.
struct Wire {
    status: u16,
    /// Header lines, lower-cased.
    headers: String,
    body: Value,
}

fn parse(raw: &[u8]) -> Wire {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Wire {
        status,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn assert_problem(wire: &Wire, status: u16, slug: &str) {
    assert_eq!(wire.status, status, "headers: {}", wire.headers);
    assert!(
        wire.headers
            .contains("content-type: application/problem+json"),
        "headers: {}",
        wire.headers
    );
    assert_eq!(wire.body["status"], status, "body: {}", wire.body);
    assert_eq!(
        wire.body["type"],
        format!("urn:portauthority:problem:{slug}"),
        "body: {}",
        wire.body
    );
    assert!(wire.body["detail"].is_string(), "body: {}", wire.body);
    // Even the 408 the connection writes itself, with no request to answer, has an id.
    let id = wire.body["request_id"].as_str().expect("a request_id");
    assert!(
        wire.headers.contains(&format!("x-request-id: {id}")),
        "the header and the body name the same id: {}",
        wire.headers
    );
}

/// Reads until the server closes the connection (or resets it), failing after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server did not close the connection within {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0) | Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a `Content-Length` body, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> Wire {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("a length"))
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return parse(&raw);
            }
        }
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response");
        raw.extend_from_slice(&buf[..n]);
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// A request head for a JSON body of `length` bytes, without the body.
fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n{extra}\r\n"
    )
}

const GET_HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";

async fn job_count(app: &TestApp) -> usize {
    let page = app
        .client
        .list_jobs(&Default::default())
        .await
        .expect("list");
    page.jobs.len()
}

#[tokio::test]
async fn a_request_head_sent_halfway_gets_a_408_problem_and_is_closed_within_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.header_timeout = SHORT).await;
    let mut stream = connect(app.addr).await;
    let started = Instant::now();
    stream
        .write_all(b"POST /v1/jobs HTTP/1.1\r\nhost: test\r\ncontent-ty")
        .await
        .unwrap();
    let raw = read_until_closed(&mut stream, BOUND).await;
    let elapsed = started.elapsed();
    assert!(elapsed < BOUND, "took {elapsed:?}");
    let wire = parse(&raw);
    assert_problem(&wire, 408, "request-timeout");
    assert!(
        wire.headers.contains("connection: close"),
        "{}",
        wire.headers
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_within_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.header_timeout = SHORT).await;
    let mut stream = connect(app.addr).await;
    let started = Instant::now();
    let raw = read_until_closed(&mut stream, BOUND).await;
    assert!(
        started.elapsed() >= SHORT / 2,
        "closed after {:?}",
        started.elapsed()
    );
    assert!(
        raw.is_empty(),
        "nothing to answer, yet got {:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_body_timeout_gets_a_408_problem_and_creates_nothing() {
    let app = TestApp::spawn_with(|c| c.body_timeout = SHORT).await;
    let body = serde_json::to_vec(&job_request("com.shipyard.slow", "build")).unwrap();
    let stream = connect(app.addr).await;
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(post_head("/v1/jobs", body.len(), "").as_bytes())
        .await
        .unwrap();
    // One byte every 50 ms: never a gap as long as the timeout, but the whole body would
    // take seconds. The timeout is a deadline for the body, not a gap between bytes.
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for b in body {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(BOUND, rd.read(&mut buf)).await {
        raw.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(elapsed < BOUND, "took {elapsed:?}");
    let wire = parse(&raw);
    assert_problem(&wire, 408, "request-timeout");
    assert!(
        wire.body["detail"].as_str().unwrap().contains("body"),
        "{}",
        wire.body
    );
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn a_request_not_handled_within_the_request_timeout_gets_a_408_problem() {
    let app = TestApp::spawn_with(|c| c.request_timeout = SHORT).await;
    let mut stream = connect(app.addr).await;
    // The body never comes; the body timeout (default) is longer than the request timeout.
    stream
        .write_all(post_head("/v1/jobs", 100, "").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let raw = read_until_closed(&mut stream, BOUND).await;
    assert!(
        started.elapsed() >= SHORT / 2,
        "after {:?}",
        started.elapsed()
    );
    let wire = parse(&raw);
    assert_problem(&wire, 408, "request-timeout");
    assert!(
        wire.body["detail"]
            .as_str()
            .unwrap()
            .contains("request timeout"),
        "{}",
        wire.body
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.idle_timeout = SHORT;
        c.header_timeout = LONG;
    })
    .await;
    let mut stream = connect(app.addr).await;
    stream.write_all(GET_HEALTH).await.unwrap();
    let wire = read_response(&mut stream).await;
    assert_eq!(wire.status, 200);
    let idle_since = Instant::now();
    let rest = read_until_closed(&mut stream, BOUND).await;
    let idle = idle_since.elapsed();
    assert!(rest.is_empty(), "an idle close says nothing: {rest:?}");
    assert!(idle >= SHORT / 2, "closed after {idle:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_may_wait_longer_than_the_header_timeout_for_its_next_request() {
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = SHORT;
        c.idle_timeout = LONG;
    })
    .await;
    let mut stream = connect(app.addr).await;
    stream.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    tokio::time::sleep(SHORT * 3).await;
    stream.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
}

#[tokio::test]
async fn a_declared_content_length_over_the_limit_gets_a_413_at_once_and_no_100_continue() {
    // Every other timeout is long: only the declared length can answer in time.
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = LONG;
        c.body_timeout = LONG;
        c.request_timeout = LONG;
    })
    .await;
    for extra in ["expect: 100-continue\r\n", ""] {
        let mut stream = connect(app.addr).await;
        let head = post_head("/v1/jobs", 1024 * 1024 + 1, extra);
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        // The first response is the 413 (`read_response` would return a 100 Continue).
        let wire = read_response(&mut stream).await;
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        assert_problem(&wire, 413, "payload-too-large");
        assert!(
            wire.headers.contains("connection: close"),
            "{}",
            wire.headers
        );
        // Without `Expect`, an unsent body is waited for a moment (2 s) before the close.
        let rest = read_until_closed(&mut stream, 2 * BOUND).await;
        assert!(rest.is_empty(), "{extra:?}: sent after the 413: {rest:?}");
    }
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn a_ten_megabyte_body_gets_its_413_problem_through_an_ordinary_client() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .post(app.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024])
        .send()
        .await
        .expect("the 413 arrives, not a reset");
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.expect("problem JSON");
    assert_eq!(body["type"], "urn:portauthority:problem:payload-too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_are_served_while_many_connections_stall() {
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = LONG;
        c.body_timeout = LONG;
        c.request_timeout = LONG;
    })
    .await;
    let mut stalled = Vec::new();
    for i in 0..100 {
        let mut stream = connect(app.addr).await;
        let stall: &[u8] = if i % 2 == 0 {
            b"POST /v1/jobs HTTP/1.1\r\nhost: te"
        } else {
            b"POST /v1/jobs HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"ty"
        };
        stream.write_all(stall).await.unwrap();
        stalled.push(stream);
    }
    for _ in 0..5 {
        let started = Instant::now();
        let job = app
            .client
            .create_job(&job_request("com.shipyard.busy", "build"))
            .await
            .expect("served");
        app.client.get_job(job.id).await.expect("served");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a create and a read took {:?} beside 100 stalled connections",
            started.elapsed()
        );
    }
    drop(stalled);
}

/// An app run in the test's hands: its address, the shutdown trigger and the serving task.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _database: Scratch,
}

/// The app's database: a SQLite file in a temporary folder, or a PostgreSQL scratch
/// database, dropped with the test as `TestApp` drops its own.
struct Scratch {
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.url.starts_with("postgres")
            && let Ok(admin) = std::env::var(DATABASE_URL_VAR)
        {
            let url = self.url.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(drop_scratch_database(&admin, &url));
                }
            })
            .join();
        }
    }
}

async fn run(tweak: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let database = Scratch {
        url: fresh_database_url(&dir).await,
        _dir: dir,
    };
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: database.url.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop,
        served,
        _database: database,
    }
}

#[tokio::test]
async fn shutdown_with_stalled_clients_returns_within_the_drain() {
    let drain = Duration::from_millis(500);
    let app = run(|c| {
        c.header_timeout = LONG;
        c.body_timeout = LONG;
        c.request_timeout = LONG;
        c.shutdown_drain = drain;
    })
    .await;
    // One upload stalled in its body (its handler is waiting for it), one head stalled.
    let mut upload = connect(app.addr).await;
    upload
        .write_all(format!("{}{{\"type\":", post_head("/v1/jobs", 500, "")).as_bytes())
        .await
        .unwrap();
    let mut head = connect(app.addr).await;
    head.write_all(b"GET /v1/jobs HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    app.stop.send(()).unwrap();
    let result = tokio::time::timeout(BOUND, app.served)
        .await
        .expect("run_until returns within the drain bound");
    let elapsed = started.elapsed();
    result.expect("no panic").expect("a clean stop");
    assert!(
        elapsed >= drain / 2,
        "returned after {elapsed:?}, before the drain"
    );
    read_until_closed(&mut upload, BOUND).await;
    read_until_closed(&mut head, BOUND).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_keep_alive_connections() {
    let app = run(|c| {
        c.idle_timeout = LONG;
        c.shutdown_drain = LONG;
    })
    .await;
    let mut stream = connect(app.addr).await;
    stream.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);

    let started = Instant::now();
    app.stop.send(()).unwrap();
    tokio::time::timeout(BOUND, app.served)
        .await
        .expect("an idle connection is closed at once, not drained")
        .expect("no panic")
        .expect("a clean stop");
    assert!(started.elapsed() < BOUND);
    assert!(read_until_closed(&mut stream, BOUND).await.is_empty());
}

#[tokio::test]
async fn sigterm_with_a_stalled_upload_exits_within_the_shutdown_drain() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(crate::portauthority())
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--shutdown-drain",
            "500ms",
        ])
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("s.db").display()),
        ])
        // The stalled upload would otherwise be cut by these, not by the drain.
        .env("PORTAUTHORITY_BODY_TIMEOUT", "30s")
        .env("PORTAUTHORITY_REQUEST_TIMEOUT", "30s")
        .env("PORTAUTHORITY_LOG", "warn")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("serve starts");
    // Serving (not only listening): then the upload below is accepted before the signal.
    let started = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(addr).await
            && s.write_all(GET_HEALTH).await.is_ok()
            && read_response(&mut s).await.status == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut upload = connect(addr).await;
    upload
        .write_all(format!("{}{{\"type\":", post_head("/v1/jobs", 500, "")).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if signalled.elapsed() > BOUND {
            let _ = child.kill();
            panic!("still running {BOUND:?} after SIGTERM with a 500 ms drain");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    assert!(
        log.contains("still open after the shutdown drain"),
        "the forced close is logged; log:\n{log}"
    );
    read_until_closed(&mut upload, BOUND).await;
}

/// File descriptors the process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A flood of idle sockets costs the server at most `--max-connections` file descriptors:
/// the rest wait unaccepted, a request behind them is served once open ones close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_holds_no_more_descriptors_than_the_connection_cap() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        portauthority_testkit::skip::because("no /proc to count file descriptors");
        return;
    }
    const CAP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cap.db").display());
    let server = portauthority_testkit::server::Server::start_with(
        crate::portauthority(),
        &url,
        dir.path(),
        "cap",
        None,
        &["--max-connections", "8", "--header-timeout", "60s"],
    )
    .await;
    let pid = server.child.id();
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    // The start-up health checks' connection closes on its own.
    let until = Instant::now() + BOUND;
    let mut baseline = open_fds(pid);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        baseline = baseline.min(open_fds(pid));
    }
    // Fewer than the listen backlog (128) beyond the cap: past that, the kernel drops the
    // handshakes and the clients' connects themselves wait.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(connect(addr).await);
    }
    tokio::time::sleep(SHORT).await;
    let held = open_fds(pid).saturating_sub(baseline);
    assert!(
        held <= CAP,
        "100 idle sockets hold {held} descriptors of the server (cap {CAP})"
    );

    // A request behind the flood waits for a slot; closing the flood frees them.
    let waiting = tokio::spawn(async move {
        let mut stream = connect(addr).await;
        stream.write_all(GET_HEALTH).await.unwrap();
        read_response(&mut stream).await.status
    });
    tokio::time::sleep(SHORT).await;
    assert!(
        !waiting.is_finished(),
        "a request was served while every slot was held"
    );
    drop(flood);
    let status = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("served once the idle sockets closed")
        .unwrap();
    assert_eq!(status, 200);
    let log = server.log_text();
    assert_eq!(
        log.matches("at the connection limit").count(),
        1,
        "the cap is logged once, not per connection; log:\n{log}"
    );
}
