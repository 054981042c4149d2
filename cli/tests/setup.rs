//! `anthropic-wif setup claude-code`: the profile and Claude Code's settings
//! it writes, merged without losing keys, and the daemon command it prints,
//! run as printed. (The real Claude Code reading them: tests/e2e/claude_code.test.mjs.)
#![cfg(unix)]

mod common;
use common::*;

use serde_json::{json, Value};

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn writes_the_profile_and_merges_claude_codes_settings() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let claude_dir = sb.path("home/.claude");
    sb.env.insert("CLAUDE_CONFIG_DIR".into(), claude_dir.display().to_string());
    std::fs::create_dir_all(&claude_dir).unwrap();
    let settings = claude_dir.join("settings.json");
    let before = json!({
        "permissions": {"allow": ["Bash(ls:*)"]},
        "model": "opus",
        "apiKeyHelper": "anthropic-wif token --format token",
        "env": {"ANTHROPIC_AUTH_TOKEN": "placeholder", "MY_SETTING": "1"}
    });
    std::fs::write(&settings, before.to_string()).unwrap();
    chmod(&settings, 0o644);

    let o = sb.run(&["setup", "claude-code"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let config = sb.path("config");
    // The profile: externally rotated, with this configuration's ids and base URL.
    let profile = read_json(&config.join("configs/claude-code.json"));
    assert_eq!(profile["authentication"], json!({"type": "user_oauth"}));
    assert_eq!(profile["organization_id"], ORG);
    assert_eq!(profile["base_url"], sb.emu.base_url());
    // The settings: every other key kept, the env entries set, what would shadow the profile removed.
    let after = read_json(&settings);
    assert_eq!(after["permissions"], before["permissions"]);
    assert_eq!(after["model"], "opus");
    assert_eq!(after["env"]["MY_SETTING"], "1");
    assert_eq!(after["env"]["ANTHROPIC_PROFILE"], "claude-code");
    assert_eq!(after["env"]["ANTHROPIC_CONFIG_DIR"], config.display().to_string());
    assert_eq!(after["env"]["ANTHROPIC_BASE_URL"], sb.emu.base_url());
    assert!(after.get("apiKeyHelper").is_none() && after["env"].get("ANTHROPIC_AUTH_TOKEN").is_none());
    assert_eq!(mode(&settings), 0o600, "never world-readable");
    // What it did, and how to run the daemon.
    assert!(out.contains("wrote the profile") && out.contains("configs/claude-code.json"), "{out}");
    assert!(out.contains("removed apiKeyHelper") && out.contains("removed env.ANTHROPIC_AUTH_TOKEN"), "{out}");
    assert!(out.contains("set env.ANTHROPIC_PROFILE=claude-code"), "{out}");
    let daemon_line = out.lines().find(|l| l.trim_start().starts_with("anthropic-wif daemon ")).expect(&out).trim();
    assert_eq!(daemon_line, "anthropic-wif daemon --target-profile claude-code");
    assert_eq!(sb.exchanges(), 0, "setup exchanges nothing");

    // Run again: nothing to change, nothing rewritten.
    let mtime = std::fs::metadata(&settings).unwrap().modified().unwrap();
    let o = sb.run(&["setup", "claude-code"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("already has these settings") && stdout(&o).contains("already in place"));
    assert_eq!(std::fs::metadata(&settings).unwrap().modified().unwrap(), mtime);

    // The printed command, run as printed (with --once here), fills the file Claude Code reads.
    let o = std::process::Command::new("sh")
        .args(["-c", &format!("{} --once", daemon_line.replacen("anthropic-wif", bin(), 1))])
        .env_clear()
        .envs(&sb.env)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let creds = read_json(&config.join("credentials/claude-code.json"));
    assert!(sb.emu.is_token_valid(creds["access_token"].as_str().unwrap()));
}

#[test]
fn flags_given_to_setup_are_in_the_printed_command_and_bad_settings_change_nothing() {
    let sb = Sandbox::new();
    let settings = sb.path("project/.claude/settings.local.json");
    let base = sb.emu.base_url();
    let jwt = sb.path("identity-token");
    let mut args = sb.federation_args(&["setup", "claude-code"]);
    args.extend(["--settings", settings.to_str().unwrap(), "--target-profile", "cc"].map(String::from));
    let o = sb.run_owned(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(settings.parent().unwrap()), 0o700);
    assert_eq!(read_json(&settings)["env"]["ANTHROPIC_PROFILE"], "cc");
    let out = stdout(&o);
    let line = out.lines().find(|l| l.trim_start().starts_with("anthropic-wif daemon ")).expect(&out).trim();
    assert_eq!(
        line,
        format!(
            "anthropic-wif daemon --target-profile cc --base-url {base} --federation-rule-id {RULE} \
             --organization-id {ORG} --identity-token-file {}",
            jwt.display()
        )
    );

    // Settings that are not a JSON object: refused, and neither file is touched.
    let other = Sandbox::new();
    let bad = other.path("settings.json");
    std::fs::write(&bad, "[1, 2]").unwrap();
    let mut args = args.clone();
    let i = args.iter().position(|a| a == "--settings").unwrap();
    args[i + 1] = bad.display().to_string();
    let err = assert_failed(&other.run_owned(&args), "config", 2, &[]);
    assert!(err.contains("not hold a JSON object") && err.contains("nothing was changed"), "{err}");
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "[1, 2]");
    assert!(!other.path("config/configs/cc.json").exists());

    // A profile of another shape is not replaced.
    let configs = other.path("config/configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(configs.join("cc.json"), r#"{"authentication":{"type":"user_oauth","client_id":"x"}}"#).unwrap();
    std::fs::write(&bad, "{}").unwrap();
    let err = assert_failed(&other.run_owned(&args), "config", 2, &[]);
    assert!(err.contains("--overwrite-profile"), "{err}");
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "{}", "settings untouched");
}
