//! `anthropic-wif proxy`: a local reverse proxy to the Claude API for clients
//! that hold no credential at all (shell scripts, curl, other languages,
//! Claude Code, agents in a sandbox).
//!
//! Before anything else, a request must come from a program on this machine,
//! not a web page ([`guard`]: `Host`, `Origin`, `Sec-Fetch-Site`, CORS
//! preflights; 403 otherwise), and its path must be one of the API routes the
//! token is forwarded to (`anthropic_wif_core::api::check_forwarded_path`:
//! `/v1/…` without dot segments or encoded separators; 400/404 otherwise).
//! Such a request is forwarded to the configured base URL with the client's
//! `x-api-key` and `Authorization` removed and `Authorization: Bearer <access
//! token>` plus the `oauth-2025-04-20` beta flag (docs/design.md §2) added; everything
//! else passes through unchanged, bodies stream both ways frame by frame.
//! The token is kept fresh in the background (see [`tokens`]); without one the
//! proxy answers 503 with the class of the reason and a request id, the
//! details going to its own log (it never falls back to a static key).
//! A 401 from upstream drops the token, exchanges once and replays the request
//! once when its body was small enough to keep.
//!
//! `GET /healthz` answers 200 when a token is ready and 503 with the reason's
//! class otherwise (and while draining); `GET /livez` answers 200 while serving.
//! Only loopback or Unix-socket listeners, unless `allow_remote`; at most
//! `max_connections` connections at once ([`limits`]); a client that is slower
//! than `client_timeout` to send its request headers or the next piece of its
//! body is disconnected.

mod body;
mod guard;
mod limits;
mod log;
mod metrics;
mod pool;
mod tokens;
#[cfg(unix)]
mod unix;

pub use limits::{DEFAULT_CLIENT_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_UPSTREAM_TIMEOUT_SECS};
pub use log::LogFormat;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anthropic_wif_core::config::Resolution;
use anthropic_wif_core::{api, Error, ErrorKind, Provider};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use body::{AccessLog, GiveBack, ReqBody, RespBody, Stall};
use metrics::{Metrics, Origin};
use tokens::{AfterReject, Health, Tokens};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `host:port` (port 0: any free port).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Listen {
    /// `127.0.0.1:8080`, `[::1]:0`, `localhost:8080`; `unix:/path` or any
    /// value containing a `/` is a Unix socket path.
    pub fn parse(s: &str) -> Result<Listen, Error> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(Error::config("--listen unix: needs a socket path, e.g. unix:/run/anthropic-wif.sock"));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if s.contains('/') {
            return Ok(Listen::Unix(PathBuf::from(s)));
        }
        if s.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(Error::config(format!(
                "--listen {s:?} is neither HOST:PORT (e.g. 127.0.0.1:8080) nor a Unix socket path (e.g. unix:/run/anthropic-wif.sock)"
            )));
        }
        Ok(Listen::Tcp(s.to_string()))
    }
}

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: Listen,
    /// Accept a non-loopback TCP listener.
    pub allow_remote: bool,
    /// Never forward with a token that expires within this many seconds
    /// (capped at half the token's lifetime). Default 300.
    pub stream_allowance: u64,
    /// Keep request bodies up to this size for a replay after a 401. Default 1 MiB.
    pub replay_max_bytes: usize,
    /// On shutdown, wait this long for in-flight requests and streams. Default 30 s.
    pub drain_timeout: Duration,
    /// One line per request on stderr (token events are always logged). Default true.
    pub log: bool,
    /// Permission bits of a Unix socket (default 0o600: the owner only).
    pub socket_mode: u32,
    /// `Host` names accepted besides `localhost`, loopback addresses and the
    /// address a connection arrived on (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Most connections served at once (lowered to fit the open-file limit).
    /// Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Longest wait for a client's request headers (also between requests on
    /// a kept-alive connection) and for each next piece of a request body.
    /// Default [`DEFAULT_CLIENT_TIMEOUT_SECS`].
    pub client_timeout: Duration,
    /// Longest silence from upstream: until its response headers, and between
    /// two pieces of its response body (a stream). Default [`DEFAULT_UPSTREAM_TIMEOUT_SECS`].
    pub upstream_timeout: Duration,
    /// Largest request body forwarded (0: no limit, the default); larger ones get 413.
    pub max_request_bytes: u64,
    /// Access and event lines as text or JSON. Default text.
    pub log_format: LogFormat,
}

impl ProxyConfig {
    pub fn new(listen: Listen) -> Self {
        ProxyConfig {
            listen,
            allow_remote: false,
            stream_allowance: 300,
            replay_max_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(30),
            log: true,
            socket_mode: 0o600,
            allow_hosts: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_timeout: Duration::from_secs(DEFAULT_CLIENT_TIMEOUT_SECS),
            upstream_timeout: Duration::from_secs(DEFAULT_UPSTREAM_TIMEOUT_SECS),
            max_request_bytes: 0,
            log_format: LogFormat::Text,
        }
    }
}

/// The address the proxy is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Tcp(a) => write!(f, "{a}"),
            Bound::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Bound {
    /// `http://ADDR` for a TCP listener (what clients set as their base URL).
    pub fn base_url(&self) -> Option<String> {
        match self {
            Bound::Tcp(a) => Some(format!("http://{a}")),
            Bound::Unix(_) => None,
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

struct Upstream {
    scheme: hyper::http::uri::Scheme,
    authority: hyper::http::uri::Authority,
    /// Base path without the trailing slash ("" or "/prefix").
    prefix: String,
    shown: String,
}

/// Counts requests in flight (from arrival to the end of the response body).
pub(crate) struct InflightGuard(Arc<AtomicU64>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Shared {
    tokens: Tokens,
    pool: Arc<pool::Pool>,
    upstream: Upstream,
    config: ProxyConfig,
    hosts: guard::HostRule,
    /// One permit per connection served; `cap` in all.
    slots: Arc<Semaphore>,
    cap: usize,
    draining: AtomicBool,
    inflight: Arc<AtomicU64>,
    requests: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A bound proxy; [`Proxy::run`] serves until the shutdown future resolves.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: Listener,
    bound: Bound,
}

/// A cheap handle for tests and embedders: counters and readiness.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Requests in flight (a streaming response counts until it ends).
    pub fn inflight(&self) -> u64 {
        self.shared.inflight.load(Ordering::Relaxed)
    }
    /// Requests accepted for forwarding (health checks and refused requests excluded).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
    /// Distinct access tokens the proxy has taken into use.
    pub fn tokens_obtained(&self) -> u64 {
        self.shared.tokens.obtained.load(Ordering::Relaxed)
    }
    /// Whether a token is ready for forwarding.
    pub fn ready(&self) -> bool {
        matches!(self.shared.tokens.health(), Health::Ready { .. })
    }
    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.shared.cap - self.shared.slots.available_permits()
    }
    /// The most connections served at once (`max_connections`, lowered to fit the open-file limit).
    pub fn max_connections(&self) -> usize {
        self.shared.cap
    }
}

impl Proxy {
    /// Check the configuration, build the upstream client and bind the
    /// listener. Must run inside a tokio runtime. No token is obtained yet.
    pub async fn bind(provider: Provider, config: ProxyConfig) -> Result<Proxy, Error> {
        if let Resolution::StaticBearer { origin, .. } = &provider.resolved().resolution {
            return Err(Error::config(format!(
                "{origin} is set, so the configuration resolves to a static bearer token and no federation; \
                 the proxy injects federated access tokens only. Unset ANTHROPIC_AUTH_TOKEN, or pass the \
                 federation settings explicitly (flags)"
            )));
        }
        let base = provider.base_url().unwrap_or("https://api.anthropic.com").to_string();
        let upstream = parse_upstream(&base)?;
        let hosts = guard::HostRule::new(&config.allow_hosts)?;
        if config.max_connections == 0 {
            return Err(Error::config("--max-connections must be at least 1"));
        }
        if config.client_timeout < Duration::from_secs(1) {
            return Err(Error::config("--client-timeout must be at least 1 second"));
        }
        if config.upstream_timeout < Duration::from_secs(1) {
            return Err(Error::config("--upstream-timeout must be at least 1 second"));
        }
        let fd_limit = limits::raise_fd_limit().map(|(_, after)| after);
        let cap = limits::effective_cap(config.max_connections, fd_limit);
        if cap < config.max_connections {
            let (wanted, limit) = (config.max_connections, fd_limit.unwrap_or_default());
            log::event(
                config.log_format,
                "proxy",
                "connection-cap-lowered",
                || format!("serving at most {cap} connections at once (not {wanted}): the open-file limit is {limit}"),
                serde_json::json!({"max_connections": cap, "requested": wanted, "open_file_limit": limit}),
            );
        }
        let pool = pool::Pool::new(build_connector()?, &upstream.scheme, &upstream.authority)
            .map_err(|e| Error::config(format!("base URL {base:?}: {e}")))?;
        let pool = Arc::new(pool);
        let (listener, bound) = bind_listener(&config).await?;
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            tokens: Tokens::new(
                provider,
                config.stream_allowance.min(i64::MAX as u64) as i64,
                metrics.clone(),
                config.log_format,
            ),
            metrics,
            pool,
            upstream,
            config,
            hosts,
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            draining: AtomicBool::new(false),
            inflight: Arc::new(AtomicU64::new(0)),
            requests: AtomicU64::new(0),
        });
        Ok(Proxy { shared, listener, bound })
    }

    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// The upstream base URL requests go to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream.shown
    }

    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle { shared: self.shared.clone() }
    }

    /// Serve until `shutdown` resolves, then stop accepting, let in-flight
    /// requests and streams finish (up to the drain time-out) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Proxy { shared, listener, bound } = self;
        let upstream = shared.upstream.shown.clone();
        log::event(
            shared.config.log_format,
            "proxy",
            "listening",
            || format!("listening on {bound}, forwarding to {upstream}"),
            serde_json::json!({"listen": bound.to_string(), "upstream": upstream}),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let refresher = {
            let shared = shared.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move { shared.tokens.run(stop).await })
        };
        let mut conns = tokio::task::JoinSet::new();
        let answering = Arc::new(AtomicUsize::new(0));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = accept(&listener) => match accepted {
                    Ok(Accepted::Tcp(s)) => {
                        let _ = s.set_nodelay(true);
                        let local = s.local_addr().ok().map(|a| a.ip());
                        admit(s, local, &shared, &stop_rx, &mut conns, &answering);
                    }
                    #[cfg(unix)]
                    Ok(Accepted::Unix(s)) => admit(s, None, &shared, &stop_rx, &mut conns, &answering),
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
            }
        }
        shared.draining.store(true, Ordering::SeqCst);
        drop(listener);
        if let Bound::Unix(p) = &bound {
            let _ = std::fs::remove_file(p);
        }
        let n = shared.inflight.load(Ordering::Relaxed);
        let up_to = shared.config.drain_timeout.as_secs();
        log::event(
            shared.config.log_format,
            "proxy",
            "draining",
            || format!("shutting down; draining {n} request(s) in flight (up to {up_to} s)"),
            serde_json::json!({"in_flight": n, "drain_timeout": up_to}),
        );
        let _ = stop_tx.send(true);
        let drain = async { while conns.join_next().await.is_some() {} };
        let drained = tokio::time::timeout(shared.config.drain_timeout, drain).await.is_ok();
        if !drained {
            conns.abort_all();
            log::event(
                shared.config.log_format,
                "proxy",
                "drain-timeout",
                || "drain time-out; closed the remaining connections".into(),
                serde_json::json!({}),
            );
        }
        refresher.abort();
        log::flush();
        Ok(())
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Tcp(t) => t.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        #[cfg(unix)]
        Listener::Unix(u) => u.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Serve a new connection if a slot is free; otherwise answer it with a 503
/// (a bounded number at once) or close it.
fn admit<S>(
    stream: S,
    local: Option<IpAddr>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    conns: &mut tokio::task::JoinSet<()>,
    answering: &Arc<AtomicUsize>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match shared.slots.clone().try_acquire_owned() {
        Ok(slot) => {
            conns.spawn(connection(stream, local, shared.clone(), stop.clone(), slot));
        }
        Err(_) if answering.fetch_add(1, Ordering::SeqCst) < limits::MAX_OVERLOAD_ANSWERS => {
            let (answering, cap) = (answering.clone(), shared.cap);
            tokio::spawn(async move {
                limits::answer_over_cap(stream, cap).await;
                answering.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Err(_) => {
            answering.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn connection<S>(
    stream: S,
    local: Option<IpAddr>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(shared, req, local).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.client_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut stop = stop;
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { while !*stop.borrow_and_update() { if stop.changed().await.is_err() { break; } } } => {
            // Finish the request in flight (a stream runs to its end), then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn parse_upstream(base: &str) -> Result<Upstream, Error> {
    anthropic_wif_core::url::check_base_url(base, "the base URL")?;
    let uri: Uri = base
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("base URL {base:?} is not a valid URL (e.g. https://api.anthropic.com)")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        return Err(Error::config(format!(
            "base URL {base:?} needs a scheme and a host (e.g. https://api.anthropic.com)"
        )));
    };
    if authority.as_str().contains('@') {
        return Err(Error::config("the base URL must not contain user info (user:password@)"));
    }
    let prefix = uri.path().trim_end_matches('/').to_string();
    let shown = format!("{scheme}://{authority}{prefix}");
    Ok(Upstream { scheme, authority, prefix, shown })
}

fn build_connector() -> Result<hyper_rustls::HttpsConnector<HttpConnector>, Error> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.try_with_platform_verifier())
        .map_err(|e| Error::internal(format!("cannot set up TLS for the upstream connection: {e}")))?
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

async fn bind_listener(config: &ProxyConfig) -> Result<(Listener, Bound), Error> {
    match &config.listen {
        Listen::Tcp(spec) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(spec.as_str())
                .await
                .map_err(|e| Error::config(format!("--listen {spec}: cannot resolve the address ({e})")))?
                .collect();
            let Some(first) = addrs.first().copied() else {
                return Err(Error::config(format!("--listen {spec}: the name resolves to no address")));
            };
            if !config.allow_remote {
                if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    return Err(Error::config(format!(
                        "--listen {spec} ({}) is not a loopback address: anyone who can reach it could use your \
                         Claude API access. Listen on 127.0.0.1 or [::1], or on a Unix socket; or pass \
                         --allow-remote if the network is yours to trust",
                        a.ip()
                    )));
                }
            }
            let l = tokio::net::TcpListener::bind(first)
                .await
                .map_err(|e| Error::config(format!("--listen {spec}: cannot listen ({e})")))?;
            let a = l.local_addr().map_err(|e| Error::internal(format!("listener address: {e}")))?;
            Ok((Listener::Tcp(l), Bound::Tcp(a)))
        }
        #[cfg(unix)]
        Listen::Unix(path) => {
            let std = unix::bind(path, config.socket_mode)?;
            let l = std
                .set_nonblocking(true)
                .and_then(|_| tokio::net::UnixListener::from_std(std))
                .map_err(|e| Error::internal(format!("--listen unix:{}: {e}", path.display())))?;
            Ok((Listener::Unix(l), Bound::Unix(path.clone())))
        }
        #[cfg(not(unix))]
        Listen::Unix(_) => Err(Error::config("Unix socket listeners need a Unix system; use --listen 127.0.0.1:PORT")),
    }
}

// ---------------------------------------------------------------------------
// Requests.

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy replaces.
/// A match on the name's text: comparing against an array of `HeaderName`s
/// built and dropped it on every call (callgrind: ~800 instructions per message).
fn drop_always(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Request headers the proxy removes or sets, parsed once (removing by a
/// `&str` parses and validates the name on every call).
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static BETA: HeaderName = HeaderName::from_static(api::BETA_HEADER);

/// Remove hop-by-hop headers: those above and those the `Connection` header
/// names. One pass over the names first: most messages carry none, and
/// removing by name costs a parse and a hash each (callgrind: 9 removals per
/// message were ~6 % of the proxy's instructions per request).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(drop_always) {
        return;
    }
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    let present: Vec<HeaderName> = h.keys().filter(|k| drop_always(k)).cloned().collect();
    for n in present {
        h.remove(n);
    }
}

/// An id for an answer the proxy makes itself (an error), sent to the client
/// as `request-id` and in the body, and written to the proxy's log with the
/// details the client is not shown.
fn new_request_id() -> String {
    format!("wifproxy_{:016x}", fastrand::u64(..))
}

/// An error answer in the API's shape: `{"type":"error","error":{…},"request_id":…}`
/// with a `request-id` header.
fn error_response(
    shared: &Shared,
    mut log: AccessLog,
    inflight: Option<InflightGuard>,
    status: StatusCode,
    (error_type, message): (&str, &str),
    id: String,
    extra: &[(&'static str, &str)],
) -> Response<RespBody> {
    let v = serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": id});
    let mut headers: Vec<(&'static str, &str)> = vec![("request-id", &id)];
    headers.extend_from_slice(extra);
    log.id = Some(id.clone());
    respond(shared, log, inflight, status, v.to_string(), &headers)
}

fn respond(
    shared: &Shared,
    mut log: AccessLog,
    inflight: Option<InflightGuard>,
    status: StatusCode,
    body: String,
    extra: &[(&'static str, &str)],
) -> Response<RespBody> {
    log.status = status.as_u16();
    log.enabled = shared.config.log && log.enabled;
    log.origin = Origin::Proxy;
    let mut r = Response::new(RespBody::full(Bytes::from(body), log, inflight));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// What a client is told about a failure to obtain a token: the class of the
/// reason, never its details (file paths, rule ids, the identity provider's
/// or token endpoint's text), which go to the proxy's log.
pub(crate) fn reason_class(e: &Error) -> String {
    let status = e.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
    let class = match e.kind {
        ErrorKind::Config => "the proxy's federation settings are incomplete or invalid".to_string(),
        ErrorKind::Identity => "the identity token could not be obtained from its source".to_string(),
        ErrorKind::Denied => format!("the token endpoint refused the exchange{status}"),
        ErrorKind::Unavailable => format!("the token endpoint is unreachable or failing{status}"),
        // ErrorKind::Internal, and any kind core adds later (it is non_exhaustive).
        _ => "an internal error in the proxy".to_string(),
    };
    format!("[{}] {class}", e.kind.as_str())
}

fn token_unavailable(shared: &Shared, log: AccessLog, inflight: InflightGuard, e: &Error) -> Response<RespBody> {
    let id = new_request_id();
    log::event(
        shared.config.log_format,
        "answer",
        "no-token",
        || format!("{id}: answered 503, no access token [{}]: {e}", e.kind.as_str()),
        serde_json::json!({"request_id": id, "status": 503, "kind": e.kind.as_str(), "message": e.to_string()}),
    );
    let msg = format!(
        "anthropic-wif proxy: no access token available {}; the proxy's log has the details (request id {id})",
        reason_class(e)
    );
    // Retrying helps only when the endpoint is unreachable; tell the SDKs so.
    let retry = if e.kind == ErrorKind::Unavailable { "true" } else { "false" };
    let mut log = log;
    log.note = "no-token";
    error_response(
        shared,
        log,
        Some(inflight),
        StatusCode::SERVICE_UNAVAILABLE,
        ("credentials_unavailable", &msg),
        id,
        &[("x-should-retry", retry), ("retry-after", "1")],
    )
}

fn health(shared: &Shared, log: AccessLog) -> Response<RespBody> {
    let mut log = log;
    log.enabled = false; // orchestrators poll often; keep the log and the counts about traffic
    log.metrics = None;
    if shared.draining.load(Ordering::SeqCst) {
        let v = serde_json::json!({"status": "draining", "reason": "the proxy is shutting down"});
        return respond(shared, log, None, StatusCode::SERVICE_UNAVAILABLE, v.to_string(), &[]);
    }
    let (status, v) = match shared.tokens.health() {
        Health::Ready { expires_in } => (
            StatusCode::OK,
            serde_json::json!({"status": "ready", "upstream": shared.upstream.shown, "token_expires_in": expires_in}),
        ),
        Health::NotReady { reason, error } => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "upstream": shared.upstream.shown, "reason": reason,
                               "kind": error.map(|e| e.kind.as_str())}),
        ),
    };
    respond(shared, log, None, status, v.to_string(), &[])
}

/// A request the proxy answers itself, before anything goes upstream.
fn refuse(
    shared: &Shared,
    mut log: AccessLog,
    status: StatusCode,
    error_type: &str,
    note: &'static str,
    why: &str,
) -> Response<RespBody> {
    log.note = note;
    let msg = format!("anthropic-wif proxy: {why}");
    error_response(shared, log, None, status, (error_type, &msg), new_request_id(), &[])
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, local: Option<IpAddr>) -> Response<RespBody> {
    let start = Instant::now();
    let log = AccessLog {
        // Off with --quiet from the start, so a request abandoned midway (client gone) is not logged either.
        enabled: shared.config.log,
        format: shared.config.log_format,
        metrics: Some(shared.metrics.clone()),
        origin: Origin::Upstream,
        upstream_id: None,
        method: req.method().clone(),
        // The path only: a query string may carry something secret.
        path: if shared.config.log { req.uri().path().to_string() } else { String::new() },
        status: 0,
        start,
        bytes: 0,
        note: "",
        finished: None,
        id: None,
    };
    // Web pages first: nothing else is done for them, not even a health check.
    if let Err(refusal) = guard::check(&shared.hosts, req.method(), req.uri(), req.headers(), local) {
        let status = if refusal == guard::Refusal::NoHost { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
        let r = refuse(&shared, log, status, "permission_error", refusal.note(), &refusal.message());
        return early(req, r).await;
    }
    if req.method() == Method::GET {
        match req.uri().path() {
            "/healthz" | "/readyz" => {
                let r = health(&shared, log);
                return early(req, r).await;
            }
            "/livez" => {
                let mut log = log;
                log.enabled = false;
                log.metrics = None;
                let r = respond(&shared, log, None, StatusCode::OK, "{\"status\":\"live\"}".into(), &[]);
                return early(req, r).await;
            }
            "/metrics" => {
                let r = metrics_page(&shared, log);
                return early(req, r).await;
            }
            _ => {}
        }
    }
    if let Err(refusal) = api::check_forwarded_path(req.uri().path()) {
        let (status, error_type) = match refusal {
            api::PathRefusal::NotForwarded => (StatusCode::NOT_FOUND, "not_found_error"),
            _ => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        };
        let why = format!("path not forwarded: {}", refusal.explain());
        let r = refuse(&shared, log, status, error_type, "refused-path", &why);
        return early(req, r).await;
    }
    let declared: Option<u64> =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let max = shared.config.max_request_bytes;
    if max > 0 && declared.is_some_and(|n| n > max) {
        let why = format!("the request body is larger than {max} bytes (--max-request-bytes)");
        let r = refuse(&shared, log, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "request-too-large", &why);
        return early(req, r).await;
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    shared.inflight.fetch_add(1, Ordering::Relaxed);
    let inflight = InflightGuard(shared.inflight.clone());

    let token = match shared.tokens.get().await {
        Ok(t) => t,
        Err(e) => {
            let r = token_unavailable(&shared, log, inflight, &e);
            return early(req, r).await;
        }
    };

    let (mut parts, body) = req.into_parts();
    // From here on the body goes upstream: an answer of the proxy's own closes the connection.
    let had_body = !body.is_end_stream();
    // Upstream gets the origin form (`/v1/messages?…`), under the base URL's path prefix if any; the
    // usual request (origin form, no prefix) keeps its URI as it is.
    let prefix = &shared.upstream.prefix;
    let uri = if prefix.is_empty() && parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        Ok(std::mem::take(&mut parts.uri))
    } else {
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Uri::try_from(format!("{prefix}{pq}"))
    };
    let uri = match uri {
        Ok(u) => u,
        Err(_) => {
            let r = refuse(
                &shared,
                log,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "refused-path",
                "the request target is not a valid path",
            );
            return close_if(had_body, r);
        }
    };
    parts.uri = uri;
    parts.version = hyper::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    h.insert(header::HOST, shared.pool.host().clone());
    h.remove(header::EXPECT);
    h.remove(&X_API_KEY);
    h.remove(header::AUTHORIZATION);
    match h.get(&BETA) {
        // No flags of the client's: the merged value is the flag itself (a static value, no copy).
        None => {
            debug_assert_eq!(api::with_oauth_beta([]), api::OAUTH_BETA);
            h.insert(BETA.clone(), HeaderValue::from_static(api::OAUTH_BETA));
        }
        Some(_) => {
            let beta = api::with_oauth_beta(h.get_all(&BETA).iter().filter_map(|v| v.to_str().ok()));
            if let Ok(v) = HeaderValue::from_str(&beta) {
                h.insert(BETA.clone(), v);
            }
        }
    }

    // Keep a copy of a small body (reference-counted chunks) for a replay.
    let limit = shared.config.replay_max_bytes;
    let record = match declared {
        Some(n) if n > limit as u64 => None,
        _ if limit == 0 => None,
        _ => Some(body::recording(limit)),
    };
    let replay_parts = record.as_ref().map(|_| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
    parts.headers.insert(header::AUTHORIZATION, token.header.clone());
    let stall = Stall::new(shared.config.client_timeout, max);
    let (mut stalled, mut too_large) = (stall.timed_out.clone(), stall.too_large.clone());
    let give_back: Option<GiveBack> = replay_parts.as_ref().map(|_| Arc::new(std::sync::Mutex::new(None)));
    let mut req_body = ReqBody::stream(body, record.clone(), stall);
    if let Some(slot) = &give_back {
        req_body = req_body.give_back_to(slot.clone());
    }
    let upstream_req = Request::from_parts(parts, req_body);

    let mut log = log;
    let mut result = send_upstream(&shared, upstream_req).await;
    // Upstream could not be connected to (restarting, say): the request never left and its body
    // came back unread, so send it again after a short wait, for up to ~3 s (as HAProxy's `retries`).
    for delay in CONNECT_RETRY_DELAYS_MS {
        let Err(SendError::Client(e)) = &result else { break };
        let (true, Some(slot), Some((method, uri, headers))) = (e.is_connect(), &give_back, &replay_parts) else {
            break;
        };
        let Some(body) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() else { break };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let stall = Stall::new(shared.config.client_timeout, max);
        (stalled, too_large) = (stall.timed_out.clone(), stall.too_large.clone());
        let mut again = Request::new(ReqBody::stream(body, record.clone(), stall).give_back_to(slot.clone()));
        *again.method_mut() = method.clone();
        *again.uri_mut() = uri.clone();
        *again.headers_mut() = headers.clone();
        again.headers_mut().insert(header::AUTHORIZATION, token.header.clone());
        log.note = "connect-retried";
        result = send_upstream(&shared, again).await;
    }
    let resp = match result {
        Ok(r) => r,
        Err(_) if too_large.load(Ordering::SeqCst) => {
            let why = format!("the request body is larger than {max} bytes (--max-request-bytes)");
            let mut log = log;
            log.note = "request-too-large";
            let msg = format!("anthropic-wif proxy: {why}");
            let r = error_response(
                &shared,
                log,
                Some(inflight),
                StatusCode::PAYLOAD_TOO_LARGE,
                ("request_too_large", &msg),
                new_request_id(),
                &[],
            );
            return close_if(had_body, r);
        }
        Err(_) if stalled.load(Ordering::SeqCst) => return close_if(had_body, body_stalled(&shared, log, inflight)),
        Err(e) => return close_if(had_body, upstream_failed(&shared, log, inflight, e)),
    };
    let (resp, lease) = resp;
    if resp.status() != StatusCode::UNAUTHORIZED {
        return forward_response(&shared, resp, lease, log, inflight);
    }

    // 401: this token is refused. Exchange anew (once for all refused requests).
    let kept = record.as_ref().and_then(|r| r.lock().unwrap_or_else(|e| e.into_inner()).take_complete());
    let (Some(chunks), Some((method, uri, headers))) = (kept, replay_parts) else {
        let shared2 = shared.clone();
        let id = token.id;
        tokio::spawn(async move {
            let _ = shared2.tokens.rejected(id).await;
        });
        log.note = "401-not-replayable";
        return forward_response(&shared, resp, lease, log, inflight);
    };
    // Boxed, like the exchange in `Tokens::get`: rare, and large.
    let new_token = match Box::pin(shared.tokens.rejected(token.id)).await {
        Ok(AfterReject::Replay(t)) => t,
        Ok(AfterReject::PassOn) => {
            log.note = "401-fresh-token-refused";
            return forward_response(&shared, resp, lease, log, inflight);
        }
        Err(e) => return close_if(had_body, token_unavailable(&shared, log, inflight, &e)),
    };
    // Read the small 401 body to the end so its connection goes back to the pool.
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect(),
    )
    .await;
    if matches!(read, Ok(Ok(_))) {
        lease.release();
    }
    let mut replay = Request::new(ReqBody::Chunks(chunks));
    *replay.method_mut() = method;
    *replay.uri_mut() = uri;
    *replay.headers_mut() = headers;
    replay.headers_mut().insert(header::AUTHORIZATION, new_token.header.clone());
    log.note = "replayed-after-401";
    match send_upstream(&shared, replay).await {
        Ok((r, lease)) => forward_response(&shared, r, lease, log, inflight),
        Err(e) => close_if(had_body, upstream_failed(&shared, log, inflight, e)),
    }
}

/// The most of a request body read (and dropped) to keep the connection
/// usable after an answer made without it.
const DISCARD_MAX_BYTES: usize = 64 * 1024;

/// An answer made before the request body was read. Read and drop a small
/// body (at most [`DISCARD_MAX_BYTES`], within a second), as nginx does, so
/// that the connection serves the client's next request; otherwise the
/// connection is closed after the answer and the answer says so
/// (`connection: close`), so a client does not send its next request on a
/// connection about to close under it.
async fn early(req: Request<Incoming>, resp: Response<RespBody>) -> Response<RespBody> {
    let mut body = req.into_body();
    if body.is_end_stream() {
        return resp;
    }
    let drained = tokio::time::timeout(Duration::from_secs(1), async {
        let mut n = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            n += frame.data_ref().map_or(0, |d| d.len());
            if n > DISCARD_MAX_BYTES {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    close_if(!drained, resp)
}

/// Say `connection: close` on an answer after which hyper closes the
/// connection (the request body was not read to its end).
fn close_if(close: bool, mut resp: Response<RespBody>) -> Response<RespBody> {
    if close {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Waits before sending a request again after upstream refused the connection (3.15 s in all).
const CONNECT_RETRY_DELAYS_MS: [u64; 6] = [50, 100, 200, 400, 800, 1600];

/// Why a request got no answer from upstream.
enum SendError {
    Client(pool::UpstreamError),
    /// No response headers within `--upstream-timeout`.
    Silent,
}

/// Send a request upstream; the time to its response headers goes to the metrics.
async fn send_upstream(shared: &Shared, req: Request<ReqBody>) -> Result<(Response<Incoming>, pool::Lease), SendError> {
    let sent = Instant::now();
    match tokio::time::timeout(shared.config.upstream_timeout, shared.pool.send(req)).await {
        Ok(Ok(r)) => {
            shared.metrics.upstream_latency(sent.elapsed());
            Ok(r)
        }
        Ok(Err(e)) => Err(SendError::Client(e)),
        Err(_) => Err(SendError::Silent),
    }
}

/// `GET /metrics` (Prometheus text format); neither logged nor counted.
fn metrics_page(shared: &Shared, mut log: AccessLog) -> Response<RespBody> {
    log.enabled = false;
    log.metrics = None;
    let (expires_in, consecutive_failures) = shared.tokens.gauges();
    let g = metrics::Gauges {
        ready: matches!(shared.tokens.health(), Health::Ready { .. }) && !shared.draining.load(Ordering::SeqCst),
        expires_in,
        consecutive_failures,
        inflight: shared.inflight.load(Ordering::Relaxed),
        connections: shared.cap - shared.slots.available_permits(),
        max_connections: shared.cap,
    };
    let mut r = respond(shared, log, None, StatusCode::OK, shared.metrics.render(&g), &[]);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

fn forward_response(
    shared: &Shared,
    resp: Response<Incoming>,
    lease: pool::Lease,
    mut log: AccessLog,
    inflight: InflightGuard,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // No web page may read an answer, whatever upstream allows.
    guard::strip_cors(&mut parts.headers);
    log.status = parts.status.as_u16();
    log.enabled = shared.config.log;
    if log.enabled {
        log.upstream_id = parts.headers.get("request-id").cloned();
    }
    Response::from_parts(parts, RespBody::upstream(body, lease, log, Some(inflight), shared.config.upstream_timeout))
}

fn upstream_silent(shared: &Shared, mut log: AccessLog, inflight: InflightGuard) -> Response<RespBody> {
    let id = new_request_id();
    let secs = shared.config.upstream_timeout.as_secs();
    let upstream = &shared.upstream.shown;
    log::event(
        shared.config.log_format,
        "answer",
        "upstream-timeout",
        || format!("{id}: answered 504, the upstream {upstream} sent no answer within {secs} s (--upstream-timeout)"),
        serde_json::json!({"request_id": id, "status": 504, "upstream": upstream, "timeout": secs}),
    );
    let msg = format!(
        "anthropic-wif proxy: the upstream API sent no answer within {secs} s (--upstream-timeout); request id {id}"
    );
    log.note = "upstream-timeout";
    error_response(
        shared,
        log,
        Some(inflight),
        StatusCode::GATEWAY_TIMEOUT,
        ("timeout_error", &msg),
        id,
        &[("x-should-retry", "true")],
    )
}

fn body_stalled(shared: &Shared, mut log: AccessLog, inflight: InflightGuard) -> Response<RespBody> {
    log.note = "client-body-timeout";
    let msg = format!(
        "anthropic-wif proxy: the request body stopped arriving for {} s (--client-timeout); the request was abandoned",
        shared.config.client_timeout.as_secs()
    );
    let id = new_request_id();
    error_response(shared, log, Some(inflight), StatusCode::REQUEST_TIMEOUT, ("request_timeout", &msg), id, &[])
}

fn upstream_failed(shared: &Shared, mut log: AccessLog, inflight: InflightGuard, e: SendError) -> Response<RespBody> {
    let e = match e {
        SendError::Client(e) => e,
        SendError::Silent => return upstream_silent(shared, log, inflight),
    };
    let cause = e.cause();
    let what = if e.is_connect() { "cannot connect to" } else { "lost the connection to" };
    let id = new_request_id();
    let cause = if cause.is_empty() { String::new() } else { anthropic_wif_core::error::scrub(&cause, &[], 300) };
    let upstream = &shared.upstream.shown;
    log::event(
        shared.config.log_format,
        "answer",
        "upstream-unreachable",
        || {
            let detail = if cause.is_empty() { String::new() } else { format!(" ({cause})") };
            format!("{id}: answered 502, {what} the upstream {upstream}{detail}")
        },
        serde_json::json!({"request_id": id, "status": 502, "upstream": upstream, "message": format!("{what} the upstream"), "cause": cause}),
    );
    let msg =
        format!("anthropic-wif proxy: {what} the upstream API; the proxy's log has the details (request id {id})");
    log.note = "upstream-unreachable";
    error_response(shared, log, Some(inflight), StatusCode::BAD_GATEWAY, ("api_error", &msg), id, &[])
}
