//! Refresh under faults (issue 7, item 2), with real processes: a cached token
//! inside the advisory window keeps being handed out while the endpoint is
//! down, without hammering it; past the mandatory window the caller gets the
//! error.

mod common;
use common::*;

use anthropic_wif_emulator::Fault;
use std::path::Path;
use std::time::{Duration, Instant};

/// Move the cached token's expiry to `now + left` (keeping the lifetime
/// bookkeeping consistent, as our own writes do).
fn age_cache(file: &Path, left: i64) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let exp = anthropic_wif_core::now_unix() + left;
    let lifetime = v["expires_in"].as_i64().unwrap_or(600);
    v["expires_at"] = exp.into();
    v["issued_at"] = (exp - lifetime).into();
    std::fs::write(file, v.to_string()).unwrap();
}

fn cached_sandbox() -> (Sandbox, String, std::path::PathBuf) {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    let file = env_cache_file(&sb).expect("a cache file");
    (sb, token, file)
}

#[test]
fn advisory_window_with_the_endpoint_down_serves_the_cached_token_without_hammering() {
    let (sb, token, file) = cached_sandbox();
    age_cache(&file, 100); // inside the 120 s advisory window, outside the 30 s mandatory one
    sb.fresh_jwt_file(); // rotated (a consumed one is never sent: cli/tests/consumed.rs)
    sb.emu.push_faults([Fault::status(503).times(1000)]);
    let before = sb.emu.stats().token_requests;
    let start = Instant::now();
    let mut lines = Vec::new();
    for i in 0..10 {
        let o = sb.run(&["token", "-v"]);
        let (t, exp) = parse_token_json(&o);
        assert_eq!(t, token, "call {i}: the still-valid token");
        assert!(exp - anthropic_wif_core::now_unix() > 30);
        assert_clean("stderr", &stderr(&o), &[&token]);
        lines.push(stderr(&o));
    }
    let attempts = sb.emu.stats().token_requests - before;
    assert!(attempts >= 1, "a refresh was attempted");
    assert!(attempts <= 3, "10 callers within seconds made {attempts} attempts: the endpoint is hammered");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    assert!(lines[0].contains("refresh failed"), "-v says the refresh failed: {}", lines[0]);
    assert!(lines[1..].iter().any(|l| l.contains("backing off")), "-v says it backs off: {lines:?}");
}

#[test]
fn mandatory_window_with_the_endpoint_down_is_an_error() {
    let (sb, token, file) = cached_sandbox();
    age_cache(&file, 20); // inside the mandatory window
    sb.fresh_jwt_file();
    sb.emu.push_faults([Fault::status(503).times(1000)]);
    let o = sb.run(&["token", "-v"]);
    let err = assert_failed(&o, "unavailable", 5, &[&token]);
    assert!(err.contains("HTTP 503"), "{err}");
}

#[test]
fn advisory_refresh_succeeds_once_the_endpoint_is_back() {
    let (sb, token, file) = cached_sandbox();
    age_cache(&file, 100);
    sb.fresh_jwt_file();
    sb.emu.push_faults([Fault::status(503).times(1)]);
    let o = sb.run(&["token"]);
    assert_eq!(parse_token_json(&o).0, token, "served the old token while the endpoint failed");
    // The endpoint recovers; after the back-off a caller refreshes.
    let lock = {
        let mut p = file.clone().into_os_string();
        p.push(".lock");
        std::path::PathBuf::from(p)
    };
    std::fs::write(&lock, "").unwrap(); // forget the back-off (as if 30 s had passed)
    sb.fresh_jwt_file();
    let o = sb.run(&["token"]);
    let (t2, exp2) = parse_token_json(&o);
    assert_ne!(t2, token, "a new token after the endpoint recovered");
    assert!(exp2 - anthropic_wif_core::now_unix() > 500);
}
