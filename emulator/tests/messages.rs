//! The Messages API, control endpoints and the process entry point.

mod common;

use anthropic_wif_emulator::EmulatorConfig;
use common::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::Duration;

#[tokio::test]
async fn message_auth_rules() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    let body = message_body(false).to_string();
    let url = format!("{base}/v1/messages");

    let r = send(messages_req(&c, &base, &t).body(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("request-id").expect("rid").starts_with("req_"));
    let v = r.json();
    assert!(v["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(!v["content"][0]["text"].as_str().expect("text").is_empty());
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().expect("in") > 0);
    assert!(v["usage"]["output_tokens"].as_u64().expect("out") > 0);

    let unauthorized = |r: Reply, want: &str| {
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.json()["type"], "error");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        assert!(r.message().contains(want), "{} lacks {want}", r.message());
    };
    unauthorized(
        send(c.post(&url).header("anthropic-beta", "oauth-2025-04-20").body(body.clone())).await,
        "Authorization",
    );
    unauthorized(send(messages_req(&c, &base, "sk-ant-oat01-forged").body(body.clone())).await, "invalid bearer token");
    unauthorized(
        send(messages_req(&c, &base, &t).header("x-api-key", "sk-ant-api03-x").body(body.clone())).await,
        "x-api-key",
    );
    unauthorized(
        send(
            c.post(&url)
                .header("authorization", format!("Bearer {t}"))
                .header("anthropic-beta", "oauth-2025-04-2,files-api-2025-04-14")
                .body(body.clone()),
        )
        .await,
        "OAuth authentication is currently not supported.",
    );
    // The oauth flag anywhere in a list is fine.
    let r = send(
        c.post(&url)
            .header("authorization", format!("Bearer {t}"))
            .header("anthropic-beta", "files-api-2025-04-14, oauth-2025-04-20")
            .body(body.clone()),
    )
    .await;
    assert_eq!(r.status, 200);

    // Request validation.
    for (b, want) in [
        (json!({"max_tokens": 5, "messages": [{"role":"user","content":"x"}]}), "model: Field required"),
        (json!({"model": "m", "messages": [{"role":"user","content":"x"}]}), "max_tokens: Field required"),
        (json!({"model": "m", "max_tokens": 5}), "messages: Field required"),
    ] {
        let r = send(messages_req(&c, &base, &t).body(b.to_string())).await;
        assert_eq!((r.status, r.message().as_str()), (400, want));
    }
    assert_eq!(send(messages_req(&c, &base, &t).body("nope")).await.status, 400);

    // Revocation over HTTP.
    let r = control(&c, &base, "revoke", json!({})).await;
    assert_eq!(r.json()["revoked"], 1);
    unauthorized(send(messages_req(&c, &base, &t).body(body.clone())).await, "invalid bearer token");

    let s = stats(&c, &base).await;
    assert_eq!(s["messages"], 2);
    assert_eq!(s["message_requests"], 11);
    assert_eq!(s["messages_unauthorized"], 5);
    assert_eq!(s["active_tokens"], 0);
}

#[tokio::test]
async fn api_errors_have_the_api_shape_and_requests_are_recorded() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    let body = message_body(false).to_string();
    // The API's error shape: type, error {type, message}, request_id equal to the header.
    let check = |r: &Reply, status: u16, message: &str| {
        assert_eq!(r.status, status, "{}", r.text);
        let rid = r.header("request-id").expect("request-id header");
        let want = json!({"type": "error", "error": {"type": if status == 401 { "authentication_error" } else { "not_found_error" },
                          "message": message}, "request_id": rid});
        assert_eq!(r.json(), want);
    };
    // No beta flag: what Claude Code gets with ANTHROPIC_AUTH_TOKEN.
    let no_beta = send(
        c.post(format!("{base}/v1/messages?beta=true"))
            .header("authorization", format!("Bearer {t}"))
            .header("anthropic-beta", "claude-code-20250219")
            .header("user-agent", "claude-cli/test")
            .body(body.clone()),
    )
    .await;
    check(&no_beta, 401, "OAuth authentication is currently not supported.");
    // The token as x-api-key next to the bearer: what Claude Code's apiKeyHelper sends.
    let api_key = send(messages_req(&c, &base, &t).header("x-api-key", t.as_str()).body(body.clone())).await;
    check(&api_key, 401, "invalid x-api-key");
    check(&send(c.get(format!("{base}/v1/models"))).await, 404, "no such endpoint: GET /v1/models");
    // An injected fault with its own body is served exactly as given.
    control(
        &c,
        &base,
        "faults",
        json!({"faults": [{"kind": "status", "status": 401, "endpoint": "messages",
                                                     "body": {"type": "error"}}]}),
    )
    .await;
    assert_eq!(send(messages_req(&c, &base, &t).body(body.clone())).await.json(), json!({"type": "error"}));
    assert_eq!(send(messages_req(&c, &base, &t).body(body.clone())).await.status, 200);

    // Every API request is recorded with its headers and status; token and control requests are not.
    let recorded = emu.api_requests();
    let summary: Vec<(&str, &str, Option<u16>)> =
        recorded.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.status)).collect();
    assert_eq!(
        summary,
        [
            ("POST", "/v1/messages?beta=true", Some(401)),
            ("POST", "/v1/messages", Some(401)),
            ("GET", "/v1/models", Some(404)),
            ("POST", "/v1/messages", Some(401)),
            ("POST", "/v1/messages", Some(200)),
        ]
    );
    assert_eq!(recorded[0].header("User-Agent"), Some("claude-cli/test"));
    assert_eq!(recorded[0].header("anthropic-beta"), Some("claude-code-20250219"));
    assert_eq!(recorded[1].header("x-api-key"), Some(t.as_str()));
    let over_http = send(c.get(format!("{base}/_emulator/api-requests"))).await.json();
    assert_eq!(over_http.as_array().expect("array").len(), 5);
    assert_eq!(over_http[0]["path"], "/v1/messages?beta=true");
    assert_eq!(over_http[0]["status"], 401);
    assert_eq!(over_http[0]["headers"]["user-agent"], "claude-cli/test");
    assert!(over_http[0]["received_at"].as_f64().expect("received_at") > 1.0e9);
    assert_eq!(emu.requests().len(), 1, "the token endpoint's list holds the one exchange");
    control(&c, &base, "reset", json!({})).await;
    assert_eq!(send(c.get(format!("{base}/_emulator/api-requests"))).await.json(), json!([]));
}

#[tokio::test]
async fn expired_token_is_refused() {
    let emu = start_with(EmulatorConfig { token_lifetime: 1, ..Default::default() });
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = send(messages_req(&c, &base, &t).body(message_body(false).to_string())).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("expired"), "{}", r.message());
    assert!(!emu.is_token_valid(&t));
}

#[tokio::test]
async fn streaming_arrives_in_separate_chunks() {
    let emu = start_with(EmulatorConfig { stream_delay_ms: 40, stream_deltas: 4, ..Default::default() });
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    let mut r = messages_req(&c, &base, &t).body(message_body(true).to_string()).send().await.expect("sent");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let mut chunks = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        chunks.push(String::from_utf8(chunk.to_vec()).expect("utf8"));
    }
    assert!(chunks.len() >= 5, "expected separately flushed events, got {} chunks", chunks.len());
    let all = chunks.concat();
    let mut names = Vec::new();
    let mut text = String::new();
    for event in all.split("\n\n").filter(|e| !e.is_empty()) {
        let mut lines = event.lines();
        let name = lines.next().and_then(|l| l.strip_prefix("event: ")).expect("event line");
        let data: Value = serde_json::from_str(lines.next().and_then(|l| l.strip_prefix("data: ")).expect("data"))
            .expect("data is JSON");
        assert_eq!(data["type"], name);
        if name == "content_block_delta" {
            text.push_str(data["delta"]["text"].as_str().expect("delta text"));
        }
        names.push(name.to_owned());
    }
    let deltas = names.iter().filter(|n| *n == "content_block_delta").count();
    assert_eq!(deltas, 4);
    let expected: Vec<&str> = ["message_start", "content_block_start", "ping"]
        .into_iter()
        .chain(std::iter::repeat_n("content_block_delta", 4))
        .chain(["content_block_stop", "message_delta", "message_stop"])
        .collect();
    assert_eq!(names, expected);
    assert!(text.contains("emulator"), "{text}");
    assert_eq!(emu.stats().messages, 1);

    // Deltas are configurable at run time.
    let r = control(&c, &base, "config", json!({"stream_deltas": 7, "stream_delay_ms": 0})).await;
    assert_eq!(r.status, 200);
    let r = send(messages_req(&c, &base, &t).body(message_body(true).to_string())).await;
    assert_eq!(r.text.matches("event: content_block_delta").count(), 7);
}

#[tokio::test]
async fn reset_clears_everything() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    let j = emu.mint_jwt("s", "a", 600);
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
    control(&c, &base, "faults", json!({"faults": [{"kind": "status", "status": 500}]})).await;
    control(&c, &base, "config", json!({"token_lifetime": 77})).await;
    let r = control(&c, &base, "reset", json!({})).await;
    assert_eq!(r.status, 200);
    let s = stats(&c, &base).await;
    for k in ["exchanges", "token_requests", "messages", "faults_pending", "active_tokens", "denied"] {
        assert_eq!(s[k], 0, "{k} after reset: {s}");
    }
    assert_eq!(send(c.get(format!("{base}/_emulator/requests"))).await.json(), json!([]));
    assert_eq!(send(c.get(format!("{base}/_emulator/config"))).await.json()["token_lifetime"], 600);
    // Minted tokens are gone; seen jtis are forgotten.
    assert_eq!(send(messages_req(&c, &base, &t).body(message_body(false).to_string())).await.status, 401);
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
}

#[tokio::test]
async fn jwt_endpoint_claims() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let r = control(&c, &base, "jwt", json!({"sub": "me", "aud": "aud1", "ttl": 120, "claims": {"repository": "x/y"}}))
        .await;
    let v = r.json();
    let claims = &v["claims"];
    assert_eq!(claims["iss"], "https://emulator.anthropic-wif.invalid");
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("me"), Some("aud1")));
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 120);
    assert_eq!(claims["repository"], "x/y");
    let jwt = v["jwt"].as_str().expect("jwt");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine;
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).expect("b64"))
            .expect("json");
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "emulator"}));
    // Defaults, and jti uniqueness.
    let a = control(&c, &base, "jwt", json!({})).await.json();
    let b = send(c.post(format!("{base}/_emulator/jwt"))).await.json();
    assert_eq!(a["claims"]["aud"], "https://api.anthropic.com");
    assert_ne!(a["claims"]["jti"], b["claims"]["jti"]);
}

/// The process entry point: one ready line on stdout, then SIGTERM stops it cleanly.
#[test]
fn cli_prints_ready_line_and_stops_on_sigterm() {
    let exe = env!("CARGO_BIN_EXE_wif-emulator");
    let mut child = std::process::Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--token-lifetime", "120", "--rule", RULE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines.next().expect("a ready line").expect("utf8");
    let v: Value = serde_json::from_str(&line).expect("ready line is JSON");
    let base = v["base_url"].as_str().expect("base_url").to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(v.as_object().expect("obj").len(), 1);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let c = client();
        let j = jwt(&c, &base, json!({"ttl": 3600})).await;
        let r = exchange(&c, &base, &j).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["expires_in"], 120);
    });

    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}, stderr {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(lines.next().is_none(), "nothing after the ready line");

    // Usage errors exit 2 with a message naming the option; --help exits 0.
    let out = std::process::Command::new(exe).args(["--token-lifetime", "x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-lifetime"));
    assert!(out.stdout.is_empty());
    let out = std::process::Command::new(exe).arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
}

#[tokio::test]
async fn many_concurrent_keep_alive_clients() {
    let emu = start_with(EmulatorConfig { stream_delay_ms: 0, ..Default::default() });
    let base = emu.base_url();
    let c = client();
    let t = token(&c, &base).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (base, t) = (base.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..10 {
                let r = send(messages_req(&c, &base, &t).body(message_body(i % 2 == 0).to_string())).await;
                assert_eq!(r.status, 200, "{}", r.text);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let s = emu.stats();
    assert_eq!(s.messages, 320);
    // Connections are reused (the client's pool may open a few extra when a
    // streamed body ends while its next request is already queued).
    assert!(s.connections < 160, "{} connections for 321 requests", s.connections);
}
