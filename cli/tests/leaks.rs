//! Leak scan (issue 7, item 6): every error path of the CLI face, run with a
//! recognisable identity JWT and access token at the most verbose level, and
//! checked in one place: neither appears on stdout (on failure), stderr, or in
//! any file but the token cache; `Debug` of core types never shows them.

mod common;
use common::*;

use anthropic_wif_emulator::Fault;

/// A recognisable access token the emulator is made to hand out.
const CANARY: &str = "sk-ant-oat01-LEAKCANARY0123456789abcdefghijklmnopqrstuvwxyz";

struct Scan {
    name: &'static str,
    /// Prepare the sandbox; return the args for `anthropic-wif`.
    setup: fn(&mut Sandbox, &str) -> Vec<String>,
    /// Expected exit code.
    code: i32,
}

fn fed(sb: &mut Sandbox) {
    sb.federation_env();
}

fn canary_body(extra: &str) -> String {
    format!("{{\"access_token\":\"{CANARY}\",\"token_type\":\"Bearer\"{extra}}}")
}

fn scans() -> Vec<Scan> {
    vec![
        Scan {
            name: "reused jwt (401)",
            code: 4,
            setup: |sb, _| {
                fed(sb);
                parse_token_json(&sb.run(&["token", "--no-cache"]));
                // Exchanged by another user (or machine): this one's record does not know it.
                sb.env.insert("XDG_CACHE_HOME".into(), sb.path("other-cache").display().to_string());
                vec!["token".into(), "--no-cache".into()]
            },
        },
        Scan {
            name: "consumed jwt (not sent)",
            code: 3,
            setup: |sb, _| {
                fed(sb);
                parse_token_json(&sb.run(&["token", "--no-cache"]));
                vec!["token".into(), "--no-cache".into(), "--rotation-wait".into(), "0".into()]
            },
        },
        Scan {
            name: "echo 400 oauth",
            code: 4,
            setup: |sb, _| {
                fed(sb);
                sb.emu.push_faults([Fault::echo()]);
                vec!["token".into()]
            },
        },
        Scan {
            name: "echo 400 anthropic",
            code: 4,
            setup: |sb, _| {
                fed(sb);
                sb.emu
                    .push_faults_json(&serde_json::json!({"faults": [{"kind": "echo", "shape": "anthropic"}]}))
                    .unwrap();
                vec!["token".into()]
            },
        },
        Scan {
            name: "echo 503 x3",
            code: 5,
            setup: |sb, _| {
                fed(sb);
                sb.emu
                    .push_faults_json(&serde_json::json!({"faults": [{"kind": "echo", "status": 503, "count": 3}]}))
                    .unwrap();
                vec!["token".into()]
            },
        },
        Scan {
            name: "token_type mac with the canary",
            code: 5,
            setup: |sb, _| {
                fed(sb);
                sb.emu.push_faults([Fault::raw(
                    200,
                    &canary_body(",\"token_type\":\"mac\",\"expires_in\":600")
                        .replace("\"token_type\":\"Bearer\",", ""),
                )]);
                vec!["token".into()]
            },
        },
        Scan {
            name: "bad expires_in with the canary",
            code: 5,
            setup: |sb, _| {
                fed(sb);
                sb.emu.push_faults([Fault::raw(200, &canary_body(&format!(",\"expires_in\":\"{CANARY}\"")))]);
                vec!["token".into()]
            },
        },
        Scan {
            name: "the canary as a bare JSON string",
            code: 5,
            setup: |sb, _| {
                fed(sb);
                sb.emu.push_faults([Fault::raw(200, &format!("\"{CANARY}\""))]);
                vec!["token".into()]
            },
        },
        Scan {
            name: "the canary in a 500 text body and request-id",
            code: 5,
            setup: |sb, jwt| {
                fed(sb);
                let f = serde_json::json!({"faults": [{"kind": "raw", "status": 500, "count": 3, "body": format!("oops {jwt} {CANARY}"),
                "headers": {"content-type": "text/plain", "request-id": format!("req_{CANARY}")}}]});
                sb.emu.push_faults_json(&f).unwrap();
                vec!["token".into()]
            },
        },
        Scan {
            name: "force refresh failing with the canary cached",
            code: 5,
            setup: |sb, _| {
                fed(sb);
                sb.emu.push_faults([Fault::raw(200, &canary_body(",\"expires_in\":600"))]);
                parse_token_json(&sb.run(&["token"]));
                sb.fresh_jwt_file();
                sb.emu.push_faults([Fault::status(503).times(3)]);
                vec!["token".into(), "--force-refresh".into()]
            },
        },
        Scan {
            name: "identity command failing with secrets on stderr",
            code: 3,
            setup: |sb, jwt| {
                let script = format!("echo 'got {jwt} and {CANARY}' >&2; exit 9");
                let spec = serde_json::json!({"source": "command", "command": ["sh", "-c", script]}).to_string();
                vec![
                    "token".into(),
                    "--base-url".into(),
                    sb.emu.base_url(),
                    "--federation-rule-id".into(),
                    RULE.into(),
                    "--organization-id".into(),
                    ORG.into(),
                    "--identity-token".into(),
                    spec,
                ]
            },
        },
        Scan {
            name: "identity token file of two lines",
            code: 3,
            setup: |sb, jwt| {
                fed(sb);
                std::fs::write(sb.path("identity-token"), format!("{jwt}\n{CANARY}\n")).unwrap();
                vec!["token".into()]
            },
        },
        Scan {
            name: "the jwt pasted as the rule id",
            code: 2,
            setup: |sb, jwt| {
                fed(sb);
                sb.env.insert("ANTHROPIC_FEDERATION_RULE_ID".into(), jwt.into());
                vec!["token".into()]
            },
        },
        Scan {
            name: "the canary pasted as the organization id",
            code: 2,
            setup: |sb, _| {
                fed(sb);
                sb.env.insert("ANTHROPIC_ORGANIZATION_ID".into(), CANARY.into());
                vec!["token".into()]
            },
        },
        Scan {
            name: "the canary pasted as the workspace id",
            code: 2,
            setup: |sb, _| {
                fed(sb);
                sb.env.insert("ANTHROPIC_WORKSPACE_ID".into(), CANARY.into());
                vec!["token".into()]
            },
        },
        Scan {
            name: "the jwt in the base url",
            code: 2,
            setup: |sb, jwt| {
                fed(sb);
                sb.env.insert("ANTHROPIC_BASE_URL".into(), format!("https://api.anthropic.com/?t={jwt}"));
                vec!["token".into()]
            },
        },
        Scan {
            name: "the jwt as a flag value for a path",
            code: 3,
            setup: |sb, jwt| {
                fed(sb);
                sb.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), jwt.into());
                vec!["token".into()]
            },
        },
        Scan {
            name: "the canary as an API key shadowing federation",
            code: 2,
            setup: |sb, _| {
                fed(sb);
                sb.env.insert("ANTHROPIC_API_KEY".into(), CANARY.replace("oat01", "api03"));
                vec!["token".into()]
            },
        },
        Scan {
            name: "a profile holding the canary and jwt in unknown fields, malformed",
            code: 2,
            setup: |sb, jwt| {
                let d = sb.path("config/configs");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("p.json"), format!("{{\"version\":\"1.0\",\"organization_id\":\"{CANARY}\",\"x\":\"{jwt}\",\"authentication\":{{\"type\":\"oidc_federation\",\"federation_rule_id\":\"{jwt}\"}}}}")).unwrap();
                vec!["token".into(), "--profile".into(), "p".into()]
            },
        },
    ]
}

#[test]
fn no_error_path_leaks_a_secret() {
    let mut failures = Vec::new();
    for scan in scans() {
        let mut sb = Sandbox::new();
        let jwt =
            sb.emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600);
        let mut args = (scan.setup)(&mut sb, &jwt);
        args.push("-vv".into());
        let jwt_now =
            std::fs::read_to_string(sb.path("identity-token")).map(|s| s.trim().to_string()).unwrap_or_default();
        let mut cmd = sb.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("ANTHROPIC_WIF_LOG", "debug");
        let o = cmd.output().unwrap();
        let secrets: Vec<&str> =
            [jwt.as_str(), jwt_now.as_str(), CANARY, "LEAKCANARY"].into_iter().filter(|s| !s.is_empty()).collect();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(scan.code), "exit code; stderr: {err}");
            assert!(o.stdout.is_empty(), "stdout on failure: {}", stdout(&o));
            assert_clean("stderr", &err, &secrets);
            // Files: only the identity-token file (ours, the input) and the
            // token cache may hold a secret.
            let cache_root = sb.path("cache/anthropic-wif");
            for (p, bytes) in files_under(sb.dir.path()) {
                if p == sb.path("identity-token")
                    || p.starts_with(&cache_root)
                    || p.starts_with(sb.path("config/configs"))
                {
                    continue;
                }
                let text = String::from_utf8_lossy(&bytes);
                for s in &secrets {
                    assert!(!text.contains(s), "{} holds a secret", p.display());
                }
            }
        }));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", scan.name));
        }
    }
    assert!(failures.is_empty(), "leaks or wrong outcomes:\n{}", failures.join("\n"));
}

#[test]
fn debug_and_display_of_core_types_never_show_secrets() {
    use anthropic_wif_core::cache::CachedToken;
    use anthropic_wif_core::{AccessToken, Secret};
    let t = AccessToken { token: Secret::new(CANARY), expires_at: Some(1) };
    let c = CachedToken { access_token: Secret::new(CANARY), expires_at: Some(1), lifetime: Some(600) };
    let mem = anthropic_wif_core::cache::MemoryCache::new();
    mem.insert(c.clone());
    for text in
        [format!("{t:?}"), format!("{c:?}"), format!("{mem:?}"), format!("{}", t.token), format!("{:?}", Some(&t))]
    {
        // `masked()` forms (prefix and last 4 characters) are allowed; the token is not.
        assert!(!text.contains(CANARY) && !text.contains("LEAKCANARY"), "Debug leaked: {text}");
    }
}
