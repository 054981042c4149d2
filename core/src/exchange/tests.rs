//! Tests against real loopback HTTP servers. Each test starts its own server
//! (raw HTTP/1.1 over a tokio TcpListener) that answers what the test needs
//! and records every request it received.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- server

#[derive(Clone, Debug)]
struct Hit {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).count()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    fn assertion(&self) -> String {
        self.json()["assertion"].as_str().expect("assertion is a string").to_string()
    }
}

enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes written as they are, then the connection is closed.
    Raw(Vec<u8>),
    /// Bytes written, then nothing more until the client goes away.
    RawThenHang(Vec<u8>),
    /// Accept, read the request, never answer.
    Hang,
    /// Close with a TCP reset.
    Reset,
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply::Http {
        status,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: body.into(),
    }
}

fn json_reply(status: u16, headers: &[(&str, &str)], body: Value) -> Reply {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    reply(status, &h, body.to_string())
}

fn token_json(expires_in: Value) -> Value {
    serde_json::json!({
        "access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": expires_in, "scope": "user:inference"
    })
}

fn ok_reply() -> Reply {
    json_reply(200, &[("request-id", "req_ok_1")], token_json(Value::from(600)))
}

type Responder = Box<dyn Fn(usize, &Hit) -> Reply + Send + Sync>;

struct Server {
    base_url: String,
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Server {
    async fn start(responder: impl Fn(usize, &Hit) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let responder: Arc<Responder> = Arc::new(Box::new(responder));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (h, r) = (h.clone(), responder.clone());
                tokio::spawn(async move { serve(sock, h, r).await });
            }
        });
        Server { base_url: format!("http://127.0.0.1:{port}"), port, hits }
    }
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn serve(mut sock: TcpStream, hits: Arc<Mutex<Vec<Hit>>>, responder: Arc<Responder>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let hit = Hit { method, path, headers, body };
    let index = {
        let mut g = hits.lock().unwrap();
        g.push(hit.clone());
        g.len() - 1
    };
    match responder(index, &hit) {
        Reply::Http { status, headers, body } => {
            let mut out =
                format!("HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Reply::Raw(bytes) => {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Reply::RawThenHang(bytes) => {
            let _ = sock.write_all(&bytes).await;
            wait_for_close(&mut sock).await;
        }
        Reply::Hang => wait_for_close(&mut sock).await,
        Reply::Reset => {
            let _ = sock.set_zero_linger();
            drop(sock);
        }
    }
}

/// Hold the connection until the client closes it (bounded, so nothing leaks long).
async fn wait_for_close(sock: &mut TcpStream) {
    let mut b = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n) = sock.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------- helpers

const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwianRpIjoiMSJ9.c2lnbmF0dXJlLXNlY3JldA";
/// An assertion that does not look like a JWT, so only the explicit scrub catches it.
const OPAQUE: &str = "opaque-assertion-SECRET-9f8e7d6c5b4a";
const ACCESS_TOKEN: &str = "sk-ant-oat01-AccessTokenValue_0123456789abcdef";
const RULE: &str = "fdrl_01AbCdEfGh";
const ORG: &str = "4f6d9a3e-2b1c-4c8e-9d7a-0e1f2a3b4c5d";

fn run<F: std::future::Future>(f: F) -> F::Output {
    crate::runtime::block_on(f)
}

fn params(base_url: &str) -> ExchangeParams {
    ExchangeParams {
        base_url: base_url.to_string(),
        federation_rule_id: RULE.into(),
        organization_id: ORG.into(),
        service_account_id: None,
        workspace_id: None,
        user_agent: "anthropic-wif/test (cli)".into(),
        net: Default::default(),
    }
}

fn jwt_n(n: usize) -> String {
    format!("eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJ{n:04}In0.c2lnLXNlY3JldC0{n:04}")
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        max_total: Duration::from_secs(20),
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        timeout: Duration::from_secs(10),
    }
}

/// A get_assertion that hands out jwt_n(1), jwt_n(2), … and counts calls.
fn fresh_jwts(calls: &Arc<AtomicUsize>) -> impl FnMut() -> std::future::Ready<Result<Secret>> {
    let calls = calls.clone();
    move || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(Ok(Secret::new(jwt_n(n))))
    }
}

fn same_jwt(calls: &Arc<AtomicUsize>) -> impl FnMut() -> std::future::Ready<Result<Secret>> {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Secret::new(JWT)))
    }
}

/// No secret (nor any `sk-ant-` value) in anything an error prints.
fn assert_clean(err: &Error, secrets: &[&str]) {
    let printed = [
        err.to_string(),
        format!("{err:?}"),
        err.message().to_string(),
        format!("{:?}", err.error_code()),
        format!("{:?}", err.request_id()),
    ];
    for p in &printed {
        for s in secrets {
            assert!(!p.contains(s), "secret {s:?} leaked into {p:?}");
        }
        assert!(!p.contains("sk-ant-"), "token leaked into {p:?}");
        assert!(!p.contains("SECRET"), "secret marker leaked into {p:?}");
    }
}

async fn once(server: &Server, assertion: &str) -> Result<TokenResponse> {
    exchange_once(&params(&server.base_url), &Secret::new(assertion)).await
}

// ---------------------------------------------------------------- base URL

#[test]
fn wire_format_required_fields_only() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let tok = once(&s, &format!("  {JWT}\n")).await.expect("exchange");
        assert_eq!(tok.access_token.expose(), ACCESS_TOKEN);
        let hits = s.hits();
        assert_eq!(hits.len(), 1);
        let h = &hits[0];
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/v1/oauth/token");
        assert_eq!(h.header("content-type"), Some("application/json"));
        assert_eq!(h.header("accept"), Some("application/json"));
        assert_eq!(h.header("anthropic-beta"), Some("oauth-2025-04-20,oidc-federation-2026-04-01"));
        assert_eq!(h.header_count("anthropic-beta"), 1);
        assert_eq!(h.header("user-agent"), Some("anthropic-wif/test (cli)"));
        assert_eq!(h.header("authorization"), None);
        assert_eq!(h.header("x-api-key"), None);
        assert_eq!(
            h.json(),
            serde_json::json!({
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": JWT,
                "federation_rule_id": RULE,
                "organization_id": ORG,
            })
        );
        assert!(h.json().get("scope").is_none());
    });
}

#[test]
fn wire_format_optional_fields() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let mut p = params(&format!("{}/", s.base_url));
        p.service_account_id = Some("svac_01Xyz".into());
        p.workspace_id = Some("default".into());
        exchange_once(&p, &Secret::new(JWT)).await.expect("exchange");
        p.service_account_id = Some("".into());
        p.workspace_id = Some("   ".into());
        exchange_once(&p, &Secret::new(JWT)).await.expect("exchange");
        let hits = s.hits();
        assert_eq!(hits[0].path, "/v1/oauth/token", "trailing slash must not double");
        let body = hits[0].json();
        assert_eq!(body["service_account_id"], "svac_01Xyz");
        assert_eq!(body["workspace_id"], "default");
        assert_eq!(body.as_object().unwrap().len(), 6);
        let body = hits[1].json();
        assert!(body.get("service_account_id").is_none() && body.get("workspace_id").is_none(), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 4);
    });
}

#[test]
fn base_path_is_kept() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let p = params(&format!("{}/gateway/anthropic", s.base_url));
        exchange_once(&p, &Secret::new(JWT)).await.expect("exchange");
        assert_eq!(s.hits()[0].path, "/gateway/anthropic/v1/oauth/token");
    });
}

// ---------------------------------------------------------------- success

#[test]
fn success_fields() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let before = crate::clock::now_unix();
        let tok = once(&s, JWT).await.expect("exchange");
        let after = crate::clock::now_unix();
        assert_eq!(tok.expires_in, 600);
        assert!(tok.expires_at >= before + 600 && tok.expires_at <= after + 600);
        assert_eq!(tok.scope.as_deref(), Some("user:inference"));
        assert_eq!(tok.request_id.as_deref(), Some("req_ok_1"));
        assert!(!format!("{tok:?}").contains(ACCESS_TOKEN));
    });
}

#[test]
fn token_type_and_expires_in_over_the_wire() {
    run(async {
        let bodies = vec![
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 60}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "expires_in": 60.9}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "BEARER", "expires_in": "60"}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "mac", "expires_in": 60}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": 1, "expires_in": 60}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer"}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 0}),
            serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": true}),
            serde_json::json!({"token_type": "Bearer", "expires_in": 60}),
            serde_json::json!({"access_token": "", "token_type": "Bearer", "expires_in": 60}),
            serde_json::json!({"access_token": 12345, "token_type": "Bearer", "expires_in": 60}),
            serde_json::json!({"access_token": "sk-ant-oat01-a b", "token_type": "Bearer", "expires_in": 60}),
        ];
        let expect: &[Result<i64, &str>] = &[
            Ok(60),
            Ok(60),
            Ok(60),
            Err("only Bearer"),
            Err("token_type is a number"),
            Err("no expires_in"),
            Err("already be expired"),
            Err("expires_in is a boolean"),
            Err("no access_token"),
            Err("access_token is empty"),
            Err("access_token is a number"),
            Err("cannot go into an HTTP header"),
        ];
        let shared = Arc::new(bodies);
        let b = shared.clone();
        let s = Server::start(move |i, _| json_reply(200, &[("request-id", "req_tt")], b[i].clone())).await;
        for (i, want) in expect.iter().enumerate() {
            let got = once(&s, JWT).await;
            match (want, got) {
                (Ok(secs), Ok(tok)) => assert_eq!(tok.expires_in, *secs, "case {i}"),
                (Err(why), Err(e)) => {
                    assert_eq!(e.kind, ErrorKind::Unavailable, "case {i}");
                    assert_eq!(e.status, Some(200), "case {i}");
                    assert_eq!(e.request_id(), Some("req_tt"), "case {i}");
                    assert!(e.message().contains(why), "case {i}: {}", e.message());
                    assert!(e.message().contains("req_tt"), "case {i}: {}", e.message());
                    assert_clean(&e, &[JWT]);
                }
                (w, g) => panic!("case {i}: wanted {w:?}, got {:?}", g.map(|t| t.expires_in)),
            }
        }
    });
}

#[test]
fn expires_in_rules() {
    use response::parse_expires_in as p;
    let v = |j: Value| p(Some(&j));
    assert_eq!(v(serde_json::json!(600)), Ok(600));
    assert_eq!(v(serde_json::json!(600.99)), Ok(600));
    assert_eq!(v(serde_json::json!(1.5)), Ok(1));
    assert_eq!(v(serde_json::json!("600")), Ok(600));
    assert_eq!(v(serde_json::json!(" 600 ")), Ok(600));
    assert_eq!(v(serde_json::json!("600.5")), Ok(600));
    assert_eq!(v(serde_json::json!(86400)), Ok(86400));
    assert_eq!(v(serde_json::json!(MAX_EXPIRES_IN_FOR_TEST)), Ok(MAX_EXPIRES_IN_FOR_TEST));
    for bad in [
        serde_json::json!(0),
        serde_json::json!(0.5),
        serde_json::json!(-5),
        serde_json::json!(MAX_EXPIRES_IN_FOR_TEST + 1),
        serde_json::json!(1e300),
        serde_json::json!(u64::MAX),
        serde_json::json!("abc"),
        serde_json::json!(""),
        serde_json::json!("NaN"),
        serde_json::json!("inf"),
        serde_json::json!("0x10"),
        serde_json::json!(true),
        serde_json::json!([600]),
        serde_json::json!({"s": 600}),
        Value::Null,
    ] {
        assert!(v(bad.clone()).is_err(), "{bad} should be refused");
    }
    assert!(p(None).unwrap_err().contains("no expires_in"));
}
const MAX_EXPIRES_IN_FOR_TEST: i64 = response::MAX_EXPIRES_IN;

#[test]
fn non_json_or_non_object_success_is_not_a_token_endpoint() {
    run(async {
        let s = Server::start(|i, _| match i {
            0 => reply(200, &[("Content-Type", "text/html")], format!("<html>login page {JWT} MARKER-BODY</html>")),
            1 => json_reply(200, &[], serde_json::json!([ACCESS_TOKEN, JWT])),
            _ => reply(200, &[], "MARKER-BODY plain"),
        })
        .await;
        let e = once(&s, JWT).await.expect_err("html");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.status, Some(200));
        assert!(e.message().contains("did not answer like a token endpoint"), "{}", e.message());
        assert!(e.message().contains("text/html") && e.message().contains("HTTP 200"), "{}", e.message());
        assert!(!e.message().contains("MARKER-BODY"), "{}", e.message());
        assert_clean(&e, &[JWT]);
        let e = once(&s, JWT).await.expect_err("array");
        assert!(e.message().contains("an array, not a JSON object"), "{}", e.message());
        assert!(e.message().contains("application/json"), "{}", e.message());
        assert_clean(&e, &[JWT]);
        let e = once(&s, JWT).await.expect_err("no content type");
        assert!(e.message().contains("content-type none"), "{}", e.message());
        assert!(!e.message().contains("MARKER-BODY"), "{}", e.message());
    });
}

// ---------------------------------------------------------------- errors

fn anthropic_error(kind: &str, message: &str) -> Value {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[test]
fn denied_401_has_hint_status_request_id_and_code() {
    run(async {
        let s = Server::start(|_, _| {
            json_reply(
                401,
                &[("request-id", "req_011CAbc")],
                anthropic_error("authentication_error", "Authentication failed"),
            )
        })
        .await;
        let e = once(&s, JWT).await.expect_err("401");
        assert_eq!(e.kind, ErrorKind::Denied);
        assert_eq!(e.status, Some(401));
        assert_eq!(e.request_id(), Some("req_011CAbc"));
        assert_eq!(e.error_code(), Some("authentication_error"));
        for part in [
            "HTTP 401",
            "req_011CAbc",
            "authentication_error: Authentication failed",
            RULE,
            "issuer, audience, subject",
            "No workspace_id was given",
            "exchanged only once",
            "Workload identity page",
            &s.base_url,
        ] {
            assert!(e.message().contains(part), "missing {part:?} in {}", e.message());
        }
        assert!(!e.message().contains("failed.."), "{}", e.message());
        assert_clean(&e, &[JWT]);

        let mut p = params(&s.base_url);
        p.workspace_id = Some("wrkspc_01X".into());
        let e = exchange_once(&p, &Secret::new(JWT)).await.expect_err("401");
        assert!(!e.message().contains("No workspace_id was given"), "{}", e.message());
        assert!(e.message().contains("exchanged only once"), "{}", e.message());
    });
}

#[test]
fn invalid_grant_400_rfc_shape() {
    run(async {
        let s = Server::start(|_, _| {
            json_reply(
                400,
                &[("request-id", "req_ig")],
                serde_json::json!({"error": "invalid_grant", "error_description": "jti reused", "error_uri": "https://docs.example/e", "assertion": JWT}),
            )
        })
        .await;
        let e = once(&s, JWT).await.expect_err("400");
        assert_eq!((e.kind, e.status, e.error_code()), (ErrorKind::Denied, Some(400), Some("invalid_grant")));
        assert!(e.message().contains("invalid_grant: jti reused (see https://docs.example/e)"), "{}", e.message());
        assert!(e.message().contains("exchanged only once") && e.message().contains("req_ig"), "{}", e.message());
        assert_clean(&e, &[JWT]);
    });
}

#[test]
fn other_4xx_and_5xx() {
    run(async {
        let s = Server::start(|i, _| match i {
            0 => json_reply(
                400,
                &[("request-id", "req_a")],
                anthropic_error("invalid_request_error", "federation_rule_id is not a well-formed fdrl_ tagged ID"),
            ),
            1 => json_reply(403, &[("request-id", "req_b")], anthropic_error("permission_error", "nope")),
            2 => reply(404, &[("Content-Type", "text/plain")], "404 page not found"),
            3 => json_reply(500, &[("request-id", "req_d")], anthropic_error("api_error", "Internal server error")),
            4 => reply(502, &[("Content-Type", "text/html")], "<html>bad gateway MARKER-BODY</html>"),
            5 => json_reply(429, &[("request-id", "req_f")], anthropic_error("rate_limit_error", "slow down")),
            _ => reply(400, &[], ""),
        })
        .await;
        let e = once(&s, JWT).await.expect_err("400");
        assert_eq!((e.kind, e.status), (ErrorKind::Denied, Some(400)));
        assert!(e.message().contains("federation_rule_id is not a well-formed fdrl_ tagged ID"), "{}", e.message());
        assert!(e.message().contains("Check the federation_rule_id"), "{}", e.message());
        assert!(!e.message().contains("exchanged only once"), "{}", e.message());
        let e = once(&s, JWT).await.expect_err("403");
        assert_eq!((e.kind, e.status, e.error_code()), (ErrorKind::Denied, Some(403), Some("permission_error")));
        let e = once(&s, JWT).await.expect_err("404");
        assert_eq!((e.kind, e.status), (ErrorKind::Denied, Some(404)));
        assert!(
            e.message().contains("no token endpoint at this address") && e.message().contains("404 page not found"),
            "{}",
            e.message()
        );
        let e = once(&s, JWT).await.expect_err("500");
        assert_eq!((e.kind, e.status, e.request_id()), (ErrorKind::Unavailable, Some(500), Some("req_d")));
        assert!(e.message().contains("api_error: Internal server error"), "{}", e.message());
        let e = once(&s, JWT).await.expect_err("502");
        assert_eq!((e.kind, e.status), (ErrorKind::Unavailable, Some(502)));
        assert!(e.message().contains("non-JSON answer (content-type text/html"), "{}", e.message());
        assert!(!e.message().contains("MARKER-BODY"), "{}", e.message());
        let e = once(&s, JWT).await.expect_err("429");
        assert_eq!((e.kind, e.status, e.error_code()), (ErrorKind::Unavailable, Some(429), Some("rate_limit_error")));
        let e = once(&s, JWT).await.expect_err("empty 400");
        assert!(e.message().contains("empty body"), "{}", e.message());
        assert_eq!(e.request_id(), None);
    });
}

/// A hostile or buggy server echoes the whole request (assertion included)
/// into every field and header it can: nothing secret may reach the error.
#[test]
fn echoed_request_never_leaks() {
    for assertion in [JWT, OPAQUE] {
        run(async move {
            let s = Server::start(move |i, hit| {
                let echo = String::from_utf8_lossy(&hit.body).to_string();
                let rid = format!("req_{}", hit.assertion());
                let h: &[(&str, &str)] = &[("request-id", &rid)];
                match i % 6 {
                    0 => json_reply(401, h, serde_json::json!({"type": "error", "error": {"type": format!("x {echo}"), "message": format!("{echo} sk-ant-oat01-Leak_1")}})),
                    1 => json_reply(400, h, serde_json::json!({"error": echo, "error_description": format!("got {echo} and {ACCESS_TOKEN}"), "error_uri": echo, "request": echo})),
                    2 => reply(500, &[("Content-Type", "text/plain"), ("request-id", &rid)], format!("upstream said {echo} {ACCESS_TOKEN}")),
                    3 => reply(200, &[("Content-Type", &format!("text/plain; {echo}")), ("request-id", &rid)], echo),
                    4 => json_reply(200, h, serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": format!("mac {echo}"), "expires_in": 60})),
                    _ => json_reply(200, h, serde_json::json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": echo})),
                }
            })
            .await;
            for i in 0..6 {
                let e = once(&s, assertion).await.expect_err("every answer is an error");
                assert!(e.status.is_some(), "case {i}");
                assert_clean(&e, &[assertion, ACCESS_TOKEN]);
            }
            assert_eq!(s.hits().len(), 6);
        });
    }
}

// ---------------------------------------------------------------- size limits

#[test]
fn response_size_limit() {
    run(async {
        // A valid token answer padded to exactly 1 MiB is accepted.
        let base = token_json(Value::from(600));
        let mut obj = base.as_object().unwrap().clone();
        obj.insert("pad".into(), Value::from(""));
        let overhead = Value::Object(obj.clone()).to_string().len();
        obj.insert("pad".into(), Value::from("x".repeat(MAX_RESPONSE_BYTES - overhead)));
        let exact = Value::Object(obj).to_string();
        assert_eq!(exact.len(), MAX_RESPONSE_BYTES);
        let exact_plus = format!("{exact} ");
        let chunked = {
            let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
            for piece in exact_plus.as_bytes().chunks(64 * 1024) {
                raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                raw.extend_from_slice(piece);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            raw
        };
        let s = Server::start(move |i, _| match i {
            0 => json_reply(200, &[], serde_json::from_str(&exact).unwrap()),
            1 => reply(200, &[("Content-Type", "application/json")], exact_plus.clone()),
            2 => Reply::Raw(chunked.clone()),
            _ => reply(
                401,
                &[("Content-Type", "application/json"), ("request-id", "req_big")],
                "x".repeat(MAX_RESPONSE_BYTES + 1),
            ),
        })
        .await;
        once(&s, JWT).await.expect("exactly 1 MiB is fine");
        for what in ["content-length", "chunked"] {
            let e = once(&s, JWT).await.expect_err(what);
            assert_eq!((e.kind, e.status), (ErrorKind::Unavailable, Some(200)), "{what}");
            assert!(e.message().contains("1048576-byte (1 MiB) limit"), "{what}: {}", e.message());
        }
        let e = once(&s, JWT).await.expect_err("big 401");
        assert_eq!((e.kind, e.status, e.request_id()), (ErrorKind::Denied, Some(401), Some("req_big")));
        assert!(e.message().contains("1 MiB"), "{}", e.message());
    });
}

#[test]
fn assertion_limits_refuse_before_sending() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let big = format!("eyJ{}", "a".repeat(MAX_ASSERTION_BYTES - 2));
        let e = once(&s, &big).await.expect_err("too big");
        assert_eq!(e.kind, ErrorKind::Identity);
        assert!(
            e.message().contains("16384") && e.message().contains("16 KiB") && e.message().contains("nothing was sent"),
            "{}",
            e.message()
        );
        assert!(!e.message().contains(&big[..40]), "{}", e.message());
        for empty in ["", "   \n\t"] {
            let e = once(&s, empty).await.expect_err("empty");
            assert_eq!(e.kind, ErrorKind::Identity);
            assert!(e.message().contains("empty"), "{}", e.message());
        }
        assert_eq!(s.hits().len(), 0, "nothing may be sent");
        let exact = format!("eyJ{}", "a".repeat(MAX_ASSERTION_BYTES - 3));
        once(&s, &format!(" {exact} ")).await.expect("exactly 16 KiB (after trimming) is sent");
        assert_eq!(s.hits()[0].assertion(), exact);
    });
}

// ---------------------------------------------------------------- redirects

#[test]
fn redirects_are_never_followed() {
    run(async {
        let target = Server::start(|_, _| ok_reply()).await;
        let location = format!("http://127.0.0.1:{}/v1/oauth/token?leak={ACCESS_TOKEN}", target.port);
        let codes = [301u16, 302, 303, 307, 308];
        let loc = location.clone();
        let s = Server::start(move |i, _| {
            let l = if i < codes.len() { loc.clone() } else { "/elsewhere/v1/oauth/token".to_string() };
            reply(codes[i % codes.len()], &[("Location", &l), ("request-id", "req_r")], "")
        })
        .await;
        for code in codes {
            let e = once(&s, JWT).await.expect_err("redirect");
            assert_eq!((e.kind, e.status, e.request_id()), (ErrorKind::Unavailable, Some(code), Some("req_r")));
            assert!(e.message().contains(&format!("HTTP {code}")), "{}", e.message());
            assert!(
                e.message().contains("redirecting to host 127.0.0.1") && e.message().contains("never followed"),
                "{}",
                e.message()
            );
            assert!(!e.message().contains(&target.port.to_string()), "only the host may be named: {}", e.message());
            assert!(!e.message().contains("leak="), "{}", e.message());
            assert_clean(&e, &[JWT]);
        }
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&Arc::default()))
            .await
            .expect_err("relative");
        assert!(e.message().contains("redirecting to host 127.0.0.1"), "{}", e.message());
        assert_eq!(s.hits().len(), 6, "a redirect is not retried");
        assert_eq!(target.hits().len(), 0, "the redirect target must never be contacted");
    });
}

// ---------------------------------------------------------------- transport

#[test]
fn connection_refused_is_unavailable_and_retried() {
    run(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let base = format!("http://127.0.0.1:{port}");
        let e = exchange_with_retry(&params(&base), &fast_policy(3), fresh_jwts(&calls)).await.expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.status, None);
        assert!(
            e.message().contains("cannot connect to the token endpoint") && e.message().contains(&base),
            "{}",
            e.message()
        );
        assert!(e.message().contains("gave up after 3 attempts"), "{}", e.message());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a fresh assertion for each attempt");
    });
}

#[test]
fn reset_connection_is_unavailable_and_retried() {
    run(async {
        let s = Server::start(|i, _| if i == 0 { Reply::Reset } else { ok_reply() }).await;
        let e = once(&s, JWT).await.expect_err("reset");
        assert_eq!((e.kind, e.status), (ErrorKind::Unavailable, None));
        let calls = Arc::new(AtomicUsize::new(0));
        exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&calls)).await.expect("second attempt");
        assert_eq!(s.hits().len(), 2);
    });
}

#[test]
fn a_server_that_never_answers_times_out() {
    run(async {
        let s = Server::start(|i, _| match i {
            0 | 1 => Reply::Hang,
            // Headers, then a body that never completes.
            _ => Reply::RawThenHang(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"access".to_vec(),
            ),
        })
        .await;
        let policy = RetryPolicy { timeout: Duration::from_millis(300), ..fast_policy(2) };
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let e = exchange_with_retry(&params(&s.base_url), &policy, fresh_jwts(&calls)).await.expect_err("hang");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message().contains("did not answer within 0.3 s"), "{}", e.message());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(s.hits().len(), 2);
        let policy = RetryPolicy { timeout: Duration::from_millis(300), ..fast_policy(1) };
        let e = exchange_with_retry(&params(&s.base_url), &policy, fresh_jwts(&calls)).await.expect_err("slow body");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message().contains("did not finish sending its body within 0.3 s"), "{}", e.message());
        assert!(started.elapsed() < Duration::from_secs(15), "time-outs must be honoured");
    });
}

// ---------------------------------------------------------------- retries

#[test]
fn retry_503_then_200_with_a_fresh_assertion() {
    run(async {
        let s = Server::start(|i, _| {
            if i == 0 {
                json_reply(503, &[], anthropic_error("overloaded_error", "Overloaded"))
            } else {
                ok_reply()
            }
        })
        .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let tok =
            exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&calls)).await.expect("retried");
        assert_eq!(tok.access_token.expose(), ACCESS_TOKEN);
        let hits = s.hits();
        assert_eq!(hits.len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(hits[0].assertion(), jwt_n(1));
        assert_eq!(hits[1].assertion(), jwt_n(2));
    });
}

#[test]
fn retry_429_honours_retry_after() {
    run(async {
        let s = Server::start(|i, _| {
            if i == 0 {
                json_reply(429, &[("Retry-After", "1")], anthropic_error("rate_limit_error", "slow down"))
            } else {
                ok_reply()
            }
        })
        .await;
        let started = Instant::now();
        exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&Arc::default())).await.expect("retried");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(950), "Retry-After: 1 was not honoured ({took:?})");
        assert_eq!(s.hits().len(), 2);
    });
}

#[test]
fn retry_after_beyond_the_budget_stops_at_once() {
    run(async {
        let s = Server::start(|_, _| {
            json_reply(
                503,
                &[("Retry-After", "120"), ("request-id", "req_ra")],
                anthropic_error("overloaded_error", "Overloaded"),
            )
        })
        .await;
        let policy = RetryPolicy { max_total: Duration::from_secs(5), ..fast_policy(5) };
        let started = Instant::now();
        let e =
            exchange_with_retry(&params(&s.base_url), &policy, fresh_jwts(&Arc::default())).await.expect_err("budget");
        assert!(started.elapsed() < Duration::from_secs(4), "must not sleep into the budget");
        assert_eq!(s.hits().len(), 1);
        assert_eq!((e.kind, e.status), (ErrorKind::Unavailable, Some(503)));
        assert!(
            e.message().contains("Retry-After") && e.message().contains("120 s") && e.message().contains("5 s budget"),
            "{}",
            e.message()
        );
    });
}

#[test]
fn retry_budget_exhaustion() {
    run(async {
        let s = Server::start(|_, _| json_reply(503, &[], anthropic_error("overloaded_error", "Overloaded"))).await;
        let policy = RetryPolicy {
            max_attempts: 50,
            max_total: Duration::from_millis(1000),
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
        };
        let started = Instant::now();
        let e =
            exchange_with_retry(&params(&s.base_url), &policy, fresh_jwts(&Arc::default())).await.expect_err("budget");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "the budget was not honoured: {took:?}");
        let n = s.hits().len();
        assert!((2..10).contains(&n), "{n} attempts");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message().contains("budget") && e.message().contains(&format!("gave up after {n} attempts")),
            "{}",
            e.message()
        );
    });
}

#[test]
fn attempts_are_bounded() {
    run(async {
        let s = Server::start(|_, _| json_reply(500, &[], anthropic_error("api_error", "boom"))).await;
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&Arc::default()))
            .await
            .expect_err("500s");
        assert_eq!(s.hits().len(), 3);
        assert!(e.message().contains("gave up after 3 attempts"), "{}", e.message());
        assert_eq!(RetryPolicy::default().max_attempts, 3);
        assert_eq!(RetryPolicy::default().timeout, Duration::from_secs(30));
    });
}

#[test]
fn client_errors_are_not_retried() {
    run(async {
        let s = Server::start(|i, _| match i {
            0 => json_reply(400, &[], anthropic_error("invalid_request_error", "bad")),
            _ => json_reply(401, &[], anthropic_error("authentication_error", "Authentication failed")),
        })
        .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&calls)).await.expect_err("400");
        assert_eq!((e.kind, e.status), (ErrorKind::Denied, Some(400)));
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&calls)).await.expect_err("401");
        assert_eq!((e.kind, e.status), (ErrorKind::Denied, Some(401)));
        assert!(!e.message().contains("same identity token"), "{}", e.message());
        assert_eq!(s.hits().len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_401_after_resending_the_same_jwt_says_so() {
    run(async {
        let s = Server::start(|i, _| match i % 2 {
            0 => json_reply(503, &[], anthropic_error("overloaded_error", "Overloaded")),
            _ => json_reply(
                401,
                &[("request-id", "req_same")],
                anthropic_error("authentication_error", "Authentication failed"),
            ),
        })
        .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), same_jwt(&calls)).await.expect_err("401");
        assert_eq!((e.kind, e.status), (ErrorKind::Denied, Some(401)));
        assert!(
            e.message().contains("re-sent the same identity token") && e.message().contains("single-use"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("gave up after 2 attempts"), "{}", e.message());
        assert_clean(&e, &[JWT]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let hits = s.hits();
        assert_eq!(hits[0].assertion(), hits[1].assertion());
        // A fresh token on the retry: the 401 is an ordinary refusal.
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(3), fresh_jwts(&Arc::default()))
            .await
            .expect_err("401");
        assert_eq!(e.status, Some(401));
        assert!(!e.message().contains("same identity token"), "{}", e.message());
    });
}

#[test]
fn an_identity_error_aborts_at_once() {
    run(async {
        let s = Server::start(|_, _| json_reply(503, &[], anthropic_error("overloaded_error", "Overloaded"))).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let get = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n == 0 {
                Ok(Secret::new(JWT))
            } else {
                Err(Error::identity("token file /x is empty"))
            })
        };
        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(5), get).await.expect_err("identity");
        assert_eq!(e, Error::identity("token file /x is empty"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(s.hits().len(), 1);

        let e = exchange_with_retry(&params(&s.base_url), &fast_policy(5), || {
            std::future::ready(Err::<Secret, _>(Error::identity("no source")))
        })
        .await
        .expect_err("identity first");
        assert_eq!(e.kind, ErrorKind::Identity);
        assert_eq!(s.hits().len(), 1, "nothing sent when the first identity fetch fails");
    });
}

#[test]
fn a_bad_base_url_fails_before_fetching_the_identity_token() {
    run(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let e = exchange_with_retry(&params("http://example.com"), &fast_policy(3), fresh_jwts(&calls))
            .await
            .expect_err("http");
        assert_eq!(e.kind, ErrorKind::Config);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "a single-use token must not be minted for nothing");
        let e = exchange_once(&params("https://user:pw@example.com"), &Secret::new(JWT)).await.expect_err("creds");
        assert_eq!(e.kind, ErrorKind::Config);
    });
}

#[test]
fn missing_required_ids_are_config_errors() {
    run(async {
        let s = Server::start(|_, _| ok_reply()).await;
        let mut p = params(&s.base_url);
        p.federation_rule_id = " ".into();
        let e = exchange_once(&p, &Secret::new(JWT)).await.expect_err("rule");
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(
            e.message().contains("federation_rule_id") && e.message().contains("ANTHROPIC_FEDERATION_RULE_ID"),
            "{}",
            e.message()
        );
        assert_eq!(s.hits().len(), 0);
    });
}

// ---------------------------------------------------------------- pieces

#[test]
fn retry_after_parsing() {
    use response::parse_retry_after as p;
    let now = SystemTime::now();
    assert_eq!(p("1", now), Some(Duration::from_secs(1)));
    assert_eq!(p(" 120 ", now), Some(Duration::from_secs(120)));
    assert_eq!(p("0", now), Some(Duration::ZERO));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
    let d = p(&later, now).expect("http date");
    assert!(d <= Duration::from_secs(5) && d >= Duration::from_secs(3), "{d:?}");
    let past = httpdate::fmt_http_date(now - Duration::from_secs(50));
    assert_eq!(p(&past, now), Some(Duration::ZERO));
    assert_eq!(p("soon", now), None);
    assert_eq!(p("-1", now), None);
    assert_eq!(p("", now), None);
    assert!(p("99999999999999999999999", now).is_some());
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(350),
        ..RetryPolicy::default()
    };
    for _ in 0..200 {
        let d1 = backoff(&policy, 1);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
        let d2 = backoff(&policy, 2);
        assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200), "{d2:?}");
        let d9 = backoff(&policy, 40);
        assert!(d9 >= Duration::from_millis(175) && d9 <= Duration::from_millis(350), "{d9:?}");
    }
}

#[test]
fn error_details_keep_only_safe_fields() {
    let d = response::error_details(
        serde_json::json!({"error": "invalid_grant", "error_description": "d\nnew line", "other": "SECRET", "access_token": ACCESS_TOKEN}).to_string().as_bytes(),
        Some("application/json"),
        &[],
    );
    assert_eq!(d.code.as_deref(), Some("invalid_grant"));
    assert_eq!(d.description.as_deref(), Some("d new line"));
    assert!(!d.render().contains("SECRET"));
    let d = response::error_details(
        anthropic_error("authentication_error", "Authentication failed").to_string().as_bytes(),
        None,
        &[],
    );
    assert_eq!(d.render(), "authentication_error: Authentication failed");
    let long = "y".repeat(5000);
    let d = response::error_details(serde_json::json!({"error_description": long}).to_string().as_bytes(), None, &[]);
    assert!(d.render().chars().count() <= response::MAX_FIELD_CHARS + 1);
    let d = response::error_details(serde_json::json!({"message": "x"}).to_string().as_bytes(), None, &[]);
    assert!(d.render().contains("no error or error_description"), "{}", d.render());
}

#[test]
fn the_exchange_beta_carries_the_one_oauth_flag() {
    assert!(BETA_HEADER_VALUE.split(',').any(|flag| flag == crate::api::OAUTH_BETA), "{BETA_HEADER_VALUE}");
}
