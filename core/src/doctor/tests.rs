//! Unit tests: hand-built JWTs (base64url JSON + a fake signature), fixed
//! environments, temp config and cache dirs. No network: exchanges are tested
//! end to end against the emulator in cli/tests/doctor.rs.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::env::Env;

const RULE: &str = "fdrl_01TestRule000000000000000";
const ORG: &str = "00000000-0000-4000-8000-000000000001";
const SIG: &str = "ZmFrZS1zaWduYXR1cmUtYnl0ZXMtU0lHTUFSS0VS"; // "fake-signature-bytes-SIGMARKER"

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn make_jwt(header: Value, claims: Value) -> String {
    format!("{}.{}.{SIG}", b64(&header), b64(&claims))
}

fn now() -> i64 {
    crate::clock::now_unix()
}

fn good_header() -> Value {
    json!({"alg": "RS256", "kid": "key-1", "typ": "JWT"})
}

fn good_claims() -> Value {
    let n = now();
    json!({"iss": "https://token.actions.githubusercontent.com", "sub": "repo:o/r:ref:refs/heads/main",
           "aud": "https://api.anthropic.com", "iat": n - 60, "nbf": n - 60, "exp": n + 540, "jti": "j-1"})
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Run the token checks alone on a JWT from an env-var source.
fn check(jwt: &str) -> (Report, IdentityReport) {
    check_spec(jwt, &IdentitySpec::Env { var: "ANTHROPIC_IDENTITY_TOKEN".into() }, DEFAULT_AUDIENCE)
}

fn check_spec(jwt: &str, spec: &IdentitySpec, aud: &str) -> (Report, IdentityReport) {
    let mut report = Report::new(false);
    let mut idr = IdentityReport {
        source: "env".into(),
        description: spec.describe(),
        settings: spec_settings(spec),
        origin: (&Origin::Default).into(),
        expected_audience: aud.into(),
        fetched: true,
        error: None,
        size_bytes: None,
        token: None,
        decode_error: None,
        record: None,
    };
    check_token(&mut report, &mut idr, &Secret::new(jwt), spec, aud, now());
    (report.finish(), idr)
}

fn codes_of(r: &Report) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn finding<'a>(r: &'a Report, code: &str) -> &'a Finding {
    r.findings.iter().find(|f| f.code == code).unwrap_or_else(|| panic!("no {code} in {:?}", codes_of(r)))
}

/// The serialized report contains none of the secrets.
fn assert_clean(r: &Report, secrets: &[&str]) {
    let text = serde_json::to_string(r).unwrap();
    for s in secrets {
        assert!(!text.contains(s), "secret in report: {text}");
    }
    assert!(!text.contains("SIGMARKER") && !text.contains(SIG), "signature in report: {text}");
    assert!(!text.contains("eyJ"), "JWT-like text in report: {text}");
    let dbg = format!("{r:?}");
    for s in secrets {
        assert!(!dbg.contains(s), "secret in Debug: {dbg}");
    }
}

#[test]
fn healthy_token_has_no_findings_and_is_described() {
    let jwt = make_jwt(good_header(), good_claims());
    let (r, idr) = check(&jwt);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert!(r.healthy);
    assert_eq!(r.exit_code, 0);
    let t = idr.token.as_ref().unwrap();
    assert_eq!(t.alg.as_deref(), Some("RS256"));
    assert_eq!(t.kid.as_deref(), Some("key-1"));
    assert_eq!(t.iss.as_deref(), Some("https://token.actions.githubusercontent.com"));
    assert_eq!(t.sub.as_deref(), Some("repo:o/r:ref:refs/heads/main"));
    assert_eq!(t.aud, vec!["https://api.anthropic.com"]);
    assert_eq!(t.lifetime_s, Some(600));
    let rem = t.remaining_s.unwrap();
    assert!((530..=540).contains(&rem), "{rem}");
    assert!(t.jti_present);
    assert_eq!(idr.size_bytes, Some(jwt.len()));
    assert!(t.claim_names.contains(&"jti".to_string()));
    let text = serde_json::to_string(&idr).unwrap();
    assert!(!text.contains(&jwt) && !text.contains(SIG) && !text.contains("j-1"), "{text}");
}

#[test]
fn expired_token_is_an_identity_error() {
    let jwt = make_jwt(good_header(), with(with(good_claims(), "exp", json!(now() - 100)), "iat", json!(now() - 700)));
    let (r, _) = check(&jwt);
    let f = finding(&r, codes::JWT_EXPIRED);
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.kind, Some("identity"));
    assert!(f.message.contains("expired") && !f.fix.is_empty());
    assert!(!r.healthy);
    assert_eq!(r.exit_code, 3);
}

#[test]
fn nearly_expired_token_is_a_warning() {
    let jwt = make_jwt(good_header(), with(good_claims(), "exp", json!(now() + 20)));
    let (r, _) = check(&jwt);
    assert_eq!(finding(&r, codes::JWT_EXPIRING).severity, Severity::Warning);
    assert!(r.healthy, "warnings keep the report healthy");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.warnings, 1);
}

#[test]
fn long_lived_token_is_a_warning() {
    let jwt = make_jwt(good_header(), with(good_claims(), "exp", json!(now() + 7200)));
    let (r, _) = check(&jwt);
    assert!(finding(&r, codes::JWT_LONG_LIVED).message.contains("7260"), "{:?}", r.findings);
    // Exactly one hour is fine.
    let jwt = make_jwt(good_header(), with(with(good_claims(), "iat", json!(now())), "exp", json!(now() + 3600)));
    assert!(!check(&jwt).0.has(codes::JWT_LONG_LIVED));
}

#[test]
fn audience_is_checked_against_the_expected_one() {
    let jwt = make_jwt(good_header(), with(good_claims(), "aud", json!("sts.amazonaws.com")));
    let (r, _) = check(&jwt);
    let f = finding(&r, codes::JWT_AUDIENCE_MISMATCH);
    assert!(f.message.contains("sts.amazonaws.com") && f.message.contains(DEFAULT_AUDIENCE), "{}", f.message);
    // An array that contains the expected audience passes.
    let jwt = make_jwt(good_header(), with(good_claims(), "aud", json!(["x", DEFAULT_AUDIENCE])));
    assert!(!check(&jwt).0.has(codes::JWT_AUDIENCE_MISMATCH));
    // No aud at all.
    let jwt = make_jwt(good_header(), without(good_claims(), "aud"));
    assert!(finding(&check(&jwt).0, codes::JWT_AUDIENCE_MISMATCH).message.contains("no aud"));
    // Another expected audience.
    let spec = IdentitySpec::Env { var: "X".into() };
    let jwt = make_jwt(good_header(), with(good_claims(), "aud", json!("my-aud")));
    assert!(!check_spec(&jwt, &spec, "my-aud").0.has(codes::JWT_AUDIENCE_MISMATCH));
}

#[test]
fn a_presets_audience_is_read_through_serde() {
    assert_eq!(
        spec_audience(&IdentitySpec::GithubActions { audience: Some("custom".into()) }).as_deref(),
        Some("custom")
    );
    assert_eq!(spec_audience(&IdentitySpec::GithubActions { audience: None }), None);
    assert_eq!(spec_audience(&IdentitySpec::File { path: "/t".into() }), None);
}

#[test]
fn oversized_token_is_an_error_but_still_decoded() {
    let big = "x".repeat(MAX_ASSERTION_BYTES);
    let jwt = make_jwt(good_header(), with(good_claims(), "pad", json!(big)));
    let (r, idr) = check(&jwt);
    let f = finding(&r, codes::JWT_TOO_LARGE);
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains(&jwt.len().to_string()));
    assert!(idr.token.is_some(), "decoded for the report");
    assert_eq!(r.exit_code, 3);
}

#[test]
fn symmetric_and_unsecured_algorithms_are_errors() {
    let jwt = make_jwt(json!({"alg": "HS256", "kid": "k"}), good_claims());
    let (r, _) = check(&jwt);
    assert_eq!(finding(&r, codes::JWT_ALG_SYMMETRIC).severity, Severity::Error);

    let unsecured = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&good_claims()));
    let (r, idr) = check(&unsecured);
    assert!(r.has(codes::JWT_ALG_NONE), "{:?}", codes_of(&r));
    assert!(idr.token.is_some());
    // alg none with something in the signature part is still alg none.
    let (r, _) = check(&make_jwt(json!({"alg": "none", "kid": "k"}), good_claims()));
    assert!(r.has(codes::JWT_ALG_NONE));
    // No alg at all.
    let (r, _) = check(&make_jwt(json!({"kid": "k"}), good_claims()));
    assert!(r.has(codes::JWT_ALG_NONE));
    // Asymmetric algorithms pass.
    for alg in ["RS256", "ES256", "PS384", "EdDSA"] {
        let (r, _) = check(&make_jwt(json!({"alg": alg, "kid": "k"}), good_claims()));
        assert!(r.findings.is_empty(), "{alg}: {:?}", r.findings);
    }
}

#[test]
fn missing_header_and_claims() {
    let (r, _) = check(&make_jwt(json!({"alg": "RS256"}), good_claims()));
    assert_eq!(codes_of(&r), vec![codes::JWT_MISSING_KID]);
    assert!(r.healthy);

    for (claim, code, sev) in [
        ("sub", codes::JWT_MISSING_SUB, Severity::Warning),
        ("iat", codes::JWT_MISSING_IAT, Severity::Warning),
        ("exp", codes::JWT_MISSING_EXP, Severity::Error),
        ("iss", codes::JWT_MISSING_ISS, Severity::Error),
    ] {
        let (r, _) = check(&make_jwt(good_header(), without(good_claims(), claim)));
        assert_eq!(finding(&r, code).severity, sev, "{claim}");
        assert_eq!(r.findings.len(), 1, "{claim}: {:?}", codes_of(&r));
    }
    // A non-numeric exp counts as missing.
    let (r, _) = check(&make_jwt(good_header(), with(good_claims(), "exp", json!("soon"))));
    assert!(r.has(codes::JWT_MISSING_EXP));
}

#[test]
fn not_yet_valid_token_is_a_warning() {
    let (r, _) = check(&make_jwt(good_header(), with(good_claims(), "nbf", json!(now() + 600))));
    assert!(r.has(codes::JWT_NOT_YET_VALID));
    let (r, _) = check(&make_jwt(good_header(), with(good_claims(), "nbf", json!(now() + 30))));
    assert!(!r.has(codes::JWT_NOT_YET_VALID), "within clock skew");
}

#[test]
fn kubernetes_default_service_account_tokens_are_errors() {
    // By path, before anything is read (even when the file does not exist here).
    let fx = Fixture::new()
        .set("ANTHROPIC_FEDERATION_RULE_ID", RULE)
        .set("ANTHROPIC_ORGANIZATION_ID", ORG)
        .set("ANTHROPIC_IDENTITY_TOKEN_FILE", KUBERNETES_DEFAULT_TOKEN_PATH);
    let r = fx.run();
    let f = finding(&r, codes::KUBERNETES_DEFAULT_TOKEN);
    assert_eq!((f.severity, f.kind), (Severity::Error, Some("config")));
    assert!(f.fix.contains("projected"), "{}", f.fix);
    assert_eq!(r.exit_code, 2);
    assert!(uses_k8s_default_path(&IdentitySpec::Command {
        command: vec!["cat".into(), "/run/secrets/kubernetes.io/serviceaccount/token".into()],
        timeout_s: None
    }));
    // The token checks do not report the path a second time.
    let spec = IdentitySpec::File { path: KUBERNETES_DEFAULT_TOKEN_PATH.into() };
    let (r, _) = check_spec(&make_jwt(good_header(), good_claims()), &spec, DEFAULT_AUDIENCE);
    assert!(!r.has(codes::KUBERNETES_DEFAULT_TOKEN));

    // A legacy secret-based token: iss kubernetes/serviceaccount, claims, no exp.
    let legacy = json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ns:default",
        "kubernetes.io/serviceaccount/namespace": "ns", "kubernetes.io/serviceaccount/secret.name": "default-token-abc"});
    let (r, _) = check(&make_jwt(good_header(), legacy));
    assert!(r.has(codes::KUBERNETES_DEFAULT_TOKEN) && r.has(codes::JWT_MISSING_EXP), "{:?}", codes_of(&r));
    // Only the legacy claim names.
    let claims = with(good_claims(), "kubernetes.io/serviceaccount/namespace", json!("ns"));
    assert!(check(&make_jwt(good_header(), claims)).0.has(codes::KUBERNETES_DEFAULT_TOKEN));
    // A bound token for the API server (audience kubernetes.default.svc).
    let claims = with(good_claims(), "aud", json!(["https://kubernetes.default.svc.cluster.local", "k3s"]));
    let (r, _) = check(&make_jwt(good_header(), claims));
    assert!(r.has(codes::KUBERNETES_DEFAULT_TOKEN) && r.has(codes::JWT_AUDIENCE_MISMATCH));
    // A projected token for Anthropic is fine.
    let spec = IdentitySpec::File { path: "/var/run/secrets/anthropic.com/token".into() };
    let claims = with(good_claims(), "iss", json!("https://oidc.eks.us-east-1.amazonaws.com/id/ABC"));
    assert!(check_spec(&make_jwt(good_header(), claims), &spec, DEFAULT_AUDIENCE).0.findings.is_empty());
}

#[test]
fn malformed_tokens_are_identity_errors_without_quoting_them() {
    for bad in ["SECRETMARKER-not-a-jwt", "a.b", "SECRETMARKER.eyJ.sig"] {
        let (r, idr) = check(bad);
        let f = finding(&r, codes::JWT_MALFORMED);
        assert_eq!(f.kind, Some("identity"));
        assert!(idr.decode_error.is_some());
        assert_clean(&r, &["SECRETMARKER"]);
    }
}

#[test]
fn settings_withhold_literal_header_values_and_userinfo() {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_string(), "Bearer LITERALSECRET".to_string());
    headers.insert("X-Token".to_string(), "Bearer ${TOKEN_VAR}".to_string());
    let spec = IdentitySpec::Url {
        url: "https://user:PASSWORD@idp.example/token?x=${Q}&api_key=QUERYSECRET".into(),
        headers,
        field: Some("value".into()),
    };
    let s = spec_settings(&spec);
    let text = s.to_string();
    assert!(!text.contains("LITERALSECRET") && !text.contains("PASSWORD") && !text.contains("QUERYSECRET"), "{text}");
    assert_eq!(s["headers"]["X-Token"], "Bearer ${TOKEN_VAR}");
    assert_eq!(s["source"], "url");
    assert_eq!(s["field"], "value");
    assert_eq!(s["url"], "https://…@idp.example/token?x=${Q}&api_key=…", "{text}");
    assert!(spec.describe().ends_with("https://…@idp.example/token?x=${Q}&api_key=…"), "{}", spec.describe());
}

// ---- whole diagnoses over fixed environments ----

struct Fixture {
    dir: tempfile::TempDir,
    vars: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = HashMap::new();
        vars.insert("HOME".to_string(), dir.path().join("home").display().to_string());
        vars.insert("XDG_CACHE_HOME".to_string(), dir.path().join("cache").display().to_string());
        vars.insert("ANTHROPIC_CONFIG_DIR".to_string(), dir.path().join("config").display().to_string());
        Fixture { dir, vars }
    }
    fn federation(mut self, jwt: &str) -> Self {
        self.vars.insert("ANTHROPIC_FEDERATION_RULE_ID".into(), RULE.into());
        self.vars.insert("ANTHROPIC_ORGANIZATION_ID".into(), ORG.into());
        self.vars.insert("ANTHROPIC_IDENTITY_TOKEN".into(), jwt.into());
        self
    }
    fn set(mut self, k: &str, v: &str) -> Self {
        self.vars.insert(k.into(), v.into());
        self
    }
    fn options(&self) -> ProviderOptions {
        ProviderOptions::new("cli", Env::fixed(self.vars.clone()))
    }
    fn run(&self) -> Report {
        diagnose(&self.options(), false)
    }
}

#[test]
fn env_federation_report_names_every_origin() {
    let jwt = make_jwt(good_header(), good_claims());
    let fx = Fixture::new().federation(&jwt).set("ANTHROPIC_WORKSPACE_ID", "default");
    let r = fx.run();
    assert!(r.healthy, "{:?}", r.findings);
    assert_eq!(r.config.step, Some("env_federation"));
    assert_eq!(r.config.resolution, Some("federation"));
    let f = |n: &str| r.config.fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n}"));
    assert_eq!(f("federation_rule_id").origin.name.as_deref(), Some("ANTHROPIC_FEDERATION_RULE_ID"));
    assert_eq!(f("organization_id").value, ORG);
    assert_eq!(f("workspace_id").origin.kind, "env");
    assert_eq!(f("base_url").origin.kind, "default");
    assert_eq!(f("identity_token").origin.name.as_deref(), Some("ANTHROPIC_IDENTITY_TOKEN"));
    assert_eq!(r.ids.len(), 3);
    assert!(r.ids.iter().all(|i| i.ok));
    let idr = r.identity.as_ref().unwrap();
    assert_eq!(idr.source, "env");
    assert!(idr.fetched);
    let cache = r.cache.as_ref().unwrap();
    assert_eq!(cache.state, "missing");
    assert!(cache.path.as_deref().unwrap().contains("anthropic-wif"));
    assert!(!r.exchange.requested && !r.exchange.performed);
    assert_clean(&r, &[&jwt]);
    // Looking wrote nothing.
    assert!(!fx.dir.path().join("cache").exists());
}

#[test]
fn explicit_profile_fields_come_from_the_file() {
    let jwt = make_jwt(good_header(), good_claims());
    let fx = Fixture::new().set("MY_JWT", &jwt);
    let configs = fx.dir.path().join("config").join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let profile_path = configs.join("ci.json");
    std::fs::write(
        &profile_path,
        json!({"version": "1.0", "organization_id": ORG, "authentication": {"type": "oidc_federation",
            "federation_rule_id": RULE, "identity_token": {"source": "env", "var": "MY_JWT"}}})
        .to_string(),
    )
    .unwrap();
    let mut o = fx.options();
    o.overrides.profile = Some("ci".into());
    o.overrides.workspace_id = Some("wrkspc_01Abc".into());
    let r = diagnose(&o, false);
    assert!(r.healthy, "{:?}", r.findings);
    assert_eq!(r.config.step, Some("explicit_profile"));
    assert_eq!(r.config.profile.as_deref(), Some("ci"));
    let rule = r.config.fields.iter().find(|f| f.name == "federation_rule_id").unwrap();
    assert_eq!(rule.origin.kind, "profile");
    assert_eq!(rule.origin.path.as_deref(), Some(profile_path.display().to_string().as_str()));
    let ws = r.config.fields.iter().find(|f| f.name == "workspace_id").unwrap();
    assert_eq!((ws.origin.kind, ws.origin.name.as_deref()), ("explicit", Some("--workspace-id")));
    assert!(r.cache.as_ref().unwrap().path.as_deref().unwrap().ends_with("credentials/ci.json"));
}

#[test]
fn a_bad_id_is_listed_with_the_others() {
    let jwt = make_jwt(good_header(), good_claims());
    let fx = Fixture::new()
        .federation(&jwt)
        .set("ANTHROPIC_ORGANIZATION_ID", "org_123")
        .set("ANTHROPIC_SERVICE_ACCOUNT_ID", "svac_01Good");
    let r = fx.run();
    assert!(!r.healthy);
    assert_eq!(r.exit_code, 2);
    assert!(r.has(codes::CONFIG_ERROR));
    assert!(!r.config.ok && r.config.error.is_some());
    let by: HashMap<&str, &IdCheck> = r.ids.iter().map(|i| (i.field, i)).collect();
    assert!(by["federation_rule_id"].ok);
    assert!(by["service_account_id"].ok);
    assert!(!by["organization_id"].ok);
    assert!(by["organization_id"].error.as_deref().unwrap().contains("UUID"));
    assert!(r.identity.is_none());
    assert_clean(&r, &[&jwt]);
}

#[test]
fn a_token_pasted_as_an_id_is_not_echoed() {
    let jwt = make_jwt(good_header(), good_claims());
    let fx = Fixture::new().federation(&jwt).set("ANTHROPIC_FEDERATION_RULE_ID", &jwt);
    let r = fx.run();
    let rule = r.ids.iter().find(|i| i.field == "federation_rule_id").unwrap();
    assert!(!rule.ok && rule.value.contains("not shown"));
    assert_clean(&r, &[&jwt]);
}

#[test]
fn api_key_shadowing_federation_is_an_error() {
    let jwt = make_jwt(good_header(), good_claims());
    let key = "sk-ant-api03-SHADOWKEYVALUE";
    let r = Fixture::new().federation(&jwt).set("ANTHROPIC_API_KEY", key).run();
    let f = finding(&r, codes::API_KEY_SHADOWS_FEDERATION);
    assert!(f.message.contains("ANTHROPIC_FEDERATION_RULE_ID"), "{}", f.message);
    assert_eq!(r.exit_code, 2);
    assert_eq!(r.config.step, Some("api_key"));
    assert!(r.config.shadowed.is_some());
    assert_clean(&r, &[&jwt, key, "SHADOWKEY"]);

    let r = Fixture::new().set("ANTHROPIC_API_KEY", key).run();
    assert!(r.has(codes::STATIC_API_KEY) && !r.has(codes::API_KEY_SHADOWS_FEDERATION));
    assert_clean(&r, &[key, "SHADOWKEY"]);
}

#[test]
fn auth_token_shadowing_federation_is_a_warning() {
    let jwt = make_jwt(good_header(), good_claims());
    let bearer = "sk-ant-oat01-STATICBEARERVALUE";
    let r = Fixture::new().federation(&jwt).set("ANTHROPIC_AUTH_TOKEN", bearer).run();
    assert_eq!(finding(&r, codes::AUTH_TOKEN_SHADOWS_FEDERATION).severity, Severity::Warning);
    assert!(r.healthy);
    assert_eq!(r.config.resolution, Some("static_bearer"));
    assert_clean(&r, &[&jwt, bearer, "STATICBEARER"]);
    let r = Fixture::new().set("ANTHROPIC_AUTH_TOKEN", bearer).run();
    assert!(r.has(codes::STATIC_BEARER));
}

#[test]
fn identity_source_failure_is_reported() {
    let fx = Fixture::new()
        .set("ANTHROPIC_FEDERATION_RULE_ID", RULE)
        .set("ANTHROPIC_ORGANIZATION_ID", ORG)
        .set("ANTHROPIC_IDENTITY_TOKEN_FILE", "/nonexistent/dir/token");
    let fx_dir = fx.dir.path().to_path_buf();
    let r = fx.run();
    let f = finding(&r, codes::IDENTITY_FETCH_FAILED);
    assert_eq!(f.kind, Some("identity"));
    assert!(f.message.contains("/nonexistent/dir/token"), "{}", f.message);
    assert_eq!(r.exit_code, 3);
    let idr = r.identity.as_ref().unwrap();
    assert!(!idr.fetched && idr.error.is_some());
    assert_eq!(idr.source, "file");
    assert!(!fx_dir.join("cache").exists());
}

#[cfg(unix)]
#[test]
fn cache_states() {
    use std::os::unix::fs::PermissionsExt;
    let jwt = make_jwt(good_header(), good_claims());
    let fx = Fixture::new().federation(&jwt);
    let path = Provider::new(fx.options()).unwrap().cache_path().unwrap().to_path_buf();
    assert_eq!(fx.run().cache.unwrap().state, "missing");

    let cache = DiskCache::new(&path);
    let tok = CachedToken {
        access_token: Secret::new("sk-ant-oat01-CACHEDTOKENVALUE"),
        expires_at: Some(now() + 500),
        lifetime: Some(600),
    };
    cache.write(&tok).unwrap();
    let r = fx.run();
    let c = r.cache.as_ref().unwrap();
    assert_eq!(c.state, "valid");
    assert!((490..=500).contains(&c.remaining_s.unwrap()));
    assert_clean(&r, &[&jwt, "CACHEDTOKENVALUE"]);

    let old = CachedToken {
        access_token: Secret::new("sk-ant-oat01-CACHEDTOKENVALUE"),
        expires_at: Some(now() + 10),
        lifetime: Some(600),
    };
    cache.write(&old).unwrap();
    assert_eq!(fx.run().cache.unwrap().state, "expired");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = fx.run();
    assert_eq!(r.cache.as_ref().unwrap().state, "insecure");
    assert!(r.has(codes::CACHE_INSECURE) && r.healthy);
    assert_clean(&r, &["CACHEDTOKENVALUE"]);

    std::fs::write(&path, "{not json sk-ant-oat01-CACHEDTOKENVALUE").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = fx.run();
    assert_eq!(r.cache.as_ref().unwrap().state, "corrupt");
    assert!(r.has(codes::CACHE_CORRUPT));
    assert_clean(&r, &["CACHEDTOKENVALUE"]);

    let mut o = fx.options();
    o.disk_cache = false;
    assert_eq!(diagnose(&o, false).cache.unwrap().state, "disabled");
}

#[test]
fn exchange_is_skipped_when_the_diagnosis_found_errors() {
    let jwt = make_jwt(good_header(), with(good_claims(), "exp", json!(now() - 100)));
    // An unreachable base URL: nothing may be sent anyway.
    let fx = Fixture::new().federation(&jwt).set("ANTHROPIC_BASE_URL", "http://127.0.0.1:9");
    let r = diagnose(&fx.options(), true);
    assert!(r.exchange.requested && !r.exchange.performed);
    assert!(r.exchange.skipped_reason.is_some());
    assert!(r.has(codes::EXCHANGE_SKIPPED) && r.has(codes::JWT_EXPIRED));
    assert_eq!(r.exit_code, 3);
}

#[test]
fn exit_code_is_the_first_errors_kind() {
    let mut r = Report::new(false);
    r.warn("w", "m".into(), "f");
    r.error("a", ErrorKind::Identity, "m".into(), "f");
    r.error("b", ErrorKind::Config, "m".into(), "f");
    let r = r.finish();
    assert_eq!((r.exit_code, r.errors, r.warnings, r.healthy), (3, 2, 1, false));
    let r = Report::from_options_error(&Error::config("--identity-token is not valid"), true);
    assert_eq!(r.exit_code, 2);
    assert!(r.has(codes::EXCHANGE_SKIPPED));
    let v = r.to_json();
    assert_eq!(v["version"], REPORT_VERSION);
    assert_eq!(v["findings"][0]["code"], "config_error");
    assert_eq!(v["findings"][0]["severity"], "error");
}
