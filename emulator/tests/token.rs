//! The token endpoint over real loopback sockets.

mod common;

use anthropic_wif_emulator::{EmulatorConfig, Fault};
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn happy_path_exchange() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let j = jwt(&c, &base, json!({"sub": "repo:x/y", "ttl": 3600})).await;
    let mut body = body_for(&j);
    body["service_account_id"] = json!("svac_01abc");
    body["workspace_id"] = json!("wrkspc_01abc");
    let r = exchange_raw(&c, &base, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("request-id").expect("request-id").starts_with("req_"));
    assert!(r.header("content-type").expect("ct").starts_with("application/json"));
    let v = r.json();
    let token = v["access_token"].as_str().expect("token");
    assert!(token.starts_with("sk-ant-oat01-") && token.len() > 40, "{token}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 600);
    assert_eq!(v["scope"], "user:inference");
    assert!(emu.is_token_valid(token));

    // workspace "default" is accepted too.
    let j2 = emu.mint_jwt("s", "https://api.anthropic.com", 3600);
    let mut body2 = body_for(&j2);
    body2["workspace_id"] = json!("default");
    assert_eq!(exchange_raw(&c, &base, &body2).await.status, 200);

    let s = stats(&c, &base).await;
    assert_eq!(s["exchanges"], 2);
    assert_eq!(s["token_requests"], 2);
    assert_eq!(s["active_tokens"], 2);
    assert_eq!(emu.stats().exchanges, 2);

    // The recorded request: headers and JSON body, over HTTP and in Rust.
    let reqs = send(c.get(format!("{base}/_emulator/requests"))).await.json();
    let first = &reqs.as_array().expect("array")[0];
    assert_eq!(first["path"], "/v1/oauth/token");
    assert_eq!(first["headers"]["anthropic-beta"], BETA);
    assert_eq!(first["body"]["assertion"], j);
    assert_eq!(first["body"]["service_account_id"], "svac_01abc");
    let rust = emu.requests();
    assert_eq!(rust.len(), 2);
    assert_eq!(rust[1].header("Content-Type"), Some("application/json"));
    assert_eq!(rust[1].body["workspace_id"], "default");
}

#[tokio::test]
async fn every_400_message() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let good = emu.mint_jwt("s", "a", 3600);
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let with = |k: &str, v: Value| {
        let mut b = body_for(&good);
        if v.is_null() {
            b.as_object_mut().expect("obj").remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("grant_type", Value::Null), "grant_type is required"),
        (
            with("grant_type", json!("client_credentials")),
            "grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer",
        ),
        (with("assertion", Value::Null), "assertion is required"),
        (with("assertion", json!("")), "assertion is required"),
        (with("assertion", json!(42)), "assertion must be a string"),
        (with("assertion", json!("x".repeat(16 * 1024 + 1))), "assertion is longer than the maximum of 16384 bytes"),
        (
            with("assertion", json!("not-a-jwt")),
            "assertion is not a well-formed JWT: expected three dot-separated segments (header.payload.signature)",
        ),
        (
            with("assertion", json!(format!("{}.{}.sig", b64("{}"), b64("{}")))),
            "assertion is not a well-formed JWT: the header has no \"alg\"",
        ),
        (
            with("assertion", json!(format!("{}.{}.sig", b64("{\"alg\":\"RS256\"}"), b64("[]")))),
            "assertion is not a well-formed JWT: the payload is not a JSON object",
        ),
        (with("federation_rule_id", Value::Null), "federation_rule_id is required"),
        (with("federation_rule_id", json!("rule_123")), "federation_rule_id is not a well-formed fdrl_ tagged ID"),
        (with("federation_rule_id", json!("fdrl_")), "federation_rule_id is not a well-formed fdrl_ tagged ID"),
        (with("organization_id", Value::Null), "organization_id is required"),
        (with("organization_id", json!("org_123")), "organization_id is not a valid UUID"),
        (with("service_account_id", json!("user_1")), "service_account_id is not a well-formed svac_ tagged ID"),
        (with("workspace_id", json!("")), "workspace_id must be a well-formed wrkspc_ tagged ID or \"default\""),
        (with("workspace_id", json!("ws_1")), "workspace_id must be a well-formed wrkspc_ tagged ID or \"default\""),
        (json!([1, 2]), "request body must be a JSON object"),
    ];
    for (body, want) in &cases {
        let r = exchange_raw(&c, &base, body).await;
        assert_eq!(r.status, 400, "{want}: {}", r.text);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(r.message(), *want);
        assert!(r.header("request-id").is_some());
    }

    // Header-level checks.
    let body = body_for(&good).to_string();
    let url = format!("{base}/v1/oauth/token");
    let r = send(c.post(&url).header("content-type", "application/json").body(body.clone())).await;
    assert_eq!(
        (r.status, r.message().as_str()),
        (400, "the anthropic-beta header must include oauth-2025-04-20,oidc-federation-2026-04-01")
    );
    let r = send(
        c.post(&url)
            .header("content-type", "application/json")
            .header("anthropic-beta", "oauth-2025-04-20")
            .body(body.clone()),
    )
    .await;
    assert_eq!(r.message(), "the anthropic-beta header must include oidc-federation-2026-04-01");
    // Whole-flag comparison: a prefix of a flag does not count.
    let r = send(
        c.post(&url)
            .header("content-type", "application/json")
            .header("anthropic-beta", "oauth-2025-04-2, oidc-federation-2026-04-01")
            .body(body.clone()),
    )
    .await;
    assert_eq!(r.message(), "the anthropic-beta header must include oauth-2025-04-20");
    // Flags split across two headers and padded with spaces are fine.
    let r = send(
        c.post(&url)
            .header("content-type", "application/json")
            .header("anthropic-beta", " oauth-2025-04-20 ")
            .header("anthropic-beta", "x, oidc-federation-2026-04-01")
            .body(body.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r =
        send(c.post(&url).header("content-type", "text/plain").header("anthropic-beta", BETA).body(body.clone())).await;
    assert_eq!(r.message(), "Content-Type must be application/json");
    let r = send(c.post(&url).header("content-type", "application/json").header("anthropic-beta", BETA).body("{nope"))
        .await;
    assert_eq!(r.message(), "request body is not valid JSON");
    let r = send(c.get(&url)).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));

    let s = emu.stats();
    assert_eq!(s.exchanges, 1);
    assert_eq!(s.invalid, cases.len() as u64 + 6);
    assert_eq!(s.token_requests, cases.len() as u64 + 7);
}

#[tokio::test]
async fn denials_are_opaque_401() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let check_denied = |r: &Reply| {
        assert_eq!(r.status, 401, "{}", r.text);
        let rid = r.header("request-id").expect("rid");
        assert!(rid.starts_with("req_"));
        assert_eq!(
            r.json(),
            json!({"type":"error","error":{"type":"authentication_error","message":"Authentication failed"},
                   "request_id": rid})
        );
    };
    // Reused jti.
    let j = jwt(&c, &base, json!({})).await;
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
    check_denied(&exchange(&c, &base, &j).await);
    // The same jti in a different JWT is still a reuse.
    let a = jwt(&c, &base, json!({"claims": {"jti": "fixed-jti"}})).await;
    let b = jwt(&c, &base, json!({"claims": {"jti": "fixed-jti"}, "sub": "other"})).await;
    assert_ne!(a, b);
    assert_eq!(exchange(&c, &base, &a).await.status, 200);
    check_denied(&exchange(&c, &base, &b).await);
    // Expired.
    let old = jwt(&c, &base, json!({"ttl": -5})).await;
    check_denied(&exchange(&c, &base, &old).await);
    // exp that is not a number.
    let weird = jwt(&c, &base, json!({"claims": {"exp": "tomorrow"}})).await;
    check_denied(&exchange(&c, &base, &weird).await);
    // No jti: the whole JWT is single-use; two different ones both work.
    let n1 = jwt(&c, &base, json!({"claims": {"jti": null}})).await;
    let n2 = jwt(&c, &base, json!({"claims": {"jti": null}})).await;
    assert_eq!(exchange(&c, &base, &n1).await.status, 200);
    assert_eq!(exchange(&c, &base, &n2).await.status, 200);
    check_denied(&exchange(&c, &base, &n1).await);
    let s = emu.stats();
    assert_eq!((s.exchanges, s.denied), (4, 5));
}

#[tokio::test]
async fn unknown_rule_denied_when_rules_configured() {
    let emu = start_with(EmulatorConfig { rules: vec![RULE.to_owned()], ..Default::default() });
    let base = emu.base_url();
    let c = client();
    let j = emu.mint_jwt("s", "a", 600);
    let mut body = body_for(&j);
    body["federation_rule_id"] = json!("fdrl_someotherrule");
    let r = exchange_raw(&c, &base, &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.message(), "Authentication failed");
    // The denial did not burn the JWT.
    assert_eq!(exchange(&c, &base, &j).await.status, 200);
    // Rules can change at run time.
    let r = control(&c, &base, "config", json!({"rules": ["fdrl_someotherrule"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["rules"], json!(["fdrl_someotherrule"]));
    assert_eq!(exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await.status, 401);
    let r = control(&c, &base, "config", json!({"rules": ["bad"]})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn lifetime_is_capped_by_jwt_life() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let expires_in = |r: Reply| {
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["expires_in"].as_u64().expect("integer expires_in")
    };
    // 100 s left → at most 200 s (a second may pass between minting and exchanging).
    let e = expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 100)).await);
    assert!((196..=200).contains(&e), "{e}");
    let e = expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 3600)).await);
    assert_eq!(e, 600);
    // At least 1 s.
    let e = expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 1)).await);
    assert!((1..=2).contains(&e), "{e}");
    // Run-time lifetime change, over HTTP and in Rust.
    let r = control(&c, &base, "config", json!({"token_lifetime": 60})).await;
    assert_eq!(r.json()["token_lifetime"], 60);
    assert_eq!(expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 3600)).await), 60);
    emu.set_token_lifetime(90);
    assert_eq!(expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 3600)).await), 90);
    assert_eq!(control(&c, &base, "config", json!({"token_lifetime": 0})).await.status, 400);
    assert_eq!(control(&c, &base, "config", json!({"lifetime": 5})).await.status, 400);
    // A JWT without exp gets the configured lifetime.
    let j = emu.mint_jwt_with(&json!({"claims": {"exp": null}})).expect("jwt");
    assert_eq!(expires_in(exchange(&c, &base, &j).await), 90);
    // Reset restores the start-up lifetime.
    emu.reset();
    assert_eq!(expires_in(exchange(&c, &base, &emu.mint_jwt("s", "a", 3600)).await), 600);
}

#[tokio::test]
async fn herd_on_one_jwt_gets_exactly_one_token() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    let j = emu.mint_jwt("s", "a", 600);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (c, base, j) = (c.clone(), base.clone(), j.clone());
        tasks.push(tokio::spawn(async move { exchange(&c, &base, &j).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 39);
    let s = emu.stats();
    assert_eq!((s.exchanges, s.token_requests, s.denied), (1, 40, 39));
}

#[tokio::test]
async fn bodies_over_the_cap_get_413_and_no_panic_on_garbage() {
    let emu = start_with(EmulatorConfig { max_body_bytes: 64 * 1024, ..Default::default() });
    let base = emu.base_url();
    let c = client();
    let big = "x".repeat(64 * 1024 + 1);
    let r = send(c.post(format!("{base}/v1/oauth/token")).header("anthropic-beta", BETA).body(big.clone())).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "request_too_large");
    let r = send(c.post(format!("{base}/v1/messages")).body(big)).await;
    assert_eq!(r.status, 413);
    // Binary garbage.
    let r = send(
        c.post(format!("{base}/v1/oauth/token"))
            .header("anthropic-beta", BETA)
            .header("content-type", "application/json")
            .body(vec![0xffu8, 0, 0xfe, 0x80]),
    )
    .await;
    assert_eq!(r.status, 400);
    // Unknown paths and control errors.
    let r = send(c.get(format!("{base}/nope"))).await;
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (404, Some("not_found_error")));
    assert_eq!(send(c.post(format!("{base}/_emulator/faults")).body("{")).await.status, 400);
    assert_eq!(control(&c, &base, "faults", json!({"faults": [{"kind": "explode"}]})).await.status, 400);
    assert_eq!(control(&c, &base, "jwt", json!({"ttl": "soon"})).await.status, 400);
    assert_eq!(send(c.get(format!("{base}/_emulator/reset"))).await.status, 405);
    // Still serving.
    assert_eq!(send(c.get(format!("{base}/_emulator/health"))).await.status, 200);
}

#[tokio::test]
async fn keep_alive_many_requests_one_connection() {
    let emu = start();
    let base = emu.base_url();
    let c = client();
    for _ in 0..100 {
        let r = send(c.get(format!("{base}/_emulator/stats"))).await;
        assert_eq!(r.status, 200);
        let r = exchange(&c, &base, &emu.mint_jwt("s", "a", 600)).await;
        assert_eq!(r.status, 200);
    }
    let s = emu.stats();
    assert_eq!((s.connections, s.exchanges), (1, 100));
    // Faults are pushed through Rust too.
    emu.push_faults([Fault::status(500)]);
    assert_eq!(emu.stats().faults_pending, 1);
}
