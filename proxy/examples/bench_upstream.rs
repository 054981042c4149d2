//! A minimal, fast stand-in for the Messages API: the common upstream of
//! `bench/proxy_vs.sh`, so that the proxies, not the upstream, are measured.
//!
//! `bench_upstream --token-base URL [--listen 127.0.0.1:0] [--stream-events 10] [--stream-delay-ms 20]`
//! prints `{"base_url":"http://127.0.0.1:PORT"}` and serves until killed, on one thread:
//!
//! - `POST /v1/messages`: 401 unless `authorization` is `Bearer sk-ant-oat01-…`,
//!   `anthropic-beta` includes `oauth-2025-04-20` and there is no `x-api-key`
//!   (what every contender must inject or strip); then the same ~350-byte
//!   `message` the emulator answers, or, for `"stream":true`, an SSE stream of
//!   `--stream-events` events `--stream-delay-ms` apart.
//! - `POST /v1/oauth/token`: relayed to `--token-base` (the emulator), so a
//!   proxy that exchanges tokens against this base URL gets real ones.
//!
//! It does not check that a token is live (the emulator does; this one stays
//! out of the way), and the body is read whole before answering.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

const REPLY: &str = r#"{"id":"msg_bench0000000000000000000000","type":"message","role":"assistant","model":"claude-bench","content":[{"type":"text","text":"Hello! This is the anthropic-wif emulator answering in place of Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;

enum Out {
    Full(Option<Bytes>),
    Events { left: usize, delay: Duration, sleep: Option<Pin<Box<tokio::time::Sleep>>> },
    Relay(Incoming),
}

impl Body for Out {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Out::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Out::Relay(b) => Pin::new(b).poll_frame(cx),
            Out::Events { left, delay, sleep } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                if let Some(s) = sleep {
                    if s.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                *left -= 1;
                *sleep = Some(Box::pin(tokio::time::sleep(*delay)));
                let ev = if *left == 0 {
                    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
                } else {
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello \"}}\n\n"
                };
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(ev.as_bytes())))))
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            Out::Full(b) => b.is_none(),
            Out::Events { left, .. } => *left == 0,
            Out::Relay(b) => b.is_end_stream(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            Out::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Out::Full(None) => SizeHint::with_exact(0),
            Out::Relay(b) => b.size_hint(),
            Out::Events { .. } => SizeHint::default(),
        }
    }
}

fn status(code: u16, msg: &str) -> Response<Out> {
    let body = format!(r#"{{"type":"error","error":{{"type":"authentication_error","message":"{msg}"}}}}"#);
    let mut r = Response::new(Out::Full(Some(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

struct Settings {
    token_base: String,
    events: usize,
    delay: Duration,
    client: Client<HttpConnector, Incoming>,
}

async fn serve(s: &'static Settings, req: Request<Incoming>) -> Response<Out> {
    if req.uri().path() == "/v1/oauth/token" {
        let (mut parts, body) = req.into_parts();
        parts.uri = match format!("{}/v1/oauth/token", s.token_base).parse() {
            Ok(u) => u,
            Err(_) => return status(500, "bad --token-base"),
        };
        parts.headers.remove(hyper::header::HOST);
        return match s.client.request(Request::from_parts(parts, body)).await {
            Ok(r) => r.map(Out::Relay),
            Err(_) => status(502, "token endpoint unreachable"),
        };
    }
    if req.uri().path() != "/v1/messages" {
        return status(404, "not found");
    }
    let h = req.headers();
    let bearer =
        h.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer sk-ant-oat01-"));
    let beta = h
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "oauth-2025-04-20"));
    if !bearer || !beta || h.contains_key("x-api-key") {
        return status(401, "missing bearer token or beta flag, or an x-api-key");
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400, "broken body"),
    };
    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
    let mut r = if stream {
        let mut r = Response::new(Out::Events { left: s.events, delay: s.delay, sleep: None });
        r.headers_mut().insert("content-type", "text/event-stream; charset=utf-8".parse().unwrap());
        r
    } else {
        let mut r = Response::new(Out::Full(Some(Bytes::from_static(REPLY.as_bytes()))));
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        r
    };
    r.headers_mut().insert("request-id", "req_bench0000000000000000".parse().unwrap());
    r
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let token_base = arg(&args, "--token-base").unwrap_or_else(|| "http://127.0.0.1:9".into());
    let events = arg(&args, "--stream-events").and_then(|v| v.parse().ok()).unwrap_or(10);
    let delay = Duration::from_millis(arg(&args, "--stream-delay-ms").and_then(|v| v.parse().ok()).unwrap_or(20));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let settings: &'static Settings = Box::leak(Box::new(Settings {
            token_base: token_base.trim_end_matches('/').into(),
            events,
            delay,
            client,
        }));
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("{{\"base_url\":\"http://{}\"}}", listener.local_addr().expect("address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(
                        move |req| async move { Ok::<_, Infallible>(serve(settings, req).await) },
                    );
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
}
