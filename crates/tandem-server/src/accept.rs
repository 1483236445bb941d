//! The accept loop of [`serve`](crate::serve): every TCP connection is capped (in total and per
//! IP address) before it costs more than its descriptor, served by hyper's HTTP/1 with upgrades,
//! given a header-read timeout and an idle timeout, and shut down with the server.
//!
//! hyper's own `header_read_timeout` restarts when a keep-alive connection goes idle, so it
//! cannot tell "slow headers" from "no request yet"; [`Activity`] tracks the phase of each
//! connection and a watchdog in its task closes it when the phase's time runs out. A request in
//! flight (an event stream included) is never timed: it ends when its response body is done.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::limits::{ConnectionLimiter, ConnectionPermit, Refusal};
use crate::Tandem;

/// Pause after an accept error that is not about one connection (`EMFILE`, `ENFILE`, `ENOBUFS`):
/// retrying at once would spin a core while nothing can succeed. Closing connections frees
/// descriptors within this time.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The timeouts of one HTTP connection.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown` is cancelled;
/// then stops accepting and lets every connection finish its request in flight. Connection
/// tasks are tracked by `tandem`, whose shutdown waits for them.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tandem: &Tandem,
    app: Router,
    shutdown: &CancellationToken,
) {
    let config = tandem.config();
    let limiter = ConnectionLimiter::new(
        config.max_http_connections,
        config.max_http_connections_per_ip,
    );
    let timeouts = Timeouts {
        header_read: config.header_read_timeout,
        idle: config.http_idle_timeout,
    };
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                warn!(%error, "accept failed, backing off");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        let permit = match limiter.admit(Some(remote.ip())) {
            Ok(permit) => permit,
            Err(refusal) => {
                tandem
                    .inner
                    .stats
                    .refused_connections
                    .fetch_add(1, Ordering::Relaxed);
                // Debug, not warn: a flood of connections would flood the log too.
                debug!(%remote, ?refusal, "refusing http connection");
                refuse(&stream, refusal);
                continue;
            }
        };
        // Sync traffic is many small frames, each waiting on the last: Nagle's algorithm would
        // add the peer's delayed-ack time (40 ms on Linux) to round trips.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        tandem.inner.tasks.spawn(connection(
            stream,
            remote,
            permit,
            app.clone(),
            timeouts,
            shutdown.clone(),
        ));
    }
}

/// Errors that concern one connection only; the next accept may succeed at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over a cap with 503 and closes it. One non-blocking write into the
/// fresh socket's empty send buffer, then the descriptor is gone: a refused connection never
/// holds a task, a timer or a descriptor.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let response: &[u8] = match refusal {
        Refusal::Total => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
              content-length: 20\r\nconnection: close\r\n\r\ntoo many connections"
        }
        Refusal::PerIp => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
              content-length: 38\r\nconnection: close\r\n\r\ntoo many connections from this address"
        }
    };
    // A client that already closed, or a full buffer, only loses the explanation.
    let _ = stream.try_write(response);
}

/// Serves one connection until it ends, times out or the server shuts down. `_permit` keeps
/// its place under the caps; an upgraded connection leaves the task, and the HTTP caps, at once.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    _permit: ConnectionPermit,
    app: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        let busy = Busy::begin(requests.clone());
        // What `into_make_service_with_connect_info` would add: the per-IP caps read it.
        request.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        async move {
            let response = match app.oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|body| TrackedBody { body, _busy: busy }))
        }
    });
    let mut builder = http1::Builder::new();
    // Timed by the watchdog below instead: hyper's restarts when a connection goes idle.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut draining = false;
    loop {
        let deadline = activity.deadline(timeouts);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    debug!(%remote, %error, "http connection failed");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if activity.deadline(timeouts).is_some_and(|due| due <= Instant::now()) {
                    debug!(%remote, "closing http connection without a request in time");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            () = shutdown.cancelled(), if !draining => {
                // Without a request in flight there is nothing to finish (hyper would wait for
                // the head of a first request); otherwise close after the response.
                if activity.deadline(timeouts).is_some() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is between requests, which decides what it is timed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the head of a request, since this instant: the header-read timeout.
    Head(Instant),
    /// Done with every request and nothing read since this instant: the idle timeout.
    Idle(Instant),
    /// This many requests in flight (their responses not yet sent): no timeout.
    Busy(usize),
}

/// The phase of one connection, shared by its socket (reads), its service (requests and their
/// response bodies) and its watchdog.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    /// True while the phase is [`Phase::Idle`], so a read takes the lock only once per request.
    idle: AtomicBool,
    /// Wakes the watchdog when its deadline may have moved earlier or gone.
    changed: Notify,
}

impl Activity {
    /// A connection accepted at `now`: its first request's head is due within the header-read
    /// timeout.
    fn new(now: Instant) -> Self {
        Self {
            phase: Mutex::new(Phase::Head(now)),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Every change is a single assignment: a panic elsewhere cannot leave it half made.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed unless something happens; `None` while busy.
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(since) => Some(since + timeouts.header_read),
            Phase::Idle(since) => Some(since + timeouts.idle),
            Phase::Busy(_) => None,
        }
    }

    /// Bytes arrived: after an idle wait, they start the head of the next request.
    fn read(&self) {
        if self.idle.load(Ordering::Relaxed) {
            let mut phase = self.phase();
            if let Phase::Idle(_) = *phase {
                *phase = Phase::Head(Instant::now());
                self.changed.notify_one();
            }
            self.idle.store(false, Ordering::Relaxed);
        }
    }

    fn begin_request(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(requests) => Phase::Busy(requests + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        self.idle.store(false, Ordering::Relaxed);
    }

    fn end_request(&self) {
        let mut phase = self.phase();
        if let Phase::Busy(requests) = *phase {
            *phase = if requests > 1 {
                Phase::Busy(requests - 1)
            } else {
                self.idle.store(true, Ordering::Relaxed);
                Phase::Idle(Instant::now())
            };
            self.changed.notify_one();
        }
    }
}

/// One request in flight, from the service call until its response body is dropped (sent, or
/// the connection gone).
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.begin_request();
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A response body that keeps its request in flight while it is being sent.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_deadline() {
        let accepted = Instant::now();
        let activity = Arc::new(Activity::new(accepted));
        // Bytes of the first request do not move its deadline: it runs from the accept.
        tokio::time::advance(Duration::from_secs(3)).await;
        activity.read();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(accepted + TIMEOUTS.header_read)
        );

        let busy = Busy::begin(activity.clone());
        let second = Busy::begin(activity.clone());
        assert_eq!(activity.deadline(TIMEOUTS), None);
        drop(busy);
        assert_eq!(activity.deadline(TIMEOUTS), None, "one still in flight");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(second);
        let idle = Instant::now();
        assert_eq!(activity.deadline(TIMEOUTS), Some(idle + TIMEOUTS.idle));

        // The first byte of the next request starts its header-read time.
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.read();
        let head = Instant::now();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(head + TIMEOUTS.header_read)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(head + TIMEOUTS.header_read),
            "more bytes of a head do not buy time"
        );
    }
}
