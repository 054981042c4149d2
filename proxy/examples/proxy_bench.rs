//! Proxy overhead against direct calls to the emulator, side by side in one run.
//!
//! `bash bench/proxy_bench.sh` (or `cargo run --release -p anthropic-wif-proxy --example proxy_bench`).
//! Everything on loopback, in this process: the emulator (its own thread and
//! runtime), the proxy (the engine's runtime, 2 workers, access log on, to a
//! discarded stderr when run by the script), and a load generator (its own
//! 2-worker runtime). Load is bounded: a fixed number of sequential requests,
//! then a fixed time at 64 connections.
//!
//! - latency: one keep-alive connection, POST /v1/messages (non-streaming),
//!   direct and proxied in alternating blocks; medians and the difference
//!   (target: added median <= 0.5 ms);
//! - throughput: 64 concurrent keep-alive connections for a fixed time each
//!   way, alternating; requests per second and the ratio (target >= 80 %),
//!   for instant non-streaming answers (CPU-bound: on a small machine the
//!   proxy's HTTP work competes with the emulator's and the load generator's)
//!   and for streamed answers paced like the API (I/O-bound).
//!
//! Env: BENCH_LAT_N (default 2000 per side), BENCH_TP_SECS (default 3 per round, 2 rounds).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anthropic_wif_core::config::{Env, Overrides};
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::runtime::{block_on, runtime};
use anthropic_wif_core::{Provider, ProviderOptions};
use anthropic_wif_emulator::{Emulator, EmulatorConfig};
use anthropic_wif_proxy::{Listen, Proxy, ProxyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const BODY: &str = r#"{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}"#;
const STREAM_BODY: &str =
    r#"{"model":"claude-bench","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

type C = Client<HttpConnector, Full<Bytes>>;

fn client() -> C {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(http)
}

#[derive(Clone)]
struct Target {
    url: String,
    /// `Some(bearer)` for direct calls; the proxy adds its own.
    auth: Option<String>,
    body: &'static str,
}

async fn one(c: &C, t: &Target) -> Duration {
    let mut b = Request::post(&t.url).header("content-type", "application/json");
    match &t.auth {
        Some(a) => b = b.header("authorization", a).header("anthropic-beta", "oauth-2025-04-20"),
        None => b = b.header("x-api-key", "placeholder"),
    }
    let req = b.body(Full::new(Bytes::from_static(t.body.as_bytes()))).expect("request");
    let start = Instant::now();
    let resp = c.request(req).await.expect("request succeeds");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(status.is_success(), "status {status}: {}", String::from_utf8_lossy(&body));
    start.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p) as usize]
}

async fn throughput(t: &Target, conns: usize, secs: u64) -> f64 {
    let c = client();
    // Warm the connections.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (c, t) = (c.clone(), t.clone());
        warm.spawn(async move { one(&c, &t).await });
    }
    while warm.join_next().await.is_some() {}
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..conns {
        let (c, t, done, stop) = (c.clone(), t.clone(), done.clone(), stop.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                one(&c, &t).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // As `anthropic-wif proxy` does: a server runtime, one worker per core.
    anthropic_wif_core::runtime::set_worker_threads(2);
    let lat_n: usize = std::env::var("BENCH_LAT_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let tp_secs: u64 = std::env::var("BENCH_TP_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = dir.path().join("identity-token");
    std::fs::write(
        &jwt,
        emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600),
    )
    .expect("jwt");
    let mut o = ProviderOptions::new("proxy", Env::fixed([("HOME", dir.path().display().to_string())]));
    o.disk_cache = false;
    o.overrides = Overrides {
        federation_rule_id: Some("fdrl_01BenchRule000000000000000".into()),
        organization_id: Some("00000000-0000-4000-8000-000000000001".into()),
        base_url: Some(emu.base_url()),
        identity_token: Some(IdentitySpec::File { path: jwt }),
        ..Overrides::default()
    };
    let provider = Provider::new(o).expect("provider");
    let token = block_on(provider.token(false)).expect("token");
    let direct = Target {
        url: format!("{}/v1/messages", emu.base_url()),
        auth: Some(format!("Bearer {}", token.token.expose())),
        body: BODY,
    };

    let mut cfg = ProxyConfig::new(Listen::parse("127.0.0.1:0").expect("listen"));
    cfg.log = std::env::var("BENCH_PROXY_LOG").map(|v| v != "0").unwrap_or(true);
    let proxy = block_on(Proxy::bind(provider, cfg)).expect("proxy");
    let proxied =
        Target { url: format!("{}/v1/messages", proxy.bound().base_url().expect("tcp")), auth: None, body: BODY };
    let handle = proxy.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = runtime().spawn(proxy.run(async {
        let _ = rx.await;
    }));
    while !handle.ready() {
        std::thread::sleep(Duration::from_millis(10));
    }

    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut d_lat, mut p_lat) = (Vec::with_capacity(lat_n), Vec::with_capacity(lat_n));
    load.block_on(async {
        let c = client();
        for _ in 0..200 {
            one(&c, &direct).await;
            one(&c, &proxied).await;
        }
        let block = 100;
        while d_lat.len() < lat_n {
            for _ in 0..block.min(lat_n - d_lat.len()) {
                d_lat.push(one(&c, &direct).await);
            }
            for _ in 0..block.min(lat_n - p_lat.len()) {
                p_lat.push(one(&c, &proxied).await);
            }
        }
    });
    let (dm, pm) = (median(&mut d_lat), median(&mut p_lat));
    let (mut d_tp, mut p_tp) = (0.0, 0.0);
    load.block_on(async {
        for _ in 0..2 {
            d_tp += throughput(&direct, 64, tp_secs).await / 2.0;
            p_tp += throughput(&proxied, 64, tp_secs).await / 2.0;
        }
    });
    // Streamed responses paced like an API (the emulator's default 20 ms between
    // events, ~0.2 s a request): is the proxy ever the bottleneck at 64 connections?
    let (sd, sp) = (Target { body: STREAM_BODY, ..direct.clone() }, Target { body: STREAM_BODY, ..proxied.clone() });
    let (mut d_stp, mut p_stp) = (0.0, 0.0);
    load.block_on(async {
        for _ in 0..2 {
            d_stp += throughput(&sd, 64, tp_secs).await / 2.0;
            p_stp += throughput(&sp, 64, tp_secs).await / 2.0;
        }
    });
    let exchanges = emu.stats().exchanges;
    let _ = tx.send(());
    let _ = block_on(running);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let added = ms(pm) - ms(dm);
    let ratio = p_tp / d_tp;
    println!("proxy bench: POST /v1/messages (non-streaming) to the in-process emulator on loopback");
    println!("{:<34} {:>12} {:>12} {:>12}", "", "direct", "via proxy", "difference");
    println!(
        "{:<34} {:>9.3} ms {:>9.3} ms {:>+9.3} ms",
        format!("latency median (n={lat_n} each)"),
        ms(dm),
        ms(pm),
        added
    );
    println!(
        "{:<34} {:>9.3} ms {:>9.3} ms {:>+9.3} ms",
        "latency p90",
        ms(pct(&d_lat, 0.9)),
        ms(pct(&p_lat, 0.9)),
        ms(pct(&p_lat, 0.9)) - ms(pct(&d_lat, 0.9))
    );
    println!(
        "{:<34} {:>8.0} r/s {:>8.0} r/s {:>11.1} %",
        format!("throughput, 64 connections ({}x{tp_secs} s)", 2),
        d_tp,
        p_tp,
        ratio * 100.0
    );
    println!(
        "{:<34} {:>8.0} r/s {:>8.0} r/s {:>11.1} %",
        "  same, streamed (SSE, paced 20 ms)",
        d_stp,
        p_stp,
        p_stp / d_stp * 100.0
    );
    println!("exchanges during the run: {exchanges}");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("targets: added median <= 0.5 ms: {}", met(added <= 0.5));
    println!(
        "         throughput >= 80 % of direct: instant answers {} ({:.0} %; CPU-bound, all three parties share {cpus} CPUs), \
         paced streams {} ({:.0} %)",
        met(ratio >= 0.8),
        ratio * 100.0,
        met(p_stp / d_stp >= 0.8),
        p_stp / d_stp * 100.0
    );
}
