//! SSE latency through a proxy: `bench/proxy_vs.sh`'s stream client.
//!
//! `bench_sse --url URL/v1/messages --streams 16 --rounds 5 [--auth]` opens
//! `--streams` concurrent streamed Messages requests, `--rounds` times, on one
//! thread, and prints one JSON line: time to the first event (from sending the
//! request) and the gap between consecutive events, p50/p99 in milliseconds,
//! with the counts of events and of failed streams. `--auth` sends the bearer
//! and beta flag itself (direct calls); through a proxy, it sends neither.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const STREAM_BODY: &str =
    r#"{"model":"claude-bench","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

type C = Client<HttpConnector, Full<Bytes>>;

/// One stream: (time to first event, gaps between events) or None on failure.
async fn one(c: &C, url: &str, auth: bool) -> Option<(f64, Vec<f64>)> {
    let mut b = Request::post(url).header("content-type", "application/json").header("anthropic-version", "2023-06-01");
    if auth {
        b = b.header("authorization", "Bearer sk-ant-oat01-bench-direct").header("anthropic-beta", "oauth-2025-04-20");
    }
    let start = Instant::now();
    let resp = c.request(b.body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes()))).ok()?).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let mut body = resp.into_body();
    let (mut first, mut last, mut gaps, mut pending) = (None, None::<Instant>, Vec::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        let Some(d) = frame.data_ref() else { continue };
        let now = Instant::now();
        pending.extend_from_slice(d);
        // Each complete event ("\n\n") counts at the moment its end arrived.
        while let Some(i) = pending.windows(2).position(|w| w == b"\n\n") {
            pending.drain(..i + 2);
            match last {
                None => first = Some(now.duration_since(start).as_secs_f64() * 1000.0),
                Some(l) => gaps.push(now.duration_since(l).as_secs_f64() * 1000.0),
            }
            last = Some(now);
        }
    }
    Some((first?, gaps))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url").expect("--url");
    let streams: usize = arg(&args, "--streams").and_then(|v| v.parse().ok()).unwrap_or(16);
    let rounds: usize = arg(&args, "--rounds").and_then(|v| v.parse().ok()).unwrap_or(5);
    let auth = args.iter().any(|a| a == "--auth");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (mut ttfe, mut gaps, mut failed) = (Vec::new(), Vec::new(), 0usize);
    rt.block_on(async {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let c: C = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(http);
        // One warm-up stream (connections, a token).
        let _ = one(&c, &url, auth).await;
        for _ in 0..rounds {
            let tasks: Vec<_> = (0..streams)
                .map(|_| {
                    let (c, url) = (c.clone(), url.clone());
                    tokio::spawn(async move { one(&c, &url, auth).await })
                })
                .collect();
            for t in tasks {
                match t.await.ok().flatten() {
                    Some((f, g)) => {
                        ttfe.push(f);
                        gaps.extend(g);
                    }
                    None => failed += 1,
                }
            }
        }
    });
    let events = ttfe.len() + gaps.len();
    println!(
        "{{\"ttfe_p50_ms\":{:.3},\"ttfe_p99_ms\":{:.3},\"gap_p50_ms\":{:.3},\"gap_p99_ms\":{:.3},\"events\":{events},\"failed\":{failed}}}",
        pct(&mut ttfe, 0.5),
        pct(&mut ttfe, 0.99),
        pct(&mut gaps, 0.5),
        pct(&mut gaps, 0.99)
    );
}
