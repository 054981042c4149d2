//! The HTTP side: accept loop, routing, the token endpoint, the Messages API
//! and the control endpoints.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::faults::{Endpoint, Fault, FaultKind};
use crate::ids;
use crate::jwt;
use crate::state::{ApiRequest, RecordedRequest, State};

pub(crate) const BETA_OAUTH: &str = "oauth-2025-04-20";
pub(crate) const BETA_FEDERATION: &str = "oidc-federation-2026-04-01";
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub(crate) const MAX_ASSERTION: usize = 16 * 1024;
const TOKEN_PATH: &str = "/v1/oauth/token";
const MESSAGES_PATH: &str = "/v1/messages";
const REDIRECT_TARGET: &str = "/_emulator/redirect-target";

// ---------------------------------------------------------------------------
// Response body: either a complete buffer or a channel of chunks (SSE, reset).

pub(crate) enum Body {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<Result<Bytes, io::Error>>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Chan(_) => SizeHint::default(),
        }
    }
}

type Resp = Response<Body>;

enum Outcome {
    Respond(Resp),
    /// Close the connection without (finishing) an answer.
    Abort,
}

fn resp(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn json_resp(status: u16, v: &Value) -> Resp {
    resp(status, "application/json", v.to_string())
}

fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type_for(status), "message": message}})
}

/// Marks a response built by [`error_resp`]: [`handle`] adds the request id to its body, as the API
/// does (`{"type":"error","error":{…},"request_id":"req_…"}`, the same id as the `request-id` header).
#[derive(Clone, Copy)]
struct ApiErrorBody;

fn error_resp(status: u16, message: &str) -> Resp {
    let mut r = json_resp(status, &error_body(status, message));
    r.extensions_mut().insert(ApiErrorBody);
    r
}

/// Add `request_id` (the `request-id` header's value) to a body [`error_resp`] built; injected
/// faults with a given body are served exactly as given.
fn add_request_id(r: &mut Resp) {
    if r.extensions_mut().remove::<ApiErrorBody>().is_none() {
        return;
    }
    let Some(rid) = r.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned) else { return };
    let Body::Full(Some(bytes)) = r.body() else { return };
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes) else { return };
    m.insert("request_id".into(), Value::from(rid));
    *r.body_mut() = Body::Full(Some(Bytes::from(Value::Object(m).to_string())));
}

fn denied() -> Resp {
    error_resp(401, "Authentication failed")
}

fn request_id() -> String {
    format!("req_{}", jwt::base62(24))
}

// ---------------------------------------------------------------------------
// Accept loop.

/// Resolves when shutdown is requested (or the sender is gone).
pub(crate) async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, shutdown: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    let stop = wait_shutdown(shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    state.lock().stats.connections += 1;
                    conns.spawn(connection(stream, state.clone(), shutdown.clone()));
                }
                // Out of file descriptors and the like: back off briefly, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(3), drain).await.is_err() {
        conns.abort_all();
    }
}

async fn connection(stream: tokio::net::TcpStream, state: Arc<State>, shutdown: watch::Receiver<bool>) {
    let sd = shutdown.clone();
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let sd = sd.clone();
        async move { handle(state, req, sd).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = wait_shutdown(shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Returned to hyper to close a connection without (finishing) an answer.
#[derive(Debug)]
pub(crate) struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose (injected fault or shutdown)")
    }
}

impl std::error::Error for Aborted {}

async fn handle(state: Arc<State>, req: Request<Incoming>, shutdown: watch::Receiver<bool>) -> Result<Resp, Aborted> {
    let rid = request_id();
    match route(&state, req, &rid, shutdown).await {
        Outcome::Respond(mut r) => {
            if let Ok(v) = HeaderValue::from_str(&rid) {
                r.headers_mut().entry("request-id").or_insert(v);
            }
            add_request_id(&mut r);
            Ok(r)
        }
        Outcome::Abort => Err(Aborted),
    }
}

fn method_not_allowed(method: &Method, path: &str, allow: &str) -> Outcome {
    let mut r = error_resp(405, &format!("method {method} is not allowed on {path}; use {allow}"));
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert("allow", v);
    }
    Outcome::Respond(r)
}

async fn route(state: &Arc<State>, req: Request<Incoming>, rid: &str, shutdown: watch::Receiver<bool>) -> Outcome {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        (TOKEN_PATH, &Method::POST) => token_endpoint(state, req, rid, shutdown).await,
        (TOKEN_PATH, _) => {
            state.lock().stats.token_requests += 1;
            state.lock().stats.invalid += 1;
            method_not_allowed(&method, &path, "POST")
        }
        (p, _) if p.starts_with("/_emulator/") => control(state, req, &path, &method).await,
        _ => api(state, req, rid, shutdown).await,
    }
}

/// The API side (the Messages API; anything else is a 404), each request recorded with its
/// headers and the status it got (`GET /_emulator/api-requests`).
async fn api(state: &Arc<State>, req: Request<Incoming>, rid: &str, shutdown: watch::Receiver<bool>) -> Outcome {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let path_and_query = req.uri().path_and_query().map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let headers = header_list(req.headers());
    let received_at = jwt::now_unix_f64();
    let out = match (path.as_str(), &method) {
        (MESSAGES_PATH, &Method::POST) => messages_endpoint(state, req, rid, shutdown).await,
        (MESSAGES_PATH, _) => method_not_allowed(&method, &path, "POST"),
        _ => Outcome::Respond(error_resp(404, &format!("no such endpoint: {method} {path}"))),
    };
    let status = match &out {
        Outcome::Respond(r) => Some(r.status().as_u16()),
        Outcome::Abort => None,
    };
    state.record_api(ApiRequest { method: method.to_string(), path: path_and_query, headers, status, received_at });
    out
}

// ---------------------------------------------------------------------------
// Bodies.

enum BodyError {
    TooLarge,
    Broken,
}

/// Read at most `limit` bytes. A larger body is drained (discarded, up to
/// [`DRAIN_CAP`]) before the 413 goes out, so the client finishes sending and
/// reads the answer instead of hitting a reset mid-upload.
async fn read_body(mut body: Incoming, headers: &HeaderMap, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_CAP as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > DRAIN_CAP {
                return Err(BodyError::TooLarge);
            }
            if seen <= limit {
                buf.extend_from_slice(&data);
            }
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.freeze())
}

/// The most a too-large request body is read (and thrown away) for.
const DRAIN_CAP: usize = 32 * 1024 * 1024;

fn too_large(limit: usize) -> Outcome {
    Outcome::Respond(error_resp(413, &format!("request body is larger than {limit} bytes")))
}

/// Header names (lower case) and values (lossy UTF-8), in arrival order.
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

fn record(state: &State, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) {
    let headers = header_list(headers);
    state.record(RecordedRequest {
        method: method.to_string(),
        path: path.to_owned(),
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(body).into_owned(),
        received_at: jwt::now_unix_f64(),
    });
}

/// The comma-separated flags of every `anthropic-beta` header, trimmed.
fn beta_flags(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// Faults.

/// Headers and part of a JSON body, then the connection is closed.
fn reset_mid_body() -> Outcome {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Bytes::from_static(b"{\"access_token\":\"sk-ant-oat01-tr"))).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "injected reset"))).await;
    });
    let mut r = Response::new(Body::Chan(rx));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("4096"));
    Outcome::Respond(r)
}

async fn apply_fault(state: &State, kind: FaultKind, body: &[u8], shutdown: watch::Receiver<bool>) -> Option<Outcome> {
    let out = match kind {
        FaultKind::Delay { ms } => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = wait_shutdown(shutdown) => return Some(Outcome::Abort),
            }
            return None;
        }
        FaultKind::Status { status, body, headers } => {
            let mut r = match body {
                None => error_resp(status, &format!("injected fault: HTTP {status}")),
                Some(Value::String(s)) => resp(status, "text/plain; charset=utf-8", s),
                Some(v) => json_resp(status, &v),
            };
            set_headers(&mut r, &headers);
            Outcome::Respond(r)
        }
        FaultKind::RetryAfter { seconds } => {
            let mut r = error_resp(429, "Number of requests has exceeded your rate limit; retry after the delay given in Retry-After");
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            Outcome::Respond(r)
        }
        FaultKind::Hang { ms } => {
            let wait = async {
                match ms {
                    Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = wait_shutdown(shutdown) => {}
            }
            Outcome::Abort
        }
        FaultKind::Reset => reset_mid_body(),
        // Handled by the token endpoint after the exchange.
        FaultKind::ResetAfterExchange => return None,
        FaultKind::NonJson { status } => Outcome::Respond(resp(
            status.unwrap_or(200),
            "text/html",
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        )),
        FaultKind::Oversized { bytes } => Outcome::Respond(resp(200, "application/json", oversized_body(bytes.unwrap_or(1024 * 1024 + 1)))),
        FaultKind::Redirect { status, location } => {
            let location = location.unwrap_or_else(|| format!("{}{REDIRECT_TARGET}", state.base_url));
            let mut r = resp(status.unwrap_or(307), "text/plain", Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert("location", v);
            }
            Outcome::Respond(r)
        }
        FaultKind::Echo { status, shape } => {
            let raw = String::from_utf8_lossy(body);
            let status = status.unwrap_or(400);
            let v = if shape.as_deref() == Some("anthropic") {
                json!({"type": "error", "error": {"type": error_type_for(status),
                       "message": format!("could not process the request body: {raw}")}})
            } else {
                let assertion = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("assertion").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                json!({"error": "invalid_request",
                       "error_description": format!("could not process the request body: {raw}"),
                       "error_uri": format!("https://emulator.anthropic-wif.invalid/errors?assertion={assertion}")})
            };
            Outcome::Respond(json_resp(status, &v))
        }
        FaultKind::Raw { status, body, headers } => {
            let mut r = resp(status.unwrap_or(200), "application/json", body);
            set_headers(&mut r, &headers);
            Outcome::Respond(r)
        }
    };
    Some(out)
}

fn set_headers(r: &mut Resp, headers: &std::collections::BTreeMap<String, String>) {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            r.headers_mut().insert(k, v);
        }
    }
}

fn oversized_body(n: usize) -> Bytes {
    let prefix = br#"{"access_token":"sk-ant-oat01-oversized","token_type":"Bearer","expires_in":600,"padding":""#;
    let suffix = br#""}"#;
    if n < prefix.len() + suffix.len() {
        return Bytes::from(vec![b' '; n]);
    }
    let mut v = Vec::with_capacity(n);
    v.extend_from_slice(prefix);
    v.resize(n - suffix.len(), b'a');
    v.extend_from_slice(suffix);
    Bytes::from(v)
}

// ---------------------------------------------------------------------------
// The token endpoint.

struct Validated {
    assertion: String,
    rule: String,
    claims: Map<String, Value>,
}

/// docs/design.md §1 checks; the error is the precise 400 message.
fn validate_token_request(headers: &HeaderMap, body: &[u8]) -> Result<Validated, String> {
    let flags = beta_flags(headers);
    let missing: Vec<&str> =
        [BETA_OAUTH, BETA_FEDERATION].into_iter().filter(|f| !flags.iter().any(|x| x == f)).collect();
    if !missing.is_empty() {
        return Err(format!("the anthropic-beta header must include {}", missing.join(",")));
    }
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim().to_ascii_lowercase().starts_with("application/json") {
        return Err("Content-Type must be application/json".into());
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| "request body is not valid JSON".to_string())?;
    let Value::Object(m) = v else {
        return Err("request body must be a JSON object".into());
    };
    let field = |name: &str| m.get(name).filter(|v| !v.is_null());

    match field("grant_type") {
        None => return Err("grant_type is required".into()),
        Some(Value::String(g)) if g == GRANT_TYPE => {}
        Some(_) => return Err(format!("grant_type must be {GRANT_TYPE}")),
    }
    let assertion = match field("assertion") {
        None => return Err("assertion is required".into()),
        Some(Value::String(a)) if a.is_empty() => return Err("assertion is required".into()),
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err("assertion must be a string".into()),
    };
    if assertion.len() > MAX_ASSERTION {
        return Err(format!("assertion is longer than the maximum of {MAX_ASSERTION} bytes"));
    }
    let decoded = jwt::decode(&assertion).map_err(|why| format!("assertion is not a well-formed JWT: {why}"))?;
    let rule = match field("federation_rule_id") {
        None => return Err("federation_rule_id is required".into()),
        Some(Value::String(r)) if ids::is_tagged(r, "fdrl_") => r.clone(),
        Some(_) => return Err("federation_rule_id is not a well-formed fdrl_ tagged ID".into()),
    };
    match field("organization_id") {
        None => return Err("organization_id is required".into()),
        Some(Value::String(o)) if ids::is_uuid(o) => {}
        Some(_) => return Err("organization_id is not a valid UUID".into()),
    }
    match field("service_account_id") {
        None => {}
        Some(Value::String(s)) if ids::is_tagged(s, "svac_") => {}
        Some(_) => return Err("service_account_id is not a well-formed svac_ tagged ID".into()),
    }
    match field("workspace_id") {
        None => {}
        Some(Value::String(w)) if w == "default" || ids::is_tagged(w, "wrkspc_") => {}
        Some(_) => return Err("workspace_id must be a well-formed wrkspc_ tagged ID or \"default\"".into()),
    }
    Ok(Validated { assertion, rule, claims: decoded.claims })
}

fn claim_secs(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// The identity decision: `Some(lifetime)` or `None` (deny). Atomic under the lock
/// so a herd presenting one JWT gets exactly one success.
fn decide(state: &State, v: &Validated) -> Option<u64> {
    let now = jwt::now_unix_f64();
    let remaining = match v.claims.get("exp") {
        None => None,
        Some(e) => {
            let exp = claim_secs(e)?;
            if exp <= now {
                return None;
            }
            Some(exp - now)
        }
    };
    if let Some(nbf) = v.claims.get("nbf") {
        if claim_secs(nbf)? > now + 60.0 {
            return None;
        }
    }
    let key = match v.claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => format!("jti:{j}"),
        _ => format!("jwt:{}", v.assertion),
    };
    let mut g = state.lock();
    if !g.settings.rules.is_empty() && !g.settings.rules.iter().any(|r| r == &v.rule) {
        return None;
    }
    if !g.seen_jti.insert(key) {
        return None;
    }
    let configured = g.settings.token_lifetime.max(1);
    let lifetime = match remaining {
        Some(r) => configured.min((2.0 * r).floor() as u64),
        None => configured,
    };
    Some(lifetime.max(1))
}

async fn token_endpoint(
    state: &Arc<State>,
    req: Request<Incoming>,
    _rid: &str,
    shutdown: watch::Receiver<bool>,
) -> Outcome {
    let (parts, body) = req.into_parts();
    state.lock().stats.token_requests += 1;
    let limit = state.initial.max_body_bytes;
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            record(state, &parts.method, TOKEN_PATH, &parts.headers, b"");
            state.lock().stats.invalid += 1;
            return too_large(limit);
        }
        Err(BodyError::Broken) => return Outcome::Abort,
    };
    record(state, &parts.method, TOKEN_PATH, &parts.headers, &body);
    let mut lose_answer = false;
    if let Some(kind) = state.next_fault(Endpoint::Token) {
        lose_answer = kind == FaultKind::ResetAfterExchange;
        if let Some(out) = apply_fault(state, kind, &body, shutdown).await {
            return out;
        }
    }
    let v = match validate_token_request(&parts.headers, &body) {
        Ok(v) => v,
        Err(msg) => {
            state.lock().stats.invalid += 1;
            return Outcome::Respond(error_resp(400, &msg));
        }
    };
    let Some(lifetime) = decide(state, &v) else {
        state.lock().stats.denied += 1;
        return Outcome::Respond(denied());
    };
    let token = state.mint(lifetime);
    if let Some(file) = &state.initial.identity_token_file {
        if let Err(e) = refill_identity_token(file, &state.initial.issuer) {
            eprintln!("wif-emulator: cannot refill the identity token file {}: {e}", file.display());
        }
    }
    if lose_answer {
        return reset_mid_body();
    }
    Outcome::Respond(json_resp(
        200,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": "user:inference"}),
    ))
}

/// Writes a fresh test JWT (default subject and audience) to `file`: the
/// identity token a workload would find there next.
pub(crate) fn refill_identity_token(file: &std::path::Path, issuer: &str) -> std::io::Result<()> {
    let claims =
        crate::jwt::default_claims(issuer, crate::DEFAULT_SUBJECT, crate::DEFAULT_AUDIENCE, crate::DEFAULT_JWT_TTL);
    crate::local::write_identity_token(file, &crate::jwt::encode_claims(&claims))
}

// ---------------------------------------------------------------------------
// The Messages API.

const REPLY: &str = "Hello! This is the anthropic-wif emulator answering in place of Claude.";

fn split_text(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    (0..n).map(|i| chars[i * chars.len() / n..(i + 1) * chars.len() / n].iter().collect()).collect()
}

fn authorize_message(state: &State, headers: &HeaderMap) -> Result<(), String> {
    // The emulator issues no API keys, so any x-api-key is refused, whatever else the request
    // carries (Claude Code's apiKeyHelper sends the token as x-api-key and as Bearer), in the API's
    // words for a key it does not know.
    if headers.contains_key("x-api-key") {
        return Err("invalid x-api-key".into());
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
        _ => return Err("missing Authorization: Bearer <access token> header".into()),
    };
    state.check_token(token).map_err(str::to_owned)?;
    if !beta_flags(headers).iter().any(|f| f == BETA_OAUTH) {
        return Err("OAuth authentication is currently not supported.".into());
    }
    Ok(())
}

async fn messages_endpoint(
    state: &Arc<State>,
    req: Request<Incoming>,
    _rid: &str,
    shutdown: watch::Receiver<bool>,
) -> Outcome {
    let (parts, body) = req.into_parts();
    state.lock().stats.message_requests += 1;
    let limit = state.initial.max_body_bytes;
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(limit),
        Err(BodyError::Broken) => return Outcome::Abort,
    };
    if let Some(kind) = state.next_fault(Endpoint::Messages) {
        if let Some(out) = apply_fault(state, kind, &body, shutdown).await {
            return out;
        }
    }
    if let Err(msg) = authorize_message(state, &parts.headers) {
        state.lock().stats.messages_unauthorized += 1;
        return Outcome::Respond(error_resp(401, &msg));
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(_) => return Outcome::Respond(error_resp(400, "request body must be a JSON object")),
        Err(_) => return Outcome::Respond(error_resp(400, "request body is not valid JSON")),
    };
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Outcome::Respond(error_resp(400, "model: Input should be a valid string")),
        None => return Outcome::Respond(error_resp(400, "model: Field required")),
    };
    match req.get("max_tokens") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => return Outcome::Respond(error_resp(400, "max_tokens: Input should be a positive integer")),
        None => return Outcome::Respond(error_resp(400, "max_tokens: Field required")),
    }
    match req.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        Some(Value::Array(_)) => {
            return Outcome::Respond(error_resp(400, "messages: at least one message is required"))
        }
        Some(_) => return Outcome::Respond(error_resp(400, "messages: Input should be a valid list")),
        None => return Outcome::Respond(error_resp(400, "messages: Field required")),
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    state.lock().stats.messages += 1;
    let id = format!("msg_{}", jwt::base62(24));
    let input_tokens = (body.len() / 4).max(1) as u64;
    let output_tokens = REPLY.split_whitespace().count() as u64;
    if !stream {
        return Outcome::Respond(json_resp(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": REPLY}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            }),
        ));
    }
    let settings = state.settings();
    let mut events: Vec<(&str, Value)> = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for piece in split_text(REPLY, settings.stream_deltas) {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.push((
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let frames: Vec<Bytes> =
        events.into_iter().map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n"))).collect();
    let delay = Duration::from_millis(settings.stream_delay_ms);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return; // the client went away
            }
        }
    });
    let mut r = Response::new(Body::Chan(rx));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    Outcome::Respond(r)
}

// ---------------------------------------------------------------------------
// Control endpoints.

fn bad_control(msg: &str) -> Outcome {
    Outcome::Respond(error_resp(400, msg))
}

async fn control_json(req: Request<Incoming>, limit: usize) -> Result<Value, Outcome> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(too_large(limit)),
        Err(BodyError::Broken) => return Err(Outcome::Abort),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&body).map_err(|e| bad_control(&format!("request body is not valid JSON: {e}")))
}

async fn control(state: &Arc<State>, req: Request<Incoming>, path: &str, method: &Method) -> Outcome {
    let limit = state.initial.max_body_bytes;
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/_emulator/health" if get => Outcome::Respond(json_resp(200, &json!({"ok": true}))),
        "/_emulator/stats" if get => {
            let s = serde_json::to_value(state.stats()).unwrap_or(Value::Null);
            Outcome::Respond(json_resp(200, &s))
        }
        "/_emulator/requests" if get => {
            let list: Vec<Value> = state.requests().iter().map(RecordedRequest::to_json).collect();
            Outcome::Respond(json_resp(200, &Value::Array(list)))
        }
        "/_emulator/api-requests" if get => {
            let list: Vec<Value> = state.api_requests().iter().map(ApiRequest::to_json).collect();
            Outcome::Respond(json_resp(200, &Value::Array(list)))
        }
        "/_emulator/jwt" if post => {
            let v = match control_json(req, limit).await {
                Ok(v) => v,
                Err(o) => return o,
            };
            match jwt_from_request(&state.initial.issuer, &v) {
                Ok((token, claims)) => Outcome::Respond(json_resp(200, &json!({"jwt": token, "claims": claims}))),
                Err(e) => bad_control(&e),
            }
        }
        "/_emulator/faults" if post => {
            let v = match control_json(req, limit).await {
                Ok(v) => v,
                Err(o) => return o,
            };
            match Fault::list_from_json(&v) {
                Ok(list) => {
                    let n = state.push_faults(list);
                    let pending = state.stats().faults_pending;
                    Outcome::Respond(json_resp(200, &json!({"queued": n, "pending": pending})))
                }
                Err(e) => bad_control(&e),
            }
        }
        "/_emulator/faults" if *method == Method::DELETE => {
            Outcome::Respond(json_resp(200, &json!({"cleared": state.clear_faults()})))
        }
        "/_emulator/revoke" if post => Outcome::Respond(json_resp(200, &json!({"revoked": state.revoke()}))),
        "/_emulator/reset" if post => {
            state.reset();
            Outcome::Respond(json_resp(200, &json!({"reset": true})))
        }
        "/_emulator/config" if get => Outcome::Respond(json_resp(200, &state.settings().to_json())),
        "/_emulator/config" if post => {
            let v = match control_json(req, limit).await {
                Ok(v) => v,
                Err(o) => return o,
            };
            match update_config(state, &v) {
                Ok(()) => Outcome::Respond(json_resp(200, &state.settings().to_json())),
                Err(e) => bad_control(&e),
            }
        }
        REDIRECT_TARGET => {
            state.lock().stats.redirects_followed += 1;
            Outcome::Respond(error_resp(
                400,
                "this request followed a redirect from the token endpoint; clients must never follow redirects there",
            ))
        }
        "/_emulator/health"
        | "/_emulator/stats"
        | "/_emulator/requests"
        | "/_emulator/api-requests"
        | "/_emulator/config" => {
            method_not_allowed(method, path, if path == "/_emulator/config" { "GET, POST" } else { "GET" })
        }
        "/_emulator/faults" => method_not_allowed(method, path, "POST, DELETE"),
        "/_emulator/jwt" | "/_emulator/revoke" | "/_emulator/reset" => method_not_allowed(method, path, "POST"),
        _ => Outcome::Respond(error_resp(404, &format!("no such control endpoint: {path}"))),
    }
}

pub(crate) fn jwt_from_request(issuer: &str, v: &Value) -> Result<(String, Map<String, Value>), String> {
    let Value::Object(m) = v else {
        return Err("body must be a JSON object like {\"sub\":…,\"aud\":…,\"ttl\":…}".into());
    };
    for k in m.keys() {
        if !["sub", "aud", "ttl", "iss", "claims"].contains(&k.as_str()) {
            return Err(format!("unknown field {k:?}; known: sub, aud, ttl, iss, claims"));
        }
    }
    let s = |k: &str, d: &str| -> Result<String, String> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(d.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let ttl = match m.get("ttl") {
        None | Some(Value::Null) => jwt::DEFAULT_JWT_TTL,
        Some(t) => t.as_i64().ok_or("ttl must be an integer number of seconds (negative: already expired)")?,
    };
    let mut claims = jwt::default_claims(
        &s("iss", issuer)?,
        &s("sub", jwt::DEFAULT_SUBJECT)?,
        &s("aud", jwt::DEFAULT_AUDIENCE)?,
        ttl,
    );
    match m.get("claims") {
        None | Some(Value::Null) => {}
        Some(Value::Object(extra)) => {
            for (k, v) in extra {
                if v.is_null() {
                    claims.remove(k);
                } else {
                    claims.insert(k.clone(), v.clone());
                }
            }
        }
        Some(_) => return Err("claims must be an object (a null value removes a default claim)".into()),
    }
    Ok((jwt::encode_claims(&claims), claims))
}

fn update_config(state: &State, v: &Value) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err("body must be a JSON object like {\"token_lifetime\":60}".into());
    };
    let mut new = state.settings();
    for (k, val) in m {
        match k.as_str() {
            "token_lifetime" => {
                new.token_lifetime =
                    val.as_u64().filter(|n| *n >= 1).ok_or("token_lifetime must be a positive integer (seconds)")?
            }
            "stream_delay_ms" => {
                new.stream_delay_ms = val.as_u64().ok_or("stream_delay_ms must be a non-negative integer")?
            }
            "stream_deltas" => {
                new.stream_deltas =
                    val.as_u64()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or("stream_deltas must be an integer from 1 to 10000")? as usize
            }
            "rules" => {
                let arr = val.as_array().ok_or("rules must be an array of fdrl_ ids (empty: accept any)")?;
                let mut rules = Vec::new();
                for r in arr {
                    match r.as_str() {
                        Some(r) if ids::is_tagged(r, "fdrl_") => rules.push(r.to_owned()),
                        _ => return Err("every rule must be a well-formed fdrl_ tagged ID".into()),
                    }
                }
                new.rules = rules;
            }
            other => {
                return Err(format!(
                    "unknown config field {other:?}; known: token_lifetime, stream_delay_ms, stream_deltas, rules"
                ))
            }
        }
    }
    state.lock().settings = new;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact() {
        for n in [1, 2, 5, 7, 100, 1000] {
            let parts = split_text(REPLY, n);
            assert_eq!(parts.len(), n.min(REPLY.chars().count()));
            assert!(parts.iter().all(|p| !p.is_empty()));
            assert_eq!(parts.concat(), REPLY);
        }
    }

    #[test]
    fn oversized_has_exact_length() {
        assert_eq!(oversized_body(1024 * 1024 + 1).len(), 1024 * 1024 + 1);
        assert_eq!(oversized_body(10).len(), 10);
    }
}
