//! PostgreSQL failing under load without going down: a connection that goes silent (a TCP
//! proxy in the test stops forwarding, closing nothing, as a partition or a stuck middlebox
//! does) and backends terminated by an administrator (`pg_terminate_backend`). Requests get
//! an answer all along (200, or 503 problem JSON within a bounded time, never a 500 or a
//! hang), `/readyz` says not ready while the database is silent, writes recover without a
//! restart, and no acknowledged write is lost.

use crate::harness::{runtime, scratch_database, serial};
use portauthority_testkit::postgres::{admin_url, database_of, drop_scratch_database, execute};
use portauthority_testkit::server::Server;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any request may take to be answered while the database is silent: the
/// operations guide promises about two seconds; this is that with room for a loaded
/// machine.
const SILENT_ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A TCP proxy to PostgreSQL that can stop forwarding without closing anything.
struct Proxy {
    addr: SocketAddr,
    forwarding: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forwarding = Arc::new(AtomicBool::new(true));
        let on = forwarding.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let on = on.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, on.clone()), pump(sr, cw, on));
                });
            }
        });
        Proxy {
            addr,
            forwarding,
            task,
        }
    }

    fn set_forwarding(&self, on: bool) {
        self.forwarding.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while forwarding is off.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    on: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while !on.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let at = url.find('@').map(|i| i + 1).unwrap_or("postgres://".len());
    let end = at + url[at..].find('/').unwrap();
    format!("{}{addr}{}", &url[..at], &url[end..])
}

/// The PostgreSQL server's address in `url` (127.0.0.1:5432 unless it says otherwise).
fn upstream_of(url: &str) -> SocketAddr {
    let at = url.find('@').map(|i| i + 1).unwrap_or("postgres://".len());
    let end = at + url[at..].find('/').unwrap();
    let host = &url[at..end];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let host = host.replace("localhost", "127.0.0.1");
    host.parse().expect("a numeric PostgreSQL address")
}

/// One create, with when it started and how long its answer took.
#[derive(Debug)]
struct Attempt {
    at: Instant,
    took: Duration,
    status: u16,
    id: Option<String>,
    body: Value,
}

/// Clients creating jobs until `stop`.
fn writers(
    server: &Server,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Attempt>>> {
    (0..clients)
        .map(|c| {
            let http = server.http();
            let base = server.base.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let at = Instant::now();
                    let res = http
                        .post(format!("{base}/v1/jobs"))
                        .json(&json!({"type": "w", "namespace": "com.example.pg", "meta": {"c": c, "i": i}}))
                        .send()
                        .await;
                    i += 1;
                    let (status, body) = match res {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            (status, r.json().await.unwrap_or(Value::Null))
                        }
                        Err(e) => (0, json!(e.to_string())),
                    };
                    let id = (status == 200).then(|| body["job"]["id"].as_str().unwrap().to_owned());
                    out.push(Attempt {
                        at,
                        took: at.elapsed(),
                        status,
                        id,
                        body,
                    });
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                out
            })
        })
        .collect()
}

async fn ready(http: &reqwest::Client, base: &str) -> (u16, Duration) {
    let at = Instant::now();
    let status = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, at.elapsed())
}

/// Every acknowledged job is there.
async fn assert_kept(server: &Server, attempts: &[Attempt]) {
    let http = server.http();
    for id in attempts.iter().filter_map(|a| a.id.as_ref()) {
        let res = http
            .get(format!("{}/v1/jobs/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged job {id} is lost");
    }
}

#[test]
fn a_silent_database_connection_answers_503_in_bounded_time_and_recovers() {
    let Some(admin) = admin_url() else { return };
    let _serial = serial();
    runtime().block_on(async {
        let url = scratch_database(&admin).await;
        let proxy = Proxy::start(upstream_of(&url)).await;
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            crate::portauthority(),
            &through(&url, proxy.addr),
            dir.path(),
            "silent",
            Some(8),
        )
        .await;
        let http = server.http();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = writers(&server, 8, stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;

        let silent_from = Instant::now();
        proxy.set_forwarding(false);
        let mut not_ready_after = None;
        while silent_from.elapsed() < Duration::from_secs(5) {
            let (status, took) = ready(&http, &server.base).await;
            assert!(took < SILENT_ANSWER_WITHIN, "/readyz took {took:?}");
            if status == 503 && not_ready_after.is_none() {
                not_ready_after = Some(silent_from.elapsed());
            }
            if not_ready_after.is_some() {
                assert_eq!(status, 503, "/readyz said ready again while silent");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let not_ready_after = not_ready_after.expect("/readyz kept saying ready while silent");

        let forwarding_from = Instant::now();
        proxy.set_forwarding(true);
        let mut ready_after = None;
        while forwarding_from.elapsed() < Duration::from_secs(20) {
            if ready(&http, &server.base).await.0 == 200 {
                ready_after = Some(forwarding_from.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ready_after = ready_after.expect("/readyz did not recover without a restart");
        // Writes after recovery go through.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::SeqCst);
        let mut attempts = Vec::new();
        for c in clients {
            attempts.extend(c.await.unwrap());
        }

        let mut slowest_while_silent = Duration::ZERO;
        for a in &attempts {
            assert!(
                matches!(a.status, 200 | 503),
                "a write answered {} after {:?}: {}\nlog:\n{}",
                a.status,
                a.took,
                a.body,
                server.log_text()
            );
            if a.status == 503 {
                assert_eq!(
                    a.body["type"], "urn:portauthority:problem:unavailable",
                    "{}",
                    a.body
                );
            }
            // A request sent while the database was silent gets its answer in bounded time.
            if a.at >= silent_from && a.at < forwarding_from {
                slowest_while_silent = slowest_while_silent.max(a.took);
                assert!(
                    a.took < SILENT_ANSWER_WITHIN,
                    "a write sent while the database was silent took {:?}",
                    a.took
                );
            }
        }
        let after = attempts
            .iter()
            .filter(|a| a.at >= forwarding_from + ready_after && a.status == 200)
            .count();
        assert!(after > 0, "no write succeeded after recovery");
        let refused = attempts.iter().filter(|a| a.status == 503).count();
        assert!(
            refused > 0,
            "no write was refused while the database was silent"
        );
        assert_kept(&server, &attempts).await;
        portauthority_testkit::skip::report(&format!(
            "silent PostgreSQL: /readyz not ready {:.2} s after the silence began, ready {:.2} s \
             after it ended; {refused} writes refused with 503, the slowest answer while \
             silent {:.2} s; {} acknowledged writes kept",
            not_ready_after.as_secs_f64(),
            ready_after.as_secs_f64(),
            slowest_while_silent.as_secs_f64(),
            attempts.iter().filter(|a| a.id.is_some()).count()
        ));
        drop(server);
        drop(proxy);
        let _ = drop_scratch_database(&admin, &url).await;
    });
}

#[test]
fn backends_terminated_under_load_lose_no_acknowledged_write() {
    let Some(admin) = admin_url() else { return };
    let _serial = serial();
    runtime().block_on(async {
        let url = scratch_database(&admin).await;
        let name = database_of(&url);
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(crate::portauthority(), &url, dir.path(), "kick", Some(8)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let clients = writers(&server, 8, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kick = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        );
        for _ in 0..10 {
            execute(&admin, &kick)
                .await
                .expect("terminate the backends");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Writes go through again once the pool has reconnected.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::SeqCst);
        let mut attempts = Vec::new();
        for c in clients {
            attempts.extend(c.await.unwrap());
        }
        for a in &attempts {
            assert!(
                matches!(a.status, 200 | 503),
                "a write answered {}: {}\nlog:\n{}",
                a.status,
                a.body,
                server.log_text()
            );
        }
        let last = attempts.iter().max_by_key(|a| a.at).unwrap();
        let acked = attempts.iter().filter(|a| a.id.is_some()).count();
        assert!(acked > 0);
        let (status, _) = ready(&server.http(), &server.base).await;
        assert_eq!(status, 200, "not ready after the backends came back");
        let fresh = server
            .http()
            .post(format!("{}/v1/jobs", server.base))
            .json(&json!({"type": "w", "namespace": "com.example.pg"}))
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 200, "the last write before: {last:?}");
        assert_kept(&server, &attempts).await;
        portauthority_testkit::skip::report(&format!(
            "terminated backends: {} writes, {acked} acknowledged and kept, {} refused with 503",
            attempts.len(),
            attempts.iter().filter(|a| a.status == 503).count()
        ));
        drop(server);
        let _ = drop_scratch_database(&admin, &url).await;
    });
}
