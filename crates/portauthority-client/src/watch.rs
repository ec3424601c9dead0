//! Watch streams (Server-Sent Events) as typed [`Stream`]s that reconnect.
//!
//! [`Client::watch_job`] and [`Client::watch`] yield [`WatchEvent`]s: each change with its
//! position, and at most one final [`WatchEvent::Resync`]. A connection that drops (a
//! network error, a server restarting or shutting down) is opened again after the server's
//! `retry:` delay with `Last-Event-ID` set to the last position received, so the stream
//! goes on with no gap and no repeat. It gives up, yielding the error, after
//! [`RECONNECT_ATTEMPTS`] connection attempts in a row fail to reach the server; an answer
//! that is not a stream (404, 503, 400...) is yielded as [`Error::Api`] and ends the stream.

use crate::{Client, Error, Result};
use eventsource_stream::Eventsource;
use futures::stream::{BoxStream, StreamExt};
use portauthority_core::JobId;
use portauthority_core::api::{Problem, WatchChange};
use reqwest::Method;
use std::time::Duration;

/// Failed connection attempts in a row before a watch stream gives up.
pub const RECONNECT_ATTEMPTS: u32 = 5;

/// The wait before reconnecting until the server says otherwise (`retry:`).
const DEFAULT_RETRY: Duration = Duration::from_secs(2);

/// What a watch stream yields.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// One change: the job as it stood when the event was sent, and the history event.
    /// `position` is the event's `id:`; pass it as `from` to continue after it later.
    Change {
        position: String,
        change: Box<WatchChange>,
    },
    /// The server dropped this client for falling too far behind. Nothing after `from` was
    /// sent: open a new stream from it (or reload what you show). The stream ends here.
    Resync { from: String },
}

/// A watch stream. Ends after a [`WatchEvent::Resync`] or an error.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

impl Client {
    /// Watches one job: its changes and its tasks'. `from`: a position received before
    /// (`WatchEvent::Change::position`, or a `Resync`'s `from`) to continue right after it;
    /// None to start now.
    pub fn watch_job(&self, id: JobId, from: Option<String>) -> WatchStream {
        self.watch_path(format!("/v1/jobs/{id}/watch"), Vec::new(), from)
    }

    /// Watches every job that passes `filter`, named as the API names them: `namespace` (a
    /// prefix), `type`, `correlation_id`, `status`, `meta.KEY`. `from` as in
    /// [`Client::watch_job`].
    pub fn watch(&self, filter: &[(&str, String)], from: Option<String>) -> WatchStream {
        let filter = filter
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.watch_path("/v1/watch".into(), filter, from)
    }

    fn watch_path(
        &self,
        path: String,
        query: Vec<(String, String)>,
        from: Option<String>,
    ) -> WatchStream {
        let state = Watch {
            client: self.clone(),
            path,
            query,
            last: from,
            retry: DEFAULT_RETRY,
            events: None,
            failures: 0,
            done: false,
        };
        futures::stream::unfold(state, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed()
    }
}

type Events = BoxStream<
    'static,
    std::result::Result<
        eventsource_stream::Event,
        eventsource_stream::EventStreamError<reqwest::Error>,
    >,
>;

struct Watch {
    client: Client,
    path: String,
    query: Vec<(String, String)>,
    /// The last position received: sent as `Last-Event-ID` on reconnecting.
    last: Option<String>,
    retry: Duration,
    events: Option<Events>,
    /// Connection attempts in a row that did not reach the server.
    failures: u32,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        while !self.done {
            let Some(events) = self.events.as_mut() else {
                let connecting = connect(
                    self.client.clone(),
                    self.path.clone(),
                    self.query.clone(),
                    self.last.clone(),
                );
                match connecting.await {
                    Ok(events) => {
                        self.failures = 0;
                        self.events = Some(events);
                    }
                    Err(Error::Transport(e)) if self.failures + 1 < RECONNECT_ATTEMPTS => {
                        let _ = e;
                        self.failures += 1;
                        tokio::time::sleep(self.retry).await;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            match events.next().await {
                Some(Ok(ev)) => {
                    if let Some(retry) = ev.retry {
                        self.retry = retry;
                    }
                    if !ev.id.is_empty() {
                        self.last = Some(ev.id.clone());
                    }
                    match ev.event.as_str() {
                        "change" => {
                            return Some(match serde_json::from_str::<WatchChange>(&ev.data) {
                                Ok(change) => Ok(WatchEvent::Change {
                                    position: ev.id,
                                    change: Box::new(change),
                                }),
                                Err(e) => {
                                    self.done = true;
                                    Err(Error::Decode(format!("a change event: {e}")))
                                }
                            });
                        }
                        "resync" => {
                            self.done = true;
                            return Some(Ok(WatchEvent::Resync {
                                from: ev.data.trim().to_owned(),
                            }));
                        }
                        // The first message (`retry:` and the start as `id:`), and kinds
                        // added later.
                        _ => {}
                    }
                }
                // The connection dropped or the server ended the stream (it shuts down):
                // reconnect after the retry delay, from the last position.
                Some(Err(_)) | None => {
                    self.events = None;
                    tokio::time::sleep(self.retry).await;
                }
            }
        }
        None
    }
}

/// Opens the stream at `path`, after `last` when there is one (the first connection's
/// `from` as well: the header and `?last_event_id=` mean the same).
async fn connect(
    client: Client,
    path: String,
    query: Vec<(String, String)>,
    last: Option<String>,
) -> Result<Events> {
    let mut rb = client
        .request(Method::GET, &path)
        .query(&query)
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(last) = &last {
        rb = rb.header("Last-Event-ID", last);
    }
    let res = rb.send().await?;
    let status = res.status();
    if !status.is_success() {
        let problem = res.json::<Problem>().await.ok();
        return Err(Error::Api { status, problem });
    }
    Ok(res.bytes_stream().eventsource().boxed())
}
