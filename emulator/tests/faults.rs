//! Every injected fault kind, over real loopback sockets.

mod common;

use anthropic_wif_emulator::{Fault, FaultKind};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

async fn push(c: &reqwest::Client, base: &str, faults: serde_json::Value) {
    let r = control(c, base, "faults", json!({ "faults": faults })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn status_with_count_body_and_headers() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"status","status":503,"count":2,"headers":{"x-fault":"yes"}}])).await;
    let j = emu.mint_jwt("s", "a", 600);
    for _ in 0..2 {
        let r = exchange(&c, &base, &j).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-fault").as_deref(), Some("yes"));
        assert_eq!(r.json()["type"], "error");
        assert!(r.header("request-id").expect("rid").starts_with("req_"));
    }
    // The faulted requests did not consume the JWT.
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
    push(
        &c,
        &base,
        json!([{"kind":"status","status":400,"body":{"error":"invalid_grant","error_description":"nope"}},
                           {"kind":"status","status":500,"body":"plain text"}]),
    )
    .await;
    let r = exchange(&c, &base, &j).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_grant")));
    let r = exchange(&c, &base, &j).await;
    assert_eq!((r.status, r.text.as_str()), (500, "plain text"));
    let s = emu.stats();
    assert_eq!((s.faults_served, s.faults_pending, s.token_requests), (4, 0, 5));
}

#[tokio::test]
async fn retry_after() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"retry_after","seconds":1}])).await;
    let r = exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"delay","ms":300}])).await;
    let t = Instant::now();
    let r = exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_until_client_gives_up() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"hang"}])).await;
    let j = emu.mint_jwt("s", "a", 600);
    let err = c
        .post(format!("{base}/v1/oauth/token"))
        .header("content-type", "application/json")
        .header("anthropic-beta", BETA)
        .body(body_for(&j).to_string())
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    // The request was read and recorded, and the server keeps serving.
    assert_eq!(emu.requests().len(), 1);
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
}

#[tokio::test]
async fn hang_with_limit_closes_without_answer() {
    let emu = start();
    let c = client();
    emu.push_faults([Fault::new(FaultKind::Hang { ms: Some(100) })]);
    let err = c
        .post(format!("{}/v1/oauth/token", emu.base_url()))
        .body("{}")
        .send()
        .await
        .expect_err("closed without an answer");
    assert!(!err.is_timeout(), "{err}");
}

#[tokio::test]
async fn reset_mid_body() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"reset"}])).await;
    let r = c
        .post(format!("{base}/v1/oauth/token"))
        .header("anthropic-beta", BETA)
        .body(body_for(&emu.mint_jwt("s", "a", 600)).to_string())
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "the body must break off");
    assert_eq!(send(c.get(format!("{base}/_emulator/health"))).await.status, 200);
}

#[tokio::test]
async fn non_json_oversized_raw() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([
        {"kind":"non_json"},
        {"kind":"oversized"},
        {"kind":"raw","status":200,"body":"{\"access_token\":\"sk-ant-oat01-x\",\"token_type\":\"mac\",\"expires_in\":\"600\"}"},
        {"kind":"raw","body":"{\"expires_in\":-1.5}","headers":{"content-type":"application/x-custom"}}
    ])).await;
    let j = emu.mint_jwt("s", "a", 600);
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").expect("ct").starts_with("text/html"));
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text.len(), 1024 * 1024 + 1);
    assert!(r.text.starts_with("{\"access_token\":"));
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.text, "{\"access_token\":\"sk-ant-oat01-x\",\"token_type\":\"mac\",\"expires_in\":\"600\"}");
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.text, "{\"expires_in\":-1.5}");
    assert_eq!(r.header("content-type").as_deref(), Some("application/x-custom"));
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
}

#[tokio::test]
async fn redirect_and_who_follows_it() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(
        &c,
        &base,
        json!([{"kind":"redirect"}, {"kind":"redirect","status":302,"location":"https://elsewhere.invalid/steal"}]),
    )
    .await;
    let j = emu.mint_jwt("s", "a", 600);
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some(format!("{base}/_emulator/redirect-target")));
    let r = exchange(&c, &base, &j).await;
    assert_eq!((r.status, r.header("location").as_deref()), (302, Some("https://elsewhere.invalid/steal")));
    assert_eq!(emu.stats().redirects_followed, 0);
    // A client that follows redirects is caught.
    emu.push_faults([Fault::redirect(None)]);
    let follower = reqwest::Client::builder().build().expect("client");
    let r = send(
        follower.post(format!("{base}/v1/oauth/token")).header("anthropic-beta", BETA).body(body_for(&j).to_string()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(emu.stats().redirects_followed, 1);
}

#[tokio::test]
async fn echo_leaks_the_assertion() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    push(&c, &base, json!([{"kind":"echo"}, {"kind":"echo","shape":"anthropic","status":401}])).await;
    let j = emu.mint_jwt("s", "a", 600);
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"], "invalid_request");
    assert!(v["error_description"].as_str().expect("desc").contains(&j));
    assert!(v["error_uri"].as_str().expect("uri").contains(&j));
    let r = exchange(&c, &base, &j).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains(&j));
}

#[tokio::test]
async fn messages_faults_and_rust_api() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    emu.push_faults_json(&json!({"faults":[{"kind":"status","status":529,"endpoint":"messages"}]})).expect("ok");
    let r = send(messages_req(&c, &base, &t).body(message_body(false).to_string())).await;
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    assert_eq!(send(messages_req(&c, &base, &t).body(message_body(false).to_string())).await.status, 200);
    // Token faults are not consumed by messages requests and vice versa.
    emu.push_faults([Fault::status(502).times(3)]);
    assert_eq!(send(messages_req(&c, &base, &t).body(message_body(false).to_string())).await.status, 200);
    assert_eq!(emu.stats().faults_pending, 3);
    assert!(emu.push_faults_json(&json!([{"kind":"hang","count":0}])).is_err());
}

#[tokio::test]
async fn delete_clears_pending_faults_and_keeps_tokens() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let live = token(&c, &base).await;
    push(&c, &base, json!([{"kind":"status","status":503,"count":1000,"endpoint":"token"}])).await;
    assert_eq!(exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await.status, 503);
    let r = send(c.delete(format!("{base}/_emulator/faults"))).await;
    assert_eq!((r.status, r.json()["cleared"].as_u64()), (200, Some(1)));
    assert_eq!(exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await.status, 200);
    assert!(emu.is_token_valid(&live), "tokens minted before survive");
    assert_eq!(send(c.get(format!("{base}/_emulator/faults"))).await.status, 405);
}
