//! `anthropic-wif proxy` as a real process: curl as a client, SIGTERM during a stream,
//! 1 100 held connections at a 1 024 open-file limit, the Unix socket under umask 000,
//! what a 503 tells the client and what it tells the log.

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
        Self::spawn(sb.command(&args))
    }

    /// `anthropic-wif proxy ARGS` run by `sh -c "SETUP && exec anthropic-wif proxy ARGS"`
    /// (e.g. SETUP = `ulimit -Sn 1024` or `umask 000`).
    fn start_after(sb: &Sandbox, setup: &str, args: &[&str]) -> ProxyProc {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("{setup} && exec \"$0\" \"$@\"")).arg(bin()).arg("proxy").args(args);
        c.env_clear().envs(&sb.env).stdin(Stdio::null());
        Self::spawn(c)
    }

    fn spawn(mut c: Command) -> ProxyProc {
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("ready line: {line:?}; stderr: {err}")
        });
        ProxyProc { base: v["base_url"].as_str().unwrap_or_default().to_string(), child }
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

/// One request on a new connection (`connection: close`), its answer read to
/// the end within `wait`: (status, lower-cased head, body). Status 0 when no
/// answer came.
fn exchange_raw(addr: &str, request: &str, wait: Duration) -> (u16, String, String) {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), wait) else {
        return (0, "connect failed".into(), String::new());
    };
    s.set_read_timeout(Some(wait)).unwrap();
    if s.write_all(request.as_bytes()).is_err() {
        return (0, "write failed".into(), String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn post_messages(body: &str) -> String {
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Raise this process's soft open-file limit to the hard one; returns it.
fn raise_own_fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}

/// `Max open files` of a process: (soft, hard).
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let v: Vec<&str> = line.split_whitespace().collect();
    (v[3].to_string(), v[4].to_string())
}

#[cfg(target_os = "linux")]
#[test]
fn held_connections_do_not_starve_the_proxy() {
    const HELD: usize = 1100;
    // This process holds both ends of the held requests (the emulator runs in it).
    let limit = raise_own_fd_limit();
    assert!(
        limit >= 3 * HELD as u64,
        "this test needs an open-file hard limit of at least {} (have {limit})",
        3 * HELD
    );
    let mut sb = Sandbox::new();
    sb.federation_env();
    // Started with the usual soft limit of 1 024 open files.
    let px = ProxyProc::start_after(&sb, "ulimit -Sn 1024", &["--listen", "127.0.0.1:0", "--quiet"]);
    let (soft, hard) = open_file_limits(px.child.id());
    assert_eq!(soft, hard, "the proxy raised its soft open-file limit to the hard one");
    let ok = exchange_raw(px.addr(), &post_messages(BODY), Duration::from_secs(20));
    assert_eq!(ok.0, 200, "before the flood: {ok:?}");

    // 1 100 requests that send their headers and one byte of a body, then nothing.
    let mut held = Vec::new();
    for _ in 0..HELD {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&px.addr().parse().unwrap(), Duration::from_secs(5))
        else {
            continue;
        };
        let head = post_messages(BODY);
        let cut = head.len() - BODY.len() + 1;
        if s.write_all(&head.as_bytes()[..cut]).is_ok() {
            held.push(s);
        }
    }
    // Wait until the proxy has them all: each is forwarded upstream and waits there for its body.
    let t = Instant::now();
    while sb.emu.stats().message_requests < 1 + HELD as u64 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = exchange_raw(
        px.addr(),
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
        Duration::from_secs(20),
    );
    assert_eq!(health.0, 200, "/healthz under {} held connections: {health:?}", held.len());
    let fresh = exchange_raw(px.addr(), &post_messages(BODY), Duration::from_secs(20));
    assert_eq!(fresh.0, 200, "a fresh client under {} held connections: {fresh:?}", held.len());
    assert!(fresh.2.contains("\"type\":\"message\""), "{fresh:?}");
    assert_eq!(held.len(), HELD, "every held connection was accepted");
    assert!(sb.emu.stats().message_requests >= 2 + HELD as u64, "all of them reached the proxy: {:?}", sb.emu.stats());
    drop(held);
    px.terminate();
    let (status, err) = px.wait();
    assert!(status.success(), "{err}");
}

#[cfg(unix)]
#[test]
fn the_unix_socket_never_appears_with_a_looser_mode_even_under_umask_000() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut sb = Sandbox::new();
    sb.federation_env();
    let dir = sb.path("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("proxy.sock");
    // Look at the socket as often as possible, as another user trying to connect would.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(std::collections::BTreeMap::<u32, u64>::new()));
    let watcher = {
        let (stop, seen, sock) = (stop.clone(), seen.clone(), sock.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&sock) {
                    if m.file_type().is_socket() {
                        *seen.lock().unwrap().entry(m.mode() & 0o7777).or_default() += 1;
                    }
                }
            }
        })
    };
    let listen = format!("unix:{}", sock.display());
    for _ in 0..30 {
        let px = ProxyProc::start_after(&sb, "umask 000", &["--listen", &listen, "--quiet"]);
        px.terminate();
        let (status, err) = px.wait();
        assert!(status.success(), "{err}");
        if seen.lock().unwrap().keys().any(|m| *m != 0o600) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the watcher saw the socket");
    let shown: Vec<String> = seen.iter().map(|(m, n)| format!("{m:o} ({n} times)")).collect();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![0o600], "modes seen: {shown:?}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

#[test]
fn a_503_tells_the_client_the_class_and_a_request_id_and_the_log_the_details() {
    let mut sb = Sandbox::new();
    let jwt = sb.federation_env();
    std::fs::remove_file(&jwt).unwrap();
    let px = ProxyProc::start(&sb, &[]);
    let (status, head, body) = exchange_raw(px.addr(), &post_messages(BODY), Duration::from_secs(20));
    assert_eq!(status, 503, "{head}{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["request_id"].as_str().unwrap().to_string();
    assert!(head.contains(&format!("request-id: {id}")), "{head}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("[identity]") && msg.contains(&id), "{msg}");
    let path = jwt.display().to_string();
    for detail in [path.as_str(), RULE, ORG, SVAC, sb.dir.path().to_str().unwrap()] {
        assert!(!body.contains(detail), "the client is not told {detail}: {body}");
    }
    px.terminate();
    let (status, err) = px.wait();
    assert!(status.success(), "{err}");
    let line = err.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("the log names {id}: {err}"));
    assert!(line.contains("503") && line.contains(&path), "the log has the details: {line}");
}

#[test]
fn bad_proxy_flags_are_configuration_errors() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    for (args, says) in [
        (
            vec!["--allow-host", "http://proxy.internal:8787/"],
            "--allow-host \"http://proxy.internal:8787/\" is not a host name",
        ),
        (vec!["--max-connections", "0"], "--max-connections must be at least 1"),
        (vec!["--client-timeout", "0"], "--client-timeout must be at least 1 second"),
    ] {
        let mut all = vec!["proxy", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(&args);
        let o = sb.run(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("error [config]: {says}")), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    // A good --allow-host is accepted (and used: proxy/tests/proxy.rs).
    let px = ProxyProc::start(&sb, &["--allow-host", "anthropic-proxy.internal", "--max-connections", "8"]);
    let req = post_messages(BODY).replace("host: 127.0.0.1", "host: anthropic-proxy.internal:8787");
    let (status, _, body) = exchange_raw(px.addr(), &req, Duration::from_secs(20));
    assert_eq!(status, 200, "{body}");
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
