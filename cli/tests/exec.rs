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
    assert!(
        stderr(&o).starts_with("anthropic-wif: error [exec]: \"/nonexistent/program\" not found"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("sk-ant-oat01-"));

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
            assert!(out.contains("ANTHROPIC_AUTH_TOKEN=sk-ant-oat01-"), "{name}, {round}: {out}");
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
