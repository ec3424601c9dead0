//! Starting `portauthority serve` processes on a scratch PostgreSQL database, and the
//! small pieces the tests share.

use portauthority_client::Client;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The server the scratch databases are created on, or None (after saying so) when the
/// variable is not set.
pub fn admin_url() -> Option<String> {
    match std::env::var("PORTAUTHORITY_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipping: PORTAUTHORITY_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// Held by every test of this binary for its whole run: the restart test stops the
/// PostgreSQL cluster, which must not happen under another test's load. A test that
/// panicked leaves the lock poisoned; the next one takes it all the same.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The runtime a test drives its clients on (the lock above is taken outside of it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh, empty database on the test server.
pub async fn scratch_database(admin: &str) -> String {
    portauthority_store::postgres::scratch_database(admin, "pa_pgtest")
        .await
        .expect("create a scratch database")
}

/// A free TCP port on loopback (it may be taken again before the server binds it; then
/// the server exits and the caller tries another).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// A `portauthority serve` child process, killed (SIGKILL) and reaped when dropped, so a
/// failing test never leaves a server behind.
pub struct Server {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Server {
    /// Starts the binary on a free port over `database_url`, without waiting for it.
    fn spawn(database_url: &str, dir: &Path, name: &str, pool: u32) -> Server {
        let port = free_port();
        let log = dir.join(format!("{name}-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_portauthority"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
            ])
            .env("PORTAUTHORITY_LOG", "warn")
            .env("PORTAUTHORITY_DATABASE_POOL", pool.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the server log"))
            .spawn()
            .expect("start the portauthority binary");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Starts `n` servers at once on one database (they apply the migrations
    /// concurrently) and waits until every one answers `/healthz`.
    pub async fn start_many(database_url: &str, dir: &Path, n: usize, pool: u32) -> Vec<Server> {
        let mut servers: Vec<Server> = (0..n)
            .map(|i| Server::spawn(database_url, dir, &format!("server{i}"), pool))
            .collect();
        let healthy = futures::future::join_all(servers.iter_mut().map(|s| s.wait_healthy())).await;
        for (i, ok) in healthy.into_iter().enumerate() {
            if ok {
                continue;
            }
            // Most likely its port was taken between the probe and the bind: once more,
            // alone. Anything else shows in the log.
            let first_log = servers[i].log_text();
            let mut again = Server::spawn(database_url, dir, &format!("server{i}-again"), pool);
            assert!(
                again.wait_healthy().await,
                "server {i} did not become healthy; its logs:\n{first_log}\n{}",
                again.log_text()
            );
            servers[i] = again;
        }
        servers
    }

    /// Polls `/healthz` for up to 30 s; false if the process exits first.
    async fn wait_healthy(&mut self) -> bool {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("http client");
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// An HTTP client for this server with a generous timeout: a hang becomes a transport
    /// error the test reports instead of a stuck test.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .expect("http client")
    }

    pub fn client(&self) -> Client {
        Client::with_http(self.http(), self.base.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use crate::workload::{Rng, first};
