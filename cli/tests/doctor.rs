//! `anthropic-wif doctor` end to end: real processes, the in-process emulator
//! on loopback, identity tokens written to files. Every run asserts that no
//! identity JWT or access token appears in stdout or stderr.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Output;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

fn now() -> i64 {
    anthropic_wif_core::now_unix()
}

/// Run doctor with `--json`, check the invariants every report has, return it.
fn doctor_json(sb: &Sandbox, extra: &[&str], secrets: &[&str]) -> (Output, Value) {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let o = sb.run(&args);
    assert_no_secrets(&o, secrets);
    let out = stdout(&o);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}\nstderr: {}", stderr(&o)));
    assert_eq!(v["version"], 1);
    let code = o.status.code().expect("exit code");
    assert_eq!(v["exit_code"].as_i64(), Some(code as i64), "exit code matches the report");
    assert_eq!(v["healthy"].as_bool(), Some(code == 0));
    for f in v["findings"].as_array().expect("findings") {
        assert!(f["code"].as_str().is_some_and(|c| !c.is_empty()), "{f}");
        assert!(["error", "warning", "info"].contains(&f["severity"].as_str().unwrap_or("")), "{f}");
        assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
        assert!(f["fix"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
    }
    (o, v)
}

fn codes(v: &Value) -> Vec<String> {
    v["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect()
}

fn finding<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no finding {code} in {:?}", codes(v)))
}

/// Replace the identity token file's content; returns the token.
fn write_jwt(sb: &Sandbox, jwt: &str) -> String {
    std::fs::write(sb.path("identity-token"), format!("{jwt}\n")).unwrap();
    jwt.to_string()
}

fn mint(sb: &Sandbox, spec: Value) -> String {
    let jwt = sb.emu.mint_jwt_with(&spec).expect("mint");
    write_jwt(sb, &jwt)
}

/// A hand-built JWT with the given header (claims like the emulator's).
fn handmade(header: Value, claims: Value) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", b(&header), b(&claims), URL_SAFE_NO_PAD.encode(b"fake-signature-bytes"))
}

fn std_claims() -> Value {
    let n = now();
    json!({"iss": "https://issuer.example", "sub": "workload-1", "aud": "https://api.anthropic.com",
           "iat": n, "exp": n + 600, "jti": format!("j-{n}")})
}

fn cache_file(sb: &Sandbox) -> Option<PathBuf> {
    let dir = sb.path("cache/anthropic-wif");
    std::fs::read_dir(dir).ok()?.map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "json"))
}

#[test]
fn healthy_configuration_json_report() {
    let mut sb = Sandbox::new();
    let jwt_file = sb.federation_env();
    let jwt = read_secret_file(&jwt_file);
    let (o, v) = doctor_json(&sb, &[], &[&jwt]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(v["healthy"], true);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["warnings"], 0, "{:?}", codes(&v));

    let c = &v["config"];
    assert_eq!(c["ok"], true);
    assert_eq!(c["step"], "env_federation");
    assert_eq!(c["resolution"], "federation");
    assert!(c["description"].as_str().unwrap().contains("ANTHROPIC_IDENTITY_TOKEN_FILE"));
    let field = |n: &str| {
        c["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).cloned().unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(field("federation_rule_id")["value"], RULE);
    assert_eq!(
        field("federation_rule_id")["origin"],
        json!({"kind": "env", "name": "ANTHROPIC_FEDERATION_RULE_ID", "display": "environment variable ANTHROPIC_FEDERATION_RULE_ID"})
    );
    assert_eq!(field("organization_id")["value"], ORG);
    assert_eq!(field("service_account_id")["value"], SVAC);
    assert_eq!(field("base_url")["value"], sb.emu.base_url());
    assert_eq!(field("identity_token")["origin"]["name"], "ANTHROPIC_IDENTITY_TOKEN_FILE");

    let ids = v["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i["ok"] == true), "{ids:?}");

    let idr = &v["identity"];
    assert_eq!(idr["source"], "file");
    assert_eq!(idr["settings"]["path"], jwt_file.display().to_string());
    assert_eq!(idr["fetched"], true);
    assert_eq!(idr["size_bytes"].as_u64(), Some(jwt.len() as u64));
    assert_eq!(idr["expected_audience"], "https://api.anthropic.com");
    let t = &idr["token"];
    assert_eq!(t["alg"], "RS256");
    assert_eq!(t["kid"], "emulator");
    assert_eq!(t["iss"], anthropic_wif_emulator::DEFAULT_ISSUER);
    assert_eq!(t["sub"], anthropic_wif_emulator::DEFAULT_SUBJECT);
    assert_eq!(t["aud"], json!(["https://api.anthropic.com"]));
    assert_eq!(t["lifetime_s"], 3600);
    let rem = t["remaining_s"].as_i64().unwrap();
    assert!((3500..=3600).contains(&rem), "{rem}");
    assert_eq!(t["jti_present"], true);

    assert_eq!(v["cache"]["state"], "missing");
    assert_eq!(v["exchange"]["requested"], false);
    assert_eq!(v["exchange"]["performed"], false);
    // Looking consumed nothing and wrote nothing.
    assert_eq!(sb.emu.stats().token_requests, 0);
    assert!(cache_file(&sb).is_none());
    // The identity token is still good: `token` exchanges it.
    let t = sb.run(&["token"]);
    parse_token_json(&t);
    assert_eq!(sb.exchanges(), 1);
}

#[test]
fn healthy_configuration_human_report() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    let o = sb.run(&["doctor"]);
    assert_no_secrets(&o, &[&jwt]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in [
        "Configuration",
        "✓ environment variables",
        "environment variable ANTHROPIC_ORGANIZATION_ID",
        "Identity token",
        "alg RS256, kid emulator",
        anthropic_wif_emulator::DEFAULT_SUBJECT,
        "Token cache",
        "not attempted (add --exchange",
        "Result: ✓ healthy",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains("Findings"), "{out}");
}

#[test]
fn warnings_keep_exit_zero_and_are_explained() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    // Long-lived, nearly expired, wrong audience: each a warning.
    let cases = [
        (json!({"ttl": 7200}), "jwt_long_lived"),
        (json!({"ttl": 30}), "jwt_expiring"),
        (json!({"ttl": 600, "aud": "sts.amazonaws.com"}), "jwt_audience_mismatch"),
        (json!({"ttl": 600, "claims": {"iat": null}}), "jwt_missing_iat"),
        (json!({"ttl": 600, "claims": {"sub": null}}), "jwt_missing_sub"),
        (json!({"ttl": 600, "claims": {"nbf": now() + 900}}), "jwt_not_yet_valid"),
    ];
    for (spec, code) in cases {
        let jwt = mint(&sb, spec.clone());
        let (o, v) = doctor_json(&sb, &[], &[&jwt]);
        assert_eq!(o.status.code(), Some(0), "{code}: {}", stdout(&o));
        let f = finding(&v, code);
        assert_eq!(f["severity"], "warning", "{code}");
        assert_eq!(v["warnings"], 1, "{spec}: {:?}", codes(&v));
        // Human form: marked with `!`, with the fix.
        let h = sb.run(&["doctor"]);
        assert_no_secrets(&h, &[&jwt]);
        let out = stdout(&h);
        assert!(out.contains(&format!("! [{code}]")) && out.contains("fix: "), "{out}");
        assert!(out.contains("Result: ✓ healthy, with 1 warning"), "{out}");
    }
    assert_eq!(sb.emu.stats().token_requests, 0);
}

#[test]
fn expected_audience_flag() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let jwt = mint(&sb, json!({"ttl": 600, "aud": "my-rule-audience"}));
    let (_, v) = doctor_json(&sb, &[], &[&jwt]);
    assert!(finding(&v, "jwt_audience_mismatch")["message"].as_str().unwrap().contains("my-rule-audience"));
    let (o, v) = doctor_json(&sb, &["--expected-audience", "my-rule-audience"], &[&jwt]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!codes(&v).contains(&"jwt_audience_mismatch".to_string()), "{:?}", codes(&v));
    assert_eq!(v["identity"]["expected_audience"], "my-rule-audience");
}

#[test]
fn errors_exit_with_the_kinds_code() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let big = "x".repeat(17 * 1024);
    let n = now();
    let cases: Vec<(String, &str, i32)> = vec![
        (sb.emu.mint_jwt_with(&json!({"ttl": -120})).unwrap(), "jwt_expired", 3),
        (sb.emu.mint_jwt_with(&json!({"ttl": 600, "claims": {"pad": big}})).unwrap(), "jwt_too_large", 3),
        (sb.emu.mint_jwt_with(&json!({"ttl": 600, "claims": {"exp": null}})).unwrap(), "jwt_missing_exp", 3),
        (sb.emu.mint_jwt_with(&json!({"ttl": 600, "claims": {"iss": null}})).unwrap(), "jwt_missing_iss", 3),
        (handmade(json!({"alg": "HS256", "kid": "k"}), std_claims()), "jwt_alg_symmetric", 3),
        (handmade(json!({"alg": "none"}), std_claims()), "jwt_alg_none", 3),
        ("not-a-jwt-at-all".to_string(), "jwt_malformed", 3),
        (
            sb.emu
                .mint_jwt_with(&json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ns:default",
                    "claims": {"exp": null, "iat": null, "nbf": null, "aud": null,
                        "kubernetes.io/serviceaccount/namespace": "ns",
                        "kubernetes.io/serviceaccount/secret.name": "default-token-x"}}))
                .unwrap(),
            "kubernetes_default_token",
            2,
        ),
        (
            sb.emu
                .mint_jwt_with(
                    &json!({"ttl": 600, "aud": "https://kubernetes.default.svc.cluster.local", "claims": {"iat": n}}),
                )
                .unwrap(),
            "kubernetes_default_token",
            2,
        ),
    ];
    for (jwt, code, exit) in cases {
        write_jwt(&sb, &jwt);
        let (o, v) = doctor_json(&sb, &[], &[&jwt, "fake-signature-bytes"]);
        assert_eq!(o.status.code(), Some(exit), "{code}: {:?}", codes(&v));
        assert_eq!(finding(&v, code)["severity"], "error", "{code}");
        assert_eq!(v["healthy"], false);
        let h = sb.run(&["doctor"]);
        assert_no_secrets(&h, &[&jwt]);
        assert_eq!(h.status.code(), Some(exit));
        let out = stdout(&h);
        assert!(out.contains(&format!("✗ [{code}]")), "{out}");
        assert!(out.contains("Result: ✗ unhealthy") && out.contains(&format!("(exit {exit})")), "{out}");
    }
    // The missing kid is only a warning.
    let jwt = write_jwt(&sb, &handmade(json!({"alg": "RS256"}), std_claims()));
    let (o, v) = doctor_json(&sb, &[], &[&jwt]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(finding(&v, "jwt_missing_kid")["severity"], "warning");
    assert_eq!(sb.emu.stats().token_requests, 0, "doctor never sends without --exchange");
}

#[test]
fn default_kubernetes_token_path_is_flagged_even_when_missing() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), "/var/run/secrets/kubernetes.io/serviceaccount/token".into());
    let (o, v) = doctor_json(&sb, &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", codes(&v));
    let f = finding(&v, "kubernetes_default_token");
    assert_eq!((f["severity"].as_str(), f["kind"].as_str()), (Some("error"), Some("config")));
    assert!(f["fix"].as_str().unwrap().contains("projected"));
    let out = stdout(&sb.run(&["doctor"]));
    assert!(out.contains("✗ [kubernetes_default_token]"), "{out}");
}

#[test]
fn static_credentials_shadowing_federation() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    let key = "sk-ant-api03-DoctorShadowKeyValue0000";
    sb.env.insert("ANTHROPIC_API_KEY".into(), key.into());
    let (o, v) = doctor_json(&sb, &[], &[&jwt, key, "DoctorShadowKey"]);
    assert_eq!(o.status.code(), Some(2));
    let f = finding(&v, "api_key_shadows_federation");
    assert_eq!(f["severity"], "error");
    assert!(f["message"].as_str().unwrap().contains("ANTHROPIC_FEDERATION_RULE_ID"));
    assert!(f["fix"].as_str().unwrap().contains("unset ANTHROPIC_API_KEY"));
    assert_eq!(v["config"]["step"], "api_key");
    assert!(v.get("identity").is_none(), "federation is not used, no identity token is fetched");

    sb.env.remove("ANTHROPIC_API_KEY");
    let bearer = "sk-ant-oat01-DoctorStaticBearerValue00";
    sb.env.insert("ANTHROPIC_AUTH_TOKEN".into(), bearer.into());
    let (o, v) = doctor_json(&sb, &[], &[&jwt, bearer, "DoctorStaticBearer"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(finding(&v, "auth_token_shadows_federation")["severity"], "warning");
    let h = sb.run(&["doctor"]);
    assert_no_secrets(&h, &[&jwt, bearer, "DoctorStaticBearer"]);
    assert!(stdout(&h).contains("! [auth_token_shadows_federation]"));
}

#[test]
fn configuration_errors_list_every_id() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    sb.env.insert("ANTHROPIC_ORGANIZATION_ID".into(), "org_notauuid".into());
    let (o, v) = doctor_json(&sb, &[], &[&jwt]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(v["config"]["ok"], false);
    assert!(v["config"]["error"]["message"].as_str().unwrap().contains("ANTHROPIC_ORGANIZATION_ID"));
    let ids = v["ids"].as_array().unwrap();
    let get = |f: &str| ids.iter().find(|i| i["field"] == f).cloned().unwrap_or_else(|| panic!("{f}"));
    assert_eq!(get("federation_rule_id")["ok"], true);
    assert_eq!(get("service_account_id")["ok"], true);
    assert_eq!(get("organization_id")["ok"], false);
    assert_eq!(get("organization_id")["origin"]["name"], "ANTHROPIC_ORGANIZATION_ID");
    let h = sb.run(&["doctor"]);
    let out = stdout(&h);
    assert!(out.contains("✓ federation_rule_id") && out.contains("✗ organization_id"), "{out}");

    // A flag that does not parse still yields a report.
    let (o, v) = doctor_json(&sb, &["--identity-token", "{not json"], &[&jwt]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(finding(&v, "config_error")["kind"], "config");
}

#[test]
fn identity_source_failure_exits_3() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), sb.path("no-such-token").display().to_string());
    let (o, v) = doctor_json(&sb, &[], &[]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(finding(&v, "identity_fetch_failed")["kind"], "identity");
    assert_eq!(v["identity"]["fetched"], false);
}

#[cfg(unix)]
#[test]
fn cache_states_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let mut sb = Sandbox::new();
    sb.federation_env();
    let jwt = read_secret_file(&sb.path("identity-token"));
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    let path = cache_file(&sb).expect("token wrote the cache");

    let (o, v) = doctor_json(&sb, &[], &[&jwt, &token]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(v["cache"]["state"], "valid");
    assert_eq!(v["cache"]["path"], path.display().to_string());
    let left = v["cache"]["remaining_s"].as_i64().unwrap();
    assert!((500..=600).contains(&left), "{left}");
    assert!(stdout(&sb.run(&["doctor"])).contains("a valid token, "));

    // The identity token is consumed now: without a usable cached token that
    // is an error of its own (cli/tests/consumed.rs); give a fresh one.
    let jwt = read_secret_file(&sb.fresh_jwt_file());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (o, v) = doctor_json(&sb, &[], &[&jwt, &token]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(v["cache"]["state"], "insecure");
    assert_eq!(finding(&v, "cache_insecure")["severity"], "warning");

    std::fs::write(&path, "{\"version\": \"1.0\", \"type\": \"oauth_token\"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, v) = doctor_json(&sb, &[], &[&jwt, &token]);
    assert_eq!(v["cache"]["state"], "corrupt");
    assert!(codes(&v).contains(&"cache_corrupt".to_string()));

    let (_, v) = doctor_json(&sb, &["--no-cache"], &[&jwt, &token]);
    assert_eq!(v["cache"]["state"], "disabled");
}

#[test]
fn exchange_reports_request_id_and_masked_token_and_caches_it() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    let (o, v) = doctor_json(&sb, &["--exchange"], &[&jwt]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(sb.exchanges(), 1);
    let ex = &v["exchange"];
    assert_eq!(ex["requested"], true);
    assert_eq!(ex["performed"], true);
    assert_eq!(ex["ok"], true);
    assert_eq!(ex["status"], 200);
    assert!(ex["request_id"].as_str().unwrap().starts_with("req_"), "{ex}");
    assert_eq!(ex["granted_lifetime_s"], 600);
    assert_eq!(ex["scope"], "user:inference");
    let masked = ex["token_masked"].as_str().unwrap();
    assert!(
        masked.starts_with("sk-ant-oat01-…") && masked.chars().count() == "sk-ant-oat01-…".chars().count() + 4,
        "{masked}"
    );
    let path = cache_file(&sb).expect("doctor --exchange cached the token");
    assert_eq!(ex["cached_in"], path.display().to_string());
    assert_eq!(v["cache"]["state"], "valid");
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    // The access token is nowhere in the output, only its last 4 characters.
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let token = cached["access_token"].as_str().unwrap().to_string();
    assert!(sb.emu.is_token_valid(&token));
    assert!(masked.ends_with(&token[token.len() - 4..]));
    assert_no_secrets(&o, &[&jwt, &token]);
    let request_id = ex["request_id"].as_str().unwrap().to_string();

    // `token` now uses the cached token instead of re-sending the consumed JWT.
    let (t, _) = parse_token_json(&sb.run(&["token"]));
    assert_eq!(t, token);
    assert_eq!(sb.exchanges(), 1);

    // Human form, on a fresh JWT.
    let jwt2 = mint(&sb, json!({"ttl": 1800}));
    let h = sb.run(&["doctor", "--exchange"]);
    let out = stdout(&h);
    assert_eq!(h.status.code(), Some(0), "{out}");
    assert!(out.contains("✓ HTTP 200, request-id req_") && out.contains("token sk-ant-oat01-…"), "{out}");
    assert!(out.contains("cached in "), "{out}");
    assert!(!out.contains(&request_id), "a new exchange, a new request id");
    assert_eq!(sb.exchanges(), 2);
    let token2 = serde_json::from_str::<Value>(&std::fs::read_to_string(&path).unwrap()).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(token2, token);
    assert_no_secrets(&h, &[&jwt, &jwt2, &token, &token2]);
}

/// doctor's exchange is the provider's own: under the lock, and like any
/// exchange it clears a refresh back-off that other processes recorded.
#[test]
fn exchange_clears_a_recorded_refresh_back_off() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    // Find the cache file this configuration uses, then record a back-off next to it.
    let (_, v) = doctor_json(&sb, &[], &[&jwt]);
    let path = PathBuf::from(v["cache"]["path"].as_str().expect("a cache path"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(path.parent().unwrap(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let lock = PathBuf::from(format!("{}.lock", path.display()));
    std::fs::write(&lock, format!("{{\"refresh_backoff_until\": {}}}\n", now() + 3600)).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&lock, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let (o, v) = doctor_json(&sb, &["--exchange"], &[&jwt]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(v["exchange"]["ok"], true);
    let record = std::fs::read_to_string(&lock).unwrap();
    assert!(!record.contains("refresh_backoff_until"), "back-off left in place: {record}");
    let ua = sb.emu.requests().iter().rev().find_map(|r| r.header("user-agent").map(str::to_string));
    assert!(ua.as_deref().is_some_and(|u| u.starts_with("anthropic-wif/") && u.ends_with("(cli; doctor)")), "{ua:?}");
}

#[test]
fn exchange_denied_exits_4_with_the_request_id() {
    let mut sb = Sandbox::with_config(EmulatorConfig {
        rules: vec!["fdrl_01SomeOtherRule0000000000".into()],
        ..Default::default()
    });
    let jwt = read_secret_file(&sb.federation_env());
    let (o, v) = doctor_json(&sb, &["--exchange"], &[&jwt]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let ex = &v["exchange"];
    assert_eq!(ex["performed"], true);
    assert_eq!(ex["ok"], false);
    assert_eq!(ex["status"], 401);
    assert!(ex["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(ex["error"]["kind"], "denied");
    let f = finding(&v, "exchange_failed");
    assert_eq!(f["kind"], "denied");
    assert!(f["fix"].as_str().unwrap().contains("federation rule"));
    assert!(cache_file(&sb).is_none(), "nothing cached after a denial");
}

#[test]
fn exchange_unreachable_exits_5() {
    let mut sb = Sandbox::new();
    let jwt = read_secret_file(&sb.federation_env());
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    sb.env.insert("ANTHROPIC_BASE_URL".into(), format!("http://127.0.0.1:{port}"));
    let (o, v) = doctor_json(&sb, &["--exchange"], &[&jwt]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert_eq!(finding(&v, "exchange_failed")["kind"], "unavailable");
}

#[test]
fn exchange_is_skipped_when_checks_fail() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let jwt = mint(&sb, json!({"ttl": -60}));
    let (o, v) = doctor_json(&sb, &["--exchange"], &[&jwt]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(v["exchange"]["performed"], false);
    assert!(v["exchange"]["skipped_reason"].as_str().is_some());
    assert_eq!(sb.emu.stats().token_requests, 0, "the identity token was not sent");
    let out = stdout(&sb.run(&["doctor", "--exchange"]));
    assert!(out.contains("skipped: "), "{out}");
}

#[test]
fn help_explains_consumption_and_exit_codes() {
    let sb = Sandbox::new();
    let o = sb.run(&["doctor", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in
        ["--exchange", "CONSUMES", "--json", "Exit codes: 0 healthy", "--expected-audience", "--federation-rule-id"]
    {
        assert!(out.contains(needle), "{needle:?} missing from help:\n{out}");
    }
}

#[test]
fn the_identity_source_is_labelled_with_the_flag_that_gave_it() {
    let sb = Sandbox::new();
    let jwt = sb.fresh_jwt_file();
    let base = sb.emu.base_url();
    let args = ["--federation-rule-id", RULE, "--organization-id", ORG, "--base-url", base.as_str()];
    let (_, v) = doctor_json(&sb, &[&args[..], &["--identity-token-file", jwt.to_str().unwrap()]].concat(), &[]);
    assert_eq!(v["identity"]["origin"]["display"], "--identity-token-file", "{}", v["identity"]);
    let o = sb.run(&[&["doctor"][..], &args[..], &["--identity-token-file", jwt.to_str().unwrap()]].concat());
    assert!(stdout(&o).contains("[--identity-token-file]"), "{}", stdout(&o));
    let (_, v) = doctor_json(&sb, &[&args[..], &["--identity-token-env", "MY_JWT"]].concat(), &[]);
    assert_eq!(v["identity"]["origin"]["display"], "--identity-token-env", "{}", v["identity"]);
    let spec = format!(r#"{{"source":"file","path":"{}"}}"#, jwt.display());
    let (_, v) = doctor_json(&sb, &[&args[..], &["--identity-token", spec.as_str()]].concat(), &[]);
    assert_eq!(v["identity"]["origin"]["display"], "--identity-token", "{}", v["identity"]);
}
