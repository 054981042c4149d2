//! The proxy in process, against the real emulator (and, where the emulator
//! cannot show what arrived upstream, a recording upstream that relays token
//! requests to the emulator), over real loopback sockets.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anthropic_wif_core::config::{Env, Overrides};
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::runtime::{block_on, runtime};
use anthropic_wif_core::{Error, ErrorKind, Face, Provider, ProviderOptions};
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
    let mut o = ProviderOptions::new(Face::Proxy, Env::fixed([("HOME", dir.display().to_string())]));
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
    /// Set when a client of /forever went away.
    disconnected: Arc<AtomicBool>,
}

fn start_echo(emu_base: String) -> Echo {
    let disconnected = Arc::new(AtomicBool::new(false));
    let flag = disconnected.clone();
    let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime().spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            let emu_base = emu_base.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let emu_base = emu_base.clone();
                    let flag = flag.clone();
                    async move { Ok::<_, Infallible>(echo(req, emu_base, flag).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Echo { base, disconnected }
}

async fn echo(req: Request<Incoming>, emu_base: String, flag: Arc<AtomicBool>) -> Response<EchoBody> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if path == "/v1/oauth/token" {
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
    if path == "/forever" {
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
fn identity_failure_is_a_503_that_names_the_source_and_says_do_not_retry() {
    let fx = Fixture::new(EmulatorConfig::default());
    std::fs::remove_file(&fx.jwt).unwrap();
    let px = fx.proxy(|_| {});
    let c = http();
    let r = block_on(c.post(format!("{}/v1/messages", px.base)).js(&message(false)).send()).unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = block_on(to_json(r));
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("[identity]") && msg.contains("identity-token"), "{msg}");
    assert_eq!(fx.emu.stats().token_requests, 0);
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
        let mut r = c.get(format!("{}/forever", px.base)).send().await.unwrap();
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
    assert!(err.message.contains("--allow-remote") && err.message.contains("loopback"), "{err}");
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
        Face::Proxy,
        Env::fixed([("ANTHROPIC_AUTH_TOKEN", "sk-ant-oat01-static"), ("HOME", "/nonexistent")]),
    );
    let p = Provider::new(o).unwrap();
    let err = block_on(Proxy::bind(p, ProxyConfig::new(Listen::parse("127.0.0.1:0").unwrap()))).err().expect("refused");
    assert!(err.message.contains("ANTHROPIC_AUTH_TOKEN") && err.message.contains("federated"), "{err}");
    assert!(!err.message.contains("sk-ant-oat01-static"));
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
