//! `anthropic-wif token` end to end: real processes against the emulator.

mod common;
use common::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn exchanges_once_then_serves_from_the_cache() {
    let mut sb = Sandbox::new();
    let jwt_file = sb.federation_env();
    let jwt = read_secret_file(&jwt_file);

    let first = sb.run(&["token"]);
    let (token, exp) = parse_token_json(&first);
    let now = anthropic_wif_core::now_unix();
    assert!((now + 590..=now + 610).contains(&exp), "expires_at ~ now + 600, got {exp}");
    assert_eq!(sb.exchanges(), 1);
    assert_no_secrets(&first, &[&jwt]);
    assert!(!stderr(&first).contains(&token));

    let second = sb.run(&["token"]);
    let (token2, exp2) = parse_token_json(&second);
    assert_eq!((token2.as_str(), exp2), (token.as_str(), exp), "cache hit returns the same token");
    assert_eq!(sb.exchanges(), 1, "a cache hit makes no exchange");

    // The cache file lives under $XDG_CACHE_HOME/anthropic-wif, is 0600 in a 0700 dir.
    let dir = sb.path("cache/anthropic-wif");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == "json").unwrap_or(false))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    #[cfg(unix)]
    {
        assert_eq!(mode(&files[0]), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    let cached: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(cached["type"], "oauth_token");
    assert_eq!(cached["version"], "1.0");
    assert_eq!(cached["access_token"], token.as_str());
    assert!(!std::fs::read_to_string(&files[0]).unwrap().contains(&jwt), "the JWT is never cached");
}

#[test]
fn wire_format_matches_the_spec() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.insert("ANTHROPIC_WORKSPACE_ID".into(), "default".into());
    parse_token_json(&sb.run(&["token"]));
    let reqs = sb.emu.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.header("anthropic-beta"), Some("oauth-2025-04-20,oidc-federation-2026-04-01"));
    assert!(r.header("user-agent").unwrap_or_default().starts_with("anthropic-wif/"));
    let body = r.body.as_object().unwrap();
    assert_eq!(body["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
    assert_eq!(body["federation_rule_id"], RULE);
    assert_eq!(body["organization_id"], ORG);
    assert_eq!(body["service_account_id"], SVAC);
    assert_eq!(body["workspace_id"], "default");
    assert!(!body.contains_key("scope"));
    let assertion = body["assertion"].as_str().unwrap();
    assert!(assertion.starts_with("eyJ") && !assertion.ends_with('\n'), "assertion is the trimmed JWT");
}

#[test]
fn output_formats() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    let o = sb.run(&["token", "--format", "token"]);
    assert_eq!(stdout(&o), format!("{token}\n"));
    let o = sb.run(&["token", "--format", "env"]);
    assert_eq!(stdout(&o), format!("ANTHROPIC_AUTH_TOKEN={token}\n"));
    let o = sb.run(&["token", "--format", "header"]);
    assert_eq!(stdout(&o), format!("Authorization: Bearer {token}\n"));
    assert_eq!(sb.exchanges(), 1);
}

#[test]
fn force_refresh_exchanges_again_with_a_fresh_identity_token() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let (t1, _) = parse_token_json(&sb.run(&["token"]));
    sb.fresh_jwt_file();
    let (t2, _) = parse_token_json(&sb.run(&["token", "--force-refresh"]));
    assert_ne!(t1, t2);
    assert_eq!(sb.exchanges(), 2);
    // The refreshed token replaced the cached one.
    let (t3, _) = parse_token_json(&sb.run(&["token"]));
    assert_eq!(t3, t2);
    assert_eq!(sb.exchanges(), 2);
}

#[test]
fn thirty_two_processes_on_a_cold_cache_make_one_exchange() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let children: Vec<_> = (0..32)
        .map(|_| sb.command(&["token"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let tokens: std::collections::HashSet<String> = outputs.iter().map(|o| parse_token_json(o).0).collect();
    assert_eq!(tokens.len(), 1, "every process got the same token");
    assert_eq!(sb.exchanges(), 1, "one exchange for the whole herd");
    assert_eq!(sb.emu.stats().token_requests, 1, "and no refused second exchange either");
}

#[test]
fn explicit_flags_without_environment() {
    let sb = Sandbox::new();
    let o = sb.run_owned(&sb.federation_args(&["token"]));
    parse_token_json(&o);
    let body = &sb.emu.requests()[0].body;
    assert!(body.get("service_account_id").is_none(), "unset optional fields are omitted");
    assert!(body.get("workspace_id").is_none());
}

#[test]
fn profile_uses_the_sdk_credentials_file() {
    let sb = Sandbox::new();
    let jwt = sb.fresh_jwt_file();
    let cfg_dir = sb.path("config/configs");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let profile = serde_json::json!({
        "version": "1.0",
        "organization_id": ORG,
        "base_url": sb.emu.base_url(),
        "authentication": {
            "type": "oidc_federation",
            "federation_rule_id": RULE,
            "service_account_id": SVAC,
            "identity_token": {"source": "file", "path": jwt},
        }
    });
    std::fs::write(cfg_dir.join("ci.json"), profile.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cfg_dir.join("ci.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let o = sb.run(&["token", "--profile", "ci"]);
    let (token, exp) = parse_token_json(&o);
    let cred = sb.path("config/credentials/ci.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cred).unwrap()).unwrap();
    assert_eq!(v["access_token"], token.as_str());
    assert_eq!(v["expires_at"], exp);
    #[cfg(unix)]
    assert_eq!(mode(&cred), 0o600);

    // ANTHROPIC_PROFILE selects the same profile and hits the cache.
    let mut sb2_env = sb.env.clone();
    sb2_env.insert("ANTHROPIC_PROFILE".into(), "ci".into());
    let o = std::process::Command::new(bin())
        .arg("token")
        .env_clear()
        .envs(&sb2_env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(parse_token_json(&o).0, token);
    assert_eq!(sb.exchanges(), 1);
}

#[test]
fn configuration_errors_exit_2_and_name_the_fix() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.remove("ANTHROPIC_ORGANIZATION_ID");
    sb.env.insert("ANTHROPIC_WIF_UNUSED".into(), "x".into());
    // Without the org id the env chain does not apply and nothing else is configured.
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("ANTHROPIC_ORGANIZATION_ID"), "{}", stderr(&o));

    // A malformed id is refused before the network.
    sb.env.insert("ANTHROPIC_ORGANIZATION_ID".into(), "org_not_a_uuid".into());
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("ANTHROPIC_ORGANIZATION_ID"), "{}", stderr(&o));
    assert_eq!(sb.emu.stats().token_requests, 0);

    // Usage errors are 2 as well, with nothing on stdout.
    let o = sb.run(&["token", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());

    // A plain-http base URL that is not loopback is refused before any I/O.
    sb.env.insert("ANTHROPIC_ORGANIZATION_ID".into(), ORG.into());
    sb.env.insert("ANTHROPIC_BASE_URL".into(), "http://api.example.com".into());
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("http://api.example.com"));
}

#[test]
fn an_api_key_shadowing_federation_is_reported() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.insert("ANTHROPIC_API_KEY".into(), "sk-ant-api03-secretkeyvalue".into());
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("ANTHROPIC_API_KEY"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("secretkeyvalue"));
    assert_eq!(sb.emu.stats().token_requests, 0);
}

#[test]
fn identity_source_failures_exit_3() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let missing = sb.path("no-such-token");
    sb.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), missing.display().to_string());
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("no-such-token"), "{}", stderr(&o));

    std::fs::write(&missing, "  \n").unwrap();
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(3), "an empty token file: {}", stderr(&o));
    assert_eq!(sb.emu.stats().token_requests, 0);
}

#[test]
fn a_reused_identity_token_is_denied_with_exit_4_and_a_hint() {
    let mut sb = Sandbox::new();
    let jwt_file = sb.federation_env();
    let jwt = read_secret_file(&jwt_file);
    parse_token_json(&sb.run(&["token", "--no-cache"]));
    // Used by another user or machine: this one's record of presented
    // identity tokens does not know it, so it is sent (and refused). With
    // the same record it would not be sent at all (cli/tests/consumed.rs).
    sb.env.insert("XDG_CACHE_HOME".into(), sb.path("other-cache").display().to_string());
    let o = sb.run(&["token", "--no-cache"]);
    assert_eq!(o.status.code(), Some(4), "stderr: {}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("req_"), "the request id is surfaced: {err}");
    assert!(err.to_lowercase().contains("only once"), "the single-use hint: {err}");
    assert_no_secrets(&o, &[&jwt]);
}

#[test]
fn an_unreachable_endpoint_exits_5_within_the_retry_budget() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    sb.env.insert("ANTHROPIC_BASE_URL".into(), format!("http://127.0.0.1:{port}"));
    let start = Instant::now();
    let o = sb.run(&["token"]);
    assert_eq!(o.status.code(), Some(5), "stderr: {}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(start.elapsed() < Duration::from_secs(25), "bounded by the 20 s retry budget");
}

#[test]
fn never_reads_stdin() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    // stdin is an open pipe that never delivers anything: reading it would hang.
    let mut child =
        sb.command(&["token"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _keep_open = child.stdin.take();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the process waited on stdin");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    parse_token_json(&o);
}

#[test]
fn anthropic_wif_log_turns_diagnostics_on_and_dash_v_wins() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let quiet = sb.run(&["token", "--no-cache"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("anthropic-wif: configuration:"), "{}", stderr(&quiet));

    sb.fresh_jwt_file();
    sb.env.insert("ANTHROPIC_WIF_LOG".into(), "info".into());
    let info = sb.run(&["token", "--no-cache"]);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(stderr(&info).contains("anthropic-wif: configuration: environment variables"), "{}", stderr(&info));

    // -v given: it decides, whatever ANTHROPIC_WIF_LOG says.
    sb.fresh_jwt_file();
    sb.env.insert("ANTHROPIC_WIF_LOG".into(), "debug".into());
    let debug = sb.run(&["token", "--no-cache"]);
    let v = {
        sb.fresh_jwt_file();
        sb.run(&["token", "--no-cache", "-v"])
    };
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(
        stderr(&debug).lines().count() > stderr(&v).lines().count(),
        "debug:\n{}\n-v:\n{}",
        stderr(&debug),
        stderr(&v)
    );
    assert!(stderr(&v).contains("anthropic-wif: configuration:"), "{}", stderr(&v));
}

#[test]
fn unknown_and_out_of_range_flags_get_the_one_message_of_every_face() {
    let sb = Sandbox::new();
    let o = sb.run(&["token", "--federation-rule", "fdrl_x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "anthropic-wif: error [config]: unknown option \"--federation-rule\"; did you mean --federation-rule-id? \
         (`anthropic-wif token --help` lists them)"
    );
    for bad in ["-1", "86401", "1.5", "soon"] {
        let o = sb.run(&["token", "--min-remaining", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains("--min-remaining must be a whole number of seconds from 0 to 86400"),
            "{}",
            stderr(&o)
        );
    }
    let o = sb.run(&["token", "--config-dir", ""]);
    assert!(stderr(&o).contains("--config-dir is empty"), "{}", stderr(&o));
}

#[test]
fn an_empty_service_account_flag_leaves_it_out_without_falling_back() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let o = sb.run(&["token", "--service-account-id", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body = &sb.emu.requests()[0].body;
    assert!(body.get("service_account_id").is_none(), "{body}");
}
