//! Keep-alive HTTP/1.1 connections to the one upstream.
//!
//! The proxy talks to a single authority (the base URL's), so its pool is a
//! stack of idle `hyper::client::conn::http1::SendRequest`s: no key to hash,
//! no per-request task. hyper-util's general-purpose client, which this
//! replaces, looked every request up in a SipHash map keyed by scheme and
//! authority and spawned a task per request to put its connection back
//! (callgrind: about a fifth of the proxy's instructions per request;
//! bench/PROXY.md).
//!
//! A connection is leased for one request and goes back on the stack when
//! the response body has been read to its end ([`Lease::release`]); a lease
//! dropped earlier (the client went away mid-stream) closes it, as hyper does
//! with any unfinished HTTP/1 exchange. The most recently used connection is
//! taken first; connections idle longer than [`IDLE_TIMEOUT`] are closed.
//! A request that could not be written because its pooled connection closed
//! under it (upstream ended the keep-alive at that moment) is sent again on
//! another connection, as hyper-util's client did.
//!
//! TLS to an `https` upstream is hyper-rustls's connector, unchanged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::body::{BoxError, ReqBody};

/// How long an unused connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a pooled connection may take to be ready for its next request
/// before another one is used (it is normally ready at once).
const READY_WAIT: Duration = Duration::from_secs(1);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub(crate) struct Pool {
    connector: Connector,
    /// The upstream's scheme and authority (what is connected to).
    target: Uri,
    /// The `Host` header sent upstream (the authority, without a default port).
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    tx: SendRequest<ReqBody>,
    since: Instant,
}

/// Why a request got no response from upstream.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made (refused, unreachable, TLS failed).
    Connect(BoxError),
    /// The connection failed while the request was sent or its answer awaited.
    Lost(hyper::Error),
}

impl UpstreamError {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }

    /// The innermost cause's text (e.g. "Connection refused (os error 111)").
    pub(crate) fn cause(&self) -> String {
        let top: &(dyn std::error::Error + 'static) = match self {
            UpstreamError::Connect(e) => e.as_ref(),
            UpstreamError::Lost(e) => e,
        };
        let mut cause = top.to_string();
        let mut src = top.source();
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        cause
    }
}

/// One connection, lent for one request.
pub(crate) struct Lease {
    tx: Option<SendRequest<ReqBody>>,
    pool: Arc<Pool>,
}

impl Lease {
    /// The response was read to its end: the connection may serve another request.
    pub(crate) fn release(mut self) {
        if let Some(tx) = self.tx.take() {
            self.pool.put(tx);
        }
    }
}

impl Pool {
    pub(crate) fn new(
        connector: Connector,
        scheme: &hyper::http::uri::Scheme,
        authority: &hyper::http::uri::Authority,
    ) -> Result<Pool, String> {
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())?;
        let secure = scheme.as_str() == "https";
        let host = match authority.port_u16() {
            Some(443) if secure => authority.host().to_string(),
            Some(80) if !secure => authority.host().to_string(),
            _ => authority.as_str().to_string(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
        Ok(Pool { connector, target, host, idle: Mutex::new(Vec::new()) })
    }

    /// The `Host` header for upstream requests.
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Send `req` (origin-form URI, `Host` set) on a pooled or new connection.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut tx, reused) = match self.take() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            // A fresh connection takes its first request at once; a pooled one
            // has normally said it wants the next one already.
            if reused && !tx.is_ready() {
                match tokio::time::timeout(READY_WAIT, tx.ready()).await {
                    Ok(Ok(())) => {}
                    _ => continue,
                }
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { tx: Some(tx), pool: self.clone() })),
                Err(mut e) => match e.take_message() {
                    // Not written: the pooled connection closed first. Another one.
                    Some(r) if reused => req = r,
                    _ => return Err(UpstreamError::Lost(e.into_error())),
                },
            }
        }
    }

    /// The most recently used open connection.
    fn take(&self) -> Option<SendRequest<ReqBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle.pop() {
            if !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.tx);
            }
        }
        None
    }

    fn put(&self, tx: SendRequest<ReqBody>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest is at the bottom: close what has idled too long (rarely any).
        if idle.first().is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT) {
            idle.retain(|i| now.duration_since(i.since) < IDLE_TIMEOUT && !i.tx.is_closed());
        }
        idle.push(Idle { tx, since: now });
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, UpstreamError> {
        let mut c = self.connector.clone();
        std::future::poll_fn(|cx| c.poll_ready(cx)).await.map_err(UpstreamError::Connect)?;
        let io = c.call(self.target.clone()).await.map_err(UpstreamError::Connect)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(tx)
    }
}
