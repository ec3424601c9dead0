//! Serving connections: the accept loop, HTTP/1.1 on each connection with its header and
//! idle timers, and the bounded drain at shutdown. It must never let a client keep a
//! connection by sending nothing or a head too slowly, and never wait at shutdown for
//! longer than it was told.
//!
//! We run hyper ourselves because `axum::serve` exposes none of this. The timers of a
//! connection, as Go's `net/http` has them:
//! - a new connection must deliver its first request head within the header timeout;
//! - between requests, a kept-alive connection may wait for the idle timeout; once the first
//!   byte of the next request arrives, its head must be complete within the header timeout;
//! - while a request is in flight (from its head until its body and the response body are
//!   both done) no connection timer runs: the body and request timeouts (`middleware.rs`)
//!   apply, and a streamed response (the coming Server-Sent Events) keeps its own rules.
//!
//! hyper's own `header_read_timeout` is off: it runs from the moment a connection is ready
//! for a head, so one timer would be both the header and the idle timeout.
//!
//! HTTP/1.1 only. (`axum::serve` also spoke HTTP/2 with prior knowledge, only because
//! reqwest's features enabled it; nothing used it, and it would need timers of its own.)

use crate::error::ApiError;
use axum::body::Body;
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

/// The connection-level timers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timers {
    pub header: Duration,
    pub idle: Duration,
    /// At shutdown, how long open connections may take to finish before they are closed.
    pub drain: Duration,
}

/// Connections beyond the cap wait, unaccepted, in the kernel's listen backlog until an
/// open one closes: a flood of idle sockets costs the process at most this many file
/// descriptors (each idle one is closed by the header timeout), never all of them.
/// Logged at most once a minute, with how many times the cap was met since.
static AT_CAPACITY: portauthority_store::ratelimit::Every =
    portauthority_store::ratelimit::Every::new(60_000);

/// Waits for a free connection slot, then accepts. Cancel-safe: dropped while waiting for
/// the slot or for `accept`, it gives the slot back and accepts nothing.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    max: usize,
) -> (io::Result<TcpStream>, OwnedSemaphorePermit) {
    let permit = match slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            if let Some(suppressed) = AT_CAPACITY.allow() {
                tracing::warn!(
                    max_connections = max,
                    suppressed,
                    "at the connection limit: new connections wait until open ones close"
                );
            }
            slots
                .clone()
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed")
        }
    };
    (listener.accept().await.map(|(s, _)| s), permit)
}

/// Accepts connections until `shutdown` resolves, then stops accepting, asks every
/// connection to finish (an idle one closes at once, a busy one after its response), and
/// closes whatever is still open after the drain time.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    app: S,
    timers: Timers,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    'accept: loop {
        tokio::select! {
            () = &mut shutdown => break,
            (accepted, slot) = accept(&listener, &slots, max_connections) => match accepted {
                Ok(stream) => {
                    conns.spawn(connection(stream, app.clone(), timers, stop.clone(), slot));
                }
                // A reset before accept is the client's business. Anything else (out of file
                // descriptors) is ours: say so and give open connections a moment to close,
                // as hyper and axum do.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = &mut shutdown => break 'accept,
                    }
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => log_end(done),
        }
    }
    drop(listener);
    stop.cancel();
    let drained = tokio::time::timeout(timers.drain, async {
        while let Some(done) = conns.join_next().await {
            log_end(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            drain_ms = timers.drain.as_millis() as u64,
            "closing the connections still open after the shutdown drain"
        );
        conns.shutdown().await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

/// One connection, served until the client closes it, a timer closes it, or `stop` asks it
/// to finish; its slot frees when it ends.
async fn connection<S>(
    stream: TcpStream,
    app: S,
    timers: Timers,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let state = Arc::new(ConnState {
        phase: Mutex::new(Phase {
            in_flight: 0,
            reader: None,
            wait: Wait {
                deadline: after(timers.header),
                started: false,
                kept_alive: false,
            },
        }),
        timers,
    });
    let io = TokioIo::new(TimedIo {
        stream,
        state: state.clone(),
        timer: Box::pin(tokio::time::sleep(timers.header)),
        armed: None,
        write_clean: true,
    });
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let request = Arc::new(InFlight::begin(state.clone()));
        let req = req.map(|body| {
            Body::new(Tracked {
                body,
                _request: request.clone(),
            })
        });
        let call = app.clone().oneshot(req);
        async move {
            let Ok(res) = call.await;
            Ok::<_, Infallible>(res.map(|body| Tracked {
                body,
                _request: request,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// The instant `d` from now; a timeout too large to add (an embedder's `Duration::MAX`)
/// is a year, which is never.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// What the connection's timers need to know, shared by its I/O and its requests (all on the
/// connection's one task; the mutex is never contended).
struct ConnState {
    phase: Mutex<Phase>,
    timers: Timers,
}

struct Phase {
    /// Requests whose body or response is not done yet. HTTP/1.1 handles one at a time,
    /// but a request's body may outlive its response (see `refuse_declared_oversize`).
    in_flight: usize,
    /// While nothing is in flight: the deadline for the next request head.
    wait: Wait,
    /// The connection's task, when its last read found a request in flight: when the
    /// request ends, the read must run again to start the idle timer.
    reader: Option<Waker>,
}

#[derive(Clone, Copy)]
struct Wait {
    deadline: Instant,
    /// Some of a request head has arrived.
    started: bool,
    /// A request was served before on this connection (so the idle timer ran until now).
    kept_alive: bool,
}

impl ConnState {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While no request is in flight: notes that bytes of a head arrived, and returns the
    /// deadline of the head. Otherwise keeps `cx`'s waker for the request's end.
    fn waiting(&self, head_bytes: bool, cx: &Context<'_>) -> Option<Wait> {
        let mut phase = self.phase();
        if phase.in_flight > 0 {
            match &mut phase.reader {
                Some(w) => w.clone_from(cx.waker()),
                None => phase.reader = Some(cx.waker().clone()),
            }
            return None;
        }
        if head_bytes && !phase.wait.started {
            phase.wait.started = true;
            if phase.wait.kept_alive {
                phase.wait.deadline = after(self.timers.header);
            }
        }
        Some(phase.wait)
    }
}

/// A request in flight, from its head until its body and its response are both dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn begin(state: Arc<ConnState>) -> InFlight {
        state.phase().in_flight += 1;
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let idle = self.0.timers.idle;
        let mut phase = self.0.phase();
        phase.in_flight -= 1;
        if phase.in_flight == 0 {
            phase.wait = Wait {
                deadline: after(idle),
                started: false,
                kept_alive: true,
            };
            if let Some(reader) = phase.reader.take() {
                reader.wake();
            }
        }
    }
}

/// A request or response body that keeps its request in flight while it lives.
struct Tracked<B> {
    body: B,
    _request: Arc<InFlight>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, with the header and idle deadlines enforced where hyper waits for a head: a
/// read that would wait past the deadline fails instead, and hyper closes the connection.
struct TimedIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// Everything hyper wrote has been flushed, so bytes of our own cannot land in the
    /// middle of a response.
    write_clean: bool,
}

impl TimedIo {
    fn timed_out(&mut self, wait: Wait) -> io::Error {
        if wait.started {
            // A client in the middle of a request gets told why, as far as the socket takes
            // it at once; hyper has nothing unwritten (`write_clean`) and writes no more.
            if self.write_clean {
                let _ = self.stream.try_write(&header_timeout_response());
            }
            tracing::debug!("closing a connection: request head not received in time");
            io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
        } else {
            tracing::debug!("closing an idle connection");
            io::Error::new(io::ErrorKind::TimedOut, "connection idle")
        }
    }
}

/// The 408 sent when a head stalls part-way: written by us, because hyper has no request to
/// answer yet.
fn header_timeout_response() -> Vec<u8> {
    // No request to take an id from: a new one, as `observe.rs` makes.
    let id = crate::observe::new_request_id();
    let id = id.to_str().unwrap_or_default();
    let mut problem = ApiError::RequestTimeout(
        "the request head did not arrive within the header timeout".into(),
    )
    .problem();
    problem.request_id = Some(id.to_owned());
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n\
         x-request-id: {id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        // Blank lines between requests are not a request (RFC 9112 §2.2 lets them be sent).
        let head_bytes = polled.is_ready()
            && buf.filled()[before..]
                .iter()
                .any(|&b| b != b'\r' && b != b'\n');
        let Some(wait) = this.state.waiting(head_bytes, cx) else {
            return polled;
        };
        if Instant::now() < wait.deadline {
            if polled.is_ready() {
                return polled;
            }
            if this.armed != Some(wait.deadline) {
                this.timer.as_mut().reset(wait.deadline);
                this.armed = Some(wait.deadline);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Err(this.timed_out(wait)))
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write_clean = false;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write_clean = false;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.write_clean = true;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
