//! The fault matrix (issue 7, item 1) for the CLI face: every case of
//! `tests/fault-matrix.json` against a real emulator on loopback and a real
//! `anthropic-wif token -vv` process. For each case: the outcome (a token
//! after retries, or the documented error kind and exit code), the time
//! bound, the number of requests the endpoint saw, and no secret in stdout
//! or stderr at the most verbose level. The same table drives (or is meant to
//! drive) the Python and Node suites; see docs/hardening-matrix.md.

mod common;
use common::*;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const MATRIX: &str = include_str!("../../tests/fault-matrix.json");

fn matrix() -> Value {
    serde_json::from_str(MATRIX).expect("tests/fault-matrix.json is JSON")
}

/// A server that answers with headers promising a body, then sends one byte
/// every 400 ms and never finishes (a slow-loris body).
fn slow_loris_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\nrequest-id: req_slowloris\r\n\r\n{\"access_token\":\"";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..300 {
                    std::thread::sleep(Duration::from_millis(400));
                    if conn.write_all(b"a").and_then(|_| conn.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{}", addr.port())
}

fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

/// Run one case; `Err` describes every way it differed from the table.
fn run_case(case: &Value, kinds: &Value) -> Result<String, String> {
    let name = case["name"].as_str().unwrap();
    let mut sb = Sandbox::new();
    let jwt_file = sb.federation_env();
    let jwt = read_secret_file(&jwt_file);
    match case["setup"].as_str() {
        Some("connection_refused") => {
            sb.env.insert("ANTHROPIC_BASE_URL".into(), closed_port_url());
        }
        Some("slow_loris") => {
            sb.env.insert("ANTHROPIC_BASE_URL".into(), slow_loris_server());
        }
        Some(other) => return Err(format!("unknown setup {other}")),
        None => {}
    }
    if let Some(faults) = case.get("faults") {
        let text = faults.to_string().replace("@JWT@", &jwt).replace("@OVERSIZED@", &"x".repeat(1024 * 1024 + 1));
        let faults: Value = serde_json::from_str(&text).unwrap();
        sb.emu.push_faults_json(&serde_json::json!({ "faults": faults })).map_err(|e| format!("faults: {e}"))?;
    }

    let (o, took) = run_timed(&mut sb.command(&["token", "-vv"]));
    let mut problems = Vec::new();
    let err = stderr(&o);
    let expect = &case["expect"];
    let secs = took.as_secs_f64();
    if let Some(max) = case["max_seconds"].as_f64() {
        if secs > max {
            problems.push(format!("took {secs:.1} s > {max} s"));
        }
    }
    if let Some(min) = case["min_seconds"].as_f64() {
        if secs < min {
            problems.push(format!("took {secs:.1} s < {min} s"));
        }
    }
    // Never a secret on stderr (-vv is the most verbose level), whatever the outcome.
    let mut secrets: Vec<&str> = vec![&jwt];
    if o.status.success() {
        if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
            if let Some(t) = v["access_token"].as_str() {
                secrets.push(Box::leak(t.to_string().into_boxed_str()));
            }
        }
    }
    for s in &secrets {
        if err.contains(s) {
            problems.push("a secret is on stderr".into());
        }
    }
    for pat in ["sk-ant-oat01-", "eyJ", "SMUGGLEDSECRET", "ECHOEDTOKEN"] {
        if err.contains(pat) {
            problems.push(format!("{pat} is on stderr"));
        }
    }
    match expect["outcome"].as_str() {
        Some("token") => {
            if !o.status.success() {
                problems.push(format!("expected a token, got exit {:?}: {err}", o.status.code()));
            } else {
                let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| format!("stdout not JSON: {e}"))?;
                let now = anthropic_wif_core::now_unix();
                let exp = v["expires_at"].as_i64().unwrap_or(0);
                let want = expect["expires_in"].as_i64().unwrap_or(600);
                if !(now + want - 10..=now + want + 2).contains(&exp) {
                    problems.push(format!("expires_at {exp} is not now + {want}"));
                }
            }
        }
        Some("error") => {
            let kind = expect["kind"].as_str().unwrap();
            let code = kinds[kind].as_i64().unwrap() as i32;
            if o.status.code() != Some(code) {
                problems.push(format!("exit {:?}, expected {code} ({kind}): {err}", o.status.code()));
            }
            if !o.stdout.is_empty() {
                problems.push(format!("stdout not empty: {}", stdout(&o)));
            }
            if !err.contains(&format!("error [{kind}]")) {
                problems.push(format!("stderr does not name the kind {kind}: {err}"));
            }
            if let Some(status) = expect["status"].as_u64() {
                if !err.contains(&format!("HTTP {status}")) {
                    problems.push(format!("stderr does not give HTTP {status}: {err}"));
                }
            }
            for c in expect["contains"].as_array().into_iter().flatten() {
                let c = c.as_str().unwrap();
                if !err.to_lowercase().contains(&c.to_lowercase()) {
                    problems.push(format!("stderr lacks {c:?}: {err}"));
                }
            }
            if err.matches("error [").count() != 1 {
                problems.push(format!("one error line expected: {err}"));
            }
        }
        other => return Err(format!("bad outcome {other:?}")),
    }
    let stats = sb.emu.stats();
    if let Some(n) = case["token_requests"].as_u64() {
        if stats.token_requests != n {
            problems.push(format!("the endpoint saw {} token requests, expected {n}", stats.token_requests));
        }
    }
    if let Some(n) = case["redirects_followed"].as_u64() {
        if stats.redirects_followed != n {
            problems.push(format!("{} redirects were followed", stats.redirects_followed));
        }
    }
    // Nothing outside the cache dir holds a token or the JWT; a failed
    // exchange leaves no cache file at all.
    for (p, bytes) in files_under(sb.dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        let is_cache = p.starts_with(sb.path("cache/anthropic-wif"));
        if p == jwt_file {
            continue;
        }
        if text.contains(&jwt) || (!is_cache && text.contains("sk-ant-oat01-")) {
            problems.push(format!("{} holds a secret", p.display()));
        }
        if is_cache && !o.status.success() && p.extension().is_some_and(|e| e == "json") {
            problems.push(format!("a failed exchange left a cache file {}", p.display()));
        }
    }
    if problems.is_empty() {
        Ok(format!("{name}: ok in {secs:.1} s"))
    } else {
        Err(format!("{name} ({secs:.1} s):\n  - {}", problems.join("\n  - ")))
    }
}

#[test]
fn fault_matrix() {
    let m = matrix();
    let cases = m["cases"].as_array().unwrap().clone();
    let kinds = m["kinds"].clone();
    let only = std::env::var("FAULT_CASE").ok();
    let cases: Vec<Value> =
        cases.into_iter().filter(|c| only.as_deref().is_none_or(|o| c["name"].as_str() == Some(o))).collect();
    assert!(!cases.is_empty());
    // The slow cases first, so they overlap with the rest; 8 at a time.
    let mut cases = cases;
    cases.sort_by_key(|c| -(c["max_seconds"].as_f64().unwrap_or(0.0) as i64));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { return };
                let r = run_case(case, &kinds);
                results.lock().unwrap().push(r);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for r in results.iter().flatten() {
        eprintln!("{r}");
    }
    assert!(
        failed.is_empty(),
        "{} of {} fault cases failed:\n{}",
        failed.len(),
        results.len(),
        failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}
