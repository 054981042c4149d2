//! `anthropic-wif daemon`: real processes against the emulator, with short
//! token lifetimes (8 s: replaced 6 s before expiry, every 2 s) so that
//! rotations happen within a test. The SDKs reading what it writes are
//! tested in tests/e2e/test_daemon_sdks.py, Claude Code in
//! tests/e2e/claude_code.test.mjs.
#![cfg(unix)]

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anthropic_wif_emulator::Fault;
use serde_json::Value;

/// A running daemon whose stderr lines are collected as they come.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(sb: &Sandbox, extra: &[&str]) -> Daemon {
        let mut args = vec!["daemon", "--target-profile", "app"];
        args.extend_from_slice(extra);
        Self::start_with(sb.command(&args))
    }

    fn start_with(mut cmd: std::process::Command) -> Daemon {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the daemon");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        wait_until(within, || self.log().contains(needle), &format!("a log line with {needle:?}: {}", self.log()));
        self.log()
    }

    /// SIGTERM, then the exit status and everything it logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let status = wait_child(&mut self.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
        (status, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
}

fn wait_child(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < within, "the daemon did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < within, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(access_token, expires_at)` in a credentials file, if it holds one.
fn read_credentials(path: &Path) -> Option<(String, i64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((v["access_token"].as_str()?.to_string(), v["expires_at"].as_i64()?))
}

fn credentials(sb: &Sandbox) -> PathBuf {
    sb.path("config/credentials/app.json")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn rotates_ahead_of_expiry_with_one_exchange_per_rotation_shared_with_token_calls() {
    let (sb, jwt) = Sandbox::rotating(8);
    let ready = sb.path("run/ready");
    let d = Daemon::start(&sb, &["--write-profile", "--ready-file", ready.to_str().unwrap()]);
    wait_until(Duration::from_secs(20), || ready.exists(), "the ready file");
    let file = credentials(&sb);
    let first = read_credentials(&file).expect("the first token is in place when the ready file appears");
    let r: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    assert_eq!(r["credentials_path"], file.display().to_string());
    assert_eq!(r["expires_at"], first.1);
    let probe = |f: &Path| sb.run(&["probe", "--ready-file", f.to_str().unwrap()]).status.code();
    assert_eq!(probe(&ready), Some(0), "`probe --ready-file` passes while the token is in place");
    assert_eq!(probe(&sb.path("run/none")), Some(1));
    let stale = sb.path("run/stale");
    std::fs::write(&stale, r#"{"credentials_path": "/x", "expires_at": 1000}"#).unwrap();
    assert_eq!(probe(&stale), Some(1), "a daemon that died leaves a file whose token runs out");

    // Watch the file for ~7 s while `anthropic-wif token` runs beside the daemon with the same configuration.
    let mut seen: Vec<((String, i64), i64)> = vec![(first, now())];
    let mut from_token_calls = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        let (tok, _) = parse_token_json(&sb.run(&["token"]));
        from_token_calls.push(tok);
        if let Some(c) = read_credentials(&file) {
            if seen.last().map(|(s, _)| s) != Some(&c) {
                seen.push((c, now()));
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let (status, log) = d.stop();
    assert!(status.success(), "SIGTERM ends it cleanly: {status:?}\n{log}");
    assert!(log.contains("stopping;") && log.contains("keeps its token"), "{log}");
    assert!(!ready.exists(), "the ready file is removed on exit");
    assert_eq!(probe(&ready), Some(1));

    // At least three rotations after the first token, each ahead of the old token's expiry.
    assert!(seen.len() >= 4, "tokens seen in the file: {}\n{log}", seen.len());
    for pair in seen.windows(2) {
        let ((_, old_exp), _) = &pair[0];
        let (_, appeared) = &pair[1];
        assert!(
            old_exp - appeared >= 4,
            "replaced {} s before the old token's expiry (6 s wanted)",
            old_exp - appeared
        );
    }
    // One exchange per rotation, all of them the daemon's: the `token` calls beside it exchanged nothing.
    let rotations = log.matches("wrote a new access token").count();
    assert_eq!(sb.exchanges() as usize, rotations, "{log}");
    for r in sb.emu.requests() {
        let ua = r.headers.iter().find(|(k, _)| k == "user-agent").map(|(_, v)| v.as_str()).unwrap_or("");
        assert!(ua.ends_with("(daemon)"), "an exchange by another face: {ua}");
    }
    assert!(from_token_calls.len() > 20, "token ran beside it throughout");

    // The files the SDKs read: their format and modes, and the profile written with --write-profile.
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!((v["version"].as_str(), v["type"].as_str()), (Some("1.0"), Some("oauth_token")));
    assert_eq!((mode(&file), mode(file.parent().unwrap())), (0o600, 0o700));
    let profile: Value = serde_json::from_slice(&std::fs::read(sb.path("config/configs/app.json")).unwrap()).unwrap();
    assert_eq!(profile["authentication"], serde_json::json!({"type": "user_oauth"}));
    assert_eq!(profile["organization_id"], ORG);
    assert_eq!(profile["base_url"], sb.emu.base_url());
    assert_clean("the daemon's log", &log, &[&read_secret_file(&jwt)]);
    assert!(log.contains("next rotation in 2 s"), "{log}");
}

#[test]
fn survives_endpoint_faults_keeping_the_still_valid_token() {
    let (sb, _) = Sandbox::rotating(8);
    let d = Daemon::start(&sb, &[]);
    let file = credentials(&sb);
    wait_until(Duration::from_secs(20), || read_credentials(&file).is_some(), "the first token");
    let first = read_credentials(&file).unwrap();
    // The next refresh (due 6 s before expiry) meets a 503.
    sb.emu.push_faults([Fault::status(503)]);
    let log = d.wait_for_line("could not renew", Duration::from_secs(10));
    assert!(log.contains("keeps the current one") && log.contains("retrying in 5 s"), "{log}");
    assert_eq!(read_credentials(&file).unwrap(), first, "the file keeps the still-valid token");
    // Once the token reaches the mandatory window the refresh is made again, and succeeds.
    wait_until(Duration::from_secs(15), || read_credentials(&file).is_some_and(|c| c != first), "recovery");
    let second = read_credentials(&file).unwrap();
    assert!(second.1 > now() && sb.emu.is_token_valid(&second.0));
    // Backed off meanwhile: the endpoint saw the first exchange, the failed refresh and the one that worked.
    assert_eq!(sb.emu.requests().len(), 3, "{}", d.log());
    let (status, log) = d.stop();
    assert!(status.success());
    assert_clean("the daemon's log", &log, &[]);
}

#[test]
fn once_puts_a_token_in_place_and_exits() {
    let (sb, _) = Sandbox::rotating(600);
    let o = sb.run(&["daemon", "--once", "--target-profile", "app", "--write-profile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let file = credentials(&sb);
    let (tok, exp) = read_credentials(&file).expect("a token in place");
    assert!(exp - now() > 590);
    assert_eq!(sb.exchanges(), 1);
    assert_eq!(stderr(&o).matches("wrote a new access token").count(), 1, "{}", stderr(&o));
    // Again while that token is fresh: nothing is exchanged and the file is not rewritten.
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let o = sb.run(&["daemon", "--once", "--target-profile", "app"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrote"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), before);
    assert_eq!(sb.exchanges(), 1);
    // `token` beside it uses the same cache.
    assert_eq!(parse_token_json(&sb.run(&["token"])).0, tok);
    assert_eq!(sb.exchanges(), 1);

    // Without a token to put there, --once fails with the error's code and writes nothing.
    let mut broken = Sandbox::new();
    broken.federation_env();
    broken.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), broken.path("missing").display().to_string());
    let o = broken.run(&["daemon", "--once", "--target-profile", "app"]);
    assert_failed(&o, "identity", 3, &[]);
    assert!(!credentials(&broken).exists());
}

#[test]
fn refuses_to_write_into_a_profile_of_another_shape_or_without_federation() {
    let (mut sb, _) = Sandbox::rotating(600);
    let configs = sb.path("config/configs");
    std::fs::create_dir_all(&configs).unwrap();
    let login = r#"{"version": "1.0", "authentication": {"type": "user_oauth", "client_id": "cli-login"}}"#;
    std::fs::write(configs.join("app.json"), login).unwrap();
    for extra in [&[][..], &["--write-profile"][..]] {
        let mut args = vec!["daemon", "--once", "--target-profile", "app"];
        args.extend_from_slice(extra);
        let err = assert_failed(&sb.run(&args), "config", 2, &[]);
        assert!(err.contains("client_id") && err.contains("--overwrite-profile"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(configs.join("app.json")).unwrap(), login, "untouched");
    assert!(!credentials(&sb).exists());
    assert_eq!(sb.exchanges(), 0, "refused before any exchange");
    // Replacing it is an explicit choice.
    let o = sb.run(&["daemon", "--once", "--target-profile", "app", "--write-profile", "--overwrite-profile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::fs::read_to_string(configs.join("app.json")).unwrap().contains("client_id"));

    let err = assert_failed(&sb.run(&["daemon", "--target-profile", "x", "--min-remaining", "60"]), "config", 2, &[]);
    assert!(err.contains("--min-remaining does not apply"), "{err}");
    let err = assert_failed(&sb.run(&["daemon", "--target-profile", "../x"]), "config", 2, &[]);
    assert!(err.contains("--target-profile"), "{err}");
    sb.env.insert("ANTHROPIC_AUTH_TOKEN".into(), "sk-ant-oat01-static".into());
    let err = assert_failed(&sb.run(&["daemon", "--target-profile", "x"]), "config", 2, &["sk-ant-oat01-static"]);
    assert!(err.contains("not federation"), "{err}");
}

#[test]
fn tells_systemd_when_it_is_ready_and_when_it_stops() {
    let (mut sb, _) = Sandbox::rotating(600);
    let socket_path = sb.path("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    sb.env.insert("NOTIFY_SOCKET".into(), socket_path.display().to_string());
    let d = Daemon::start(&sb, &["--quiet"]);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\nSTATUS=token in "), "{msg}");
    assert!(read_credentials(&credentials(&sb)).is_some(), "ready only once the token is in place");
    let (status, log) = {
        terminate(&d.child);
        let n = socket.recv(&mut buf).expect("STOPPING=1");
        assert_eq!(&buf[..n], b"STOPPING=1");
        d.stop()
    };
    assert!(status.success());
    assert!(!log.contains("wrote a new access token"), "--quiet: {log}");
}
