//! `anthropic-wif exec -- CMD`: real processes against the emulator.
#![cfg(unix)]

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `sh -c SCRIPT` under exec, with federation from the environment.
fn sh(sb: &Sandbox, extra: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    sb.run(&args)
}

/// A sandbox with federation from the environment and its own TMPDIR, where
/// exec makes CMD's private directory (so leftovers can be counted).
fn sandbox() -> Sandbox {
    let mut sb = Sandbox::new();
    sb.federation_env();
    private_tmp(&mut sb);
    sb
}

fn private_tmp(sb: &mut Sandbox) {
    std::fs::create_dir_all(sb.path("tmp")).unwrap();
    sb.env.insert("TMPDIR".into(), sb.path("tmp").display().to_string());
}

/// exec's private directories left in the sandbox's TMPDIR.
fn leftovers(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.path("tmp")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// `KEY=value` lines of `env` output.
fn var<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}=")))
}

/// What CMD sees of its private profile: its environment, the directory's
/// mode, the profile and the credentials file.
const SHOW_PROFILE: &str = "env | sort; echo \"mode=$(stat -c %a \"$ANTHROPIC_CONFIG_DIR\")\"; \
     echo \"profile=$(cat \"$ANTHROPIC_CONFIG_DIR/configs/$ANTHROPIC_PROFILE.json\" | tr -d ' \\n')\"; \
     echo \"credentials=$(cat \"$ANTHROPIC_CONFIG_DIR/credentials/$ANTHROPIC_PROFILE.json\" | tr -d ' \\n')\"";

fn credentials_seen(out: &str) -> serde_json::Value {
    serde_json::from_str(var(out, "credentials").expect("credentials line")).expect("credentials JSON")
}

#[test]
fn runs_the_command_with_a_private_profile_and_a_clean_environment() {
    let mut sb = sandbox();
    let jwt = read_secret_file(&sb.path("identity-token"));
    sb.env.insert("ANTHROPIC_SCOPE".into(), "user:inference".into());
    sb.env.insert("ANTHROPIC_PROFILE".into(), "".into());
    sb.env.insert("UNRELATED".into(), "kept".into());
    let o = sh(&sb, &[], SHOW_PROFILE);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    // The SDKs' externally rotated profile: user_oauth without client_id, its token in the credentials file.
    assert_eq!(var(&out, "ANTHROPIC_PROFILE"), Some("anthropic-wif-exec"));
    let dir = var(&out, "ANTHROPIC_CONFIG_DIR").expect("ANTHROPIC_CONFIG_DIR").to_string();
    let name = std::path::Path::new(&dir).file_name().unwrap().to_string_lossy().into_owned();
    assert!(dir.starts_with(&sb.path("tmp").display().to_string()), "under TMPDIR: {dir}");
    assert!(name.starts_with("anthropic-wif-exec-") && name.len() == "anthropic-wif-exec-".len() + 32, "{name}");
    assert_eq!(var(&out, "mode"), Some("700"));
    let profile: serde_json::Value = serde_json::from_str(var(&out, "profile").unwrap()).unwrap();
    assert_eq!(profile["authentication"], serde_json::json!({"type": "user_oauth"}));
    assert_eq!(profile["organization_id"], ORG);
    let creds = credentials_seen(&out);
    assert_eq!((creds["version"].as_str(), creds["type"].as_str()), (Some("1.0"), Some("oauth_token")));
    let token = creds["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("sk-ant-oat01-") && sb.emu.is_token_valid(&token), "a live minted token");
    for gone in [
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_FEDERATION_RULE_ID",
        "ANTHROPIC_ORGANIZATION_ID",
        "ANTHROPIC_SERVICE_ACCOUNT_ID",
        "ANTHROPIC_IDENTITY_TOKEN_FILE",
        "ANTHROPIC_SCOPE",
    ] {
        assert_eq!(var(&out, gone), None, "{gone} reached the child: {out}");
    }
    assert_eq!(var(&out, "UNRELATED"), Some("kept"), "the rest of the environment is inherited");
    // The base URL came from the environment: inherited as is.
    assert_eq!(var(&out, "ANTHROPIC_BASE_URL"), Some(sb.emu.base_url().as_str()));
    assert!(!stderr(&o).contains(&token) && !out.contains(&jwt));
    assert_eq!(sb.exchanges(), 1);
    assert!(leftovers(&sb).is_empty(), "the directory is removed: {:?}", leftovers(&sb));
    // A second run uses the cached token (still comfortably long-lived) in a new directory.
    let o2 = sh(&sb, &[], SHOW_PROFILE);
    assert_eq!(credentials_seen(&stdout(&o2))["access_token"], token.as_str());
    assert_ne!(var(&stdout(&o2), "ANTHROPIC_CONFIG_DIR").unwrap(), dir, "a new, unpredictable directory");
    assert_eq!(sb.exchanges(), 1);
}

#[test]
fn env_token_hands_out_one_token_in_anthropic_auth_token() {
    let sb = sandbox();
    let o = sh(&sb, &["--env-token"], "echo \"token=$ANTHROPIC_AUTH_TOKEN\"; env | sort");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = var(&out, "token").unwrap();
    assert!(token.starts_with("sk-ant-oat01-") && sb.emu.is_token_valid(token), "a live minted token");
    assert_eq!(var(&out, "ANTHROPIC_PROFILE"), None);
    assert_eq!(var(&out, "ANTHROPIC_FEDERATION_RULE_ID"), None);
    assert!(leftovers(&sb).is_empty(), "no directory in this mode");
    assert_eq!(sh(&sb, &["--env-token"], "exit 9").status.code(), Some(9));
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sh(&sb, &["--env-token"], "kill -TERM $$").status.signal(), Some(15));
    }
    // A static bearer token is not federation: passed on only in this mode.
    let mut stat = Sandbox::new();
    private_tmp(&mut stat);
    stat.env.insert("ANTHROPIC_AUTH_TOKEN".into(), "sk-ant-oat01-static-bearer".into());
    let err = assert_failed(&sh(&stat, &[], "true"), "config", 2, &["sk-ant-oat01-static-bearer"]);
    assert!(err.contains("--env-token"), "{err}");
    let o = sh(&stat, &["--env-token"], "echo \"$ANTHROPIC_AUTH_TOKEN\"");
    assert_eq!(stdout(&o).trim(), "sk-ant-oat01-static-bearer");
}

#[test]
fn explicit_flags_win_over_an_api_key_which_is_removed_and_a_pinned_base_url_is_set() {
    let mut sb = Sandbox::new();
    private_tmp(&mut sb);
    let jwt_file = sb.fresh_jwt_file();
    sb.env.insert("ANTHROPIC_API_KEY".into(), "sk-ant-api03-static-key".into());
    sb.env.insert("MY_JWT".into(), read_secret_file(&jwt_file));
    let base = sb.emu.base_url();
    let flags = [
        "--base-url",
        base.as_str(),
        "--federation-rule-id",
        RULE,
        "--organization-id",
        ORG,
        "--identity-token-env",
        "MY_JWT",
    ];
    let o = sh(&sb, &flags, SHOW_PROFILE);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.contains("ANTHROPIC_API_KEY"), "the static key would shadow the token: {out}");
    assert!(!out.contains("MY_JWT="), "the variable holding the identity JWT is removed");
    assert_eq!(var(&out, "ANTHROPIC_BASE_URL"), Some(base.as_str()), "a pinned base URL is passed on");
    let profile: serde_json::Value = serde_json::from_str(var(&out, "profile").unwrap()).unwrap();
    assert_eq!(profile["base_url"], base.as_str(), "and is in the profile");
    assert!(credentials_seen(&out)["access_token"].as_str().unwrap().starts_with("sk-ant-oat01-"));
}

#[test]
fn exits_with_the_commands_status_and_removes_its_directory() {
    let sb = sandbox();
    assert_eq!(sh(&sb, &[], "exit 7").status.code(), Some(7));
    assert_eq!(sh(&sb, &[], "exit 0").status.code(), Some(0));
    {
        use std::os::unix::process::ExitStatusExt;
        let o = sh(&sb, &[], "kill -KILL $$");
        assert_eq!(o.status.signal(), Some(9), "death by a signal is the caller's to see");
        let o = sh(&sb, &[], "kill -SEGV $$");
        assert_eq!(o.status.signal(), Some(11));
        assert!(!o.status.core_dumped(), "we dump no core of our own");
        // Through a shell, as a shell reports it.
        let script = format!("'{}' exec -- sh -c 'kill -TERM $$'; echo \"status=$?\"", bin());
        let o = std::process::Command::new("sh").args(["-c", &script]).env_clear().envs(&sb.env).output().unwrap();
        assert_eq!(stdout(&o).trim(), "status=143", "{}", stderr(&o));
    }
    assert!(leftovers(&sb).is_empty(), "{:?}", leftovers(&sb));
}

#[test]
fn signals_reach_the_command_and_the_directory_goes_with_it() {
    let sb = sandbox();
    let script = "trap 'echo got-term; exit 42' TERM; echo \"dir=$ANTHROPIC_CONFIG_DIR\"; while :; do sleep 0.05; done";
    let mut child =
        sb.command(&["exec", "--", "sh", "-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = lines.next().unwrap().unwrap().strip_prefix("dir=").unwrap().to_string();
    assert!(std::path::Path::new(&dir).is_dir());
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the command did not get SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(lines.next().map(|l| l.unwrap()), None, "SIGTERM reached the command once");
    assert_eq!(status.code(), Some(42));
    assert!(!std::path::Path::new(&dir).exists(), "removed after a signal too");
}

#[test]
fn a_signal_while_the_first_token_is_fetched_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    let mut sb = Sandbox::new();
    private_tmp(&mut sb);
    // An identity URL that never answers: exec is caught before it has a token.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang = format!("http://{}/token", silent.local_addr().unwrap());
    let base = sb.emu.base_url();
    let args = ["exec", "--base-url", &base, "--federation-rule-id", RULE, "--organization-id", ORG];
    let mut cmd = sb.command(&args);
    cmd.args(["--identity-token-url", &hang, "--", "touch", sb.path("ran").to_str().unwrap()]);
    let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let (conn, _) = silent.accept().unwrap(); // it is asking
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(15));
    drop(conn);
    assert!(!sb.path("ran").exists(), "CMD never ran");
    assert!(leftovers(&sb).is_empty(), "no directory was made before the token: {:?}", leftovers(&sb));
}

/// Ctrl-C at a terminal signals the whole foreground process group, CMD
/// included: exec must not send it a second time. A SIGINT sent by another
/// process (to exec alone) is forwarded, once.
#[cfg(target_os = "linux")]
#[test]
fn a_terminal_interrupt_reaches_the_command_once() {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let sb = sandbox();
    let (mut master, slave) = {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty with valid out-pointers and no name/termios/winsize.
        let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both descriptors were just opened and are owned here.
        unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
    };
    let script = "n=0; trap 'n=$((n+1)); echo \"int $n\"' INT; echo ready; \
                  i=0; while [ $n -lt 2 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo \"count=$n\"";
    let mut cmd = sb.command(&["exec", "-vv", "--", "sh", "-c", script]);
    cmd.stdin(Stdio::from(slave)).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe: exec leads a new session whose terminal is the pty,
    // so the pty's Ctrl-C goes to exec's process group (exec and CMD), as in a terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    master.write_all(b"\x03").unwrap(); // Ctrl-C
    assert_eq!(lines.next().unwrap().unwrap(), "int 1");
    // A process's SIGINT to exec alone is forwarded.
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let o = child.wait_with_output().unwrap();
    let log = stderr(&o);
    assert_eq!(rest, ["int 2", "count=2"], "each interrupt reached the command: {log}");
    assert!(o.status.success());
    // Two deliveries of one signal close together may merge into one, so the count alone cannot show a
    // second one: exec says what it did with each (-vv).
    let sigint = libc::SIGINT;
    assert_eq!(
        log.matches(&format!("signal {sigint} (code 128, from pid 0) reached CMD directly")).count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches(&format!("signal {sigint} (code 0, ")).count(), 1, "{log}");
    assert_eq!(log.matches("forwarded to CMD").count(), 1, "{log}");
}

/// The reason for the child process: a command that outlives its first token
/// keeps finding a valid one in its credentials file (8 s tokens, replaced 6 s
/// before expiry), one exchange per rotation.
#[test]
fn a_command_that_outlives_its_token_keeps_getting_fresh_ones() {
    let (mut sb, _) = Sandbox::rotating(8);
    private_tmp(&mut sb);
    let script = "f=\"$ANTHROPIC_CONFIG_DIR/credentials/$ANTHROPIC_PROFILE.json\"; i=0; \
                  while [ $i -lt 28 ]; do echo \"$(date +%s) $(tr -d ' \\n' < \"$f\")\"; sleep 0.25; i=$((i+1)); done";
    let o = sh(&sb, &[], script);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut distinct: Vec<String> = Vec::new();
    for line in stdout(&o).lines() {
        let (at, json) = line.split_once(' ').unwrap();
        let at: i64 = at.parse().unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let left = v["expires_at"].as_i64().unwrap() - at;
        assert!(left >= 1, "the file held a token {left} s from expiry at {at}: {line}");
        let t = v["access_token"].as_str().unwrap().to_string();
        if distinct.last() != Some(&t) {
            distinct.push(t);
        }
    }
    assert!(distinct.len() >= 3, "tokens the command saw in 7 s: {}", distinct.len());
    // One exchange per rotation (one more may have landed after the command's last look).
    let exchanges = sb.exchanges() as usize;
    assert!(exchanges == distinct.len() || exchanges == distinct.len() + 1, "{exchanges} exchanges");
    assert!(leftovers(&sb).is_empty());
}

#[test]
fn refuses_without_a_command() {
    let sb = sandbox();
    for args in [&["exec"][..], &["exec", "--"][..]] {
        let o = sb.run(args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("needs the command to run after `--`"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    assert_eq!(sb.exchanges(), 0, "no token is fetched for nothing");
}

#[test]
fn a_missing_program_exits_127_and_config_errors_do_not_run_anything() {
    let sb = sandbox();
    for extra in [&[][..], &["--env-token"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/nonexistent/program"]);
        let o = sb.run(&args);
        assert_eq!(o.status.code(), Some(127), "{extra:?}");
        assert!(
            stderr(&o).starts_with("anthropic-wif: error [exec]: \"/nonexistent/program\" not found"),
            "{extra:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("sk-ant-oat01-"));
    }
    assert!(leftovers(&sb).is_empty(), "{:?}", leftovers(&sb));

    let marker = sb.path("ran");
    let empty = Sandbox::new();
    let o = empty.run(&["exec", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no configuration: {}", stderr(&o));
    assert!(!marker.exists(), "the command must not run without a token");
}

/// One identity source under `exec`: its flags, and the variables it reads
/// as (name, value, does the value hold a secret).
struct SourceCase {
    name: &'static str,
    flags: Vec<String>,
    vars: Vec<(&'static str, String, bool)>,
}

fn source_cases(sb: &Sandbox) -> Vec<SourceCase> {
    let jwt =
        || sb.emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600);
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let preset = |name: &'static str, var: &'static str| SourceCase {
        name,
        flags: flags(&["--identity-source", name]),
        vars: vec![(var, jwt(), true)],
    };
    let runner = serve_http(200, "application/json", serde_json::json!({"count": 1, "value": jwt()}).to_string());
    let idp = serve_http(200, "application/json", serde_json::json!({"token": jwt()}).to_string());
    vec![
        preset("gitlab", "ANTHROPIC_ID_TOKEN"),
        preset("circleci", "CIRCLE_OIDC_TOKEN_V2"),
        preset("bitbucket", "BITBUCKET_STEP_OIDC_TOKEN"),
        preset("terraform", "TFC_WORKLOAD_IDENTITY_TOKEN"),
        SourceCase { name: "auto (finds CircleCI)", ..preset("auto", "CIRCLE_OIDC_TOKEN_V2") },
        SourceCase {
            name: "gitlab with its own variable",
            flags: flags(&["--identity-token", r#"{"source":"gitlab","var":"GL_ID_TOKEN"}"#]),
            vars: vec![("GL_ID_TOKEN", jwt(), true)],
        },
        SourceCase {
            name: "env",
            flags: flags(&["--identity-token-env", "MY_JWT"]),
            vars: vec![("MY_JWT", jwt(), true)],
        },
        SourceCase {
            name: "the SDKs' ANTHROPIC_IDENTITY_TOKEN",
            flags: vec![],
            vars: vec![("ANTHROPIC_IDENTITY_TOKEN", jwt(), true)],
        },
        SourceCase {
            name: "github-actions",
            flags: flags(&["--identity-source", "github-actions"]),
            vars: vec![
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-SECRET-123".into(), true),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{runner}/token?api-version=2.0"), false),
            ],
        },
        SourceCase {
            name: "url with a bearer header",
            flags: flags(&[
                "--identity-token-url",
                &format!("{idp}/token?aud=${{IDP_AUDIENCE}}"),
                "--identity-token-header",
                "Authorization: Bearer ${IDP_BEARER}",
                "--identity-token-field",
                "token",
            ]),
            vars: vec![
                ("IDP_BEARER", "idp-bearer-SECRET-456".into(), true),
                ("IDP_AUDIENCE", "https://api.anthropic.com".into(), true),
            ],
        },
    ]
}

/// Issue #10, item 7: whatever identity source is configured, CMD never sees
/// a variable that holds its identity JWT (or mints one), neither after an
/// exchange nor when the token comes from the cache (when the JWT was never
/// even read).
#[test]
fn no_identity_source_hands_its_secret_variables_to_the_command() {
    let count = source_cases(&Sandbox::new()).len();
    let mut problems = Vec::new();
    for i in 0..count {
        let mut sb = Sandbox::new();
        private_tmp(&mut sb);
        let case = source_cases(&sb).swap_remove(i);
        let name = case.name;
        for (k, v, _) in &case.vars {
            sb.env.insert(k.to_string(), v.clone());
        }
        let base = sb.emu.base_url();
        let mut args: Vec<String> =
            ["--base-url", &base, "--federation-rule-id", RULE, "--organization-id", ORG].map(String::from).to_vec();
        args.extend(case.flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for round in ["after an exchange", "from the cache"] {
            let o = sh(&sb, &args, "env");
            let out = stdout(&o);
            assert!(o.status.success(), "{name}, {round}: {}", stderr(&o));
            assert!(out.contains("ANTHROPIC_PROFILE=anthropic-wif-exec"), "{name}, {round}: {out}");
            for (k, v, secret) in &case.vars {
                let seen = out.lines().any(|l| l.starts_with(&format!("{k}=")));
                if *secret && (seen || out.contains(v.as_str())) {
                    problems.push(format!("{name}, {round}: {k} reached CMD"));
                }
                if !secret && !seen {
                    problems.push(format!("{name}, {round}: {k} (not a secret) was removed"));
                }
            }
            if out.contains("eyJ") {
                problems.push(format!("{name}, {round}: something JWT-shaped reached CMD"));
            }
        }
        assert_eq!(sb.exchanges(), 1, "{name}: the second run used the cache");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
