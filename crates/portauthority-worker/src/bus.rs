//! The connection to NATS JetStream and the three streams: commands in, events out, dead
//! letters. Streams are created when missing and left as they are when present (an
//! operator's settings win).

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use std::time::Duration;

/// The root of every subject and stream name the contracts fix.
pub const DEFAULT_PREFIX: &str = "portauthority";

/// How the worker reaches the bus.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The durable consumer's name on the commands stream; every worker of an
    /// installation shares it, so that each command is delivered to one of them.
    pub consumer: String,
    /// Deliveries of a command that keeps failing for a transient reason before it is
    /// dead-lettered.
    pub max_deliver: i64,
    /// How long a delivered command may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// The root of subjects (`<prefix>.commands.>`, `<prefix>.events.>`,
    /// `<prefix>.deadletter`) and of stream names (`<PREFIX>_COMMANDS`, ...):
    /// `portauthority`, as the contracts state them, unless several installations (or
    /// tests) share one NATS server.
    pub prefix: String,
}

impl BusConfig {
    pub fn new(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            consumer: "portauthority".into(),
            max_deliver: 10,
            ack_wait: Duration::from_secs(30),
            prefix: DEFAULT_PREFIX.into(),
        }
    }

    fn stream_name(&self, what: &str) -> String {
        format!(
            "{}_{what}",
            self.prefix.to_ascii_uppercase().replace(['.', '-'], "_")
        )
    }

    pub fn commands_stream(&self) -> String {
        self.stream_name("COMMANDS")
    }

    pub fn events_stream(&self) -> String {
        self.stream_name("EVENTS")
    }

    /// Keeps dead letters, so that none is lost while nobody is subscribed.
    pub fn deadletter_stream(&self) -> String {
        self.stream_name("DEADLETTER")
    }

    pub fn deadletter_subject(&self) -> String {
        format!("{}.deadletter", self.prefix)
    }

    /// A subject as the contracts spell it (`portauthority.…`), under this prefix.
    pub fn subject(&self, contract: &str) -> String {
        match contract.strip_prefix(DEFAULT_PREFIX) {
            Some(rest) => format!("{}{rest}", self.prefix),
            None => contract.to_owned(),
        }
    }
}

/// A connected bus.
#[derive(Clone, Debug)]
pub struct Bus {
    pub(crate) js: jetstream::Context,
    pub(crate) config: BusConfig,
}

impl Bus {
    pub async fn connect(config: &BusConfig) -> anyhow::Result<Bus> {
        let client = async_nats::ConnectOptions::new()
            .name("portauthority")
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", config.url))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        Ok(Bus {
            js,
            config: config.clone(),
        })
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Creates the streams that are missing.
    pub async fn ensure_streams(&self) -> anyhow::Result<()> {
        let c = &self.config;
        let streams = [
            stream::Config {
                name: c.commands_stream(),
                subjects: vec![c.subject(portauthority_contracts::COMMANDS_SUBJECTS)],
                // A command is gone once a worker has acked it.
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            },
            stream::Config {
                name: c.events_stream(),
                subjects: vec![c.subject(portauthority_contracts::EVENTS_SUBJECTS)],
                ..Default::default()
            },
            stream::Config {
                name: c.deadletter_stream(),
                subjects: vec![c.deadletter_subject()],
                ..Default::default()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            self.js
                .get_or_create_stream(config)
                .await
                .with_context(|| format!("creating the JetStream stream {name}"))?;
        }
        Ok(())
    }
}
