//! Untrusted text never reaches a terminal or a log unclean (issue #10, item 6):
//! an identity endpoint's refusal body, a command source's stderr, the token
//! endpoint's error body, the claims of an identity JWT shown by `doctor`, and
//! the proxy's token-event log. Each carries a terminal escape (clear screen,
//! window title, BEL, a C1 CSI, a bidi override) and a newline that would forge
//! a second `anthropic-wif:` line. The error type cleans its own text, so every
//! face prints one clean line.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What an attacker puts in text we print.
const HOSTILE: &str =
    "denied\u{1b}[2J\u{1b}]0;PWNED-TITLE\u{7}\nanthropic-wif: forged: all good\r\u{9b}31m\u{202e}evil";

/// Characters that must never reach a terminal from untrusted text.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` (a whole stderr or stdout) has no escape, and no line forged by the hostile text.
fn assert_clean_text(what: &str, text: &str) {
    assert!(!text.chars().any(unsafe_char), "{what} carries control characters: {text:?}");
    assert!(!text.lines().any(|l| l.starts_with("anthropic-wif: forged")), "{what} has a forged log line: {text:?}");
}

fn federation_flags(sb: &Sandbox) -> Vec<String> {
    ["--base-url", &sb.emu.base_url(), "--federation-rule-id", RULE, "--organization-id", ORG, "--no-cache"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn run_token(sb: &Sandbox, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["token".into()];
    args.extend(federation_flags(sb));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.run(&args)
}

/// One error line, naming the kind, with no escape and no forged line.
fn assert_one_clean_error(o: &std::process::Output, kind: &str, code: i32) -> String {
    let err = assert_failed(o, kind, code, &[]);
    assert_clean_text("stderr", &err);
    assert_eq!(err.matches('\n').count(), 1, "exactly one line: {err:?}");
    err
}

#[test]
fn an_identity_endpoints_refusal_body_is_flattened() {
    let sb = Sandbox::new();
    let url = format!("{}/token", serve_http(403, "text/plain", HOSTILE.to_string()));
    let o = run_token(&sb, &["--identity-token-url", &url]);
    let err = assert_one_clean_error(&o, "identity", 3);
    assert!(err.contains("HTTP 403") && err.contains("denied") && err.contains("forged: all good"), "{err}");
    assert_eq!(sb.emu.stats().token_requests, 0);
}

#[test]
fn a_command_sources_stderr_tail_is_flattened() {
    let sb = Sandbox::new();
    let script = "printf 'oops\\033[2J\\033]0;PWNED-TITLE\\007\\nanthropic-wif: forged: all good\\r\\n' >&2; exit 9";
    let argv = serde_json::to_string(&["sh", "-c", script]).unwrap();
    let o = run_token(&sb, &["--identity-token-command", &argv]);
    let err = assert_one_clean_error(&o, "identity", 3);
    assert!(err.contains("status 9") && err.contains("oops"), "{err}");
    // The same stderr after a token that is not one line.
    let script = "printf 'a\\nb\\n'; printf 'why\\033[2J\\nanthropic-wif: forged: x\\n' >&2";
    let argv = serde_json::to_string(&["sh", "-c", script]).unwrap();
    let o = run_token(&sb, &["--identity-token-command", &argv]);
    assert_one_clean_error(&o, "identity", 3);
}

#[test]
fn the_token_endpoints_error_body_is_flattened() {
    // (Already flattened before issue #10; kept so that no face regresses.)
    let sb = Sandbox::new();
    let jwt = sb.fresh_jwt_file();
    for body in [HOSTILE.to_string(), json!({"error": "invalid_grant", "error_description": HOSTILE}).to_string()] {
        sb.emu.push_faults_json(&json!({"kind": "raw", "status": 403, "body": body})).unwrap();
        let o = run_token(&sb, &["--identity-token-file", jwt.to_str().unwrap()]);
        assert_one_clean_error(&o, "denied", 4);
    }
}

fn doctor_with_jwt(sb: &Sandbox, jwt: &str, json_out: bool) -> std::process::Output {
    std::fs::write(sb.path("identity-token"), format!("{jwt}\n")).unwrap();
    let file = sb.path("identity-token");
    let mut args: Vec<String> = vec!["doctor".into()];
    if json_out {
        args.push("--json".into());
    }
    args.extend(federation_flags(sb));
    args.extend(["--identity-token-file".to_string(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.run(&args)
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[test]
fn doctor_shows_hostile_jwt_claims_flattened_in_text_and_json() {
    let sb = Sandbox::new();
    let jwt = sb
        .emu
        .mint_jwt_with(&json!({
            "iss": format!("https://idp.example/{HOSTILE}"),
            "sub": format!("repo:x\u{1b}[1;31m\nanthropic-wif: forged: sub"),
            "aud": format!("aud\u{7}{HOSTILE}"),
            "claims": {"nice\u{1b}]0;claim-name\u{7}": "x"}
        }))
        .unwrap();
    let o = doctor_with_jwt(&sb, &jwt, false);
    let text = stdout(&o);
    assert_clean_text("doctor stdout", &text);
    assert_clean_text("doctor stderr", &stderr(&o));
    let iss_line = text.lines().find(|l| l.trim_start().starts_with("iss")).expect("an iss line");
    assert!(iss_line.contains("https://idp.example/denied") && iss_line.contains("forged: all good"), "{iss_line}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("sub") && l.contains("forged: sub")), "{text}");

    let o = doctor_with_jwt(&sb, &jwt, true);
    let raw = stdout(&o);
    assert!(!raw.contains("\\u001b") && !raw.contains("\\u0007") && !raw.contains("\\r"), "{raw}");
    let v: Value = serde_json::from_str(&raw).unwrap();
    let mut all = Vec::new();
    strings(&v, &mut all);
    for s in &all {
        assert!(
            !s.chars().any(|c| c.is_control() || unsafe_char(c)),
            "a JSON string carries control characters: {s:?}"
        );
    }
    let token = &v["identity"]["token"];
    assert!(token["iss"].as_str().unwrap().contains("forged: all good"), "{token}");
    assert!(token["sub"].as_str().unwrap().contains("forged: sub"), "{token}");
}

#[test]
fn the_proxys_token_event_log_is_flattened() {
    let sb = Sandbox::new();
    let script =
        "printf 'idp down\\033[2J\\033]0;PWNED-TITLE\\007\\nanthropic-wif proxy: forged: ready\\n' >&2; exit 4";
    let argv = serde_json::to_string(&["sh", "-c", script]).unwrap();
    let mut args: Vec<String> = vec!["proxy".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(federation_flags(&sb));
    args.extend(["--identity-token-command".to_string(), argv]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = sb.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).split(b'\n') {
            let Ok(line) = line else { break };
            if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline && !log.contains("cannot obtain an access token") {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("cannot obtain an access token [identity]"), "the failure is logged: {log:?}");
    assert!(log.contains("idp down"), "{log:?}");
    assert_clean_text("proxy log", &log);
    assert!(!log.lines().any(|l| l.starts_with("anthropic-wif proxy: forged")), "{log:?}");
}
