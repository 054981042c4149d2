//! `anthropic-wif exec -- CMD`: real processes against the emulator.

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

#[test]
fn runs_the_command_with_a_fresh_token_and_a_clean_environment() {
    let mut sb = Sandbox::new();
    let jwt_file = sb.federation_env();
    let jwt = read_secret_file(&jwt_file);
    sb.env.insert("ANTHROPIC_SCOPE".into(), "user:inference".into());
    sb.env.insert("UNRELATED".into(), "kept".into());
    let o = sh(&sb, &[], "echo \"token=$ANTHROPIC_AUTH_TOKEN\"; env | sort");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = out.lines().find_map(|l| l.strip_prefix("token=")).unwrap().to_string();
    assert!(token.starts_with("sk-ant-oat01-") && sb.emu.is_token_valid(&token), "a live minted token");
    for gone in [
        "ANTHROPIC_API_KEY=",
        "ANTHROPIC_FEDERATION_RULE_ID=",
        "ANTHROPIC_ORGANIZATION_ID=",
        "ANTHROPIC_SERVICE_ACCOUNT_ID=",
        "ANTHROPIC_IDENTITY_TOKEN_FILE=",
        "ANTHROPIC_SCOPE=",
    ] {
        assert!(!out.lines().any(|l| l.starts_with(gone)), "{gone} leaked into the child: {out}");
    }
    assert!(out.contains("UNRELATED=kept"), "the rest of the environment is inherited");
    // The base URL came from the environment: inherited as is.
    assert!(out.contains(&format!("ANTHROPIC_BASE_URL={}", sb.emu.base_url())));
    assert!(!stderr(&o).contains(&token) && !out.contains(&jwt));
    assert_eq!(sb.exchanges(), 1);
    // A second run uses the cached token (still comfortably long-lived).
    let o2 = sh(&sb, &[], "echo \"$ANTHROPIC_AUTH_TOKEN\"");
    assert_eq!(stdout(&o2).trim(), token);
    assert_eq!(sb.exchanges(), 1);
}

#[test]
fn explicit_flags_win_over_an_api_key_which_is_removed_and_a_pinned_base_url_is_set() {
    let sb = Sandbox::new();
    let jwt_file = sb.fresh_jwt_file();
    let mut sb = sb;
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
    let o = sh(&sb, &flags, "env | sort");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.contains("ANTHROPIC_API_KEY"), "the static key would shadow the token: {out}");
    assert!(!out.contains("MY_JWT="), "the variable holding the identity JWT is removed");
    assert!(out.contains(&format!("ANTHROPIC_BASE_URL={base}\n")), "a pinned base URL is passed on");
    assert!(out.contains("ANTHROPIC_AUTH_TOKEN=sk-ant-oat01-"));
}

#[test]
fn exits_with_the_commands_status() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    assert_eq!(sh(&sb, &[], "exit 7").status.code(), Some(7));
    assert_eq!(sh(&sb, &[], "exit 0").status.code(), Some(0));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        let o = sh(&sb, &[], "kill -KILL $$");
        assert_eq!(o.status.signal(), Some(9), "death by a signal is the caller's to see");
    }
}

#[cfg(unix)]
#[test]
fn signals_reach_the_command() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done";
    let mut child =
        sb.command(&["exec", "--", "sh", "-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
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
    assert_eq!(status.code(), Some(42));
}

#[test]
fn refuses_without_a_command() {
    let mut sb = Sandbox::new();
    sb.federation_env();
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
    let mut sb = Sandbox::new();
    sb.federation_env();
    let o = sb.run(&["exec", "--", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("sk-ant-oat01-"));

    let marker = sb.path("ran");
    let empty = Sandbox::new();
    let o = empty.run(&["exec", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no configuration: {}", stderr(&o));
    assert!(!marker.exists(), "the command must not run without a token");
}
