//! The bus sink against a real NATS server: an event published before a crash, and
//! delivered again after the stream's duplicate window has passed, is not published twice.
//! Skipped, saying so, when `PORTAUTHORITY_TEST_NATS_URL` is unset.

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use portauthority_core::api::CreateJobRequest;
use portauthority_core::{Clock, Env, Limits, ManualClock, Timestamp};
use portauthority_store::relay::{Relay, Sink};
use portauthority_store::{Loop, Store, background::step_until_idle};
use portauthority_worker::{Bus, BusConfig, BusSink};
use std::sync::Arc;
use std::time::Duration;

async fn event_ids(js: &jetstream::Context, stream_name: &str) -> Vec<String> {
    let stream = js.get_stream(stream_name).await.expect("events stream");
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut ids = Vec::new();
    loop {
        let mut batch = reader
            .fetch()
            .max_messages(500)
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            got += 1;
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .expect("a message id");
            ids.push(id.as_str().to_owned());
        }
        if got == 0 {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_again_past_the_duplicate_window_is_published_once() {
    let Some(url) = portauthority_testkit::skip::configured("PORTAUTHORITY_TEST_NATS_URL") else {
        return;
    };
    let prefix = format!(
        "patrelay{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = BusConfig {
        prefix: prefix.clone(),
        ..BusConfig::new(url)
    };
    let bus = Bus::connect(&config).await.expect("connect");
    let js = bus.jetstream().clone();
    // A short duplicate window, made before the worker would make the stream.
    js.create_stream(stream::Config {
        name: config.events_stream(),
        subjects: vec![format!("{prefix}.events.>")],
        duplicate_window: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .expect("events stream");
    bus.ensure_streams().await.expect("streams");

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(
        portauthority_store::system::SystemClock.now().as_millis(),
    )));
    let env = Env::new(
        clock.clone(),
        Arc::new(portauthority_store::system::SystemIds),
    );
    let store: Arc<dyn Store> = portauthority_store::open_with(
        &format!("sqlite://{}", dir.path().join("relay.db").display()),
        env.clone(),
    )
    .await
    .expect("store");
    let limits = Limits::default();
    let job = CreateJobRequest {
        job_type: Some("relay.test".into()),
        namespace: Some("com.example.relay".into()),
        ..Default::default()
    };
    let job = store
        .create_job(job.validate(&limits, env.ids.as_ref()).unwrap())
        .await
        .unwrap()
        .value;
    store
        .add_tasks(
            job.id,
            (0..3)
                .map(|_| {
                    portauthority_core::api::CreateTaskRequest {
                        task_type: Some("relay.step".into()),
                        namespace: Some("com.example.relay".into()),
                        ..Default::default()
                    }
                    .validate(&limits, env.ids.as_ref())
                    .unwrap()
                })
                .collect(),
        )
        .await
        .unwrap();
    let sink = Arc::new(
        BusSink::new(store.clone(), bus.clone(), env.clone())
            .await
            .unwrap(),
    );

    // A relay claims, publishes, and dies before acknowledging.
    let claimed = store
        .claim_outbox("dead", 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4, "created and three task_added");
    let delivered = sink.deliver(&claimed).await;
    assert_eq!(delivered.count, 4);
    assert!(delivered.error.is_none());
    assert_eq!(event_ids(&js, &config.events_stream()).await.len(), 4);

    // The stream forgets the ids; the lease runs out; another relay takes the job over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    clock.advance_ms(6_000);
    let relay = Relay::new(store.clone(), vec![sink.clone() as Arc<dyn Sink>], "live");
    assert!(step_until_idle(&relay, 10).await.unwrap() >= 1);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);

    // And a later event goes out as usual.
    store
        .set_job_status(job.id, portauthority_core::Status::Cancelled, None)
        .await
        .unwrap();
    step_until_idle(&relay, 10).await.unwrap();
    let ids = event_ids(&js, &config.events_stream()).await;
    let mut expected: Vec<String> = (1..=4).map(|s| format!("{}.{s}", job.id)).collect();
    // Cancelling cancels the three tasks, then the job: four status changes.
    expected.extend((5..=8).map(|s| format!("{}.{s}", job.id)));
    assert_eq!(ids, expected, "each event once, in the job's order");
    let _ = relay.name();
    for what in [
        config.commands_stream(),
        config.events_stream(),
        config.deadletter_stream(),
    ] {
        let _ = js.delete_stream(what).await;
    }
}
