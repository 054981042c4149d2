//! `anthropic-wif proxy` as a real process: curl as a client, SIGTERM during a stream.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}"#;
const STREAM_BODY: &str =
    r#"{"model":"claude-test","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

struct ProxyProc {
    child: Child,
    base: String,
}

impl ProxyProc {
    fn start(sb: &Sandbox, extra: &[&str]) -> ProxyProc {
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = sb.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line: {line:?}"));
        ProxyProc { base: v["base_url"].as_str().unwrap().to_string(), child }
    }

    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    fn terminate(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }

    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "proxy did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, err)
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_curl() -> bool {
    Command::new("curl").arg("--version").stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn curl_with_no_credential_gets_answers_and_streams() {
    if !have_curl() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    let px = ProxyProc::start(&sb, &[]);
    let url = format!("{}/v1/messages", px.base);
    let o = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: placeholder",
            "-d",
            BODY,
            &url,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stdout(&o)));
    assert_eq!(v["type"], "message", "{v}");
    let o = Command::new("curl")
        .args(["-sSN", "--noproxy", "*", "-H", "content-type: application/json", "-d", STREAM_BODY, &url])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.starts_with("event: message_start") && out.contains("event: message_stop"), "{out}");
    let h = Command::new("curl").args(["-s", "--noproxy", "*", &format!("{}/healthz", px.base)]).output().unwrap();
    assert!(stdout(&h).contains("\"status\":\"ready\""), "{}", stdout(&h));
    assert_eq!(sb.exchanges(), 1);

    px.terminate();
    let (status, err) = px.wait();
    assert!(status.success(), "{err}");
    // One line per request, no secrets.
    assert_eq!(err.lines().filter(|l| l.contains("POST /v1/messages 200")).count(), 2, "{err}");
    assert!(!err.contains("sk-ant-oat01-") && !err.contains(&jwt) && !err.contains("placeholder"), "{err}");
}

#[test]
fn sigterm_during_a_stream_lets_it_finish() {
    let mut sb = Sandbox::with_config(EmulatorConfig { stream_delay_ms: 200, ..EmulatorConfig::default() });
    sb.federation_env();
    let px = ProxyProc::start(&sb, &[]);
    let mut s = std::net::TcpStream::connect(px.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAM_BODY}",
        STREAM_BODY.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("message_start") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    px.terminate();
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("event: message_stop"), "the stream ran to its end: {text}");
    assert!(text.ends_with("0\r\n\r\n"), "and was terminated properly");
    let (status, err) = px.wait();
    assert!(status.success(), "{err}");
    assert!(err.contains("draining 1 request"), "{err}");
}

#[test]
fn a_non_loopback_listener_needs_allow_remote() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let o = sb.run(&["proxy", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let o = sb.run(&["proxy", "--listen", "127.0.0.1:0", "--min-remaining", "10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--stream-allowance"), "{}", stderr(&o));
}

/// `anthropic-wif probe`: what the distroless image's exec probes run (it has no curl).
#[test]
fn probe_reports_the_proxy_health_by_exit_code() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let px = ProxyProc::start(&sb, &["--quiet"]);
    let probe = |url: &str| sb.command(&["probe", url]).output().unwrap();
    let healthz = format!("{}/healthz", px.base);
    // Ready once the first token is in (the proxy fetches it in the background at start).
    let t = Instant::now();
    loop {
        let o = probe(&healthz);
        if o.status.success() {
            assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
            break;
        }
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(t.elapsed() < Duration::from_secs(20), "never ready: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(probe(&format!("{}/livez", px.base)).status.success());
    // A 404 is not healthy, and says what it got.
    let o = probe(&format!("{}/no-such-path", px.base));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
    drop(px);
    // Nothing listening: 1, naming the URL.
    let o = probe(&healthz);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&healthz), "{}", stderr(&o));
    // Not a loopback http URL: a usage error.
    for bad in ["http://10.1.2.3:8787/healthz", "https://127.0.0.1:8787/healthz"] {
        assert_eq!(probe(bad).status.code(), Some(2), "{bad}");
    }
}
