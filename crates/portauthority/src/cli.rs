//! Command-line parsing and the subcommands: the server's (`serve`, `worker`, `migrate`,
//! ...) here, the client's (`job`, `task`, `history`) in their own modules.

mod client;
mod flags;
mod history;
mod job;
mod output;
mod task;
mod watch;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use portauthority_core::RetentionPolicy;
use portauthority_core::retention::parse_age;
use portauthority_server::{App, Config};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "portauthority",
    version,
    about = "Job management and task tracking service",
    after_long_help = "\
Run a server, then talk to it:
  portauthority serve                                   # http://127.0.0.1:8080, data in ./portauthority.db
  portauthority job create --type send --namespace com.shipyard.email --tasks 3
  portauthority job list
  portauthority task list JOB_ID
  portauthority task complete JOB_ID TASK_ID

The client commands (job, task, history) take --url (PORTAUTHORITY_URL), --token
(PORTAUTHORITY_TOKEN) and --output table|json. Exit codes: 0 ok, 1 unexpected failure,
2 usage error, 3 not found, 4 conflict, 5 invalid input, 6 server unavailable or
unreachable, 7 unauthorized or forbidden."
)]
pub struct Cli {
    /// Log format on stderr, for every command: human (lines for people) or json (one
    /// JSON object a line). The level comes from PORTAUTHORITY_LOG (e.g. debug).
    #[arg(
        long,
        global = true,
        env = "PORTAUTHORITY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people; `text` is the older name.
    #[default]
    #[value(alias = "text")]
    Human,
    /// One JSON object a line, for log collectors.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Jobs: create, get, list, set status, cancel.
    Job(job::JobArgs),
    /// Tasks of a job: add, get, list, start, complete, fail, heartbeat.
    Task(task::TaskArgs),
    /// The history of a job or task: list events, post notes.
    History(history::HistoryArgs),
    /// Run the HTTP API and, unless --no-worker, the worker loops (applies pending
    /// migrations first).
    Serve(ServeArgs),
    /// Run the worker loops alone: bus commands in, outbox events out (for scale-out
    /// beside `serve --no-worker`).
    Worker(WorkerCommand),
    /// Apply the embedded migrations and print the schema version.
    Migrate(DatabaseArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Drive a server with concurrent clients and report throughput and latency.
    Bench(BenchCommand),
    /// Load realistic jobs in bulk, straight into the database (for benchmarks and
    /// list-performance work; see docs/list-performance.md).
    Seed(SeedArgs),
    /// Exit 0 when the server's /readyz answers 200, 1 otherwise (container health checks).
    Healthcheck(crate::healthcheck::HealthcheckArgs),
    /// Manage API keys (in the database: needs --database-url).
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),
}

#[derive(Args, Debug)]
struct SeedArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// How many jobs to add.
    #[arg(long)]
    jobs: u64,
    /// Tasks of each job.
    #[arg(long, default_value_t = 2)]
    tasks_per_job: u32,
}

#[derive(Args, Debug)]
struct BenchCommand {
    /// The server to drive. Without it, a server is started for the run (see --spawn).
    #[arg(long, env = "PORTAUTHORITY_URL")]
    url: Option<String>,
    /// Which store a started server uses: sqlite (a temporary file) or postgres (a new
    /// database on --database-url).
    #[arg(long, default_value = "sqlite")]
    spawn: String,
    /// For --spawn postgres: the server to create the benchmark database on. For --spawn
    /// sqlite: an optional sqlite:// URL to use instead of a temporary file.
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    args: portauthority_bench::BenchArgs,
    /// Measure the bus instead: task status commands over NATS, applied per second and
    /// publish-to-event latency. A started server gets --nats-url and --bus-prefix.
    #[arg(long)]
    bus: bool,
    #[command(flatten)]
    bus_args: portauthority_bench::bus::BusArgs,
    /// The bearer token to send (a server with API keys).
    #[arg(long, env = "PORTAUTHORITY_TOKEN")]
    token: Option<String>,
    /// For a started server: create an admin key in its database first and send its
    /// token, so that every request passes the key check (the A/B of auth's cost).
    #[arg(long)]
    with_key: bool,
}

#[derive(Args, Debug)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH (embedded default).
    #[arg(
        long,
        env = "PORTAUTHORITY_DATABASE_URL",
        default_value = "sqlite://portauthority.db"
    )]
    pub database_url: String,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTAUTHORITY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    db: DatabaseArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PORTAUTHORITY_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Most items in one batch request.
    #[arg(long, env = "PORTAUTHORITY_BATCH_MAX", default_value_t = 1000)]
    batch_max: usize,
    /// Largest `meta` object, in bytes of JSON.
    #[arg(long, env = "PORTAUTHORITY_META_MAX_BYTES", default_value_t = 16 * 1024)]
    meta_max_bytes: usize,
    /// Most distinct `meta.<key>` filters in one list request (beyond: 422).
    #[arg(long, env = "PORTAUTHORITY_META_FILTER_KEYS_MAX", default_value_t = 16)]
    meta_filter_keys_max: usize,
    /// Most `meta.<key>=<value>` parameters in one list request, a repeated key counted
    /// each time (beyond: 422).
    #[arg(
        long,
        env = "PORTAUTHORITY_META_FILTER_VALUES_MAX",
        default_value_t = 64
    )]
    meta_filter_values_max: usize,
    /// How long a client may take to send a request head (from connecting, or from the
    /// first byte of a later request on a kept-alive connection); then the connection is
    /// closed, after a 408 if part of a head came. Durations: 300ms, 10s, 2m, 1h.
    #[arg(long, env = "PORTAUTHORITY_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// How long a whole request body may take to arrive after its head; then 408.
    #[arg(long, env = "PORTAUTHORITY_BODY_TIMEOUT", default_value = "20s", value_parser = duration)]
    body_timeout: Duration,
    /// How long a request may take from its head to the response head (body included;
    /// a streamed response body is not cut); then 408.
    #[arg(long, env = "PORTAUTHORITY_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "PORTAUTHORITY_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    idle_timeout: Duration,
    /// On SIGINT/SIGTERM, how long open connections get to finish before they are closed.
    #[arg(long, env = "PORTAUTHORITY_SHUTDOWN_DRAIN", default_value = "10s", value_parser = duration)]
    shutdown_drain: Duration,
    /// Open watch streams (Server-Sent Events) this process serves at most; one more is
    /// answered 503.
    #[arg(long, env = "PORTAUTHORITY_SSE_MAX_STREAMS", default_value_t = portauthority_server::WatchLimits::default().max_streams)]
    sse_max_streams: usize,
    /// Changes held for the watch streams: a stream that falls further behind is sent
    /// `resync` and closed.
    #[arg(long, env = "PORTAUTHORITY_SSE_BUFFER", default_value_t = portauthority_server::WatchLimits::default().buffer)]
    sse_buffer: usize,
    /// Most connections open at once; more wait, unaccepted, until one closes. Keep it well
    /// below the file-descriptor limit (ulimit -n).
    #[arg(long, env = "PORTAUTHORITY_MAX_CONNECTIONS", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Run no worker loops in this process (another process runs `portauthority worker`).
    #[arg(long, env = "PORTAUTHORITY_NO_WORKER")]
    no_worker: bool,
    /// Listen on a non-loopback address although the database has no API key: anyone
    /// who reaches the port may read and change everything (a warning is logged). Without
    /// keys and without this flag, only loopback addresses are accepted.
    #[arg(long, env = "PORTAUTHORITY_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Require an API key on /metrics too, once keys exist (by default /healthz, /readyz
    /// and /metrics stay open).
    #[arg(long, env = "PORTAUTHORITY_METRICS_REQUIRE_KEY")]
    metrics_require_key: bool,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(Args, Debug)]
struct WorkerCommand {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Serve `/metrics` (and `/healthz`) on this address, e.g. 0.0.0.0:9464. Unset: the
    /// worker serves no HTTP at all.
    #[arg(long, env = "PORTAUTHORITY_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

/// The worker loops' settings, shared by `serve` and `worker`.
#[derive(Args, Debug)]
struct WorkerArgs {
    /// NATS server with JetStream (nats://HOST:PORT): consume commands from
    /// PORTAUTHORITY_COMMANDS and publish events to PORTAUTHORITY_EVENTS (both created if
    /// missing). Without it, no bus.
    #[arg(long, env = "PORTAUTHORITY_NATS_URL")]
    nats_url: Option<String>,
    /// The durable consumer's name on the commands stream, shared by every worker of one
    /// installation.
    #[arg(
        long,
        env = "PORTAUTHORITY_BUS_CONSUMER",
        default_value = "portauthority"
    )]
    bus_consumer: String,
    /// Deliveries of a command that keeps failing (database down) before it is
    /// dead-lettered.
    #[arg(long, env = "PORTAUTHORITY_BUS_MAX_DELIVER", default_value_t = 10)]
    bus_max_deliver: i64,
    /// Root of the bus's subjects and stream names: `portauthority` gives
    /// portauthority.commands.> and PORTAUTHORITY_COMMANDS. Another root lets several
    /// installations share one NATS server.
    #[arg(
        long,
        env = "PORTAUTHORITY_BUS_PREFIX",
        default_value = "portauthority"
    )]
    bus_prefix: String,
    /// How long a relay's claim on a job's events keeps other relays off it; when a
    /// process dies, its jobs' events wait this long for another process.
    #[arg(long, env = "PORTAUTHORITY_RELAY_LEASE", default_value = "30s", value_parser = duration)]
    relay_lease: Duration,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Let webhooks target loopback, private (RFC 1918, fc00::/7), link-local and other
    /// non-public addresses, refused by default when a webhook is created and again on
    /// every connection.
    #[arg(long, env = "PORTAUTHORITY_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    /// How long after an event was queued for a webhook its delivery is retried; then it
    /// fails.
    #[arg(long, env = "PORTAUTHORITY_WEBHOOKS_RETRY_FOR", default_value = "24h", value_parser = duration)]
    webhooks_retry_for: Duration,
    /// How long a webhook may fail without one success before it is disabled (its reason
    /// shows in the API).
    #[arg(long, env = "PORTAUTHORITY_WEBHOOKS_DISABLE_AFTER", default_value = "24h", value_parser = duration)]
    webhooks_disable_after: Duration,
    /// How long one delivery attempt may take, connecting included.
    #[arg(long, env = "PORTAUTHORITY_WEBHOOKS_TIMEOUT", default_value = "10s", value_parser = duration)]
    webhooks_timeout: Duration,
    /// Webhook deliveries in flight at once in this process.
    #[arg(long, env = "PORTAUTHORITY_WEBHOOKS_CONCURRENCY", default_value_t = 16)]
    webhooks_concurrency: usize,
}

impl WorkerArgs {
    fn config(&self) -> portauthority_worker::WorkerConfig {
        portauthority_worker::WorkerConfig {
            bus: self
                .nats_url
                .as_ref()
                .map(|url| portauthority_worker::BusConfig {
                    consumer: self.bus_consumer.clone(),
                    max_deliver: self.bus_max_deliver,
                    prefix: self.bus_prefix.clone(),
                    ..portauthority_worker::BusConfig::new(url.clone())
                }),
            relay_lease: self.relay_lease,
            retention: self.retention.policy(),
            webhooks: self.webhooks(),
        }
    }

    fn webhooks(&self) -> portauthority_worker::WebhookConfig {
        let defaults = portauthority_worker::WebhookConfig::default();
        portauthority_worker::WebhookConfig {
            allow_private: self.webhooks_allow_private,
            schedule: portauthority_worker::webhooks::Schedule {
                retry_for: self.webhooks_retry_for,
                disable_after: self.webhooks_disable_after,
                ..defaults.schedule.clone()
            },
            timeout: self.webhooks_timeout,
            concurrency: self.webhooks_concurrency.max(1),
            ..defaults
        }
    }
}

/// Retention by outcome: how long terminal jobs are kept after they end. Ages: 90s, 15m,
/// 12h, 30d; unset: forever.
#[derive(Args, Debug)]
struct RetentionArgs {
    /// Delete completed jobs (with their tasks and history) this long after they ended.
    #[arg(long, env = "PORTAUTHORITY_RETENTION_COMPLETED", value_parser = parse_age)]
    retention_completed: Option<Duration>,
    /// Delete failed jobs this long after they ended.
    #[arg(long, env = "PORTAUTHORITY_RETENTION_FAILED", value_parser = parse_age)]
    retention_failed: Option<Duration>,
    /// Delete cancelled jobs this long after they ended.
    #[arg(long, env = "PORTAUTHORITY_RETENTION_CANCELLED", value_parser = parse_age)]
    retention_cancelled: Option<Duration>,
}

impl RetentionArgs {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            completed: self.retention_completed,
            failed: self.retention_failed,
            cancelled: self.retention_cancelled,
        }
    }
}

/// Runs a command to its exit code. The client commands give the codes of
/// DESIGN.md "CLI exit codes"; the others succeed or fail (1).
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match cli.command {
        Command::Job(a) => client::run(&a.conn, |ctx| job::run(ctx, a.command)).await,
        Command::Task(a) => client::run(&a.conn, |ctx| task::run(ctx, a.command)).await,
        Command::History(a) => client::run(&a.conn, |ctx| history::run(ctx, a.command)).await,
        Command::Keys(cmd) => match crate::keys::run(cmd).await {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        other => match run_service(other).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run_service(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Job(_) | Command::Task(_) | Command::History(_) | Command::Keys(_) => {
            unreachable!("client commands run in `run`")
        }
        Command::Serve(args) => serve(args).await,
        Command::Worker(args) => worker(args).await,
        Command::Migrate(args) => {
            let version = portauthority_store::migrate(&args.database_url)
                .await
                .with_context(|| format!("migrating {}", args.database_url))?;
            println!("schema version {version}");
            Ok(())
        }
        Command::Bench(b) => bench(b).await,
        Command::Seed(args) => {
            let r = portauthority_store::seed::seed(
                &args.db.database_url,
                args.jobs,
                args.tasks_per_job,
            )
            .await
            .with_context(|| format!("seeding {}", redact(&args.db.database_url)))?;
            println!(
                "seeded {} jobs, {} tasks, {} history events in {:.1} s",
                r.jobs, r.tasks, r.events, r.seconds
            );
            Ok(())
        }
        Command::Healthcheck(args) => crate::healthcheck::check(&args).await,
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&portauthority_server::openapi())?
            );
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTAUTHORITY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config {
        listen: args.listen,
        database_url: args.db.database_url,
        body_limit: args.body_limit,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        request_timeout: args.request_timeout,
        idle_timeout: args.idle_timeout,
        shutdown_drain: args.shutdown_drain,
        max_connections: args.max_connections as usize,
        worker: (!args.no_worker).then(|| args.worker.config()),
        webhooks_allow_private: args.worker.webhooks_allow_private,
        watch: portauthority_server::WatchLimits {
            max_streams: args.sse_max_streams,
            buffer: args.sse_buffer,
            ..Default::default()
        },
        insecure_no_auth: args.insecure_no_auth,
        metrics_need_key: args.metrics_require_key,
        ..Config::default()
    };
    config.limits.batch_max = args.batch_max;
    config.limits.meta_max_bytes = args.meta_max_bytes;
    config.limits.meta_filter_keys_max = args.meta_filter_keys_max;
    config.limits.meta_filter_values_max = args.meta_filter_values_max;
    let shutdown = shutdown_signal();
    let app = App::build(config.clone()).await?;
    tracing::info!(
        "listening on http://{} with the {} store at {}",
        app.local_addr(),
        app.store().kind(),
        redact(&config.database_url)
    );
    app.run_until(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn worker(args: WorkerCommand) -> anyhow::Result<()> {
    let config = args.worker.config();
    if config.bus.is_none() {
        tracing::warn!("no --nats-url: the worker relays the outbox, but no bus commands come in");
    }
    if args.metrics_listen.is_some() {
        // Before the store opens, so that what it records from the start is kept.
        portauthority_server::install_metrics();
    }
    let env = portauthority_store::system::env();
    let store = portauthority_store::open_with(&args.db.database_url, env.clone())
        .await
        .with_context(|| format!("opening the store at {}", redact(&args.db.database_url)))?;
    let loops = portauthority_worker::loops(
        store.clone(),
        env,
        portauthority_core::Limits::default(),
        &config,
    )
    .await?;
    let mut supervisor = portauthority_server::supervisor::Supervisor::new();
    for l in store.background().into_iter().chain(loops) {
        supervisor.spawn(l);
    }
    let (stop_metrics, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr} for metrics"))?;
            tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
            supervisor.spawn(std::sync::Arc::new(portauthority_server::StatsLoop {
                store: store.clone(),
            }));
            Some(tokio::spawn(portauthority_server::serve_metrics(
                listener,
                async {
                    let _ = stopped.await;
                },
            )))
        }
        None => None,
    };
    tracing::info!(
        loops = ?supervisor.loops(),
        "worker running with the {} store at {}",
        store.kind(),
        redact(&args.db.database_url)
    );
    shutdown_signal().await;
    let _ = stop_metrics.send(());
    if let Some(served) = metrics {
        served.await??;
    }
    supervisor.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A duration flag: a number and a unit, `300ms`, `10s`, `1.5s`, `2m` (or `2min`), `1h`. A
/// bare number is refused rather than guessed at (PostgreSQL reads one as milliseconds,
/// people often mean seconds), and so is zero: every timeout is meant to end.
pub(crate) fn duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration: expected e.g. 300ms, 10s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "" => return Err(format!("{raw:?} needs a unit: ms, s, m or h (e.g. {raw}s)")),
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{raw:?} is not a positive duration")),
    }
}

/// Hides a password in a database URL before it is logged.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// SIGINT or SIGTERM. The SIGTERM handler is installed when this is called, not when the
/// future is first polled: `serve` calls it before it binds its socket, so a SIGTERM that
/// arrives while the server starts (a process manager as quick as a test) stops it
/// gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handler = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match handler {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// A `portauthority serve` child process, stopped (SIGKILL) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident memory of a process, from /proc (Linux), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn bench(b: BenchCommand) -> anyhow::Result<()> {
    let mut _tmp = None;
    let mut child = None;
    let mut token = b.token.clone();
    let url = match b.url {
        Some(url) => url,
        None => {
            let database_url = match (b.spawn.as_str(), b.database_url) {
                ("sqlite", Some(url)) => url,
                ("sqlite", None) => {
                    let dir = tempfile::tempdir()?;
                    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                    _tmp = Some(dir);
                    url
                }
                ("postgres", Some(admin)) => {
                    portauthority_testkit::postgres::scratch_database(&admin, "pa_bench").await?
                }
                ("postgres", None) => {
                    anyhow::bail!("--spawn postgres needs --database-url postgres://...")
                }
                (other, _) => {
                    anyhow::bail!("unknown --spawn {other:?}: expected sqlite or postgres")
                }
            };
            if b.with_key {
                token = Some(crate::keys::bench_key(&database_url).await?.reveal());
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let listen = format!("127.0.0.1:{port}");
            let mut serve = vec![
                "serve",
                "--listen",
                &listen,
                "--database-url",
                &database_url,
            ];
            if b.bus {
                serve.extend([
                    "--nats-url",
                    &b.bus_args.nats_url,
                    "--bus-prefix",
                    &b.bus_args.bus_prefix,
                ]);
            }
            let c = std::process::Command::new(std::env::current_exe()?)
                .args(serve)
                .env("PORTAUTHORITY_LOG", "warn")
                .spawn()
                .context("starting the server")?;
            child = Some(Child(c));
            eprintln!("started a server on {listen} with {database_url}");
            format!("http://{listen}")
        }
    };
    let client = portauthority_client::Client::new(url.clone()).with_token(token);
    let started = std::time::Instant::now();
    while client.healthz().await.is_err() {
        anyhow::ensure!(
            started.elapsed().as_secs() < 30,
            "server at {url} did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if b.bus {
        let result = portauthority_bench::bus::run(client, &b.bus_args).await?;
        if let Some(path) = &b.args.json {
            std::fs::write(path, serde_json::to_string_pretty(&result)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    } else {
        portauthority_bench::run(client, &b.args).await?;
    }
    if let Some(c) = &child
        && let Some(mib) = peak_rss_mib(c.0.id())
    {
        println!("server peak RSS: {mib:.1} MiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flag_defaults_are_the_server_config_defaults() {
        let Cli {
            command: Command::Serve(args),
            ..
        } = Cli::try_parse_from(["portauthority", "serve"]).expect("parses")
        else {
            panic!("not serve");
        };
        let config = Config::default();
        assert_eq!(args.listen, config.listen);
        assert_eq!(args.body_limit, config.body_limit);
        assert_eq!(args.header_timeout, config.header_timeout);
        assert_eq!(args.body_timeout, config.body_timeout);
        assert_eq!(args.request_timeout, config.request_timeout);
        assert_eq!(args.idle_timeout, config.idle_timeout);
        assert_eq!(args.shutdown_drain, config.shutdown_drain);
        assert_eq!(args.sse_max_streams, config.watch.max_streams);
        assert_eq!(args.sse_buffer, config.watch.buffer);
        assert_eq!(args.max_connections as usize, config.max_connections);
        let worker = config
            .worker
            .expect("serve runs the worker loops by default");
        assert_eq!(args.worker.retention.policy(), worker.retention);
        assert_eq!(args.worker.relay_lease, worker.relay_lease);
        assert!(args.worker.nats_url.is_none() && worker.bus.is_none());
        assert_eq!(args.batch_max, config.limits.batch_max);
        assert_eq!(args.meta_max_bytes, config.limits.meta_max_bytes);
        assert_eq!(
            args.meta_filter_keys_max,
            config.limits.meta_filter_keys_max
        );
        assert_eq!(
            args.meta_filter_values_max,
            config.limits.meta_filter_values_max
        );
        let webhooks = portauthority_worker::WebhookConfig::default();
        let from_flags = args.worker.webhooks();
        assert_eq!(from_flags.schedule, webhooks.schedule);
        assert_eq!(from_flags.timeout, webhooks.timeout);
        assert_eq!(from_flags.concurrency, webhooks.concurrency);
        assert_eq!(from_flags.allow_private, webhooks.allow_private);
        assert_eq!(
            args.worker.webhooks_allow_private,
            config.webhooks_allow_private
        );
    }

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["portauthority", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn retention_flags_take_an_age_per_outcome() {
        let args = serve_args(&["--retention-completed", "30d", "--retention-failed", "12h"])
            .expect("parses");
        let day = Duration::from_secs(86_400);
        assert_eq!(
            args.worker.retention.policy(),
            RetentionPolicy {
                completed: Some(30 * day),
                failed: Some(Duration::from_secs(12 * 3600)),
                cancelled: None,
            }
        );
        let err = serve_args(&["--retention-cancelled", "30"]).expect_err("a bare number");
        let text = err.to_string();
        assert!(
            text.contains("--retention-cancelled") && text.contains("needs a unit"),
            "{text}"
        );
    }

    #[test]
    fn log_format_is_human_or_json_for_every_command() {
        let parse = |args: &[&str]| Cli::try_parse_from(["portauthority"].iter().chain(args));
        assert_eq!(
            parse(&["serve"]).expect("parses").log_format,
            LogFormat::Human
        );
        for (args, want) in [
            (&["--log-format", "json", "serve"][..], LogFormat::Json),
            (&["worker", "--log-format", "json"][..], LogFormat::Json),
            (&["migrate", "--log-format", "human"][..], LogFormat::Human),
            (
                &["seed", "--jobs", "1", "--log-format", "text"][..],
                LogFormat::Human,
            ),
        ] {
            assert_eq!(parse(args).expect("parses").log_format, want, "{args:?}");
        }
        let err = parse(&["serve", "--log-format", "bogus"]).expect_err("bogus");
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("bogus") && text.contains("human") && text.contains("json"),
            "{text}"
        );
    }

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!(duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "10", "0s", "-1s", "10d", "s", "1e3s", "ten s"] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
