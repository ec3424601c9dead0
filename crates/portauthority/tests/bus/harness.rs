//! The bus tests' shared parts: a prefix of streams per test, publishing commands, reading
//! streams back, the workload and its HTTP twin, and comparing two servers' state.

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use portauthority_contracts::{CommandType, command_message};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A NATS server and a prefix of streams and subjects of the calling test's own.
pub struct Bus {
    pub url: String,
    pub prefix: String,
    pub js: jetstream::Context,
    /// The tests of this binary take turns, whether they run as threads of one process
    /// (`cargo test`) or as processes (`cargo nextest`): each runs several processes of
    /// its own, and several such tests at once on two cores starve them all.
    _turn: std::fs::File,
}

/// Waits for this test's turn: an exclusive lock on a file every bus test locks.
async fn take_turn() -> std::fs::File {
    let path = std::env::temp_dir().join("portauthority-bus-tests.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path).expect("the turn lock file");
        file.lock().expect("take the turn lock");
        file
    })
    .await
    .expect("take a turn")
}

impl Bus {
    /// None (after saying so) when no NATS server is configured.
    pub async fn connect(test: &str) -> Option<Bus> {
        let url = portauthority_testkit::skip::configured("PORTAUTHORITY_TEST_NATS_URL")?;
        let turn = take_turn().await;
        let client = async_nats::connect(url.as_str())
            .await
            .expect("connect to NATS");
        let prefix = format!(
            "pat{}{}",
            test,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut js = jetstream::new(client);
        // The server can stall for seconds when the disk is busy (other tests, builds).
        js.set_timeout(Duration::from_secs(30));
        let bus = Bus {
            url,
            prefix,
            js,
            _turn: turn,
        };
        bus.memory_streams().await;
        Some(bus)
    }

    /// The `--nats-url` and `--bus-prefix` flags for a process of this test.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--nats-url".into(),
            self.url.clone(),
            "--bus-prefix".into(),
            self.prefix.clone(),
        ]
    }

    pub fn stream(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix.to_ascii_uppercase())
    }

    /// A command's subject under this test's prefix.
    pub fn subject(&self, ty: CommandType) -> String {
        ty.subject().replacen("portauthority", &self.prefix, 1)
    }

    /// Creates this test's streams before any process does (a process leaves existing
    /// streams as they are), as the worker would but in memory: the test's messages need
    /// not reach the disk, and deleting a stream is instant.
    async fn memory_streams(&self) {
        for (what, subject, retention) in [
            ("COMMANDS", "commands.>", stream::RetentionPolicy::WorkQueue),
            ("EVENTS", "events.>", stream::RetentionPolicy::Limits),
            ("DEADLETTER", "deadletter", stream::RetentionPolicy::Limits),
        ] {
            self.js
                .create_stream(stream::Config {
                    name: self.stream(what),
                    subjects: vec![format!("{}.{subject}", self.prefix)],
                    retention,
                    storage: stream::StorageType::Memory,
                    ..Default::default()
                })
                .await
                .expect("create a stream");
        }
    }

    /// Shortens the events stream's duplicate window.
    pub async fn events_stream_with_window(&self, window: Duration) {
        let mut events = self
            .js
            .get_stream(self.stream("EVENTS"))
            .await
            .expect("events");
        let mut config = events.info().await.expect("info").config.clone();
        config.duplicate_window = window;
        self.js
            .update_stream(config)
            .await
            .expect("shorten the duplicate window");
    }

    /// Publishes raw payloads to `subject`, waiting for the stream's acks.
    pub async fn publish_raw(&self, subject: &str, payloads: Vec<Vec<u8>>) {
        self.publish_to(payloads.into_iter().map(|p| (subject.to_owned(), p)))
            .await;
    }

    /// Publishes commands, in order, each to its type's subject.
    pub async fn publish(&self, commands: &[&Cmd]) {
        self.publish_to(commands.iter().map(|c| {
            let payload = command_message(c.ty, &c.id, "/test", c.data.clone());
            (self.subject(c.ty), payload)
        }))
        .await;
    }

    /// Publishes `(subject, payload)` pairs in order, 256 acks in flight at most.
    async fn publish_to(&self, messages: impl Iterator<Item = (String, Vec<u8>)>) {
        let mut acks = Vec::new();
        for (subject, payload) in messages {
            acks.push(
                self.js
                    .publish(subject, payload.into())
                    .await
                    .expect("publish"),
            );
            if acks.len() >= 256 {
                for a in acks.drain(..) {
                    a.await.expect("publish ack");
                }
            }
        }
        for a in acks {
            a.await.expect("publish ack");
        }
    }

    /// Waits until the stream `what` exists (a process created it).
    pub async fn wait_for_stream(&self, what: &str, within: Duration) {
        let until = Instant::now() + within;
        while self.js.get_stream(self.stream(what)).await.is_err() {
            assert!(
                Instant::now() < until,
                "stream {} never appeared",
                self.stream(what)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many messages stream `what` holds.
    pub async fn pending(&self, what: &str) -> u64 {
        let mut stream = self.js.get_stream(self.stream(what)).await.expect("stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// Waits until the workers' consumer has acked everything on the commands stream.
    pub async fn wait_until_consumed(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let mut stream = self
                .js
                .get_stream(self.stream("COMMANDS"))
                .await
                .expect("commands stream");
            let messages = stream.info().await.expect("stream info").state.messages;
            // A work queue keeps a command until it is acked.
            if messages == 0 {
                return;
            }
            assert!(
                Instant::now() < until,
                "{messages} commands still unacknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message of stream `what`, in stream order.
    pub async fn read_all(&self, what: &str) -> Vec<async_nats::jetstream::Message> {
        let stream = self.js.get_stream(self.stream(what)).await.expect("stream");
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("read-back consumer");
        let mut out = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .messages()
                .await
                .expect("fetch");
            let mut got = 0;
            while let Some(m) = batch.next().await {
                out.push(m.expect("message"));
                got += 1;
            }
            if got == 0 {
                return out;
            }
        }
    }

    /// Deletes this test's streams. Stop the processes that consume them first: deleting a
    /// stream a live consumer pulls from stalls the NATS server's API for up to a minute.
    pub async fn cleanup(&self) {
        for what in ["COMMANDS", "EVENTS", "DEADLETTER"] {
            let _ = self.js.delete_stream(self.stream(what)).await;
        }
    }
}

/// One command of a workload.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub ty: CommandType,
    pub id: String,
    pub data: Value,
    pub job: String,
}

/// `jobs` jobs of `tasks` tasks each: a create, the task adds, then each task started and
/// completed, with a note after each of the three (a note has an effect each time it is
/// applied: a duplicate applied twice shows in the history); 4 + 3 * tasks commands per
/// job, interleaved across jobs in per-job order.
pub fn workload(jobs: usize, tasks: usize, namespace: &str) -> Vec<Cmd> {
    let per_job: Vec<Vec<Cmd>> = (0..jobs)
        .map(|_| {
            let job = uuid::Uuid::now_v7().to_string();
            let task_ids: Vec<String> = (0..tasks).map(|_| uuid::Uuid::now_v7().to_string()).collect();
            let note = |message: &str| Cmd {
                ty: CommandType::HistoryNote,
                id: uuid::Uuid::new_v4().to_string(),
                data: json!({"job_id": job, "message": message}),
                job: job.clone(),
            };
            let mut cmds = vec![Cmd {
                ty: CommandType::JobCreate,
                id: uuid::Uuid::new_v4().to_string(),
                data: json!({"id": job, "type": "bus.test", "namespace": namespace}),
                job: job.clone(),
            }];
            cmds.push(note("created"));
            for t in &task_ids {
                cmds.push(Cmd {
                    ty: CommandType::TaskAdd,
                    id: uuid::Uuid::new_v4().to_string(),
                    data: json!({"job_id": job, "id": t, "type": "bus.step", "namespace": namespace}),
                    job: job.clone(),
                });
            }
            cmds.push(note("tasks added"));
            for status in ["in_progress", "completed"] {
                for t in &task_ids {
                    cmds.push(Cmd {
                        ty: CommandType::TaskStatus,
                        id: uuid::Uuid::new_v4().to_string(),
                        data: json!({"job_id": job, "task_id": t, "status": status}),
                        job: job.clone(),
                    });
                }
            }
            cmds.push(note("done"));
            cmds
        })
        .collect();
    let longest = per_job.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..longest {
        for job in &per_job {
            if let Some(c) = job.get(i) {
                out.push(c.clone());
            }
        }
    }
    out
}

/// Applies a workload over HTTP, each job's commands in order, 16 jobs at a time.
pub async fn apply_over_http(http: &reqwest::Client, base: &str, commands: &[Cmd]) {
    let mut jobs: Vec<(String, Vec<Cmd>)> = Vec::new();
    for c in commands {
        match jobs.iter_mut().find(|(j, _)| *j == c.job) {
            Some((_, list)) => list.push(c.clone()),
            None => jobs.push((c.job.clone(), vec![c.clone()])),
        }
    }
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(job, list)| async move {
            for c in list {
                let mut data = c.data.clone();
                let request = match c.ty {
                    CommandType::JobCreate => http.post(format!("{base}/v1/jobs")).json(&data),
                    CommandType::TaskAdd => {
                        data.as_object_mut().unwrap().remove("job_id");
                        http.post(format!("{base}/v1/jobs/{job}/tasks")).json(&data)
                    }
                    CommandType::HistoryNote => {
                        data.as_object_mut().unwrap().remove("job_id");
                        http.post(format!("{base}/v1/jobs/{job}/history"))
                            .json(&data)
                    }
                    CommandType::TaskStatus => {
                        let task = data["task_id"].as_str().unwrap().to_owned();
                        http.put(format!("{base}/v1/jobs/{job}/tasks/{task}/status"))
                            .json(&json!({"status": data["status"]}))
                    }
                    other => panic!("no HTTP twin for {other:?} in this workload"),
                };
                let r = request.send().await.expect("HTTP");
                assert!(r.status().is_success(), "{:?}: {}", c.ty, r.status());
            }
        })
        .await;
}

/// What two servers must agree on for a job: its status and counters, its tasks'
/// statuses, and its history (kind, task, from, to) in order.
pub async fn job_state(http: &reqwest::Client, base: &str, job: &str) -> Value {
    let j = get_json(http, base, &format!("/v1/jobs/{job}")).await;
    let mut history = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{base}/v1/jobs/{job}/history?after={after}&size=1000"
            ))
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        for e in page["events"].as_array().expect("events") {
            history.push(json!([
                e["kind"],
                e["task_id"],
                e["from"],
                e["to"],
                e["job_seq"],
                e["message"]
            ]));
        }
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    json!({
        "status": j["job"]["status"],
        "tasks": j["job"]["tasks"],
        "history": history,
    })
}

/// The jobs of a workload, in order of first appearance.
pub fn jobs_of(commands: &[Cmd]) -> Vec<String> {
    let mut jobs: Vec<String> = Vec::new();
    for c in commands {
        if !jobs.contains(&c.job) {
            jobs.push(c.job.clone());
        }
    }
    jobs
}

/// Starts `portauthority serve` over `database_url` on this test's bus, with more flags.
pub async fn bus_server(
    bus: &Bus,
    database_url: &str,
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> portauthority_testkit::server::Server {
    let mut flags = bus.flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = portauthority_testkit::server::Server::start_with(
        crate::portauthority(),
        database_url,
        dir,
        name,
        None,
        &flags,
    )
    .await;
    bus.wait_for_stream("COMMANDS", Duration::from_secs(10))
        .await;
    server
}

/// GET `path` as JSON.
pub async fn get_json(http: &reqwest::Client, base: &str, path: &str) -> Value {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// Creates a job (with `tasks` tasks of the job's namespace) over HTTP; its id and its
/// tasks' ids.
pub async fn create_job(
    http: &reqwest::Client,
    base: &str,
    namespace: &str,
    tasks: usize,
) -> (String, Vec<String>) {
    let tasks: Vec<Value> = (0..tasks)
        .map(|_| json!({"type": "bus.step", "namespace": namespace}))
        .collect();
    let job: Value = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"type": "bus.test", "namespace": namespace, "tasks": tasks}))
        .send()
        .await
        .expect("create a job")
        .json()
        .await
        .expect("JSON");
    let id = job["job"]["id"].as_str().expect("a job id").to_owned();
    let list = get_json(http, base, &format!("/v1/jobs/{id}/tasks?size=1000")).await;
    let tasks = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("a task id").to_owned())
        .collect();
    (id, tasks)
}

/// A header of a message, as text.
pub fn header(m: &async_nats::jetstream::Message, name: &str) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}
