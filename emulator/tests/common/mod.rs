#![allow(dead_code)]

use anthropic_wif_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};
use std::time::Duration;

pub const RULE: &str = "fdrl_01SDCCSbTxrXDpWc1phhtcfK";
pub const ORG: &str = "123e4567-e89b-12d3-a456-426614174000";
pub const BETA: &str = "oauth-2025-04-20,oidc-federation-2026-04-01";

pub fn start() -> Emulator {
    start_with(EmulatorConfig::default())
}

pub fn start_with(c: EmulatorConfig) -> Emulator {
    Emulator::start(c).expect("emulator starts on loopback")
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub fn body_for(jwt: &str) -> Value {
    json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": jwt,
        "federation_rule_id": RULE,
        "organization_id": ORG,
    })
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body read");
    Reply { status, headers, text }
}

pub async fn exchange_raw(c: &reqwest::Client, base: &str, body: &Value) -> Reply {
    send(
        c.post(format!("{base}/v1/oauth/token"))
            .header("content-type", "application/json")
            .header("anthropic-beta", BETA)
            .body(body.to_string()),
    )
    .await
}

pub async fn exchange(c: &reqwest::Client, base: &str, jwt: &str) -> Reply {
    exchange_raw(c, base, &body_for(jwt)).await
}

pub async fn control(c: &reqwest::Client, base: &str, path: &str, body: Value) -> Reply {
    send(c.post(format!("{base}/_emulator/{path}")).body(body.to_string())).await
}

pub async fn jwt(c: &reqwest::Client, base: &str, spec: Value) -> String {
    let r = control(c, base, "jwt", spec).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["jwt"].as_str().expect("jwt").to_owned()
}

pub async fn stats(c: &reqwest::Client, base: &str) -> Value {
    let r = send(c.get(format!("{base}/_emulator/stats"))).await;
    assert_eq!(r.status, 200);
    r.json()
}

pub async fn token(c: &reqwest::Client, base: &str) -> String {
    let j = jwt(c, base, json!({})).await;
    let r = exchange(c, base, &j).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["access_token"].as_str().expect("access_token").to_owned()
}

pub fn message_body(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "Hello"}]})
}

pub fn messages_req(c: &reqwest::Client, base: &str, token: &str) -> reqwest::RequestBuilder {
    c.post(format!("{base}/v1/messages"))
        .header("authorization", format!("Bearer {token}"))
        .header("anthropic-beta", "oauth-2025-04-20")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
}
