//! Never present a consumed or an expired identity token (docs/design.md §1,
//! core/src/cache/consumed.rs), end to end: real `anthropic-wif` processes
//! against the emulator, which accepts each JWT once and refuses expired
//! ones. What was sent is read back from the emulator's recorded requests.

mod common;
use common::*;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The assertions the emulator received, in order.
fn sent(sb: &Sandbox) -> Vec<String> {
    sb.emu.requests().iter().map(|r| r.body["assertion"].as_str().unwrap_or_default().to_string()).collect()
}

fn mint(sb: &Sandbox) -> String {
    sb.emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600)
}

fn write_jwt(path: &Path, jwt: &str) {
    // Rotated the way the kubelet does it: a new file renamed into place.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{jwt}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Start `args` (with `-v`) and return once its diagnostics say it waits
/// for a fresh identity token; then the caller rotates the file. The
/// process's output, with its stderr, comes from the returned closure.
fn start_waiting(sb: &Sandbox, args: &[&str]) -> impl FnOnce() -> (std::process::Output, String) {
    use std::io::BufRead;
    let mut child =
        sb.command(&[args, &["-v"]].concat()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("waiting for a fresh identity token") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("the process waits for a fresh identity token");
    move || (child.wait_with_output().unwrap(), reader.join().unwrap())
}

fn record_file(sb: &Sandbox) -> PathBuf {
    sb.path("cache/anthropic-wif/presented-identity-tokens")
}

#[test]
fn a_token_file_that_rotates_while_we_wait_is_exchanged_once_rotated() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let first = read_secret_file(&file);
    parse_token_json(&sb.run(&["token"]));

    // The cached access token is unusable (a 401 from the API: --force-refresh),
    // and the file still holds the consumed JWT: wait for the file to rotate.
    let fresh = mint(&sb);
    let finish = start_waiting(&sb, &["token", "--force-refresh"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(sent(&sb), vec![first.clone()], "nothing is sent while waiting");
    write_jwt(&file, &fresh);
    let (o, err) = finish();
    parse_token_json(&o);
    assert!(err.contains("already exchanged"), "{err}");
    assert_eq!(sent(&sb), vec![first.clone(), fresh.clone()], "the consumed token was never sent again");
    assert_eq!((sb.exchanges(), sb.emu.stats().denied), (2, 0));
    assert_clean("stderr", &err, &[&first, &fresh]);

    // The record: hashes only, 0600.
    let text = std::fs::read_to_string(record_file(&sb)).unwrap();
    assert!(!text.contains(&first) && !text.contains(&fresh) && !text.contains("eyJ"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    assert!(v["tokens"].as_array().unwrap().iter().all(|t| t["state"] == "consumed"), "{v}");
    #[cfg(unix)]
    assert_eq!(mode(&record_file(&sb)), 0o600);
}

#[test]
fn a_token_file_that_never_rotates_fails_after_the_bounded_wait_with_nothing_sent() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let jwt = read_secret_file(&file);
    parse_token_json(&sb.run(&["token"]));

    let started = Instant::now();
    let o = sb.run(&["token", "--force-refresh", "--rotation-wait", "2"]);
    let took = started.elapsed();
    let err = assert_failed(&o, "identity", 3, &[&jwt]);
    assert!((Duration::from_millis(1900)..Duration::from_secs(20)).contains(&took), "bounded wait: {took:?}");
    for needle in [
        "identity token file",
        file.to_str().unwrap(),
        "already exchanged",
        "s ago",
        "was not sent",
        "rotate",
        "Waited 2 s for the file to be rotated",
    ] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    assert_eq!(sent(&sb), vec![jwt.clone()], "nothing was sent after the first exchange");

    // A rotation wait of 0 fails at once; out-of-range values are refused.
    let started = Instant::now();
    let err = assert_failed(&sb.run(&["token", "--force-refresh", "--rotation-wait", "0"]), "identity", 3, &[&jwt]);
    assert!(started.elapsed() < Duration::from_secs(5) && err.contains("not waited for"), "{err}");
    let err = assert_failed(&sb.run(&["token", "--rotation-wait", "601"]), "config", 2, &[]);
    assert!(err.contains("--rotation-wait") && err.contains("from 0 to 600"), "{err}");
    assert_eq!(sb.emu.stats().token_requests, 1);

    // A still-usable cached access token keeps being served meanwhile: no wait, no exchange.
    let started = Instant::now();
    parse_token_json(&sb.run(&["token"]));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sb.emu.stats().token_requests, 1);
}

/// A command that prints the tokens of `tokens` one per run, then the last one again.
fn scripted_command(sb: &Sandbox, tokens: &[&str]) -> String {
    let dir = sb.path("script");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, t) in tokens.iter().enumerate() {
        std::fs::write(dir.join(format!("t{i}")), t).unwrap();
    }
    let script = dir.join("mint.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd={d}\nn=$(cat \"$d/count\" 2>/dev/null || echo 0)\necho $((n+1)) > \"$d/count\"\n\
             [ -f \"$d/t$n\" ] || n={last}\ncat \"$d/t$n\"\n",
            d = dir.display(),
            last = tokens.len() - 1
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    script.display().to_string()
}

fn runs(sb: &Sandbox) -> u32 {
    std::fs::read_to_string(sb.path("script/count")).unwrap().trim().parse().unwrap()
}

#[test]
fn a_minting_source_that_hands_back_a_consumed_token_is_asked_again() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.remove("ANTHROPIC_IDENTITY_TOKEN_FILE");
    let (a, b) = (mint(&sb), mint(&sb));
    // Run 1: A (exchanged). Run 2: A again (consumed: asked again). Run 3: B.
    let cmd = scripted_command(&sb, &[&a, &a, &b]);
    parse_token_json(&sb.run(&["token", "--identity-token-command", &cmd]));
    let started = Instant::now();
    let o = sb.run(&["token", "--identity-token-command", &cmd, "--force-refresh"]);
    parse_token_json(&o);
    assert!(started.elapsed() < Duration::from_secs(10), "no rotation wait for a minting source");
    assert_eq!(runs(&sb), 3, "the command ran once more after handing back the consumed token");
    assert_eq!(sent(&sb), vec![a.clone(), b.clone()]);
    assert_eq!(sb.emu.stats().denied, 0);
    assert_no_secrets(&o, &[&a, &b]);
}

#[test]
fn an_expired_identity_token_is_never_sent() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let expired = sb.emu.mint_jwt_with(&json!({"ttl": -120})).unwrap();
    write_jwt(&file, &expired);
    let err = assert_failed(&sb.run(&["token"]), "identity", 3, &[&expired]);
    for needle in ["identity token file", file.to_str().unwrap(), "expired 12", "s ago", "was not sent", "clock"] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    assert_eq!(sb.emu.stats().token_requests, 0, "nothing was sent");
    assert!(!record_file(&sb).exists() || !std::fs::read_to_string(record_file(&sb)).unwrap().contains("consumed"));

    // A minting source that hands back an expired token first is asked again.
    sb.env.remove("ANTHROPIC_IDENTITY_TOKEN_FILE");
    let fresh = mint(&sb);
    let cmd = scripted_command(&sb, &[&expired, &fresh]);
    parse_token_json(&sb.run(&["token", "--identity-token-command", &cmd]));
    assert_eq!(sent(&sb), vec![fresh], "only the fresh token was sent");
}

/// A profile `p` that reads `token_file`, with its own token cache.
fn profile_reading(sb: &Sandbox, name: &str, token_file: &Path) {
    let dir = sb.path("config/configs");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = json!({"version": "1.0", "organization_id": ORG, "base_url": sb.emu.base_url(),
        "authentication": {"type": "oidc_federation", "federation_rule_id": RULE, "service_account_id": SVAC,
                           "identity_token": {"source": "file", "path": token_file}}});
    std::fs::write(dir.join(format!("{name}.json")), profile.to_string()).unwrap();
}

#[test]
fn two_configurations_sharing_one_token_file_never_send_it_twice() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let first = read_secret_file(&file);
    profile_reading(&sb, "other", &file);

    // The environment configuration exchanges the token; the profile (another
    // token cache) finds it consumed and, the file not rotating, fails.
    parse_token_json(&sb.run(&["token"]));
    let o = sb.run(&["token", "--profile", "other", "--rotation-wait", "1"]);
    let err = assert_failed(&o, "identity", 3, &[&first]);
    let env_cache = env_cache_file(&sb).unwrap();
    assert!(err.contains("already exchanged") && err.contains(env_cache.to_str().unwrap()), "{err}");
    assert!(err.contains("share one token cache"), "{err}");
    assert_eq!(sent(&sb), vec![first.clone()]);

    // Both at once, the file rotating meanwhile: one exchange each, no 401.
    let second = mint(&sb);
    write_jwt(&file, &second);
    let third = mint(&sb);
    let spawn = |args: &[&str]| sb.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let a = spawn(&["token", "--force-refresh", "--rotation-wait", "30"]);
    let b = spawn(&["token", "--profile", "other", "--force-refresh", "--rotation-wait", "30"]);
    // One of them exchanges the second token; then the file rotates.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.exchanges() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    write_jwt(&file, &third);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    parse_token_json(&a);
    parse_token_json(&b);
    assert_eq!(sb.emu.stats().denied, 0, "no identity token was presented twice");
    let mut tail = sent(&sb)[1..].to_vec();
    tail.sort();
    let mut want = vec![second, third];
    want.sort();
    assert_eq!(tail, want, "each token was sent once");
}

#[test]
fn a_refusal_of_a_token_presented_before_names_the_likely_cause() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let jwt = read_secret_file(&file);
    // The server uses the token, then the connection breaks before its
    // answer arrives; the retry re-sends the token and is refused.
    sb.emu.push_faults([anthropic_wif_emulator::Fault::new(anthropic_wif_emulator::FaultKind::ResetAfterExchange)]);
    let err = assert_failed(&sb.run(&["token"]), "denied", 4, &[&jwt]);
    assert!(err.contains("re-sent the same identity token"), "{err}");
    // Another process later: this machine had presented the token before, so
    // the opaque 401 is explained.
    let err = assert_failed(&sb.run(&["token"]), "denied", 4, &[&jwt]);
    assert!(err.contains("Authentication failed"), "{err}");
    assert!(
        err.contains("This machine had presented this identity token before")
            && err.contains("most likely refused as already used"),
        "{err}"
    );
    assert_eq!(sent(&sb), vec![jwt.clone(), jwt.clone(), jwt.clone()]);
    assert_eq!(sb.emu.stats().exchanges, 1);
}

#[test]
fn doctor_reports_a_consumed_token_and_its_exchange_sends_nothing() {
    let mut sb = Sandbox::new();
    let file = sb.federation_env();
    let jwt = read_secret_file(&file);
    let doctor = |args: &[&str]| {
        let o = sb.run(&[&["doctor", "--json"][..], args].concat());
        assert_clean("doctor", &format!("{}{}", stdout(&o), stderr(&o)), &[&jwt]);
        let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
        (o, v)
    };
    let finding = |v: &Value, code: &str| v["findings"].as_array().unwrap().iter().find(|f| f["code"] == code).cloned();

    let (_, v) = doctor(&[]);
    assert_eq!(v["identity"]["record"]["state"], "new");
    parse_token_json(&sb.run(&["token"]));

    // A usable cached access token: a warning, healthy.
    let (o, v) = doctor(&[]);
    assert_eq!(o.status.code(), Some(0), "{v}");
    assert_eq!(v["identity"]["record"]["state"], "consumed");
    assert_eq!(v["identity"]["record"]["path"], record_file(&sb).to_str().unwrap());
    let f = finding(&v, "jwt_consumed").expect("jwt_consumed");
    assert_eq!(f["severity"], "warning");
    assert!(f["message"].as_str().unwrap().contains(file.to_str().unwrap()), "{f}");

    // --exchange refuses it: nothing sent.
    let (o, v) = doctor(&["--exchange"]);
    assert_eq!(o.status.code(), Some(3), "{v}");
    assert_eq!(v["exchange"]["performed"], false);
    assert!(finding(&v, "exchange_failed").unwrap()["message"].as_str().unwrap().contains("already exchanged"));
    assert_eq!(sb.emu.stats().token_requests, 1);

    // Without a usable cached token it is an error (exit 3).
    let (o, v) = doctor(&["--no-cache"]);
    assert_eq!(o.status.code(), Some(3), "{v}");
    assert_eq!(finding(&v, "jwt_consumed").unwrap()["severity"], "error");
    let human = stdout(&sb.run(&["doctor", "--no-cache"]));
    assert!(human.contains("[jwt_consumed]"), "{human}");
}

#[test]
fn a_token_another_process_is_presenting_is_waited_for_then_judged() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.remove("ANTHROPIC_IDENTITY_TOKEN_FILE");
    let jwt = mint(&sb);
    sb.env.insert("ANTHROPIC_IDENTITY_TOKEN".into(), jwt.clone());
    // The first process's exchange takes 2 s; the second starts meanwhile.
    sb.emu.push_faults([anthropic_wif_emulator::Fault::delay(2000)]);
    let first = sb.command(&["token", "--no-cache"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sb.emu.stats().token_requests == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let o = sb.run(&["token", "--no-cache", "--rotation-wait", "30"]);
    let took = started.elapsed();
    parse_token_json(&first.wait_with_output().unwrap());
    // Not sent while in flight; once the other exchange succeeded, a variable
    // cannot change: it fails then, not after the whole rotation wait.
    let err = assert_failed(&o, "identity", 3, &[&jwt]);
    assert!(err.contains("already exchanged") && err.contains("set a fresh identity token"), "{err}");
    assert!(took < Duration::from_secs(15), "it did not wait out the rotation wait: {took:?}");
    assert_eq!(sent(&sb), vec![jwt.clone()]);
}
