//! The proxy in process, against the real emulator (and, where the emulator
//! cannot show what arrived upstream, a recording upstream that relays token
//! requests to the emulator), over real loopback sockets.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anthropic_wif_core::config::{Env, Overrides};
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::runtime::{block_on, runtime};
use anthropic_wif_core::{now_unix, Error, ErrorKind, Provider, ProviderOptions};
use anthropic_wif_emulator::{Emulator, EmulatorConfig, Fault};
use anthropic_wif_proxy::{Listen, Proxy, ProxyConfig, ProxyHandle};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use serde_json::{json, Value};

const RULE: &str = "fdrl_01TestRule000000000000000";
const ORG: &str = "00000000-0000-4000-8000-000000000001";

fn message(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 16, "stream": stream,
           "messages": [{"role": "user", "content": "hello"}]})
}

trait JsonExt {
    fn js(self, v: &Value) -> Self;
}

impl JsonExt for reqwest::RequestBuilder {
    fn js(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }
}

async fn to_json(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(256).build().unwrap()
}

/// Write a fresh single-use JWT atomically.
fn write_jwt(emu: &Emulator, path: &Path) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn provider(base_url: &str, jwt: &Path, dir: &Path) -> Provider {
    let mut o = ProviderOptions::new("proxy", Env::fixed([("HOME", dir.display().to_string())]));
    o.overrides = Overrides {
        federation_rule_id: Some(RULE.into()),
        organization_id: Some(ORG.into()),
        base_url: Some(base_url.into()),
        identity_token: Some(IdentitySpec::File { path: jwt.to_path_buf() }),
        credentials_path: Some(dir.join("credentials.json")),
        ..Overrides::default()
    };
    Provider::new(o).unwrap()
}

struct Running {
    base: String,
    handle: ProxyHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Running {
    fn start(p: Provider, config: ProxyConfig) -> Running {
        let proxy = block_on(Proxy::bind(p, config)).expect("proxy binds");
        let base = proxy.bound().base_url().unwrap_or_default();
        let handle = proxy.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = runtime().spawn(proxy.run(async {
            let _ = rx.await;
        }));
        Running { base, handle, stop: Some(tx), done: Some(done) }
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while !self.handle.ready() {
            assert!(t.elapsed() < Duration::from_secs(20), "proxy not ready in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Trigger shutdown and wait for run() to return.
    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            block_on(async { tokio::time::timeout(Duration::from_secs(20), d).await })
                .expect("run() returns after shutdown")
                .expect("no panic")
                .expect("run() is Ok");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    emu: Emulator,
    jwt: PathBuf,
}

impl Fixture {
    fn new(config: EmulatorConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::start(config).unwrap();
        let jwt = dir.path().join("identity-token");
        write_jwt(&emu, &jwt);
        Fixture { dir, emu, jwt }
    }

    fn proxy_to(&self, base_url: &str, f: impl FnOnce(&mut ProxyConfig)) -> Running {
        let mut c = ProxyConfig::new(Listen::parse("127.0.0.1:0").unwrap());
        c.log = false;
        f(&mut c);
        Running::start(provider(base_url, &self.jwt, self.dir.path()), c)
    }

    fn proxy(&self, f: impl FnOnce(&mut ProxyConfig)) -> Running {
        self.proxy_to(&self.emu.base_url(), f)
    }
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).header("x-api-key", "placeholder").js(body).send().await.expect("request reaches the proxy");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

// ---------------------------------------------------------------------------
// A recording upstream: echoes what it received; relays /v1/oauth/token to the emulator.

enum EchoBody {
    Full(Option<Bytes>),
    Chan(tokio::sync::mpsc::Receiver<Bytes>),
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            EchoBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EchoBody::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            EchoBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            EchoBody::Full(None) => SizeHint::with_exact(0),
            EchoBody::Chan(_) => SizeHint::default(),
        }
    }
}

struct Echo {
    base: String,
    /// Set when a client of /v1/forever went away.
    disconnected: Arc<AtomicBool>,
    /// Requests that arrived, token requests excluded (so: what the proxy forwarded).
    seen: Arc<AtomicU64>,
}

fn start_echo(emu_base: String) -> Echo {
    let disconnected = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let (flag, count) = (disconnected.clone(), seen.clone());
    let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime().spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            let emu_base = emu_base.clone();
            let (flag, count) = (flag.clone(), count.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let emu_base = emu_base.clone();
                    let flag = flag.clone();
                    if !req.uri().path().ends_with("/v1/oauth/token") {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    async move {
                        // /v1/hangup: close the connection without an answer.
                        if req.uri().path() == "/v1/hangup" {
                            return Err(std::io::Error::other("hang up"));
                        }
                        Ok(echo(req, emu_base, flag).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Echo { base, disconnected, seen }
}

async fn echo(req: Request<Incoming>, emu_base: String, flag: Arc<AtomicBool>) -> Response<EchoBody> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if path.ends_with("/v1/oauth/token") {
        let mut r = http().post(format!("{emu_base}/v1/oauth/token")).body(bytes.to_vec());
        for (k, v) in parts.headers.iter() {
            if k != "host" && k != "content-length" {
                r = r.header(k.as_str(), v.as_bytes());
            }
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let b = resp.bytes().await.unwrap();
        let mut out = Response::new(EchoBody::Full(Some(b)));
        *out.status_mut() = status;
        return out;
    }
    if path == "/v1/silent" {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    if path == "/v1/stall" {
        // One event, then nothing (the stream stays open) for 10 s.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"event: ping\ndata: {}\n\n")).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
        });
        return Response::new(EchoBody::Chan(rx));
    }
    if path == "/v1/forever" {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0u64.. {
                if tx.send(Bytes::from(format!("event: tick\ndata: {i}\n\n"))).await.is_err() {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        return Response::new(EchoBody::Chan(rx));
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in parts.headers.iter() {
        headers.entry(k.as_str().to_string()).or_default().push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let v = json!({"method": parts.method.as_str(), "target": parts.uri.to_string(), "headers": headers,
                   "body_bytes": bytes.len(), "body_prefix": String::from_utf8_lossy(&bytes[..bytes.len().min(64)])});
    let mut r = Response::new(EchoBody::Full(Some(Bytes::from(v.to_string()))));
    r.headers_mut().insert("x-echo", hyper::header::HeaderValue::from_static("1"));
    // As the API does for `anthropic-dangerous-direct-browser-access`; the proxy must not pass it on.
    r.headers_mut().insert("access-control-allow-origin", hyper::header::HeaderValue::from_static("*"));
    r.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("keep-alive"));
    r
}

// ---------------------------------------------------------------------------

#[test]
fn forwards_messages_with_a_fresh_token_and_only_one_exchange() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|_| {});
    let c = http();
    for _ in 0..3 {
        let (status, v) = block_on(post(&c, &format!("{}/v1/messages", px.base), &message(false)));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["type"], "message");
    }
    let s = fx.emu.stats();
    assert_eq!(s.exchanges, 1);
    assert_eq!(s.messages, 3);
    assert_eq!(s.messages_unauthorized, 0, "x-api-key was stripped and the bearer accepted");
}

#[test]
fn headers_are_rewritten_exactly_and_everything_else_passes_through() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |_| {});
    px.wait_ready();
    let c = http();
    let r = block_on(
        c.post(format!("{}/v1/messages/count_tokens?beta=true&x=%2F", px.base))
            .header("x-api-key", "sk-ant-api03-must-not-pass")
            .header("authorization", "Bearer placeholder")
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "prompt-caching-2024-07-31, oauth-2025-04-20")
            .header("anthropic-beta", "oauth-2025-04-200")
            .header("x-custom", "kept")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "dropped")
            .body("{\"a\":1}")
            .send(),
    )
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("connection").is_none(), "hop-by-hop response headers are not relayed");
    assert!(r.headers().get("access-control-allow-origin").is_none(), "no answer may be read by a web page");
    assert_eq!(r.headers().get("x-echo").unwrap(), "1");
    let v: Value = block_on(to_json(r));
    let h = &v["headers"];
    assert_eq!(v["method"], "POST");
    assert_eq!(v["target"], "/v1/messages/count_tokens?beta=true&x=%2F", "path and query unchanged");
    assert!(h.get("x-api-key").is_none(), "x-api-key stripped: {h}");
    let auth = h["authorization"].as_array().unwrap();
    assert_eq!(auth.len(), 1);
    let bearer = auth[0].as_str().unwrap();
    assert!(bearer.starts_with("Bearer sk-ant-oat01-") && fx.emu.is_token_valid(&bearer[7..]), "a minted token");
    assert_eq!(h["anthropic-beta"], json!(["prompt-caching-2024-07-31,oauth-2025-04-20,oauth-2025-04-200"]));
    assert_eq!(h["anthropic-version"], json!(["2023-06-01"]));
    assert_eq!(h["x-custom"], json!(["kept"]));
    assert!(h.get("x-hop").is_none(), "headers named in Connection are hop-by-hop");
    assert_eq!(v["body_bytes"], 7);
    assert_eq!(v["body_prefix"], "{\"a\":1}");
}

#[test]
fn streamed_events_arrive_incrementally() {
    let fx = Fixture::new(EmulatorConfig { stream_delay_ms: 150, stream_deltas: 5, ..EmulatorConfig::default() });
    let px = fx.proxy(|_| {});
    px.wait_ready();
    let c = http();
    let arrivals = block_on(async {
        let mut r = c.post(format!("{}/v1/messages", px.base)).js(&message(true)).send().await.expect("stream starts");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut arrivals: Vec<(Instant, String)> = Vec::new();
        let mut buf = String::new();
        while let Some(chunk) = r.chunk().await.unwrap().map(|b| b.to_vec()) {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find("\n\n") {
                let ev = buf[..i].lines().next().unwrap_or_default().to_string();
                arrivals.push((Instant::now(), ev));
                buf.drain(..i + 2);
            }
        }
        arrivals
    });
    let names: Vec<&str> = arrivals.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"event: message_start"));
    assert_eq!(names.last(), Some(&"event: message_stop"));
    assert_eq!(names.iter().filter(|n| **n == "event: content_block_delta").count(), 5);
    // 11 events 150 ms apart upstream: were the proxy buffering, they would all
    // arrive together. Generous bound: the spread is at least half the pacing.
    let spread = arrivals.last().unwrap().0 - arrivals.first().unwrap().0;
    assert!(spread >= Duration::from_millis(750), "events arrived together ({spread:?}): buffered?");
    let gaps = arrivals.windows(2).filter(|w| w[1].0 - w[0].0 >= Duration::from_millis(50)).count();
    assert!(gaps >= 5, "events should arrive one by one, got {gaps} separated arrivals");
}

#[test]
fn two_hundred_concurrent_requests_make_one_exchange() {
    // Streams paced at 40 ms keep all 200 requests in flight together.
    let fx = Fixture::new(EmulatorConfig { stream_delay_ms: 40, ..EmulatorConfig::default() });
    let px = fx.proxy(|_| {});
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    let results: Vec<(u16, usize)> = block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let c = c.clone();
            let url = url.clone();
            set.spawn(async move {
                let r =
                    c.post(&url).header("authorization", "Bearer placeholder").js(&message(i % 2 == 0)).send().await;
                match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        (s, r.bytes().await.map(|b| b.len()).unwrap_or(0))
                    }
                    Err(_) => (0, 0),
                }
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(results.len(), 200);
    assert!(
        results.iter().all(|(s, n)| *s == 200 && *n > 0),
        "all succeed: {:?}",
        results.iter().filter(|r| r.0 != 200).collect::<Vec<_>>()
    );
    let s = fx.emu.stats();
    assert_eq!(s.exchanges, 1, "one exchange for 200 concurrent requests");
    assert_eq!(s.messages, 200);
    assert_eq!(px.handle.requests(), 200);
}

#[test]
fn upstream_401_re_exchanges_once_and_replays() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|_| {});
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    assert_eq!(block_on(post(&c, &url, &message(false))).0, 200);
    assert_eq!(fx.emu.stats().exchanges, 1);

    // The server revokes every token; the identity file has rotated meanwhile.
    write_jwt(&fx.emu, &fx.jwt);
    fx.emu.revoke_all();
    let results: Vec<u16> = block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let c = c.clone();
            let url = url.clone();
            set.spawn(async move { post(&c, &url, &message(i % 2 == 1)).await.0 });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert!(results.iter().all(|s| *s == 200), "every refused request was replayed: {results:?}");
    let s = fx.emu.stats();
    assert_eq!(s.exchanges, 2, "one re-exchange for all the refused requests");
    // Requests that arrived after the new token was in place were not refused at all.
    assert!((1..=20).contains(&s.messages_unauthorized), "refused at most once each: {}", s.messages_unauthorized);
    assert_eq!(s.messages, 21);
}

#[test]
fn a_body_too_large_to_keep_is_not_replayed_but_the_token_is_replaced() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|c| c.replay_max_bytes = 16);
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    assert_eq!(block_on(post(&c, &url, &message(false))).0, 200);
    write_jwt(&fx.emu, &fx.jwt);
    fx.emu.revoke_all();
    let (status, body) = block_on(post(&c, &url, &message(false)));
    assert_eq!(status, 401, "passed on: {body}");
    // The re-exchange runs right after the 401; the next request uses the new token.
    let t = Instant::now();
    while fx.emu.stats().exchanges < 2 {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(block_on(post(&c, &url, &message(false))).0, 200);
    assert_eq!(fx.emu.stats().exchanges, 2);
}

#[test]
fn endpoint_down_means_503_with_the_reason_then_recovery() {
    let fx = Fixture::new(EmulatorConfig::default());
    fx.emu.push_faults([Fault::status(503).times(1000)]);
    let px = fx.proxy(|_| {});
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    let (status, v) = block_on(post(&c, &url, &message(false)));
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "credentials_unavailable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("[unavailable]") && msg.contains("503"), "says why: {msg}");
    assert!(!msg.contains("eyJ"), "no JWT in the message");
    assert_eq!(fx.emu.stats().messages, 0, "nothing was forwarded without a token");
    let h = block_on(async { c.get(format!("{}/healthz", px.base)).send().await.unwrap() });
    assert_eq!(h.status(), 503);
    let hv: Value = block_on(to_json(h));
    assert_eq!(hv["status"], "unavailable");
    assert!(hv["reason"].as_str().unwrap().contains("503"), "{hv}");

    // The endpoint comes back: the background retry recovers without a restart.
    fx.emu.reset();
    write_jwt(&fx.emu, &fx.jwt);
    px.wait_ready();
    let (status, v) = block_on(post(&c, &url, &message(false)));
    assert_eq!(status, 200, "{v}");
    let h = block_on(async { c.get(format!("{}/healthz", px.base)).send().await.unwrap() });
    assert_eq!(h.status(), 200);
}

#[test]
fn after_a_refused_exchange_healthz_recovers_with_no_client_traffic() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|_| {});
    px.wait_ready();
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    // Upstream stops accepting the token, and the identity file now holds a JWT the token
    // endpoint refuses (not valid for another hour): the client's request gets a 401, the exchange
    // after it is refused. (Not an expired one: that would never be sent, so no exchange to count.)
    fx.emu.revoke_all();
    let not_yet = now_unix() + 3600;
    let refused = fx.emu.mint_jwt_with(&json!({"claims": {"nbf": not_yet}})).unwrap();
    std::fs::write(&fx.jwt, refused).unwrap();
    let (status, v) = block_on(post(&c, &url, &message(false)));
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["type"], "credentials_unavailable");
    let h = block_on(async { c.get(format!("{}/healthz", px.base)).send().await.unwrap() });
    assert_eq!(h.status(), 503);

    // No client traffic from here on. The background retry runs with back-off (1 s, 2 s, 4 s…):
    // the token endpoint hears from the proxy again, but not in a tight loop.
    let before = fx.emu.stats().token_requests;
    std::thread::sleep(Duration::from_millis(3500));
    let retried = fx.emu.stats().token_requests - before;
    assert!((1..=3).contains(&retried), "{retried} retries in 3.5 s with no traffic (want 1 to 3: 1 s, 2 s back-off)");
    assert!(!px.handle.ready());

    // A fresh JWT appears in the file: /healthz recovers by itself.
    let exchanges = fx.emu.stats().exchanges;
    write_jwt(&fx.emu, &fx.jwt);
    let t = Instant::now();
    loop {
        let h = block_on(async { c.get(format!("{}/healthz", px.base)).send().await.unwrap() });
        if h.status() == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "/healthz still 503 after 15 s with a fresh JWT in the file");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fx.emu.stats().exchanges, exchanges + 1, "one exchange recovered it");
    assert_eq!(block_on(post(&c, &url, &message(false))).0, 200);
}

#[test]
fn identity_failure_is_a_503_with_the_class_and_a_request_id_but_not_the_details() {
    let fx = Fixture::new(EmulatorConfig::default());
    std::fs::remove_file(&fx.jwt).unwrap();
    let px = fx.proxy(|_| {});
    let c = http();
    let r = block_on(c.post(format!("{}/v1/messages", px.base)).js(&message(false)).send()).unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let id = r.headers()["request-id"].to_str().unwrap().to_string();
    let v: Value = block_on(to_json(r));
    assert_eq!(v["error"]["type"], "credentials_unavailable");
    assert_eq!(v["request_id"], id.as_str());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("[identity]") && msg.contains("identity token") && msg.contains(&id), "{msg}");
    // The details (the file's path, the rule id) are for the proxy's log (cli/tests/proxy.rs), not for clients.
    let dir = fx.dir.path().display().to_string();
    assert!(!msg.contains(&dir) && !msg.contains("identity-token") && !msg.contains(RULE), "{msg}");
    let h: Value = block_on(async { to_json(c.get(format!("{}/healthz", px.base)).send().await.unwrap()).await });
    assert_eq!(h["kind"], "identity");
    let reason = h["reason"].as_str().unwrap();
    assert!(reason.contains("[identity]") && !reason.contains(&dir) && !reason.contains(RULE), "{reason}");
    assert_eq!(fx.emu.stats().token_requests, 0);
}

#[test]
fn an_upstream_failure_is_a_502_with_a_request_id_but_not_the_upstream_address() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |_| {});
    px.wait_ready();
    let r = block_on(http().post(format!("{}/v1/hangup", px.base)).js(&message(false)).send()).unwrap();
    assert_eq!(r.status(), 502);
    let id = r.headers()["request-id"].to_str().unwrap().to_string();
    let v: Value = block_on(to_json(r));
    assert_eq!(v["request_id"], id.as_str());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("the upstream API") && msg.contains(&id), "{msg}");
    let upstream = echo.base.trim_start_matches("http://");
    assert!(!msg.contains(upstream) && !msg.contains("127.0.0.1"), "the address is for the log: {msg}");
}

#[test]
fn refreshes_ahead_in_the_background() {
    // 8-second tokens: forwarded while more than 4 s left, replaced ~5 s before expiry.
    let fx = Fixture::new(EmulatorConfig { token_lifetime: 8, ..EmulatorConfig::default() });
    let stop = Arc::new(AtomicBool::new(false));
    let rotator = {
        let (stop, jwt, emu_base) = (stop.clone(), fx.jwt.clone(), fx.emu.base_url());
        std::thread::spawn(move || {
            // Keep a fresh identity token in the file, as a projected token would be.
            while !stop.load(Ordering::SeqCst) {
                let v: Value = block_on(async {
                    Ok::<_, reqwest::Error>(
                        to_json(http().post(format!("{emu_base}/_emulator/jwt")).send().await?).await,
                    )
                })
                .unwrap();
                let tmp = jwt.with_extension("tmp");
                std::fs::write(&tmp, v["jwt"].as_str().unwrap()).unwrap();
                std::fs::rename(&tmp, &jwt).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let px = fx.proxy(|_| {});
    px.wait_ready();
    assert_eq!(fx.emu.stats().exchanges, 1);
    // No traffic at all: the proxy still replaces the token before it gets short.
    let t = Instant::now();
    while fx.emu.stats().exchanges < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "no refresh ahead within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(px.handle.ready());
    let c = http();
    assert_eq!(block_on(post(&c, &format!("{}/v1/messages", px.base), &message(false))).0, 200);
    stop.store(true, Ordering::SeqCst);
    rotator.join().unwrap();
}

#[test]
fn client_disconnect_closes_the_upstream_stream() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |_| {});
    px.wait_ready();
    let c = http();
    block_on(async {
        let mut r = c.get(format!("{}/v1/forever", px.base)).send().await.unwrap();
        let mut got = 0;
        while got < 100 {
            got += r.chunk().await.unwrap().map(|b| b.to_vec()).expect("stream goes on").len();
        }
        drop(r); // the client goes away mid-stream
    });
    let t = Instant::now();
    while px.handle.inflight() != 0 || !echo.disconnected.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(10), "upstream never saw the disconnect");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_drains_a_stream_in_flight() {
    let fx = Fixture::new(EmulatorConfig { stream_delay_ms: 100, ..EmulatorConfig::default() });
    let mut px = fx.proxy(|_| {});
    px.wait_ready();
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    let mut r = block_on(c.post(&url).js(&message(true)).send()).unwrap();
    let first = block_on(r.chunk()).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    let stop = px.stop.take().unwrap();
    stop.send(()).unwrap();
    // The stream in flight runs to its end.
    let rest = block_on(async {
        let mut rest = Vec::new();
        while let Some(ch) = r.chunk().await.expect("no cut").map(|b| b.to_vec()) {
            rest.extend_from_slice(&ch);
        }
        rest
    });
    assert!(String::from_utf8_lossy(&rest).contains("event: message_stop"));
    px.shutdown();
    // Not accepting any more.
    let after = block_on(http().post(&url).js(&message(false)).send());
    assert!(after.is_err(), "connections are refused after shutdown");
}

#[test]
fn only_loopback_unless_allowed() {
    let fx = Fixture::new(EmulatorConfig::default());
    let p = provider(&fx.emu.base_url(), &fx.jwt, fx.dir.path());
    let err =
        block_on(Proxy::bind(p.clone(), ProxyConfig::new(Listen::parse("0.0.0.0:0").unwrap()))).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message().contains("--allow-remote") && err.message().contains("loopback"), "{err}");
    let mut c = ProxyConfig::new(Listen::parse("0.0.0.0:0").unwrap());
    c.allow_remote = true;
    assert!(block_on(Proxy::bind(p, c)).is_ok());
    assert!(Listen::parse("nonsense").is_err());
    assert_eq!(Listen::parse("unix:/run/x.sock").unwrap(), Listen::Unix("/run/x.sock".into()));
    assert_eq!(Listen::parse("[::1]:0").unwrap(), Listen::Tcp("[::1]:0".into()));
}

#[test]
fn a_static_bearer_configuration_is_refused() {
    let o = ProviderOptions::new(
        "proxy",
        Env::fixed([("ANTHROPIC_AUTH_TOKEN", "sk-ant-oat01-static"), ("HOME", "/nonexistent")]),
    );
    let p = Provider::new(o).unwrap();
    let err = block_on(Proxy::bind(p, ProxyConfig::new(Listen::parse("127.0.0.1:0").unwrap()))).err().expect("refused");
    assert!(err.message().contains("ANTHROPIC_AUTH_TOKEN") && err.message().contains("federated"), "{err}");
    assert!(!err.message().contains("sk-ant-oat01-static"));
}

#[cfg(unix)]
#[test]
fn serves_on_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new(EmulatorConfig::default());
    let sock = fx.dir.path().join("proxy.sock");
    let mut c = ProxyConfig::new(Listen::parse(&format!("unix:{}", sock.display())).unwrap());
    c.log = false;
    let mut px = Running::start(provider(&fx.emu.base_url(), &fx.jwt, fx.dir.path()), c);
    px.wait_ready();
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    let (status, body) = block_on(async {
        let s = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post("/v1/messages")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(message(false).to_string())))
            .unwrap();
        let r = send.send_request(req).await.unwrap();
        use http_body_util::BodyExt;
        (r.status().as_u16(), r.into_body().collect().await.unwrap().to_bytes())
    });
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    px.shutdown();
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}

// ---------------------------------------------------------------------------
// Issue 10: web pages, paths that leave the prefix, held connections, the socket.

const BODY: &str = r#"{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}"#;

fn addr(px: &Running) -> String {
    px.base.trim_start_matches("http://").to_string()
}

/// One request on a fresh connection, written byte for byte (`connection: close`
/// is added), and the answer read to its end: (status, head, body).
fn raw(addr: &str, method: &str, target: &str, headers: &[String], body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("an answer within 20 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn browser_shaped_requests_get_403_and_nothing_goes_upstream() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |_| {});
    px.wait_ready();
    let a = addr(&px);
    let port = a.rsplit(':').next().unwrap().to_string();
    let own = format!("host: 127.0.0.1:{port}");
    let json = "content-type: application/json".to_string();
    let text = "content-type: text/plain;charset=UTF-8".to_string();
    let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, String, Vec<String>)> = vec![
        // A page on rebind.attacker.example whose DNS now answers 127.0.0.1: same-origin for the browser.
        ("DNS rebinding", "POST", "/v1/messages".into(),
         vec![format!("host: rebind.attacker.example:{port}"), text.clone(), "sec-fetch-site: same-origin".into()]),
        ("DNS rebinding, GET", "GET", "/v1/models".into(), vec![format!("host: rebind.attacker.example:{port}")]),
        ("rebinding to /healthz", "GET", "/healthz".into(), vec![format!("host: rebind.attacker.example:{port}")]),
        ("absolute target", "POST", format!("http://rebind.attacker.example:{port}/v1/messages"), vec![own.clone(), json.clone()]),
        // fetch(…, {mode: "no-cors", method: "POST", body}) and a form post from another site.
        ("cross-origin text/plain POST", "POST", "/v1/messages".into(),
         vec![own.clone(), text.clone(), "origin: https://evil.example".into(), "sec-fetch-site: cross-site".into(),
              "sec-fetch-mode: no-cors".into()]),
        ("Origin only (older browsers)", "POST", "/v1/messages".into(), vec![own.clone(), text.clone(), "origin: https://evil.example".into()]),
        ("opaque origin (sandboxed frame, file://)", "POST", "/v1/messages".into(), vec![own.clone(), text.clone(), "origin: null".into()]),
        ("another local site", "POST", "/v1/messages".into(),
         vec![own.clone(), text.clone(), format!("origin: http://localhost:{port}0"), "sec-fetch-site: same-site".into()]),
        ("Sec-Fetch-Site only", "GET", "/v1/models".into(), vec![own.clone(), "sec-fetch-site: cross-site".into()]),
        ("CORS preflight", "OPTIONS", "/v1/messages".into(),
         [vec![own.clone()], h(&["origin: https://evil.example", "access-control-request-method: POST",
                                  "access-control-request-headers: content-type,x-api-key"])].concat()),
        ("preflight without Origin", "OPTIONS", "/v1/messages".into(), vec![own.clone(), "access-control-request-method: POST".into()]),
    ];
    for (name, method, target, headers) in &cases {
        let (status, head, body) = raw(&a, method, target, headers, if *method == "POST" { BODY } else { "" });
        assert_eq!(status, 403, "{name}: {head}\n{body}");
        assert!(!head.contains("access-control-"), "{name}: no CORS header: {head}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: JSON: {body}"));
        assert_eq!(v["error"]["type"], "permission_error", "{name}");
        assert!(v["request_id"].as_str().is_some_and(|id| head.contains(&format!("request-id: {id}"))), "{name}");
        assert!(!body.contains("sk-ant-") && !body.contains("x-echo"), "{name}: {body}");
    }
    assert_eq!(echo.seen.load(Ordering::SeqCst), 0, "nothing was sent upstream");
    assert_eq!(px.handle.requests(), 0);

    // Programs are served: no Origin, a loopback name, any port (ssh -L, kubectl port-forward), and a
    // page the proxy itself served.
    for headers in [
        vec![own.clone(), json.clone()],
        vec![format!("host: localhost:{port}"), json.clone()],
        vec!["host: localhost:1".into(), json.clone()],
        vec![
            own.clone(),
            json.clone(),
            format!("origin: http://127.0.0.1:{port}"),
            "sec-fetch-site: same-origin".into(),
        ],
        vec![own.clone(), json.clone(), "sec-fetch-site: none".into()],
    ] {
        let (status, _, body) = raw(&a, "POST", "/v1/messages", &headers, BODY);
        assert_eq!(status, 200, "{headers:?}: {body}");
    }
    assert_eq!(echo.seen.load(Ordering::SeqCst), 5);
}

#[test]
fn allow_host_adds_a_name() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|c| c.allow_hosts = vec!["anthropic-proxy.internal".into()]);
    px.wait_ready();
    let a = addr(&px);
    let ok = raw(&a, "POST", "/v1/messages", &["host: Anthropic-Proxy.internal:8787".into()], BODY);
    assert_eq!(ok.0, 200, "{}", ok.2);
    let refused = raw(&a, "POST", "/v1/messages", &["host: other.internal".into()], BODY);
    assert_eq!(refused.0, 403);
    assert!(refused.2.contains("--allow-host"), "the message names the fix: {}", refused.2);
    assert_eq!(fx.emu.stats().messages, 1);
    let p = provider(&fx.emu.base_url(), &fx.jwt, fx.dir.path());
    let mut c = ProxyConfig::new(Listen::parse("127.0.0.1:0").unwrap());
    c.allow_hosts = vec!["http://x.example:80/".into()];
    let err = block_on(Proxy::bind(p, c)).err().expect("refused");
    assert!(err.kind == ErrorKind::Config && err.message().contains("--allow-host"), "{err}");
}

#[test]
fn paths_that_could_leave_the_base_url_prefix_are_refused() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    // A gateway prefix, as with --base-url https://gw.example/anthropic.
    let px = fx.proxy_to(&format!("{}/anthropic", echo.base), |_| {});
    px.wait_ready();
    let a = addr(&px);
    let host = vec!["host: 127.0.0.1".to_string()];
    for target in [
        "/../debug/echo",
        "/v1/../../debug/echo",
        "/%2e%2e/debug/echo",
        "/v1/%2E%2E/%2e%2E/debug/echo",
        "/v1/.%2e/.%2e/debug/echo",
        "/v1/..%2fdebug/echo",
        "/v1/..%2F..%2Fdebug/echo",
        "/v1/..%5c..%5cdebug/echo",
        "/v1/%252e%252e/%252e%252e/debug/echo",
        "/v1/..;/..;/debug/echo",
        "/v1/./messages",
        "/v1/%",
    ] {
        let (status, _, body) = raw(&a, "POST", target, &host, BODY);
        assert_eq!(status, 400, "{target}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{target}");
    }
    // Only the API's /v1/ routes carry the token; not the token endpoint.
    for target in ["/debug/echo", "/", "/v2/messages", "/v1/oauth/token", "/v1/%6Fauth/token"] {
        let (status, _, body) = raw(&a, "POST", target, &host, BODY);
        assert_eq!(status, 404, "{target}: {body}");
    }
    assert_eq!(echo.seen.load(Ordering::SeqCst), 0, "nothing was sent upstream");
    let (status, _, body) = raw(&a, "POST", "/v1/messages/count_tokens?beta=true", &host, BODY);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["target"], "/anthropic/v1/messages/count_tokens?beta=true");
}

#[test]
fn a_stalled_request_body_gets_408_and_the_upstream_request_is_abandoned() {
    use std::io::{Read, Write};
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|c| c.client_timeout = Duration::from_secs(1));
    px.wait_ready();
    let mut s = std::net::TcpStream::connect(addr(&px)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(s, "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{}", BODY.len(), &BODY[..1])
        .unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "a 408 after the time-out: {text:?} after {:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(text.contains("--client-timeout"), "{text}");
    let t = Instant::now();
    while px.handle.inflight() != 0 || px.handle.connections() != 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "the request and connection are released");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fx.emu.stats().messages, 0, "the upstream never got the whole request");
}

#[test]
fn slow_or_silent_clients_are_disconnected_after_the_client_timeout() {
    use std::io::{Read, Write};
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|c| c.client_timeout = Duration::from_secs(1));
    px.wait_ready();
    let silent = std::net::TcpStream::connect(addr(&px)).unwrap();
    let mut slow = std::net::TcpStream::connect(addr(&px)).unwrap();
    slow.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n").unwrap();
    // A kept-alive connection that made one request and then says nothing.
    let mut idle = std::net::TcpStream::connect(addr(&px)).unwrap();
    write!(idle, "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{BODY}", BODY.len())
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let t = Instant::now();
    for mut s in [silent, slow, idle] {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(t.elapsed() < Duration::from_secs(10), "closed after the time-out, not {:?}", t.elapsed());
    }
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn connections_over_the_cap_get_a_503_and_a_freed_slot_serves_again() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|c| c.max_connections = 4);
    px.wait_ready();
    assert_eq!(px.handle.max_connections(), 4);
    let a = addr(&px);
    let mut held: Vec<std::net::TcpStream> = (0..4).map(|_| std::net::TcpStream::connect(&a).unwrap()).collect();
    let t = Instant::now();
    while px.handle.connections() < 4 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    let (status, head, body) = raw(&a, "POST", "/v1/messages", &["host: 127.0.0.1".into()], BODY);
    assert_eq!(status, 503, "{head}{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "answered at once, not queued: {:?}", t.elapsed());
    assert!(head.contains("x-should-retry: true") && head.contains("retry-after: 1"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("--max-connections"), "{body}");
    let (status, _, body) = raw(&a, "GET", "/healthz", &["host: 127.0.0.1".into()], "");
    assert_eq!(status, 503, "an overloaded proxy is not ready: {body}");
    assert_eq!(fx.emu.stats().message_requests, 0);
    held.pop();
    let t = Instant::now();
    while px.handle.connections() > 3 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _, body) = raw(&a, "POST", "/v1/messages", &["host: 127.0.0.1".into()], BODY);
    assert_eq!(status, 200, "{body}");
}

#[cfg(unix)]
#[test]
fn a_unix_socket_path_that_is_a_symlink_or_a_file_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new(EmulatorConfig::default());
    let d = fx.dir.path();
    let victim = d.join("victim");
    std::fs::write(&victim, "mine").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bind = |path: &Path| {
        let c = ProxyConfig::new(Listen::Unix(path.to_path_buf()));
        block_on(Proxy::bind(provider(&fx.emu.base_url(), &fx.jwt, d), c)).err().expect("refused")
    };
    std::os::unix::fs::symlink(&victim, d.join("link.sock")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere.sock"), d.join("dangling.sock")).unwrap();
    for p in [d.join("link.sock"), d.join("dangling.sock"), victim.clone()] {
        let err = bind(&p);
        assert!(err.kind == ErrorKind::Config && err.message().contains("not a socket"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644);
    assert!(!d.join("nowhere.sock").exists());
    assert_eq!(private_dirs_left(d), Vec::<String>::new(), "no private directory is left behind");
}

/// The private directories (`.anthropic-wif-*`) a socket bind left in `d`.
fn private_dirs_left(d: &Path) -> Vec<String> {
    let names = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(".anthropic-wif-")).collect()
}

#[cfg(unix)]
#[test]
fn a_stale_socket_is_replaced_a_live_one_is_not_and_the_mode_is_exact() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new(EmulatorConfig::default());
    let d = fx.dir.path();
    let sock = d.join("p.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // a socket nobody listens on
    let mut c = ProxyConfig::new(Listen::Unix(sock.clone()));
    c.socket_mode = 0o660;
    c.log = false;
    let mut px = Running::start(provider(&fx.emu.base_url(), &fx.jwt, d), c);
    assert_eq!(std::fs::symlink_metadata(&sock).unwrap().permissions().mode() & 0o777, 0o660);
    let again =
        block_on(Proxy::bind(provider(&fx.emu.base_url(), &fx.jwt, d), ProxyConfig::new(Listen::Unix(sock.clone()))))
            .err()
            .expect("a live socket is not replaced");
    assert!(again.message().contains("another process is listening"), "{again}");
    assert_eq!(private_dirs_left(d), Vec::<String>::new());
    px.shutdown();
    assert!(!sock.exists());
}

/// One HTTP/1.1 answer read off a kept-alive connection: (status, lower-case head, body).
fn read_answer(r: &mut std::io::BufReader<std::net::TcpStream>) -> (u16, String, String) {
    use std::io::{BufRead, Read};
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("an answer within 20 s") > 0, "connection closed; head so far: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), head, String::from_utf8_lossy(&body).into())
}

#[test]
fn an_answer_made_before_the_body_arrived_keeps_the_connection_usable() {
    // Found by the fault soak: a 503 made while the client was still sending its body closed the
    // connection without saying so, and the client's next request on it failed.
    use std::io::Write;
    let fx = Fixture::new(EmulatorConfig::default());
    fx.emu.push_faults([Fault::status(503).times(1000)]);
    let px = fx.proxy(|_| {});
    let s = std::net::TcpStream::connect(addr(&px)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = std::io::BufReader::new(s);
    let body = message(false).to_string();
    for _ in 0..3 {
        // Headers first, the body a moment later (as http.client and others send them).
        write!(w, "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        w.write_all(body.as_bytes()).unwrap();
        let (status, head, _) = read_answer(&mut r);
        assert_eq!(status, 503, "{head}");
        assert!(!head.contains("connection: close"), "the body was read, the connection stays: {head}");
    }
    // A body too large to read and drop: the answer says the connection closes.
    let big = "x".repeat(200 * 1024);
    let (status, head, _) = raw(
        &addr(&px),
        "POST",
        "/v1/messages",
        &["host: localhost".into(), "content-type: application/json".into()],
        &big,
    );
    assert_eq!(status, 503);
    assert!(head.contains("connection: close"), "{head}");
}

#[test]
fn a_502_after_the_body_went_upstream_says_the_connection_closes() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |_| {});
    px.wait_ready();
    let (status, head, _) =
        raw(&addr(&px), "POST", "/v1/hangup", &["host: localhost".into()], &message(false).to_string());
    assert_eq!(status, 502);
    assert!(head.contains("connection: close"), "{head}");
}

/// A TCP relay to `target` on a fixed loopback port: an upstream that can go away and come back.
struct Relay {
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start(listener: std::net::TcpListener, target: String) -> Relay {
        listener.set_nonblocking(true).unwrap();
        let task = runtime().spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut c, _)) = l.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut u) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                });
            }
        });
        Relay { task }
    }
    /// Stop listening and cut every relayed connection (the JoinSet is dropped with the task).
    fn stop(self) {
        self.task.abort();
        let _ = block_on(self.task);
    }
}

#[test]
fn a_request_waits_out_an_upstream_restart_instead_of_failing() {
    let fx = Fixture::new(EmulatorConfig::default());
    let target = fx.emu.base_url().trim_start_matches("http://").to_string();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let relay = Relay::start(l, target.clone());
    let px = fx.proxy_to(&format!("http://127.0.0.1:{port}"), |_| {});
    px.wait_ready();
    let c = http();
    let url = format!("{}/v1/messages", px.base);
    assert_eq!(block_on(post(&c, &url, &message(false))).0, 200);
    // The upstream goes away (connections cut, nothing listening) and is back 400 ms later.
    relay.stop();
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        Relay::start(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(), target)
    });
    let messages = fx.emu.stats().messages;
    let (status, v) = block_on(post(&c, &url, &message(false)));
    assert_eq!(status, 200, "the request was sent again once upstream was back: {v}");
    assert_eq!(fx.emu.stats().messages, messages + 1, "and arrived once");
    back.join().unwrap().stop();
}

#[test]
fn upstream_silence_is_a_504_and_a_stream_that_stops_is_cut() {
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |c| c.upstream_timeout = Duration::from_secs(1));
    px.wait_ready();
    let c = http();
    let t = Instant::now();
    let r = block_on(c.post(format!("{}/v1/silent", px.base)).js(&message(false)).send()).unwrap();
    assert_eq!(r.status(), 504);
    let id = r.headers()["request-id"].to_str().unwrap().to_string();
    let v: Value = block_on(to_json(r));
    assert_eq!((v["error"]["type"].as_str(), v["request_id"].as_str()), (Some("timeout_error"), Some(id.as_str())));
    assert!(v["error"]["message"].as_str().unwrap().contains("--upstream-timeout"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "answered after {:?}", t.elapsed());

    // A stream whose upstream goes quiet mid-way: the client gets what came, then the stream ends in an error.
    let t = Instant::now();
    let mut r = block_on(c.post(format!("{}/v1/stall", px.base)).js(&message(true)).send()).unwrap();
    assert_eq!(r.status(), 200);
    let first = block_on(r.chunk()).unwrap().expect("the first event");
    assert!(first.starts_with(b"event: ping"));
    let rest =
        block_on(async { tokio::time::timeout(Duration::from_secs(8), r.chunk()).await }).expect("cut, not hung");
    assert!(rest.is_err(), "the stream ends in an error, not as if complete: {rest:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "cut after {:?}", t.elapsed());
}

#[test]
fn request_bodies_over_max_request_bytes_get_413() {
    use std::io::{Read, Write};
    let fx = Fixture::new(EmulatorConfig::default());
    let echo = start_echo(fx.emu.base_url());
    let px = fx.proxy_to(&echo.base, |c| c.max_request_bytes = 1000);
    px.wait_ready();
    let h = ["host: localhost".to_string(), "content-type: application/json".to_string()];
    // Declared too large: answered at once, nothing forwarded.
    let seen = echo.seen.load(Ordering::SeqCst);
    let (status, _, body) = raw(&addr(&px), "POST", "/v1/messages", &h, &"x".repeat(2000));
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("--max-request-bytes"), "{v}");
    assert_eq!(echo.seen.load(Ordering::SeqCst), seen, "nothing went upstream");
    // Within the limit: forwarded.
    assert_eq!(raw(&addr(&px), "POST", "/v1/messages", &h, &"x".repeat(900)).0, 200);
    // Chunked, growing past the limit: the upstream request is abandoned and the client gets 413.
    let mut s = std::net::TcpStream::connect(addr(&px)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = "y".repeat(600);
    let mut req = String::from("POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
}

#[test]
fn metrics_are_behind_the_same_guard_and_carry_no_secret() {
    let fx = Fixture::new(EmulatorConfig::default());
    let px = fx.proxy(|_| {});
    px.wait_ready();
    assert_eq!(block_on(post(&http(), &format!("{}/v1/messages", px.base), &message(false))).0, 200);
    let (status, head, page) = raw(&addr(&px), "GET", "/metrics", &["host: localhost".into()], "");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(page.contains("anthropic_wif_proxy_requests_total{origin=\"upstream\",class=\"2xx\"} 1\n"), "{page}");
    assert!(!page.contains("sk-ant-") && !page.contains("eyJ") && !page.contains(RULE), "{page}");
    // A web page (DNS rebinding, or a cross-origin fetch) cannot read it.
    let (status, _, _) = raw(&addr(&px), "GET", "/metrics", &["host: attacker.example".into()], "");
    assert_eq!(status, 403);
    let (status, _, _) =
        raw(&addr(&px), "GET", "/metrics", &["host: localhost".into(), "origin: https://attacker.example".into()], "");
    assert_eq!(status, 403);
}
