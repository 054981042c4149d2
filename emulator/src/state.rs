//! The emulator's shared state: settings, minted tokens, seen `jti`s, fault
//! queues, recorded token and API requests, and counters.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::faults::{Endpoint, Fault, FaultKind};
use crate::EmulatorConfig;

/// Counters, as served by `GET /_emulator/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Successful exchanges (tokens minted).
    pub exchanges: u64,
    /// Every request that reached `/v1/oauth/token`.
    pub token_requests: u64,
    /// Messages answered successfully (JSON or stream).
    pub messages: u64,
    /// Every request that reached `/v1/messages`.
    pub message_requests: u64,
    /// Token requests answered 401 (expired JWT, reused jti, unknown rule).
    pub denied: u64,
    /// Token requests answered 400/405/413 by validation.
    pub invalid: u64,
    /// Messages requests answered 401 (bad/expired/revoked bearer, x-api-key, beta flag).
    pub messages_unauthorized: u64,
    /// Faults served (a `delay` counts too).
    pub faults_served: u64,
    /// Faults still queued (counting each `count`).
    pub faults_pending: u64,
    /// Requests that arrived at `/_emulator/redirect-target` (a client followed a redirect).
    pub redirects_followed: u64,
    /// Minted tokens that are neither expired nor revoked.
    pub active_tokens: u64,
    /// TCP connections accepted (keep-alive reuses one for many requests).
    pub connections: u64,
}

/// A token request as the emulator received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case header names, in arrival order (repeated headers repeat).
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `null` when it is not JSON.
    pub body: Value,
    /// The body as text (lossy UTF-8).
    pub raw_body: String,
    /// Unix seconds (fractional) of arrival.
    pub received_at: f64,
}

/// The first value of header `name` (case-insensitive) in a recorded header list.
fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A recorded header list as a JSON object; repeated headers are joined with ", ".
fn headers_json(list: &[(String, String)]) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in list {
        match headers.get_mut(k) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(v);
            }
            _ => {
                headers.insert(k.clone(), Value::from(v.as_str()));
            }
        }
    }
    Value::Object(headers)
}

/// The fields every recorded request shows: method, path, headers, arrival time.
fn request_json(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    received_at: f64,
) -> serde_json::Map<String, Value> {
    let mut v = serde_json::Map::new();
    v.insert("method".into(), Value::from(method));
    v.insert("path".into(), Value::from(path));
    v.insert("headers".into(), headers_json(headers));
    v.insert("received_at".into(), Value::from(received_at));
    v
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = request_json(&self.method, &self.path, &self.headers, self.received_at);
        v.insert("body".into(), self.body.clone());
        v.insert("raw_body".into(), Value::from(self.raw_body.as_str()));
        Value::Object(v)
    }
}

/// A request to the API side (every route but the token endpoint and the control endpoints: the
/// Messages API, and unknown paths that got a 404), as received, with the status it was answered.
/// The body is not kept (clients such as Claude Code send tens of KiB per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub method: String,
    /// The path and query as sent (Claude Code sends `/v1/messages?beta=true`).
    pub path: String,
    /// Lower-case header names, in arrival order (repeated headers repeat).
    pub headers: Vec<(String, String)>,
    /// The answer's status; `None` when the connection was closed without one (an injected fault).
    pub status: Option<u16>,
    /// Unix seconds (fractional) of arrival.
    pub received_at: f64,
}

impl ApiRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = request_json(&self.method, &self.path, &self.headers, self.received_at);
        v.insert("status".into(), self.status.map_or(Value::Null, Value::from));
        Value::Object(v)
    }
}

/// Settings that `POST /_emulator/config` may change at run time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub token_lifetime: u64,
    pub rules: Vec<String>,
    pub stream_delay_ms: u64,
    pub stream_deltas: usize,
}

impl Settings {
    pub fn from_config(c: &EmulatorConfig) -> Settings {
        Settings {
            token_lifetime: c.token_lifetime.max(1),
            rules: c.rules.clone(),
            stream_delay_ms: c.stream_delay_ms,
            stream_deltas: c.stream_deltas.max(1),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "token_lifetime": self.token_lifetime,
            "rules": self.rules,
            "stream_delay_ms": self.stream_delay_ms,
            "stream_deltas": self.stream_deltas,
        })
    }
}

const MAX_RECORDED: usize = 10_000;

/// Append to a recorded list, dropping the oldest entry beyond [`MAX_RECORDED`].
fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() >= MAX_RECORDED {
        list.pop_front();
    }
    list.push_back(item);
}

pub(crate) struct Inner {
    pub settings: Settings,
    pub seen_jti: HashSet<String>,
    pub tokens: HashMap<String, Instant>,
    pub token_faults: VecDeque<Fault>,
    pub message_faults: VecDeque<Fault>,
    pub requests: VecDeque<RecordedRequest>,
    pub api_requests: VecDeque<ApiRequest>,
    pub stats: Stats,
}

pub(crate) struct State {
    inner: Mutex<Inner>,
    pub initial: EmulatorConfig,
    pub base_url: String,
}

impl State {
    pub fn new(initial: EmulatorConfig, base_url: String) -> State {
        State {
            inner: Mutex::new(Inner {
                settings: Settings::from_config(&initial),
                seen_jti: HashSet::new(),
                tokens: HashMap::new(),
                token_faults: VecDeque::new(),
                message_faults: VecDeque::new(),
                requests: VecDeque::new(),
                api_requests: VecDeque::new(),
                stats: Stats::default(),
            }),
            initial,
            base_url,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    pub fn stats(&self) -> Stats {
        let mut g = self.lock();
        let now = Instant::now();
        g.tokens.retain(|_, exp| *exp > now);
        let mut s = g.stats.clone();
        s.active_tokens = g.tokens.len() as u64;
        s.faults_pending = g.token_faults.iter().chain(g.message_faults.iter()).map(|f| f.count as u64).sum();
        s
    }

    pub fn record(&self, r: RecordedRequest) {
        push_bounded(&mut self.lock().requests, r);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.iter().cloned().collect()
    }

    pub fn record_api(&self, r: ApiRequest) {
        push_bounded(&mut self.lock().api_requests, r);
    }

    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.lock().api_requests.iter().cloned().collect()
    }

    pub fn push_faults(&self, faults: Vec<Fault>) -> usize {
        let mut g = self.lock();
        let n = faults.len();
        for f in faults {
            match f.endpoint {
                Endpoint::Token => g.token_faults.push_back(f),
                Endpoint::Messages => g.message_faults.push_back(f),
            }
        }
        n
    }

    /// Drop every pending fault (tokens and counters stay); returns how many were pending.
    pub fn clear_faults(&self) -> usize {
        let mut g = self.lock();
        let n = g.token_faults.len() + g.message_faults.len();
        g.token_faults.clear();
        g.message_faults.clear();
        n
    }

    pub fn next_fault(&self, endpoint: Endpoint) -> Option<FaultKind> {
        let mut g = self.lock();
        let q = match endpoint {
            Endpoint::Token => &mut g.token_faults,
            Endpoint::Messages => &mut g.message_faults,
        };
        let front = q.front_mut()?;
        let kind = front.kind.clone();
        front.count = front.count.saturating_sub(1);
        if front.count == 0 {
            q.pop_front();
        }
        g.stats.faults_served += 1;
        Some(kind)
    }

    pub fn mint(&self, lifetime: u64) -> String {
        let token = format!("sk-ant-oat01-{}", crate::jwt::base62(86));
        let mut g = self.lock();
        let now = Instant::now();
        if g.tokens.len() > 100_000 {
            g.tokens.retain(|_, exp| *exp > now);
        }
        g.tokens.insert(token.clone(), now + Duration::from_secs(lifetime));
        g.stats.exchanges += 1;
        token
    }

    /// `Ok(())` for a live minted token, else the reason it is refused.
    pub fn check_token(&self, token: &str) -> Result<(), &'static str> {
        let g = self.lock();
        match g.tokens.get(token) {
            None => Err("invalid bearer token: not issued by this server, or revoked"),
            Some(exp) if *exp <= Instant::now() => Err("the OAuth access token has expired"),
            Some(_) => Ok(()),
        }
    }

    pub fn revoke(&self) -> usize {
        let mut g = self.lock();
        let n = g.tokens.len();
        g.tokens.clear();
        n
    }

    pub fn reset(&self) {
        let mut g = self.lock();
        g.settings = Settings::from_config(&self.initial);
        g.seen_jti.clear();
        g.tokens.clear();
        g.token_faults.clear();
        g.message_faults.clear();
        g.requests.clear();
        g.api_requests.clear();
        g.stats = Stats::default();
    }
}
