//! Bodies that stream through the proxy without being buffered.
//!
//! [`ReqBody`] goes upstream: the client's body frame by frame, keeping a
//! copy (reference-counted chunks, no byte copies) while it stays under the
//! replay limit, so a request refused with a 401 can be sent again. A client
//! that leaves the proxy waiting longer than the client time-out for the next
//! piece of its body is given up on (the upstream request is aborted and the
//! client gets a 408).
//! A body larger than `--max-request-bytes` is cut off the same way (413).
//! [`RespBody`] goes to the client: the upstream body frame by frame, counting
//! bytes, and writing the request's access-log line when it ends or is dropped
//! (the client went away); when upstream stays silent past the upstream
//! time-out in the middle of a body, the body ends with an error (the client's
//! connection is closed, as nginx does past `proxy_read_timeout`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;

use crate::log::LogFormat;
use crate::metrics::{Metrics, Origin};
use std::future::Future;

/// What a [`ReqBody`] has seen of the client's body.
#[derive(Default)]
pub(crate) struct Recording {
    chunks: Vec<Bytes>,
    len: usize,
    limit: usize,
    /// The client's body ended and every byte is in `chunks`.
    complete: bool,
    /// Over the limit (or trailers seen): not replayable.
    given_up: bool,
}

impl Recording {
    fn push(&mut self, data: &Bytes) {
        if self.given_up {
            return;
        }
        if self.len + data.len() > self.limit {
            self.give_up();
            return;
        }
        self.len += data.len();
        self.chunks.push(data.clone());
    }

    fn give_up(&mut self) {
        self.given_up = true;
        self.chunks = Vec::new();
        self.len = 0;
    }

    /// The whole body, if it was kept.
    pub(crate) fn take_complete(&mut self) -> Option<VecDeque<Bytes>> {
        if self.complete && !self.given_up {
            Some(std::mem::take(&mut self.chunks).into())
        } else {
            None
        }
    }
}

pub(crate) type SharedRecording = Arc<Mutex<Recording>>;

pub(crate) fn recording(limit: usize) -> SharedRecording {
    Arc::new(Mutex::new(Recording { limit, ..Recording::default() }))
}

fn lock(r: &SharedRecording) -> std::sync::MutexGuard<'_, Recording> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set when a client's body stalled past the time-out.
pub(crate) type TimedOut = Arc<AtomicBool>;

/// How long to wait for the next piece of a client's body, and where to say
/// it stalled; how large the body may get (`--max-request-bytes`), and where
/// to say it got larger.
pub(crate) struct Stall {
    pub(crate) timeout: Duration,
    pub(crate) timed_out: TimedOut,
    /// Armed while waiting for the client (not while upstream is not reading).
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    /// 0: no limit.
    max_bytes: u64,
    seen: u64,
    pub(crate) too_large: TimedOut,
}

impl Stall {
    pub(crate) fn new(timeout: Duration, max_bytes: u64) -> Stall {
        Stall {
            timeout,
            timed_out: Arc::new(AtomicBool::new(false)),
            waiting: None,
            max_bytes,
            seen: 0,
            too_large: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Why the proxy ended a body early (the other side sees it aborted).
#[derive(Debug)]
pub(crate) enum Cut {
    /// The client stopped sending its request body (`--client-timeout`).
    Stalled,
    /// The request body grew past `--max-request-bytes`.
    TooLarge,
    /// Upstream sent nothing for longer than `--upstream-timeout` in the middle of its body.
    UpstreamSilent,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cut::Stalled => "the client stopped sending its request body",
            Cut::TooLarge => "the request body is larger than --max-request-bytes",
            Cut::UpstreamSilent => "upstream sent nothing for longer than --upstream-timeout",
        })
    }
}

impl std::error::Error for Cut {}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body sent upstream.
pub(crate) enum ReqBody {
    /// The client's body as it arrives, optionally recorded for a replay.
    Stream {
        /// `None` only after it went back to `give_back`.
        inner: Option<Incoming>,
        record: Option<SharedRecording>,
        stall: Stall,
        /// Where the body goes when it is dropped before anything was read from
        /// it (its upstream request failed to connect), so it can be sent again.
        give_back: Option<GiveBack>,
        touched: bool,
    },
    /// A recorded body, sent again.
    Chunks(VecDeque<Bytes>),
}

impl ReqBody {
    pub(crate) fn stream(inner: Incoming, record: Option<SharedRecording>, stall: Stall) -> Self {
        if let Some(r) = &record {
            if inner.is_end_stream() {
                // hyper will not poll an empty body: it is complete already.
                lock(r).complete = true;
            }
        }
        ReqBody::Stream { inner: Some(inner), record, stall, give_back: None, touched: false }
    }

    /// Give the body back to `slot` if it is dropped unread.
    pub(crate) fn give_back_to(mut self, slot: GiveBack) -> Self {
        if let ReqBody::Stream { give_back, .. } = &mut self {
            *give_back = Some(slot);
        }
        self
    }
}

/// A client body handed back unread (see [`ReqBody::give_back_to`]).
pub(crate) type GiveBack = Arc<Mutex<Option<Incoming>>>;

impl Drop for ReqBody {
    fn drop(&mut self) {
        if let ReqBody::Stream { inner, give_back: Some(slot), touched: false, .. } = self {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = inner.take();
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Stream { inner, record, stall, touched, .. } => {
                *touched = true;
                let Some(inner) = inner.as_mut() else { return Poll::Ready(None) };
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                if polled.is_pending() {
                    let timeout = stall.timeout;
                    let waiting = stall.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if waiting.as_mut().poll(cx).is_ready() {
                        stall.timed_out.store(true, Ordering::SeqCst);
                        if let Some(r) = record {
                            lock(r).give_up();
                        }
                        return Poll::Ready(Some(Err(Box::new(Cut::Stalled))));
                    }
                } else {
                    stall.waiting = None;
                }
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        stall.seen += data.len() as u64;
                        if stall.max_bytes > 0 && stall.seen > stall.max_bytes {
                            stall.too_large.store(true, Ordering::SeqCst);
                            if let Some(r) = record {
                                lock(r).give_up();
                            }
                            return Poll::Ready(Some(Err(Box::new(Cut::TooLarge))));
                        }
                    }
                }
                if let Some(r) = record {
                    match &polled {
                        Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                            Some(data) => {
                                let mut rec = lock(r);
                                rec.push(data);
                                // hyper stops polling once a sized body says it has ended.
                                if inner.is_end_stream() {
                                    rec.complete = true;
                                }
                            }
                            None => lock(r).give_up(), // trailers: do not replay without them
                        },
                        Poll::Ready(None) => lock(r).complete = true,
                        Poll::Ready(Some(Err(_))) => lock(r).give_up(),
                        Poll::Pending => {}
                    }
                }
                polled.map_err(|e| Box::new(e) as BoxError)
            }
            ReqBody::Chunks(chunks) => Poll::Ready(chunks.pop_front().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream { inner, .. } => inner.as_ref().is_none_or(|b| b.is_end_stream()),
            ReqBody::Chunks(c) => c.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream { inner: Some(inner), .. } => inner.size_hint(),
            ReqBody::Stream { inner: None, .. } => SizeHint::with_exact(0),
            ReqBody::Chunks(c) => SizeHint::with_exact(c.iter().map(|b| b.len() as u64).sum()),
        }
    }
}

/// One access-log line, written once when the response body ends or is
/// dropped; the request is counted in the metrics at the same moment.
pub(crate) struct AccessLog {
    pub(crate) enabled: bool,
    pub(crate) format: LogFormat,
    /// Where the request is counted (`None`: health checks and scrapes are not).
    pub(crate) metrics: Option<Arc<Metrics>>,
    pub(crate) origin: Origin,
    pub(crate) method: hyper::Method,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) start: Instant,
    pub(crate) bytes: u64,
    pub(crate) note: &'static str,
    pub(crate) finished: Option<&'static str>,
    /// The request id of an answer the proxy made itself.
    pub(crate) id: Option<String>,
    /// Upstream's `request-id` header (what Anthropic's support asks for).
    pub(crate) upstream_id: Option<HeaderValue>,
}

impl AccessLog {
    pub(crate) fn line(&self, end: &str) -> String {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let mut s = format!(
            "anthropic-wif proxy: {} {} {} {:.1}ms {}B {}",
            self.method, self.path, self.status, ms, self.bytes, end
        );
        if !self.note.is_empty() {
            s.push(' ');
            s.push_str(self.note);
        }
        if let Some(id) = &self.id {
            s.push_str(" request-id=");
            s.push_str(id);
        }
        if let Some(id) = self.upstream_id() {
            s.push_str(" upstream-request-id=");
            s.push_str(id);
        }
        s.push('\n');
        s
    }

    fn upstream_id(&self) -> Option<&str> {
        // Only a plain token: the value is upstream's, and this goes to a log.
        self.upstream_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128 && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
    }

    fn fields(&self, end: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let ms = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        m.insert("method".into(), self.method.as_str().into());
        m.insert("path".into(), self.path.as_str().into());
        m.insert("status".into(), self.status.into());
        m.insert("duration_ms".into(), ms.into());
        m.insert("bytes".into(), self.bytes.into());
        m.insert("end".into(), end.into());
        m.insert("origin".into(), if self.origin == Origin::Proxy { "proxy" } else { "upstream" }.into());
        if !self.note.is_empty() {
            m.insert("note".into(), self.note.into());
        }
        if let Some(id) = &self.id {
            m.insert("request_id".into(), id.as_str().into());
        }
        if let Some(id) = self.upstream_id() {
            m.insert("upstream_request_id".into(), id.into());
        }
        m
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.request(self.origin, self.status);
        }
        if self.enabled {
            let end = self.finished.unwrap_or("client-closed");
            match self.format {
                LogFormat::Text => crate::log::access_text(self.line(end)),
                LogFormat::Json => crate::log::access_json(self.fields(end)),
            }
        }
    }
}

/// The body sent to the client.
pub(crate) struct RespBody {
    kind: Kind,
    log: AccessLog,
    /// Keeps the proxy's in-flight count while the body is alive.
    _inflight: Option<crate::InflightGuard>,
}

enum Kind {
    /// The upstream body, and its connection until the body has ended.
    Upstream(Incoming, Idle, Option<crate::pool::Lease>),
    Full(Option<Bytes>),
}

/// The longest upstream may leave a response body waiting (`--upstream-timeout`).
struct Idle {
    timeout: Duration,
    /// Armed while waiting for upstream; made on the first wait, then reset.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl RespBody {
    pub(crate) fn upstream(
        body: Incoming,
        lease: crate::pool::Lease,
        log: AccessLog,
        inflight: Option<crate::InflightGuard>,
        idle_timeout: Duration,
    ) -> Self {
        let idle = Idle { timeout: idle_timeout, sleep: None, armed: false };
        RespBody { kind: Kind::Upstream(body, idle, Some(lease)), log, _inflight: inflight }
    }

    /// The upstream body has ended: its connection can serve another request.
    fn release(&mut self) {
        if let Kind::Upstream(_, _, lease) = &mut self.kind {
            if let Some(l) = lease.take() {
                l.release();
            }
        }
    }

    pub(crate) fn full(bytes: Bytes, log: AccessLog, inflight: Option<crate::InflightGuard>) -> Self {
        RespBody { kind: Kind::Full(Some(bytes)), log, _inflight: inflight }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        // hyper never polls a body that is empty from the start (204, HEAD).
        if self.log.finished.is_none() && self.is_end_stream() {
            self.log.finished = Some("complete");
        }
        // A body dropped before its end takes its connection with it (hyper closes it).
        if self.log.finished == Some("complete") {
            self.release();
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.kind {
            Kind::Upstream(b, idle, _) => match Pin::new(b).poll_frame(cx) {
                Poll::Pending => {
                    let deadline = tokio::time::Instant::now() + idle.timeout;
                    let sleep = idle.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if !idle.armed {
                        sleep.as_mut().reset(deadline);
                        idle.armed = true;
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.log.finished = Some("upstream-timeout");
                        return Poll::Ready(Some(Err(Box::new(Cut::UpstreamSilent))));
                    }
                    Poll::Pending
                }
                ready => {
                    idle.armed = false;
                    ready.map_err(|e| Box::new(e) as BoxError)
                }
            },
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.log.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.log.finished = Some("complete"),
            Poll::Ready(Some(Err(_))) => this.log.finished = Some("upstream-error"),
            Poll::Pending => {}
        }
        // hyper stops polling a body that says it has ended; its connection goes back now.
        if matches!(polled, Poll::Ready(None)) || (matches!(polled, Poll::Ready(Some(Ok(_)))) && this.is_end_stream()) {
            this.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(b, _, _) => b.is_end_stream(),
            Kind::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(b, _, _) => b.size_hint(),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
        }
    }
}
