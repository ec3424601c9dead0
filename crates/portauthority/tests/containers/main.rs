//! The container images, the compose file and the Taskfile, for real: both images are built
//! from the one Containerfile (the base from a Debian root file system made by
//! container/rootfs.sh, named by `PORTAUTHORITY_TEST_ROOTFS`, and this build's binary) by
//! `task portauthority:build`, then run with Podman:
//!
//! - web alone on its SQLite volume answers `/healthz` and `/readyz`, passes its own
//!   HEALTHCHECK and serves a job created over HTTP; SIGTERM while 16 clients write stops
//!   it with exit 0 within its drain time, and every acknowledged write is there when the
//!   same container starts again;
//! - `task portauthority:up` runs web and worker on the machine's PostgreSQL (a scratch
//!   database) and NATS (a bus prefix of the test's own); a command published to the bus is
//!   applied by the worker and shows through web; a second web replica on the same
//!   database serves what the first wrote and the other way round; the seed's tasks
//!   `logs`, `sh:web` and `sh:worker` do what the seed says, `down` removes the
//!   containers, and `rmi` leaves no portauthority image.
//!
//! Skipped, saying so, without podman, go-task or the root file system; the PostgreSQL and
//! NATS part also needs `PORTAUTHORITY_TEST_DATABASE_URL` and `PORTAUTHORITY_TEST_NATS_URL`.

mod engine;

use engine::{Engine, RUN_FLAGS, free_port, installed, repo, wait_ok};
use portauthority_client::Client;
use portauthority_core::JobId;
use portauthority_core::api::CreateJobRequest;
use portauthority_testkit::acked::{Ledger, Writer, verify_all};
use portauthority_testkit::skip;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The drain the image gives `serve` after SIGTERM (`PORTAUTHORITY_SHUTDOWN_DRAIN`).
const DRAIN: Duration = Duration::from_secs(8);
/// Clients writing when SIGTERM comes.
const CLIENTS: usize = 16;
/// A container's start, up to its first answer.
const START_WITHIN: Duration = Duration::from_secs(60);

/// The root file system tar, or None after saying why the test skips.
fn prerequisites() -> Option<String> {
    for program in ["podman", "task"] {
        if !installed(program) {
            skip::because(&format!("{program} is not installed"));
            return None;
        }
    }
    let rootfs = skip::configured("PORTAUTHORITY_TEST_ROOTFS")?;
    if !std::path::Path::new(&rootfs).is_file() {
        skip::because(&format!(
            "PORTAUTHORITY_TEST_ROOTFS={rootfs} does not exist (make it with container/rootfs.sh)"
        ));
        return None;
    }
    Some(rootfs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_images_build_run_and_answer_to_the_seed_tasks() {
    let Some(rootfs) = prerequisites() else {
        return;
    };
    let engine = Engine::new();
    build(&engine, &rootfs);
    web_on_sqlite(&engine).await;
    match (
        portauthority_testkit::postgres::admin_url(),
        skip::configured("PORTAUTHORITY_TEST_NATS_URL"),
    ) {
        (Some(admin), Some(nats)) => scale_out_and_tasks(&engine, &admin, &nats).await,
        _ => skip::because("the Taskfile's up/logs/sh tasks need PostgreSQL and NATS"),
    }
    rmi(&engine);
}

/// `task portauthority:build` makes both images from the one file, with no network in its
/// steps (`--network none`): nothing is pulled or downloaded.
fn build(engine: &Engine, rootfs: &str) {
    let started = Instant::now();
    engine.task_ok(engine.task(&["portauthority:build"]).args([
        "BUILD_FLAGS=--format docker --network none".to_owned(),
        format!("PORTAUTHORITY_ROOTFS={rootfs}"),
        format!(
            "PORTAUTHORITY_BINARY={}",
            env!("CARGO_BIN_EXE_portauthority")
        ),
    ]));
    println!(
        "both images built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let sizes = engine.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"]);
    println!("{sizes}");
    for (image, cmd) in [
        (engine.web_image(), "serve"),
        (engine.worker_image(), "worker"),
    ] {
        let inspect: serde_json::Value =
            serde_json::from_str(&engine.ok(&["image", "inspect", &image])).expect("JSON");
        let config = &inspect[0]["Config"];
        assert_eq!(config["User"], "portauthority:portauthority", "{image}");
        assert_eq!(config["Cmd"], serde_json::json!([cmd]), "{image}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(["/usr/local/bin/portauthority"]),
            "{image}: exec form, the binary is PID 1"
        );
        assert!(
            config["Volumes"].get("/data").is_some(),
            "{image}: /data is a volume: {config}"
        );
    }
    let web: serde_json::Value =
        serde_json::from_str(&engine.ok(&["image", "inspect", &engine.web_image()])).unwrap();
    assert!(
        web[0]["Config"]["ExposedPorts"].get("8080/tcp").is_some(),
        "web exposes 8080: {}",
        web[0]["Config"]
    );
    // Podman shows it beside the config, Docker in it.
    let health = [&web[0]["Healthcheck"], &web[0]["Config"]["Healthcheck"]]
        .into_iter()
        .find(|h| !h.is_null())
        .unwrap_or(&serde_json::Value::Null);
    assert!(
        health["Test"].to_string().contains("healthcheck"),
        "web's HEALTHCHECK runs `portauthority healthcheck`: {}",
        web[0]
    );
}

/// Web alone, as `docker run` would start it for a local demo: the SQLite default on its
/// volume, 8080 published on loopback, and no API key (so `--insecure-no-auth`, by its
/// environment variable: inside the container it listens on every interface).
async fn web_on_sqlite(engine: &Engine) {
    let port = free_port();
    let name = "pa-web-sqlite";
    let publish = format!("127.0.0.1:{port}:8080");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "-p",
        &publish,
        "-v",
        "pa-data:/data",
        "-e",
        "PORTAUTHORITY_INSECURE_NO_AUTH=true",
    ];
    args.extend(RUN_FLAGS);
    let image = engine.web_image();
    args.push(&image);
    engine.ok(&args);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_ok(&format!("{base}/healthz"), START_WITHIN).await,
        "web never answered /healthz; log:\n{}",
        engine.logs(name)
    );
    assert!(wait_ok(&format!("{base}/readyz"), START_WITHIN).await);
    let health = engine.run(&["healthcheck", "run", name]);
    assert!(
        health.status.success(),
        "the image's HEALTHCHECK fails: {}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    assert_eq!(
        engine.ok(&["exec", name, "id", "-u"]).trim(),
        "10001",
        "not root"
    );
    let client = Client::new(base.clone());
    let job = client
        .create_job(&CreateJobRequest {
            job_type: Some("send".into()),
            namespace: Some("com.shipyard.email".into()),
            meta: Some(serde_json::json!({"release_id": 123})),
            ..Default::default()
        })
        .await
        .expect("create a job over HTTP");
    let stored = client.get_job(job.id).await.expect("read it back");
    assert_eq!(stored.namespace, "com.shipyard.email");
    engine.ok(&["exec", name, "test", "-s", "/data/portauthority.db"]);

    sigterm_while_writing(engine, name, &client).await;

    // The job from before is on the volume too.
    assert_eq!(
        client.get_job(job.id).await.expect("after the restart").id,
        job.id
    );
    engine.ok(&["rm", "-f", "-t", "0", name]);
}

/// SIGTERM while 16 clients write: exit 0 within the drain, and every acknowledged write is
/// there when the container starts again on its volume.
async fn sigterm_while_writing(engine: &Engine, name: &str, client: &Client) {
    let stopped = Arc::new(AtomicBool::new(false));
    let writers = Writer::spawn(CLIENTS, client, 301, &stopped, 5_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stopped.store(true, Ordering::SeqCst);
    let signalled = Instant::now();
    engine.ok(&["kill", "--signal", "TERM", name]);
    let exit =
        tokio::task::block_in_place(|| engine.wait_exit(name, DRAIN + Duration::from_secs(20)));
    let took = signalled.elapsed();
    let log = engine.logs(name);
    assert_eq!(exit, Some(0), "exit after SIGTERM; log:\n{log}");
    assert!(
        took <= DRAIN + Duration::from_secs(5),
        "stopped {took:?} after SIGTERM, past its {DRAIN:?} drain; log:\n{log}"
    );
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );

    let written = Ledger::join(writers).await;
    println!(
        "{CLIENTS} clients: {} writes, {} acknowledged, {} jobs; exit 0 {:.2} s after SIGTERM",
        written.requests,
        written.acked_writes,
        written.jobs.len(),
        took.as_secs_f64()
    );
    written.assert_meaningful(CLIENTS as u64, "SIGTERM");

    engine.ok(&["start", name]);
    assert!(
        wait_ok(&format!("{}/readyz", client.base_url()), START_WITHIN).await,
        "web did not come back; log:\n{}",
        engine.logs(name)
    );
    let bad = verify_all(client, &written.jobs).await;
    assert!(
        bad.is_empty(),
        "{} disagreements after the restart; first ones:\n{}",
        bad.len(),
        bad[..bad.len().min(20)].join("\n")
    );
}

/// Web and worker by `task portauthority:up` on the machine's PostgreSQL and NATS; a bus
/// command; then the seed's tasks and `down`.
async fn scale_out_and_tasks(engine: &Engine, admin: &str, nats_url: &str) {
    let db = portauthority_testkit::postgres::scratch_database(admin, "pa_ctr")
        .await
        .expect("a scratch database");
    let prefix = format!("pactr{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let port = free_port();
    let web_port = format!("WEB_PORT={port}");
    let mut up = engine.task(&[&web_port, "portauthority:up"]);
    up.env("PORTAUTHORITY_DATABASE_URL", &db)
        .env("PORTAUTHORITY_NATS_URL", nats_url)
        .env("PORTAUTHORITY_BUS_PREFIX", &prefix);
    let (stdout, _) = engine.task_ok(&mut up);
    assert!(stdout.contains("ready"), "{stdout}");

    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_ok(&format!("{base}/healthz"), START_WITHIN).await);
    assert!(wait_ok(&format!("{base}/readyz"), START_WITHIN).await);
    let client = Client::new(base);
    let over_http = client
        .create_job(&CreateJobRequest {
            job_type: Some("send".into()),
            namespace: Some("com.shipyard.containers".into()),
            ..Default::default()
        })
        .await
        .expect("create a job over HTTP");
    assert_eq!(client.get_job(over_http.id).await.unwrap().id, over_http.id);

    // A job created by a command on the bus, applied by the worker container.
    let nats = async_nats::connect(nats_url)
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(nats);
    let id = JobId::from_uuid(uuid::Uuid::now_v7());
    let ty = portauthority_contracts::CommandType::JobCreate;
    let subject = ty.subject().replacen("portauthority", &prefix, 1);
    let payload = portauthority_contracts::command_message(
        ty,
        &uuid::Uuid::new_v4().to_string(),
        "/containers-test",
        serde_json::json!({"id": id.to_string(), "type": "bus", "namespace": "com.shipyard.containers"}),
    );
    // The worker creates its streams at start; until then a publish finds no stream.
    let until = Instant::now() + START_WITHIN;
    loop {
        let published = match js.publish(subject.clone(), payload.clone().into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if published {
            break;
        }
        assert!(Instant::now() < until, "no stream took {subject}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let until = Instant::now() + START_WITHIN;
    let applied = loop {
        match client.get_job(id).await {
            Ok(job) => break job,
            Err(_) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!(
                "the bus command never showed through web ({e}); worker log:\n{}",
                engine.logs("portauthority-worker")
            ),
        }
    };
    assert_eq!(applied.namespace, "com.shipyard.containers");
    assert_eq!(applied.job_type, "bus");

    second_replica(engine, &db, &client).await;

    // portauthority:logs shows both containers' lines.
    let (logs, _) = engine.task_ok(&mut engine.task(&["portauthority:logs"]));
    let web_lines = logs.lines().filter(|l| l.starts_with("web    | ")).count();
    let worker_lines = logs.lines().filter(|l| l.starts_with("worker | ")).count();
    assert!(
        logs.lines()
            .any(|l| l.starts_with("web    | ") && l.contains("listening on")),
        "no web line in the logs:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.starts_with("worker | ") && l.contains("worker running")),
        "no worker line in the logs:\n{logs}"
    );
    println!("portauthority:logs: {web_lines} web lines, {worker_lines} worker lines");

    // portauthority:sh:web and :sh:worker run a command in each container's shell.
    let version = format!("portauthority {}", env!("CARGO_PKG_VERSION"));
    for (task, container) in [
        ("portauthority:sh:web", "web"),
        ("portauthority:sh:worker", "worker"),
    ] {
        let (out, _) = engine.task_ok(&mut engine.task(&[
            task,
            "--",
            "portauthority --version && cat /proc/1/cmdline | tr '\\0' ' '",
        ]));
        assert!(out.contains(&version), "{task}: {out}");
        let pid1 = if container == "web" {
            "serve"
        } else {
            "worker"
        };
        assert!(
            out.contains(&format!("/usr/local/bin/portauthority {pid1}")),
            "{task}: the shell is in the {container} container: {out}"
        );
    }

    // portauthority:down stops and removes both.
    engine.task_ok(&mut engine.task(&["portauthority:down"]));
    for c in ["portauthority-web", "portauthority-worker"] {
        assert!(
            !engine.run(&["container", "exists", c]).status.success(),
            "{c} is still there after portauthority:down"
        );
    }

    for what in ["COMMANDS", "EVENTS", "DEADLETTER"] {
        let _ = js
            .delete_stream(format!("{}_{what}", prefix.to_ascii_uppercase()))
            .await;
    }
    portauthority_testkit::postgres::drop_scratch_database(admin, &db)
        .await
        .expect("drop the scratch database");
}

/// A second web replica on the same database: what one writes, the other serves.
async fn second_replica(engine: &Engine, db: &str, first: &Client) {
    let port = free_port();
    let listen = format!("PORTAUTHORITY_LISTEN=127.0.0.1:{port}");
    let url = format!("PORTAUTHORITY_DATABASE_URL={db}");
    let image = engine.web_image();
    let mut args = vec!["run", "-d", "--name", "pa-web-2", "--network", "host"];
    args.extend(RUN_FLAGS);
    args.extend([
        "-e",
        &listen,
        "-e",
        &url,
        "-e",
        "PORTAUTHORITY_NO_WORKER=true",
        &image,
    ]);
    engine.ok(&args);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_ok(&format!("{base}/readyz"), START_WITHIN).await,
        "the second replica never became ready; log:\n{}",
        engine.logs("pa-web-2")
    );
    let second = Client::new(base);
    for (writer, reader) in [(&second, first), (first, &second)] {
        let job = writer
            .create_job(&CreateJobRequest {
                job_type: Some("replica".into()),
                namespace: Some("com.shipyard.containers".into()),
                ..Default::default()
            })
            .await
            .expect("create a job on one replica");
        let read = reader.get_job(job.id).await.expect("read it on the other");
        assert_eq!(read.job_type, "replica");
    }
    engine.ok(&["rm", "-f", "-t", "0", "pa-web-2"]);
}

/// `task portauthority:rmi` leaves no portauthority image.
fn rmi(engine: &Engine) {
    let before = engine.images();
    for image in [engine.web_image(), engine.worker_image()] {
        assert!(
            before.iter().any(|i| i.ends_with(&image)),
            "{image} missing before rmi: {before:?}"
        );
    }
    engine.task_ok(&mut engine.task(&["portauthority:rmi"]));
    let after = engine.images();
    assert!(
        after.iter().all(|i| !i.contains("portauthority")),
        "portauthority images left after rmi: {after:?}"
    );
}

/// The compose file parses with podman-compose, names the whole installation, and its
/// replica profile adds a second web.
#[test]
fn the_compose_file_describes_the_whole_installation() {
    if !installed("podman-compose") {
        skip::because("podman-compose is not installed");
        return;
    }
    let config = |profile: Option<&str>| {
        let mut c = std::process::Command::new("podman-compose");
        c.current_dir(repo()).args(["-f", "compose.yaml"]);
        if let Some(p) = profile {
            c.args(["--profile", p]);
        }
        let out = c.arg("config").output().expect("run podman-compose");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = config(None);
    for service in ["postgres:", "nats:", "migrate:", "web:", "worker:"] {
        assert!(
            plain.lines().any(|l| l.trim_start() == service),
            "no {service} in:\n{plain}"
        );
    }
    assert!(plain.contains("target: web") && plain.contains("target: worker"));
    assert!(plain.contains("service_completed_successfully"));
    assert!(!plain.lines().any(|l| l.trim_start() == "web-2:"));
    let replica = config(Some("replica"));
    assert!(
        replica.lines().any(|l| l.trim_start() == "web-2:"),
        "{replica}"
    );
}

/// `Dockerfile` is the `Containerfile`, for the tools that look only for the former.
#[test]
fn the_dockerfile_is_the_containerfile() {
    let read = |name: &str| std::fs::read_to_string(repo().join(name)).expect(name);
    assert_eq!(read("Dockerfile"), read("Containerfile"));
}
