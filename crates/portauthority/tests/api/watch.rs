//! Watch streams (Server-Sent Events): frames read off the wire by hand, through the typed
//! client, and by someone else's client (Python `httpx-sse`).

use crate::helpers::{TestApp, assert_problem, task_request};
use futures::StreamExt;
use portauthority_client::WatchEvent;
use portauthority_core::api::{TaskStatusUpdateItem, WatchChange};
use portauthority_core::{JobId, Status};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::timeout;

/// Liveness bound of every wait here (never a measure of speed).
const WAIT: Duration = Duration::from_secs(30);

/// The position before the first event (a client may start a stream there).
const START_OF_FEED: &str = "0-0";

/// One SSE message as read off the wire.
#[derive(Debug, Default, Clone)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<String>,
    comment: Option<String>,
}

/// A raw stream: the response's bytes cut into messages.
struct Raw {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Raw {
    async fn open(app: &TestApp, path: &str, last: Option<&str>) -> Raw {
        let mut rb = app.http.get(app.url(path));
        if let Some(l) = last {
            rb = rb.header("Last-Event-ID", l);
        }
        let res = rb.send().await.expect("watch request");
        assert_eq!(res.status(), 200, "a stream");
        assert_eq!(
            res.headers()["content-type"],
            "text/event-stream",
            "SSE content type"
        );
        Raw {
            body: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next message; None when the stream ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in text.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        f.comment = Some(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(": ") {
                        match k {
                            "event" => f.event = Some(v.to_owned()),
                            "id" => f.id = Some(v.to_owned()),
                            "data" => f.data.push_str(v),
                            "retry" => f.retry = Some(v.to_owned()),
                            _ => {}
                        }
                    }
                }
                return Some(f);
            }
            match timeout(WAIT, self.body.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next `change`, skipping comments and the first message.
    async fn change(&mut self) -> Option<(String, WatchChange)> {
        loop {
            let f = self.next().await?;
            match f.event.as_deref() {
                Some("change") => {
                    let change = serde_json::from_str(&f.data).expect("change data");
                    return Some((f.id.expect("a change has an id"), change));
                }
                Some(other) => panic!("unexpected event {other}: {f:?}"),
                None => {}
            }
        }
    }
}

/// Adds `n` tasks to `job` and moves each to in_progress and completed: 3n changes.
async fn churn(app: &TestApp, job: JobId, n: usize) {
    let tasks = app
        .client
        .add_tasks(job, (0..n).map(|_| task_request("step")).collect())
        .await
        .expect("tasks");
    for to in [Status::InProgress, Status::Completed] {
        let updates = tasks
            .iter()
            .map(|t| TaskStatusUpdateItem {
                job_id: job.to_string(),
                task_id: t.id.to_string(),
                status: to.as_str().into(),
                reason: None,
                error: None,
                progress: None,
            })
            .collect();
        app.client.update_tasks(updates).await.expect("updates");
    }
}

#[tokio::test]
async fn a_watch_starts_with_retry_and_its_position_and_sends_keep_alives() {
    let app = TestApp::spawn_with(|c| {
        c.worker = None;
        c.watch.keep_alive = Duration::from_millis(200);
    })
    .await;
    let (job, _) = app.job_with_tasks("com.shipyard.sse", 0).await;
    let mut raw = Raw::open(&app, &format!("/v1/jobs/{}/watch", job.id), None).await;
    let hello = raw.next().await.expect("a first message");
    assert!(
        hello.retry.is_some(),
        "retry on the first message: {hello:?}"
    );
    assert!(hello.id.is_some(), "the start position: {hello:?}");
    let quiet = raw.next().await.expect("a keep-alive");
    assert_eq!(quiet.comment.as_deref(), Some("keep-alive"), "{quiet:?}");
}

#[tokio::test]
async fn an_unknown_job_is_404_and_a_bad_position_is_422_as_problems() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .get(&format!("/v1/jobs/{}/watch", uuid::Uuid::now_v7()))
        .await;
    assert_problem(status, &body, 404);
    let (job, _) = app.job_with_tasks("com.shipyard.sse", 0).await;
    let (status, body) = app
        .get(&format!("/v1/jobs/{}/watch?last_event_id=nope", job.id))
        .await;
    assert_problem(status, &body, 422);
    let (status, body) = app.get("/v1/watch?statu=failed").await;
    assert_problem(status, &body, 422);
}

#[tokio::test]
async fn streams_past_the_cap_are_refused_with_503_until_one_closes() {
    let app = TestApp::spawn_with(|c| {
        c.worker = None;
        c.watch.max_streams = 2;
    })
    .await;
    let a = Raw::open(&app, "/v1/watch", None).await;
    let _b = Raw::open(&app, "/v1/watch?namespace=com", None).await;
    let (status, body) = app.get("/v1/watch").await;
    assert_problem(status, &body, 503);
    drop(a);
    // The server notices the closed stream when it next writes to it or polls it: retry
    // for a while.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let res = app
            .http
            .get(app.url("/v1/watch"))
            .send()
            .await
            .expect("sent");
        if res.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_watch_sends_every_change_in_order_and_resumes_with_no_gap_and_no_repeat() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.shipyard.sse", 0).await;
    let path = format!("/v1/jobs/{}/watch", job.id);
    let mut raw = Raw::open(&app, &path, None).await;
    // Writes go on while the client reads, disconnects and comes back.
    let writer = {
        let client = app.client.clone();
        tokio::spawn(async move {
            let tasks = client
                .add_tasks(job.id, (0..200).map(|_| task_request("step")).collect())
                .await
                .expect("tasks");
            for t in &tasks {
                client
                    .set_task(job.id, t.id, Status::Completed)
                    .await
                    .expect("done");
            }
        })
    };
    let mut seqs = Vec::new();
    let mut last = String::new();
    while seqs.len() < 150 {
        let (id, c) = raw.change().await.expect("a change");
        assert_eq!(c.job.id, job.id);
        seqs.push(c.event.job_seq);
        last = id;
    }
    drop(raw);
    let mut raw = Raw::open(&app, &path, Some(&last)).await;
    writer.await.expect("writer");
    // created + 200 added + the job's own in_progress + 200 completed + the job's completed
    let total = 1 + 200 + 1 + 200 + 1;
    let first_seq = seqs[0];
    while (seqs.len() as i64) < total - first_seq + 1 {
        let (_, c) = raw.change().await.expect("a change after resuming");
        seqs.push(c.event.job_seq);
    }
    let expected: Vec<i64> = (first_seq..=total).collect();
    assert_eq!(seqs, expected, "every change once, in the job's order");
    assert_eq!(
        app.client.get_job(job.id).await.expect("job").status,
        Status::Completed
    );
}

#[tokio::test]
async fn a_namespace_watch_applies_the_list_filters() {
    let app = TestApp::spawn().await;
    let mut raw = Raw::open(
        &app,
        "/v1/watch?namespace=com.shipyard&type=build&meta.team=atlas&status=in_progress,completed",
        None,
    )
    .await;
    let job = |ns: &str, ty: &str, team: &str| {
        let mut r = crate::helpers::job_request(ns, ty);
        r.meta = Some(serde_json::json!({"team": team}));
        r
    };
    let wanted = app
        .client
        .create_job(&job("com.shipyard.email", "build", "atlas"))
        .await
        .unwrap();
    let outside = [
        job("com.shipyardx", "build", "atlas"),
        job("com.shipyard.email", "deploy", "atlas"),
        job("com.shipyard.email", "build", "zeus"),
    ];
    let mut others = Vec::new();
    for r in &outside {
        others.push(app.client.create_job(r).await.unwrap().id);
    }
    for id in others.iter().chain([&wanted.id]) {
        churn(&app, *id, 2).await;
    }
    // The wanted job's changes while it is in_progress or completed: tasks in progress,
    // completed, its own status changes. Never a change of the others.
    let mut seen = 0;
    while let Some((_, c)) = raw.change().await {
        assert_eq!(c.job.id, wanted.id, "only the job that passes: {c:?}");
        assert!(matches!(
            c.job.status,
            Status::InProgress | Status::Completed
        ));
        seen += 1;
        if c.job.status == Status::Completed && c.event.task_id.is_none() {
            break;
        }
    }
    assert!(seen >= 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_sent_resync_and_does_not_hold_up_another() {
    let app = TestApp::spawn_with(|c| {
        c.worker = None;
        // Above the reader's burst (a feed page), so that a client that reads keeps up.
        c.watch.buffer = 4096;
    })
    .await;
    // Open-ended, so that it takes more tasks after its first thousand are done.
    let mut req = crate::helpers::job_request("com.shipyard.sse", "build");
    req.auto_complete = Some(false);
    let job = app.client.create_job(&req).await.expect("job");
    let path = format!("/v1/jobs/{}/watch", job.id);
    let mut slow = Raw::open(&app, &path, None).await;
    let hello = slow.next().await.expect("hello");
    let mut fast = Raw::open(&app, &path, None).await;
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = read.clone();
    let reader = tokio::spawn(async move {
        while let Some(f) = fast.next().await {
            match f.event.as_deref() {
                Some("change") => {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Some(other) => panic!("the reading client got {other}"),
                None => {}
            }
        }
    });
    // 15,000 changes of about 1.5 KB: far more than the ring and the socket buffers of a
    // client that reads nothing. The writer waits for the reading client between bursts
    // (each burst within the ring): it is the other client that never reads.
    let mut want = 0;
    for _ in 0..5 {
        churn(&app, job.id, 1000).await;
        want += 3000;
        let deadline = tokio::time::Instant::now() + WAIT;
        while read.load(std::sync::atomic::Ordering::SeqCst) < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reading client stalled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut last = hello.id.clone().unwrap();
    let resync = loop {
        let f = slow
            .next()
            .await
            .expect("the stream ends with resync, not silence");
        match f.event.as_deref() {
            Some("change") => last = f.id.unwrap(),
            Some("resync") => break f,
            _ => {}
        }
    };
    assert_eq!(resync.data, last, "resync names the last position sent");
    assert!(slow.next().await.is_none(), "closed after resync");
    // Resuming from it gives the rest.
    let mut again = Raw::open(&app, &path, Some(&resync.data)).await;
    assert!(again.change().await.is_some());
    reader.abort();
}

/// The next change of a typed stream: its position and the event's job_seq.
async fn next_change(stream: &mut portauthority_client::WatchStream) -> (String, i64) {
    match timeout(WAIT, stream.next()).await.expect("in time") {
        Some(Ok(WatchEvent::Change { position, change })) => (position, change.event.job_seq),
        other => panic!("{other:?}"),
    }
}

/// A server on `database_url` at `listen`, and the sender that stops it.
async fn serve(
    database_url: &str,
    listen: &str,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = portauthority_server::Config {
        listen: listen.into(),
        database_url: database_url.into(),
        worker: None,
        ..Default::default()
    };
    let app = portauthority_server::App::build(config)
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test]
async fn the_typed_client_reconnects_with_last_event_id_after_the_server_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::helpers::fresh_database_url(&dir).await;
    let (addr, stop) = serve(&url, "127.0.0.1:0").await;
    let client = portauthority_client::Client::new(format!("http://{addr}"));
    let job = client
        .create_job(&crate::helpers::job_request("com.shipyard.sse", "build"))
        .await
        .expect("job");
    // A typed stream connects when first polled: from the feed's start, to see everything.
    let mut stream = client.watch_job(job.id, Some(START_OF_FEED.into()));
    let tasks = client
        .add_tasks(job.id, vec![task_request("a"), task_request("b")])
        .await
        .expect("tasks");
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(next_change(&mut stream).await.1);
    }

    // The server goes away (its streams end at shutdown), and comes back on the same
    // address and database; changes made before the client is back are replayed.
    stop.send(()).expect("stop");
    let (_, stop) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let config = portauthority_server::Config {
            listen: addr.to_string(),
            database_url: url.clone(),
            worker: None,
            ..Default::default()
        };
        if let Ok(app) = portauthority_server::App::build(config).await {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            break ((), tx);
        }
    };
    for t in &tasks {
        client
            .set_task(job.id, t.id, Status::Completed)
            .await
            .expect("done");
    }
    let mut positions = HashSet::new();
    while seqs.len() < 7 {
        let (position, seq) = next_change(&mut stream).await;
        assert!(positions.insert(position), "no repeat");
        seqs.push(seq);
    }
    // created, added a, added b; a completed, the job in progress, b completed, the job
    // completed.
    assert_eq!(
        seqs,
        (1..=7).collect::<Vec<_>>(),
        "no gap, no repeat across the restart"
    );
    drop(stop);
    if url.starts_with("postgres")
        && let Ok(admin) = std::env::var(portauthority_testkit::postgres::DATABASE_URL_VAR)
    {
        portauthority_testkit::postgres::drop_scratch_database(&admin, &url)
            .await
            .ok();
    }
}

/// Someone else's SSE client: Python's `httpx` with `httpx-sse` reads the stream, resumes
/// with `Last-Event-ID`, and sees the retry field.
#[tokio::test]
async fn python_httpx_sse_reads_and_resumes_the_stream() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import httpx, httpx_sse"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        portauthority_testkit::skip::because(
            "python3 with httpx and httpx-sse is not installed (pip install httpx httpx-sse)",
        );
        return;
    }
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.sse", 3).await;
    for t in &tasks {
        app.set(job.id, t.id, Status::Completed).await;
    }
    let script = r#"
import json, sys, httpx
from httpx_sse import connect_sse
base, job, start = sys.argv[1], sys.argv[2], sys.argv[3]
def read(last, n):
    out = []
    with httpx.Client(timeout=30) as c:
        with connect_sse(c, "GET", f"{base}/v1/jobs/{job}/watch", headers={"Last-Event-ID": last}) as es:
            assert es.response.headers["content-type"].startswith("text/event-stream")
            for ev in es.iter_sse():
                if ev.event == "change":
                    out.append((ev.id, json.loads(ev.data)["event"]["job_seq"]))
                    if len(out) == n:
                        return out
a = read(start, 3)
b = read(a[-1][0], 6)
print(json.dumps([s for _, s in a + b]))
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("http://{}", app.addr))
        .arg(job.id.to_string())
        .arg(START_OF_FEED)
        .output();
    let out = timeout(WAIT, out)
        .await
        .expect("python in time")
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seqs: Vec<i64> = serde_json::from_slice(&out.stdout).expect("json");
    // created, 3 added, then: completed (with the job's in_progress), completed, completed
    // (with the job's completed).
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
}
