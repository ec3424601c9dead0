//! `portauthority serve` as a child process, for the tests that need the real binary
//! (SIGKILL, SIGTERM, several servers on one database, a database restart).
//!
//! The caller names the binary: cargo tells only the integration tests of the
//! `portauthority` crate where it is (`env!("CARGO_BIN_EXE_portauthority")`). Each server
//! logs to a file of its own in the test's directory, read back with
//! [`Server::log_text`] when something fails.

use portauthority_client::Client;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `/healthz` after it starts.
const START_WITHIN: Duration = Duration::from_secs(30);

/// A `portauthority serve` child process, killed (SIGKILL) and reaped when dropped, so a
/// failing test never leaves a server behind.
pub struct Server {
    /// The process, for signals and its exit status.
    pub child: Child,
    /// Its root URL, `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `binary serve` on a free port over `database_url`, without waiting for it.
    /// With `pool`, the size of its PostgreSQL pool.
    fn spawn(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        name: &str,
        pool: Option<u32>,
        extra: &[&str],
    ) -> Server {
        // The port can be taken again before the server binds it; then the server exits
        // and `start` tries another.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("probe a free port")
            .port();
        let log = dir.join(format!("{name}-{port}.log"));
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
            ])
            .args(extra)
            .env("PORTAUTHORITY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the server log"));
        if let Some(pool) = pool {
            command.env("PORTAUTHORITY_DATABASE_POOL", pool.to_string());
        }
        Server {
            child: command.spawn().expect("start the portauthority binary"),
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Starts one server (`binary serve`, logging to `dir/{name}-{port}.log`) and waits
    /// until it answers `/healthz`, on another port if the first was taken (three tries).
    /// With `pool`, the size of its PostgreSQL pool.
    pub async fn start(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        name: &str,
        pool: Option<u32>,
    ) -> Server {
        Server::start_with(binary, database_url, dir, name, pool, &[]).await
    }

    /// [`Server::start`] with more `serve` flags.
    pub async fn start_with(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        name: &str,
        pool: Option<u32>,
        extra: &[&str],
    ) -> Server {
        let mut last_log = String::new();
        for _ in 0..3 {
            let mut server = Server::spawn(binary, database_url, dir, name, pool, extra);
            if server.wait_healthy(START_WITHIN).await {
                return server;
            }
            last_log = server.log_text();
        }
        panic!("the server did not become healthy; its last log:\n{last_log}");
    }

    /// Starts `n` servers at once on one database (they apply the migrations
    /// concurrently) and waits until every one answers `/healthz`.
    pub async fn start_many(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        n: usize,
        pool: u32,
    ) -> Vec<Server> {
        let mut servers: Vec<Server> = (0..n)
            .map(|i| {
                let name = format!("server{i}");
                Server::spawn(binary, database_url, dir, &name, Some(pool), &[])
            })
            .collect();
        let healthy =
            futures::future::join_all(servers.iter_mut().map(|s| s.wait_healthy(START_WITHIN)))
                .await;
        for (i, ok) in healthy.into_iter().enumerate() {
            if !ok {
                // Most likely its port was taken between the probe and the bind: again,
                // alone. Anything else shows in the log `start` panics with.
                let name = format!("server{i}-again");
                servers[i] = Server::start(binary, database_url, dir, &name, Some(pool)).await;
            }
        }
        servers
    }

    /// Polls `/healthz`; false if the process exits or the time runs out.
    async fn wait_healthy(&mut self, within: Duration) -> bool {
        let http = portauthority_client::http_builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("http client");
        let client = Client::with_http(http, self.base.clone());
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if client.healthz().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// Everything the server logged so far (empty if the file cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// An HTTP client for this server with a timeout: a hang becomes a transport error the
    /// test reports instead of a stuck test.
    pub fn http(&self) -> reqwest::Client {
        portauthority_client::http_builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(256)
            .build()
            .expect("http client")
    }

    /// A typed client for this server, over [`Server::http`].
    pub fn client(&self) -> Client {
        Client::with_http(self.http(), self.base.clone())
    }

    /// SIGKILL: no graceful shutdown, no final checkpoint.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Another subcommand of the binary (`portauthority worker ...`) as a child process,
/// killed and reaped when dropped; it logs to `dir/{name}.log`.
pub struct Process {
    pub child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(binary: &Path, args: &[&str], dir: &Path, name: &str) -> Process {
        Process::spawn_with_env(binary, args, &[], dir, name)
    }

    /// [`Process::spawn`] with environment variables of the caller's (over the default
    /// `PORTAUTHORITY_LOG=info`).
    pub fn spawn_with_env(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
        name: &str,
    ) -> Process {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary)
            .args(args)
            .env("PORTAUTHORITY_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the process log"))
            .spawn()
            .expect("start the portauthority binary");
        Process { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` (true), or the process exits or `within` passes.
    pub async fn wait_for_log(&mut self, needle: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.log_text().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
