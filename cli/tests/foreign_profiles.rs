//! Profiles other official SDKs wrote (docs/sdk-profiles.md §1): each
//! `identity_token` shape they document loads and exchanges, end to end
//! against the emulator; a JWT written into a profile is never shown.

mod common;
use common::*;

use serde_json::{json, Value};

fn profile(sb: &Sandbox, name: &str, identity_token: Value) {
    let dir = sb.path("config/configs");
    std::fs::create_dir_all(&dir).unwrap();
    let body = json!({"version": "1.0", "organization_id": ORG, "base_url": sb.emu.base_url(),
        "authentication": {"type": "oidc_federation", "federation_rule_id": RULE, "service_account_id": SVAC,
                           "identity_token": identity_token}});
    std::fs::write(dir.join(format!("{name}.json")), body.to_string()).unwrap();
}

fn mint(sb: &Sandbox) -> String {
    sb.emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600)
}

fn last_assertion(sb: &Sandbox) -> String {
    sb.emu.requests().last().unwrap().body["assertion"].as_str().unwrap().to_string()
}

#[test]
fn each_other_sdks_shape_loads_and_exchanges() {
    let mut sb = Sandbox::new();
    let file_jwt = read_secret_file(&sb.fresh_jwt_file());
    let file = sb.path("identity-token").display().to_string();
    let (ruby_env, php_env, php_default, php_literal, java_value) =
        (mint(&sb), mint(&sb), mint(&sb), mint(&sb), mint(&sb));
    sb.env.insert("RUBY_JWT".into(), ruby_env.clone());
    sb.env.insert("PHP_JWT".into(), php_env.clone());
    sb.env.insert("ANTHROPIC_IDENTITY_TOKEN".into(), php_default.clone());
    let shapes = [
        ("ruby-file", json!(file), file_jwt.as_str()),
        ("ruby-env", json!({"source": "env", "value": "RUBY_JWT"}), ruby_env.as_str()),
        ("php-env", json!({"source": "env", "env_var": "PHP_JWT"}), php_env.as_str()),
        ("php-env-default", json!({"source": "env"}), php_default.as_str()),
        ("php-literal", json!({"source": "literal", "token": php_literal}), php_literal.as_str()),
        ("java-value", json!({"source": "value", "path": java_value}), java_value.as_str()),
    ];
    let secrets: Vec<&str> = shapes.iter().map(|(_, _, jwt)| *jwt).collect();
    for (name, shape, jwt) in &shapes {
        profile(&sb, name, shape.clone());
        let o = sb.run(&["token", "--profile", name]);
        parse_token_json(&o);
        assert_clean(name, &stderr(&o), &secrets);
        assert_eq!(&last_assertion(&sb), jwt, "{name}: the token its shape names was sent");

        // doctor shows the source, never a JWT written into the profile.
        let o = sb.run(&["doctor", "--json", "--profile", name]);
        let out = stdout(&o);
        assert_clean(name, &format!("{out}{}", stderr(&o)), &secrets);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["identity"]["fetched"], true, "{name}: {v}");
    }
    assert_eq!(sb.exchanges(), shapes.len() as u64);
    let v: Value = serde_json::from_str(&stdout(&sb.run(&["doctor", "--json", "--profile", "php-literal"]))).unwrap();
    assert_eq!(v["identity"]["source"], "literal");
    assert_eq!(v["identity"]["settings"]["token"], "(not shown)");

    // A literal serves one exchange: afterwards it is consumed, and since it
    // cannot change, the error says so at once.
    let o = sb.run(&["token", "--profile", "php-literal", "--force-refresh"]);
    let err = assert_failed(&o, "identity", 3, &secrets);
    assert!(err.contains("written in the configuration") && err.contains("set a fresh identity token"), "{err}");

    // `exec` keeps the variable a shape names from its command.
    let o = sb.run(&["exec", "--profile", "php-env", "--", "sh", "-c", "echo \"PHP_JWT=[${PHP_JWT:-}]\""]);
    assert!(stdout(&o).contains("PHP_JWT=[]"), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn unknown_sources_still_fail_with_the_supported_list() {
    let sb = Sandbox::new();
    profile(&sb, "odd", json!({"source": "carrier_pigeon"}));
    let err = assert_failed(&sb.run(&["token", "--profile", "odd"]), "config", 2, &[]);
    for needle in ["\"carrier_pigeon\" is not supported", "file, env, command, url", "literal", "value"] {
        assert!(err.contains(needle), "{needle:?}: {err}");
    }
    profile(&sb, "two", json!({"source": "env", "var": "A", "value": "B"}));
    let err = assert_failed(&sb.run(&["token", "--profile", "two"]), "config", 2, &[]);
    assert!(err.contains("duplicate field"), "{err}");
}
