//! Tests over real files, real child processes and real loopback HTTP.
//! Everything runs on the crate's shared runtime (as the faces do), and the
//! fake servers are plain tokio TCP listeners speaking HTTP/1.1.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::error::ErrorKind;
use crate::runtime::{block_on, runtime};

const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vcjpyZWY6bWFpbiJ9.c2lnbmF0dXJlLWJ5dGVz";

pub(super) fn run(spec: &IdentitySpec, env: &Env) -> Result<Secret> {
    block_on(fetch(spec, env))
}

pub(super) fn err(spec: &IdentitySpec, env: &Env) -> Error {
    match run(spec, env) {
        Ok(_) => panic!("expected an error from {}", spec.describe()),
        Err(e) => e,
    }
}

/// Every error must name its source and leak nothing.
fn assert_clean(e: &Error, spec: &IdentitySpec, secrets: &[&str]) {
    assert!(e.message().contains(&spec.describe()), "message does not name the source: {}", e.message());
    for s in secrets {
        assert!(!e.message().contains(s), "message leaks {s:?}: {}", e.message());
    }
    assert!(!e.message().contains("eyJhbGci"), "message leaks a JWT: {}", e.message());
    assert!(!e.message().contains("sk-ant-"), "message leaks a token: {}", e.message());
}

// ---------------------------------------------------------------- file

#[test]
fn file_is_trimmed_and_reread_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("\n  {JWT}  \r\n")).unwrap();
    let spec = IdentitySpec::File { path: path.clone() };
    assert_eq!(run(&spec, &Env::default()).unwrap().expose(), JWT);
    // Rotation (as kubelet does: write a new file and swap it in).
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert_eq!(run(&spec, &Env::default()).unwrap().expose(), "second-token");
}

#[test]
fn file_errors_name_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = IdentitySpec::File { path: dir.path().join("nope") };
    let e = err(&missing, &Env::default());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("does not exist"), "{}", e.message());
    assert!(e.message().contains("projected service-account token"), "{}", e.message());
    assert!(e.message().contains("audience"), "{}", e.message());
    assert_clean(&e, &missing, &[]);

    for content in ["", "  \n\t \n"] {
        let p = dir.path().join("empty");
        std::fs::write(&p, content).unwrap();
        let spec = IdentitySpec::File { path: p };
        let e = err(&spec, &Env::default());
        assert_eq!(e.kind, ErrorKind::Identity);
        assert!(e.message().contains("empty"), "{}", e.message());
        assert_clean(&e, &spec, &[]);
    }

    let spec = IdentitySpec::File { path: dir.path().to_path_buf() };
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("directory"), "{}", e.message());

    let p = dir.path().join("two-lines");
    std::fs::write(&p, format!("{JWT}\n{JWT}\n")).unwrap();
    let spec = IdentitySpec::File { path: p };
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("several lines"), "{}", e.message());
    assert_clean(&e, &spec, &[]);

    let p = dir.path().join("binary");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let e = err(&IdentitySpec::File { path: p }, &Env::default());
    assert!(e.message().contains("UTF-8"), "{}", e.message());

    let e = err(&IdentitySpec::File { path: PathBuf::new() }, &Env::default());
    assert_eq!(e.kind, ErrorKind::Config);
}

#[test]
fn file_size_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big");
    std::fs::write(&p, "a".repeat(MAX_LOCAL_TOKEN_BYTES)).unwrap();
    assert_eq!(run(&IdentitySpec::File { path: p.clone() }, &Env::default()).unwrap().len(), MAX_LOCAL_TOKEN_BYTES);
    std::fs::write(&p, "a".repeat(MAX_LOCAL_TOKEN_BYTES + 1)).unwrap();
    let e = err(&IdentitySpec::File { path: p }, &Env::default());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("limit"), "{}", e.message());
}

#[cfg(unix)]
#[test]
fn file_unreadable_and_fifo() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A FIFO must be refused, not block forever.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain libc call with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // No writer ever appears: a blocking open would wait forever. The file is
    // opened non-blocking, so the FIFO is seen and refused at once.
    let e = err(&IdentitySpec::File { path: fifo }, &Env::default());
    assert!(e.message().contains("not a regular file"), "{}", e.message());

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return; // root reads anything
    }
    let p = dir.path().join("secret");
    std::fs::write(&p, JWT).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let spec = IdentitySpec::File { path: p };
    let e = err(&spec, &Env::default());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("permission denied"), "{}", e.message());
    assert_clean(&e, &spec, &[]);
}

// ---------------------------------------------------------------- env

#[test]
fn env_source() {
    let env = Env::fixed([("MY_TOKEN", format!("  {JWT}\n")), ("BLANK", "   ".to_string())]);
    let spec = IdentitySpec::Env { var: "MY_TOKEN".into() };
    assert_eq!(run(&spec, &env).unwrap().expose(), JWT);

    for var in ["UNSET_VAR", "BLANK"] {
        let spec = IdentitySpec::Env { var: var.into() };
        let e = err(&spec, &env);
        assert_eq!(e.kind, ErrorKind::Identity, "{}", e.message());
        assert!(e.message().contains(var), "{}", e.message());
        assert_clean(&e, &spec, &[]);
    }
    let e = err(&IdentitySpec::Env { var: "".into() }, &env);
    assert_eq!(e.kind, ErrorKind::Config);
    let e = err(&IdentitySpec::Env { var: format!("X={JWT}") }, &env);
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(!e.message().contains(JWT), "{}", e.message());
}

#[test]
fn env_source_reads_the_snapshot_not_the_process_environment() {
    // PATH is set in the test process; the snapshot's value is the one read.
    let env = Env::fixed([("PATH", "from-the-snapshot")]);
    let got = run(&IdentitySpec::Env { var: "PATH".into() }, &env).unwrap();
    assert_eq!(got.expose(), "from-the-snapshot");
    let e = err(&IdentitySpec::Env { var: "PATH".into() }, &Env::default());
    assert!(e.message().contains("PATH is not set"), "{}", e.message());
}

// ---------------------------------------------------------------- command

fn cmd(args: &[&str], timeout_s: Option<u64>) -> IdentitySpec {
    IdentitySpec::Command { command: args.iter().map(|s| s.to_string()).collect(), timeout_s }
}

#[test]
fn command_stdout_is_the_token() {
    let spec = cmd(&["sh", "-c", &format!("printf '  %s\\n' '{JWT}'; echo 'a warning' >&2")], None);
    assert_eq!(run(&spec, &Env::default()).unwrap().expose(), JWT);
    // No shell between us and argv: metacharacters reach the program as-is.
    let spec = cmd(&["printf", "%s", "tok;$(echo no)|x"], None);
    assert_eq!(run(&spec, &Env::default()).unwrap().expose(), "tok;$(echo no)|x");
}

#[test]
fn command_gets_the_snapshot_as_its_environment_and_null_stdin() {
    // The child's environment is the snapshot, nothing of the process's (HOME
    // is set in the test process): spawning never reads the process environment.
    let env = Env::fixed([("PATH", "/usr/bin:/bin"), ("WIF_ONLY_IN_SNAPSHOT", "yes")]);
    let spec = cmd(&["sh", "-c", "printf %s \"$PATH|$WIF_ONLY_IN_SNAPSHOT|${HOME:-unset}\""], None);
    assert_eq!(run(&spec, &env).unwrap().expose(), "/usr/bin:/bin|yes|unset");
    // `cat` with a null stdin ends at once with no output: an empty token.
    let spec = cmd(&["cat"], Some(20));
    let t = Instant::now();
    let e = err(&spec, &Env::default());
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("empty"), "{}", e.message());
    assert_clean(&e, &spec, &[]);
}

#[test]
fn command_failure_reports_status_and_scrubbed_stderr_tail() {
    let script = format!(
        "echo 'partial-{JWT}' ; echo 'lots of noise' >&2; echo 'got {JWT} and sk-ant-oat01-AbCdEf_123 from cache' >&2; echo 'final reason: no credentials' >&2; exit 3"
    );
    let spec = cmd(&["sh", "-c", &script], None);
    let e = err(&spec, &Env::default());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("exited with status 3"), "{}", e.message());
    assert!(e.message().contains("final reason: no credentials"), "{}", e.message());
    assert!(e.message().contains("[redacted"), "{}", e.message());
    assert_clean(&e, &spec, &[JWT, "AbCdEf_123"]);

    // Long stderr: only the tail, about 500 characters.
    let spec = cmd(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 400 ]; do echo \"line $i of noise\" >&2; i=$((i+1)); done; echo THE-END >&2; exit 1",
        ],
        None,
    );
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("THE-END"), "{}", e.message());
    assert!(!e.message().contains("line 1 of noise"), "{}", e.message());
    assert!(e.message().len() < 1000, "{} chars", e.message().len());

    // Killed by a signal.
    let spec = cmd(&["sh", "-c", "kill -9 $$"], None);
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("signal 9"), "{}", e.message());
    assert!(e.message().contains("no stderr output"), "{}", e.message());
}

#[test]
fn command_config_and_spawn_errors() {
    let e = err(&cmd(&[], None), &Env::default());
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("identity token command") && e.message().contains("empty"), "{}", e.message());
    let e = err(&cmd(&[""], None), &Env::default());
    assert_eq!(e.kind, ErrorKind::Config);
    let e = err(&cmd(&["true"], Some(0)), &Env::default());
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("timeout_s"), "{}", e.message());

    let spec = cmd(&["/nonexistent/get-token-xyz", "--flag"], None);
    let e = err(&spec, &Env::default());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("not found") && e.message().contains("/nonexistent/get-token-xyz"), "{}", e.message());

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not-exec");
    std::fs::write(&p, "#!/bin/sh\necho x\n").unwrap();
    let spec = IdentitySpec::Command { command: vec![p.to_str().unwrap().to_string()], timeout_s: None };
    let e = err(&spec, &Env::default());
    // execve needs an x bit even for root.
    assert!(e.message().contains("permission denied"), "{}", e.message());
    assert_eq!(e.kind, ErrorKind::Identity);

    let spec = cmd(&["sh", "-c", "printf 'line1\\nline2\\n'"], None);
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("several lines"), "{}", e.message());
}

#[cfg(unix)]
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...
    let after = &stat[stat.rfind(')')? + 2..];
    let mut it = after.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Not running: gone, or a zombie that is not ours to reap.
#[cfg(unix)]
fn assert_dead(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match proc_state(pid) {
            None => return,
            Some(('Z', ppid)) if ppid != std::process::id() as i32 => return,
            Some(s) if Instant::now() > deadline => panic!("{what} (pid {pid}) still there: {s:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(unix)]
fn read_pid(p: &std::path::Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if let Ok(n) = s.trim().parse() {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "no pid file {}", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn command_timeout_kills_child_and_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("sh.pid"), dir.path().join("sleep.pid"));
    let script = format!("echo $$ > {}; sleep 300 & echo $! > {}; wait", p1.display(), p2.display());
    let spec = cmd(&["sh", "-c", &script], Some(1));
    let t = Instant::now();
    let e = err(&spec, &Env::default());
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("timed out after 1s") && e.message().contains("timeout_s"), "{}", e.message());
    assert_clean(&e, &spec, &[]);
    let (sh, sleep) = (read_pid(&p1), read_pid(&p2));
    // The direct child was reaped by us (no zombie with us as parent).
    assert_dead(sh, "the command");
    assert_dead(sleep, "its background child");
}

#[cfg(unix)]
#[test]
fn command_exits_but_background_child_holds_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bg.pid");
    let script = format!("sleep 300 & echo $! > {}; echo tok", p.display());
    let spec = cmd(&["sh", "-c", &script], Some(1));
    let e = err(&spec, &Env::default());
    assert!(e.message().contains("output pipe stayed open"), "{}", e.message());
    assert_dead(read_pid(&p), "the background child");
}

#[cfg(unix)]
#[test]
fn command_output_is_bounded_and_the_child_killed() {
    // `yes` never stops on its own: only the cap can end it.
    let spec = cmd(&["yes", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], Some(60));
    let t = Instant::now();
    let e = err(&spec, &Env::default());
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains(&format!("more than {MAX_LOCAL_TOKEN_BYTES} bytes")), "{}", e.message());
    assert!(e.message().len() < 600, "{}", e.message());
    // Exactly at the cap is fine.
    let spec = cmd(&["head", "-c", &MAX_LOCAL_TOKEN_BYTES.to_string(), "/dev/zero"], None);
    let e = err(&spec, &Env::default()); // NULs are not a token, but not over the cap either
    assert!(e.message().contains("control characters"), "{}", e.message());
    let spec = cmd(&["sh", "-c", &format!("head -c {MAX_LOCAL_TOKEN_BYTES} /dev/zero | tr '\\0' a")], None);
    assert_eq!(run(&spec, &Env::default()).unwrap().len(), MAX_LOCAL_TOKEN_BYTES);
}

#[cfg(unix)]
#[test]
fn command_cancelled_midway_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("sh.pid"), dir.path().join("sleep.pid"));
    let script = format!("echo $$ > {}; sleep 300 & echo $! > {}; wait", p1.display(), p2.display());
    let spec = cmd(&["sh", "-c", &script], Some(300));
    let r = block_on(async { tokio::time::timeout(Duration::from_millis(700), fetch(&spec, &Env::default())).await });
    assert!(r.is_err(), "the fetch should still have been running");
    assert_dead(read_pid(&p1), "the command");
    assert_dead(read_pid(&p2), "its background child");
}

// ---------------------------------------------------------------- url

#[derive(Clone, Debug)]
struct Seen {
    target: String,
    headers: HashMap<String, String>,
}

enum Reply {
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A chunked body of `total` bytes (no Content-Length).
    Chunked {
        total: usize,
    },
    /// Accept and never answer.
    Hang,
}

fn ok(body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full { status: 200, headers: vec![], body: body.into() }
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let handler = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen2 = seen.clone();
        runtime().spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = head.split("\r\n");
                    let target = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_string();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let req = Seen { target, headers };
                    seen.lock().unwrap().push(req.clone());
                    match handler(&req) {
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(120)).await;
                        }
                        Reply::Full { status, headers, body } => {
                            let mut out = format!(
                                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str("\r\n");
                            let _ = sock.write_all(out.as_bytes()).await;
                            let _ = sock.write_all(&body).await;
                        }
                        Reply::Chunked { total } => {
                            let _ = sock
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                                )
                                .await;
                            let piece = vec![b'a'; 16 * 1024];
                            let mut sent = 0;
                            while sent < total {
                                let n = piece.len().min(total - sent);
                                let frame = format!("{n:x}\r\n");
                                if sock.write_all(frame.as_bytes()).await.is_err()
                                    || sock.write_all(&piece[..n]).await.is_err()
                                    || sock.write_all(b"\r\n").await.is_err()
                                {
                                    return;
                                }
                                sent += n;
                            }
                            let _ = sock.write_all(b"0\r\n\r\n").await;
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server { base, seen }
    }
    fn hits(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn url_spec(url: &str, headers: &[(&str, &str)], field: Option<&str>) -> IdentitySpec {
    IdentitySpec::Url {
        url: url.to_string(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        field: field.map(str::to_string),
    }
}

fn host_env(server: &Server, extra: &[(&str, &str)]) -> Env {
    let host = server.base.trim_start_matches("http://").to_string();
    let mut vars: Vec<(String, String)> = vec![("HOST".into(), host), ("API_KEY".into(), "hdr-secret-123".into())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::fixed(vars)
}

#[test]
fn url_plain_body_with_expanded_url_and_headers() {
    let server = Server::start(|_| ok(format!("\n {JWT} \n")));
    let env = host_env(&server, &[("Q", "qsecret-456")]);
    let spec = url_spec(
        &format!("{}/identity/$$x?q=${{Q}}", server.base),
        &[("Metadata-Flavor", "Google"), ("Authorization", "Bearer ${API_KEY}")],
        None,
    );
    assert_eq!(run(&spec, &env).unwrap().expose(), JWT);
    let hits = server.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].target, "/identity/$x?q=qsecret-456");
    assert_eq!(hits[0].headers.get("metadata-flavor").map(String::as_str), Some("Google"));
    assert_eq!(hits[0].headers.get("authorization").map(String::as_str), Some("Bearer hdr-secret-123"));
}

#[test]
fn url_field_extraction() {
    let server = Server::start(|req| {
        let body = match req.target.as_str() {
            "/ok" => format!(r#"{{"count":1,"value":" {JWT} "}}"#),
            "/num" => r#"{"value":42,"other":"x"}"#.to_string(),
            "/nofield" => format!(r#"{{"token":"{JWT}","access":"sk-ant-oat01-zzzz"}}"#),
            "/array" => "[1,2]".to_string(),
            "/json-no-field" => format!(r#"{{"value":"{JWT}"}}"#),
            _ => format!("not json {JWT}"),
        };
        ok(body)
    });
    let env = host_env(&server, &[]);
    let at = |path: &str, field: Option<&str>| url_spec(&format!("{}{path}", server.base), &[], field);
    assert_eq!(run(&at("/ok", Some("value")), &env).unwrap().expose(), JWT);

    let spec = at("/num", Some("value"));
    let e = err(&spec, &env);
    assert!(e.message().contains("not a string"), "{}", e.message());
    assert_clean(&e, &spec, &[]);

    let spec = at("/nofield", Some("value"));
    let e = err(&spec, &env);
    assert!(e.message().contains("no member \"value\"") && e.message().contains("\"token\""), "{}", e.message());
    assert_clean(&e, &spec, &[JWT, "zzzz"]);

    let spec = at("/text", Some("value"));
    let e = err(&spec, &env);
    assert!(e.message().contains("not JSON"), "{}", e.message());
    assert_clean(&e, &spec, &[JWT]);

    let e = err(&at("/array", Some("value")), &env);
    assert!(e.message().contains("not an object"), "{}", e.message());

    // A JSON object without `field`: say which field to set, don't send JSON as a JWT.
    let spec = at("/json-no-field", None);
    let e = err(&spec, &env);
    assert!(e.message().contains("set field") && e.message().contains("\"value\""), "{}", e.message());
    assert_clean(&e, &spec, &[JWT]);

    let e = err(&at("/ok", Some(" ")), &env);
    assert_eq!(e.kind, ErrorKind::Config);
}

#[test]
fn url_errors_show_the_template_never_the_values() {
    let server = Server::start(|req| {
        let auth = req.headers.get("authorization").cloned().unwrap_or_default();
        match req.target.as_str() {
            t if t.starts_with("/denied") => Reply::Full {
                status: 403,
                headers: vec![],
                // Untrusted body echoing our request.
                body: format!(r#"{{"message":"bad auth {auth} for {t}; stale token {JWT}"}}"#).into_bytes(),
            },
            t if t.starts_with("/moved") => Reply::Full {
                status: 302,
                headers: vec![("Location", "http://127.0.0.1:1/elsewhere".to_string())],
                body: vec![],
            },
            "/empty" => ok("  \n"),
            _ => Reply::Full { status: 500, headers: vec![], body: vec![] },
        }
    });
    let env = host_env(&server, &[("Q", "qsecret-456")]);
    let headers = [("Authorization", "Bearer ${API_KEY}")];
    let secrets = ["hdr-secret-123", "qsecret-456", JWT];

    let spec = url_spec(&format!("{}/denied?q=${{Q}}", server.base), &headers, Some("value"));
    let e = err(&spec, &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("HTTP 403") && e.message().contains("bad auth"), "{}", e.message());
    assert!(e.message().contains(&format!("{}/denied?q=${{Q}}", server.base)), "{}", e.message());
    assert_clean(&e, &spec, &secrets);

    // A literal credential header (no variable) is scrubbed too.
    let spec = url_spec(&format!("{}/denied", server.base), &[("Authorization", "Bearer literal-secret-789")], None);
    let e = err(&spec, &env);
    assert!(e.message().contains("HTTP 403"), "{}", e.message());
    assert_clean(&e, &spec, &["literal-secret-789"]);

    let spec = url_spec(&format!("{}/moved?q=${{Q}}", server.base), &headers, None);
    let e = err(&spec, &env);
    assert!(e.message().contains("redirect") && e.message().contains("302"), "{}", e.message());
    assert!(e.message().contains(&format!("{}/moved?q=${{Q}}", server.base)), "{}", e.message());
    assert_clean(&e, &spec, &secrets);
    assert_eq!(server.hits().iter().filter(|h| h.target.contains("elsewhere")).count(), 0);

    let spec = url_spec(&format!("{}/boom", server.base), &headers, None);
    let e = err(&spec, &env);
    assert!(e.message().contains("HTTP 500"), "{}", e.message());

    let spec = url_spec(&format!("{}/empty", server.base), &headers, None);
    let e = err(&spec, &env);
    assert!(e.message().contains("empty"), "{}", e.message());
    assert_clean(&e, &spec, &secrets);

    // Unset variable: named, nothing sent.
    let before = server.hits().len();
    let spec = url_spec(&format!("{}/x", server.base), &[("Authorization", "Bearer ${NOT_SET_ANYWHERE}")], None);
    let e = err(&spec, &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(
        e.message().contains("NOT_SET_ANYWHERE") && e.message().contains("header authorization"),
        "{}",
        e.message()
    );
    assert_eq!(server.hits().len(), before);

    // Connection refused: the expanded URL (with its secret) is not shown.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env2 = Env::fixed([("Q", "qsecret-456".to_string())]);
    let spec = url_spec(&format!("http://127.0.0.1:{closed}/x?q=${{Q}}"), &[], None);
    let e = err(&spec, &env2);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("cannot connect"), "{}", e.message());
    assert_clean(&e, &spec, &["qsecret-456"]);

    // Invalid header name / value.
    let e = err(&url_spec(&format!("{}/x", server.base), &[("Bad Header", "v")], None), &env);
    assert_eq!(e.kind, ErrorKind::Config);
    let env3 = host_env(&server, &[("NL", "a\nb-secret")]);
    let e = err(&url_spec(&format!("{}/x", server.base), &[("X-Token", "${NL}")], None), &env3);
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("x-token") && !e.message().contains("b-secret"), "{}", e.message());
}

#[test]
fn url_variables_cannot_choose_the_host() {
    // `${VAR}` in the scheme, host or port would let the environment send the
    // headers (here a bearer) to another host: refused before any request.
    let server = Server::start(|_| ok(JWT.to_string()));
    let env = host_env(&server, &[("PORT", "1"), ("SCHEME", "http")]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    for template in [
        "http://${HOST}/x".to_string(),
        "http://127.0.0.1:${PORT}/x".to_string(),
        format!("${{SCHEME}}://127.0.0.1:{port}/x"),
    ] {
        let spec = url_spec(&template, &[("Authorization", "Bearer ${API_KEY}")], None);
        let e = err(&spec, &env);
        assert_eq!(e.kind, ErrorKind::Config, "{template}");
        assert!(e.message().contains("scheme, host or port"), "{}", e.message());
        assert_clean(&e, &spec, &["hdr-secret-123"]);
    }
    assert_eq!(server.hits().len(), 0, "nothing was sent");
    // In the path and the query they are fine.
    let spec = url_spec(&format!("{}/${{PORT}}?s=${{SCHEME}}", server.base), &[], None);
    assert_eq!(run(&spec, &env).unwrap().expose(), JWT);
    assert_eq!(server.hits()[0].target, "/1?s=http");
}

#[test]
fn url_body_is_capped() {
    let server = Server::start(|req| match req.target.as_str() {
        "/declared" => ok(vec![b'a'; url::MAX_BODY_BYTES + 1]),
        "/chunked" => Reply::Chunked { total: 8 * url::MAX_BODY_BYTES },
        "/chunked-ok" => Reply::Chunked { total: 1000 },
        _ => ok(vec![b'a'; url::MAX_BODY_BYTES]),
    });
    let env = host_env(&server, &[]);
    for path in ["/declared", "/chunked"] {
        let spec = url_spec(&format!("{}{path}", server.base), &[], None);
        let e = err(&spec, &env);
        assert_eq!(e.kind, ErrorKind::Identity);
        assert!(e.message().contains("more than 1048576 bytes"), "{path}: {}", e.message());
    }
    let spec = url_spec(&format!("{}/chunked-ok", server.base), &[], None);
    assert_eq!(run(&spec, &env).unwrap().len(), 1000);
    let spec = url_spec(&format!("{}/exact", server.base), &[], None);
    assert_eq!(run(&spec, &env).unwrap().len(), url::MAX_BODY_BYTES);
}

#[test]
fn url_times_out() {
    let server = Server::start(|_| Reply::Hang);
    let source = "identity token url http://127.0.0.1/hang";
    let req = url::TokenGet {
        url: reqwest::Url::parse(&format!("{}/hang", server.base)).unwrap(),
        headers: Default::default(),
        field: None,
        secrets: vec![],
        timeout: Duration::from_secs(1),
        fix: "check it".into(),
    };
    let t = Instant::now();
    let e = block_on(url::get_token(req, &Env::default(), source)).err().unwrap();
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("timed out after 1s") && e.message().contains(source), "{}", e.message());
    assert_eq!(server.hits().len(), 1);
}

#[test]
fn url_scheme_host_and_userinfo_rules() {
    let allowed = [
        "https://example.com/token",
        "https://10.1.2.3/t",
        "http://127.0.0.1:8080/t",
        "http://127.9.9.9/t",
        "http://localhost:1/t",
        "http://LOCALHOST/t",
        "http://[::1]:9/t",
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/latest/",
    ];
    for u in allowed {
        assert!(url::check_url(u, "src", &[]).is_ok(), "{u} should be allowed");
    }
    let refused = [
        ("http://example.com/t", "plain http"),
        ("http://10.0.0.1/t", "plain http"),
        ("http://169.254.169.253/t", "plain http"),
        ("http://metadata.google.internal.evil.com/t", "plain http"),
        ("ftp://example.com/t", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https://user:hunter2@example.com/t", "credentials"),
        ("https://tokenonly@example.com/t", "credentials"),
        ("not a url", "not a valid absolute URL"),
        ("/relative/path", "not a valid absolute URL"),
    ];
    for (u, expect) in refused {
        let e = url::check_url(u, "src", &[]).err().unwrap_or_else(|| panic!("{u} should be refused"));
        assert_eq!(e.kind, ErrorKind::Config, "{u}");
        assert!(e.message().contains(expect), "{u}: {}", e.message());
        assert!(!e.message().contains("hunter2") && !e.message().contains("tokenonly"), "{}", e.message());
    }
    // Through fetch: refused before any request, and the template's password is not shown.
    let spec = url_spec("https://me:hunter2@example.com/${X}", &[], None);
    assert!(!spec.describe().contains("hunter2"), "{}", spec.describe());
    let e = err(&spec, &Env::fixed([("X", "y")]));
    assert_eq!(e.kind, ErrorKind::Config);
    assert_clean(&e, &spec, &["hunter2"]);
    // A scheme that comes from a variable is not echoed either.
    let e = err(&url_spec("${U}", &[], None), &Env::fixed([("U", "sk-secretscheme:abc")]));
    assert!(!e.message().contains("secretscheme"), "{}", e.message());
}

// ---------------------------------------------------------------- GitHub Actions

/// A loopback stand-in for the Actions OIDC endpoint: checks the bearer and
/// answers `{"count":1,"value":<jwt>}` for the audience asked for.
fn fake_actions() -> Server {
    Server::start(|req| {
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer runner-request-token-XYZ") {
            return Reply::Full { status: 401, headers: vec![], body: br#"{"message":"Bad credentials"}"#.to_vec() };
        }
        let Ok(url) = reqwest::Url::parse(&format!("http://x{}", req.target)) else {
            return Reply::Full { status: 400, headers: vec![], body: vec![] };
        };
        let auds: Vec<String> =
            url.query_pairs().filter(|(k, _)| k == "audience").map(|(_, v)| v.into_owned()).collect();
        if auds.len() != 1 {
            return Reply::Full { status: 400, headers: vec![], body: b"need exactly one audience".to_vec() };
        }
        let api = url.query_pairs().find(|(k, _)| k == "api-version").map(|(_, v)| v.into_owned()).unwrap_or_default();
        ok(format!(r#"{{"count":1,"value":"{JWT}.aud={}.api={api}"}}"#, auds[0].replace(['"', '\\'], "_")))
    })
}

fn actions_env(server: &Server, query: &str, token: &str) -> Env {
    Env::fixed([
        ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/_apis/idtoken{query}", server.base)),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", token.to_string()),
    ])
}

#[test]
fn github_actions_requests_the_audience_with_the_bearer() {
    let server = fake_actions();
    let env = actions_env(&server, "?api-version=2.0", "runner-request-token-XYZ");
    let spec = IdentitySpec::GithubActions { audience: None };
    let got = run(&spec, &env).unwrap();
    assert_eq!(got.expose(), format!("{JWT}.aud=https://api.anthropic.com.api=2.0"));
    let hit = &server.hits()[0];
    assert_eq!(hit.target, "/_apis/idtoken?api-version=2.0&audience=https%3A%2F%2Fapi.anthropic.com");

    // A custom audience with characters that need encoding; URL without a query.
    let env = actions_env(&server, "", "runner-request-token-XYZ");
    let spec = IdentitySpec::GithubActions { audience: Some("https://aud.example/a b&c=d".into()) };
    let got = run(&spec, &env).unwrap();
    assert_eq!(got.expose(), format!("{JWT}.aud=https://aud.example/a b&c=d.api="));
    let hit = &server.hits()[1];
    assert!(hit.target.starts_with("/_apis/idtoken?audience="), "{}", hit.target);
    assert!(!hit.target.contains(' ') && hit.target.matches('&').count() == 0, "{}", hit.target);
}

#[test]
fn github_actions_errors() {
    let server = fake_actions();
    let spec = IdentitySpec::GithubActions { audience: None };

    let env = actions_env(&server, "?api-version=2.0", "wrong-token-SECRET");
    let e = err(&spec, &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("HTTP 401") && e.message().contains("id-token: write"), "{}", e.message());
    assert_clean(&e, &spec, &["wrong-token-SECRET"]);

    for env in [
        Env::fixed([("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t")]),
        Env::fixed([("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x/y")]),
        Env::fixed(Vec::<(String, String)>::new()),
    ] {
        let e = err(&spec, &env);
        assert_eq!(e.kind, ErrorKind::Identity);
        assert!(e.message().contains("permissions: id-token: write"), "{}", e.message());
        assert!(e.message().contains("ACTIONS_ID_TOKEN_REQUEST_"), "{}", e.message());
        assert_clean(&e, &spec, &[]);
    }

    let e = err(&IdentitySpec::GithubActions { audience: Some("".into()) }, &actions_env(&server, "", "t"));
    assert_eq!(e.kind, ErrorKind::Config);

    // Plain http to a non-loopback host is refused even for the preset.
    let env =
        Env::fixed([("ACTIONS_ID_TOKEN_REQUEST_URL", "http://example.com/x"), ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t")]);
    assert_eq!(err(&spec, &env).kind, ErrorKind::Config);
}

// ---------------------------------------------------------------- spec shape

#[test]
fn spec_json_shapes_round_trip() {
    let cases = [
        r#"{"source":"file","path":"/var/run/secrets/anthropic.com/token"}"#,
        r#"{"source":"env","var":"ANTHROPIC_IDENTITY_TOKEN"}"#,
        r#"{"source":"command","command":["gcloud","auth","print-identity-token"],"timeout_s":30}"#,
        r#"{"source":"url","url":"http://169.254.169.254/x?r=${R}","headers":{"Metadata":"true"},"field":"access_token"}"#,
        r#"{"source":"github_actions","audience":"https://api.anthropic.com"}"#,
        r#"{"source":"github_actions"}"#,
    ];
    for c in cases {
        let spec: IdentitySpec = serde_json::from_str(c).unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), c);
        assert!(!spec.describe().is_empty());
    }
}

#[test]
fn other_sdks_identity_token_shapes_map_onto_ours() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    let env_spec = |v: &str| IdentitySpec::Env { var: v.into() };
    let cases: Vec<(String, IdentitySpec)> = vec![
        // Ruby: the variable's name in `value`; PHP: in `env_var`, or PHP's default.
        (r#"{"source":"env","value":"MY_JWT"}"#.into(), env_spec("MY_JWT")),
        (r#"{"source":"env","env_var":"MY_JWT"}"#.into(), env_spec("MY_JWT")),
        (r#"{"source":"env"}"#.into(), env_spec("ANTHROPIC_IDENTITY_TOKEN")),
        // PHP: the JWT itself in `token`; Java: in `path`, with source `value`.
        (format!(r#"{{"source":"literal","token":"{jwt}"}}"#), IdentitySpec::Literal { token: Secret::new(jwt) }),
        (format!(r#"{{"source":"value","path":"{jwt}"}}"#), IdentitySpec::Literal { token: Secret::new(jwt) }),
    ];
    for (json, want) in cases {
        let spec: IdentitySpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(spec, want, "{json}");
        // Never shown: not in Debug, serialisation or the description.
        for shown in [format!("{spec:?}"), serde_json::to_string(&spec).unwrap(), spec.describe()] {
            assert!(!shown.contains("eyJ"), "{shown}");
        }
    }
    // The variable each names is declared secret (exec keeps it from CMD).
    let spec: IdentitySpec = serde_json::from_str(r#"{"source":"env","env_var":"PHP_JWT"}"#).unwrap();
    assert_eq!(spec.secret_env_vars(), vec!["PHP_JWT".to_string()]);
    let spec: IdentitySpec = serde_json::from_str(r#"{"source":"env"}"#).unwrap();
    assert_eq!(spec.secret_env_vars(), vec!["ANTHROPIC_IDENTITY_TOKEN".to_string()]);
    // Two names for one variable is an error, as is a literal without its token.
    assert!(serde_json::from_str::<IdentitySpec>(r#"{"source":"env","var":"A","value":"B"}"#).is_err());
    let e = serde_json::from_str::<IdentitySpec>(r#"{"source":"literal"}"#).unwrap_err().to_string();
    assert!(e.contains("token"), "{e}");
    // A literal serves its token (one exchange), a source that cannot change.
    let spec = IdentitySpec::Literal { token: Secret::new(jwt) };
    let got = crate::runtime::block_on(fetch(&spec, &Env::default())).unwrap();
    assert_eq!(got.expose(), jwt);
    assert_eq!(spec.renewal(), Renewal::Fixed);
    // Ruby: a bare string is the token file's path.
    assert_eq!(IdentitySpec::bare_path("/t").unwrap(), IdentitySpec::File { path: "/t".into() });
    assert!(IdentitySpec::bare_path("").is_err());
}

#[test]
fn fetch_future_is_send() {
    // The provider spawns fetches on the multi-thread runtime.
    fn assert_send<T: Send>(_: &T) {}
    let spec = cmd(&["true"], None);
    let env = Env::default();
    let fut = fetch(&spec, &env);
    assert_send(&fut);
    drop(fut);
}
