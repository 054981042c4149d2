//! Tests of the resolution chain, against real files in temporary directories.

use super::*;
use std::fs;

const ORG: &str = "123e4567-e89b-12d3-a456-426614174000";
const ORG2: &str = "00000000-1111-2222-3333-444444444444";
const RULE: &str = "fdrl_011CZkZaBF1tNoB5wlCeusgy";
const RULE2: &str = "fdrl_02profile";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Dir { tmp: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }
    fn profile(&self, name: &str, text: &str) -> PathBuf {
        let p = profile::config_path(self.tmp.path(), name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }
    fn active(&self, text: &str) {
        fs::write(self.tmp.path().join(ACTIVE_CONFIG_FILE), text).unwrap();
    }
    /// Env with ANTHROPIC_CONFIG_DIR pointing here, plus `vars`.
    fn env(&self, vars: &[(&str, &str)]) -> Env {
        let mut all: Vec<(String, String)> = vec![(ENV_CONFIG_DIR.into(), self.tmp.path().display().to_string())];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Env::fixed(all)
    }
}

fn fed_profile(rule: &str, org: &str) -> String {
    format!(
        r#"{{"version":"1.0","organization_id":"{org}","authentication":{{"type":"oidc_federation","federation_rule_id":"{rule}",
            "identity_token":{{"source":"file","path":"/var/run/secrets/anthropic.com/token"}}}}}}"#
    )
}

fn env_fed() -> Vec<(&'static str, &'static str)> {
    vec![(ENV_FEDERATION_RULE_ID, RULE), (ENV_ORGANIZATION_ID, ORG), (ENV_IDENTITY_TOKEN_FILE, "/tmp/jwt")]
}

fn fed(r: Resolved) -> (FederationConfig, String, Step) {
    match r.resolution {
        Resolution::Federation(f) => (f, r.step, r.step_kind),
        other => panic!("expected federation, got {other:?}"),
    }
}

fn cfg_err(r: Result<Resolved>) -> String {
    let e = r.expect_err("expected an error");
    assert_eq!(e.kind, crate::ErrorKind::Config, "{}", e.message());
    e.message().to_string()
}

// ---------------------------------------------------------------- config_dir

#[test]
fn config_dir_order() {
    let explicit = Overrides { config_dir: Some("/explicit".into()), ..Default::default() };
    let all = Env::fixed([(ENV_CONFIG_DIR, "/envdir"), ("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
    assert_eq!(config_dir(&explicit, &all).unwrap(), PathBuf::from("/explicit"));
    let none = Overrides::default();
    assert_eq!(config_dir(&none, &all).unwrap(), PathBuf::from("/envdir"));
    if !cfg!(windows) {
        let e = Env::fixed([(ENV_CONFIG_DIR, ""), ("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(config_dir(&none, &e).unwrap(), PathBuf::from("/xdg/anthropic"));
        let e = Env::fixed([("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(config_dir(&none, &e).unwrap(), PathBuf::from("/home/u/.config/anthropic"));
        let e = Env::fixed([("HOME", "/home/u")]);
        assert_eq!(config_dir(&none, &e).unwrap(), PathBuf::from("/home/u/.config/anthropic"));
        let m = config_dir(&none, &Env::fixed::<[(&str, &str); 0], &str, &str>([])).unwrap_err().into_message();
        assert!(m.contains(ENV_CONFIG_DIR), "{m}");
    }
}

// ---------------------------------------------------------------- steps 1, 2

#[test]
fn api_key_wins_and_reports_shadowed_federation() {
    let d = Dir::new();
    let r = resolve(&Overrides::default(), &d.env(&[(ENV_API_KEY, "sk-ant-api03-x")])).unwrap();
    assert_eq!(r.step_kind, Step::ApiKey);
    assert!(matches!(r.resolution, Resolution::ApiKey { shadowed: None, .. }), "{:?}", r.resolution);

    let p = d.profile("default", &fed_profile(RULE, ORG));
    let mut vars = env_fed();
    vars.push((ENV_API_KEY, "sk-ant-api03-x"));
    vars.push((ENV_AUTH_TOKEN, "tok"));
    let r = resolve(&Overrides::default(), &d.env(&vars)).unwrap();
    let Resolution::ApiKey { origin, shadowed: Some(sh) } = r.resolution else { panic!("{:?}", r.resolution) };
    assert_eq!(origin, Origin::EnvVar(ENV_API_KEY.into()));
    assert!(sh.contains(ENV_FEDERATION_RULE_ID) && sh.contains(ENV_IDENTITY_TOKEN_FILE), "{sh}");
    assert!(sh.contains(&p.display().to_string()), "{sh}");
    // The key itself is not carried anywhere.
    assert!(!format!("{:?}", resolve(&Overrides::default(), &d.env(&vars)).unwrap()).contains("sk-ant-api03"));
}

#[test]
fn auth_token_is_a_static_bearer_and_never_printed() {
    let d = Dir::new();
    let r =
        resolve(&Overrides::default(), &d.env(&[(ENV_AUTH_TOKEN, "sk-ant-oat01-secretvalue"), (ENV_PROFILE, "ci")]))
            .unwrap();
    assert_eq!(r.step_kind, Step::AuthToken);
    assert!(!format!("{r:?}").contains("secretvalue"));
    let Resolution::StaticBearer { token, origin, shadowed } = r.resolution else { panic!() };
    assert_eq!(token.expose(), "sk-ant-oat01-secretvalue");
    assert_eq!(origin, Origin::EnvVar(ENV_AUTH_TOKEN.into()));
    assert_eq!(shadowed.as_deref(), Some("ANTHROPIC_PROFILE=ci"));
}

#[test]
fn empty_static_vars_count_as_unset() {
    let d = Dir::new();
    let mut vars = env_fed();
    vars.push((ENV_API_KEY, ""));
    vars.push((ENV_AUTH_TOKEN, ""));
    let (_, _, step) = fed(resolve(&Overrides::default(), &d.env(&vars)).unwrap());
    assert_eq!(step, Step::EnvFederation);
}

// ---------------------------------------------------------------- step 3

#[test]
fn anthropic_profile_beats_env_federation_and_profile_fields_win() {
    let d = Dir::new();
    let path = d.profile("ci", &fed_profile(RULE2, ORG2));
    let mut vars = env_fed();
    vars.extend([
        (ENV_PROFILE, "ci"),
        (ENV_WORKSPACE_ID, "wrkspc_01env"),
        (ENV_SERVICE_ACCOUNT_ID, "svac_01env"),
        (ENV_SCOPE, "user:inference"),
    ]);
    let (f, step, kind) = fed(resolve(&Overrides::default(), &d.env(&vars)).unwrap());
    assert_eq!(kind, Step::EnvProfile);
    assert_eq!(step, format!("ANTHROPIC_PROFILE=ci ({})", path.display()));
    let file = Origin::ProfileFile(path.clone());
    assert_eq!(f.federation_rule_id, Sourced::new(RULE2.to_string(), file.clone()));
    assert_eq!(f.organization_id, Sourced::new(ORG2.to_string(), file.clone()));
    assert_eq!(
        f.identity,
        Sourced::new(IdentitySpec::File { path: "/var/run/secrets/anthropic.com/token".into() }, file.clone())
    );
    // Unset profile fields come from the environment.
    assert_eq!(f.workspace_id, Some(Sourced::new("wrkspc_01env".to_string(), Origin::EnvVar(ENV_WORKSPACE_ID.into()))));
    assert_eq!(f.service_account_id.as_ref().unwrap().origin, Origin::EnvVar(ENV_SERVICE_ACCOUNT_ID.into()));
    assert_eq!(f.scope.as_deref(), Some("user:inference"));
    assert_eq!(f.base_url, Sourced::new(DEFAULT_BASE_URL.to_string(), Origin::Default));
    assert_eq!(f.profile.as_deref(), Some("ci"));
    assert_eq!(f.profile_path.as_deref(), Some(path.as_path()));
    assert_eq!(f.credentials_path, Some(d.path().join("credentials").join("ci.json")));
}

#[test]
fn anthropic_profile_failures_are_errors() {
    let d = Dir::new();
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "nope")])));
    assert!(m.contains("ANTHROPIC_PROFILE names the profile \"nope\"") && m.contains("nope.json"), "{m}");
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "../etc/passwd")])));
    assert!(m.contains("path separator") && m.contains("environment variable ANTHROPIC_PROFILE"), "{m}");
    let path = d.profile("broken", "{not json");
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "broken")])));
    assert!(m.contains(&path.display().to_string()) && m.contains("not valid JSON"), "{m}");
    // A profile with a bad id: names the file and the key.
    let path = d.profile("badid", &fed_profile("rule_1", ORG));
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "badid")])));
    assert!(
        m.contains(&format!(
            "federation_rule_id from profile file {} (authentication.federation_rule_id)",
            path.display()
        )),
        "{m}"
    );
}

#[test]
fn profile_missing_fields_are_filled_from_env_or_reported() {
    let d = Dir::new();
    let path = d.profile("thin", r#"{"authentication":{"type":"oidc_federation"}}"#);
    let (f, _, _) = fed(resolve(
        &Overrides::default(),
        &d.env(&[
            (ENV_PROFILE, "thin"),
            (ENV_FEDERATION_RULE_ID, RULE),
            (ENV_ORGANIZATION_ID, ORG),
            (ENV_IDENTITY_TOKEN, JWT),
        ]),
    )
    .unwrap());
    assert_eq!(f.federation_rule_id.origin, Origin::EnvVar(ENV_FEDERATION_RULE_ID.into()));
    assert_eq!(
        f.identity,
        Sourced::new(IdentitySpec::Env { var: ENV_IDENTITY_TOKEN.into() }, Origin::EnvVar(ENV_IDENTITY_TOKEN.into()))
    );

    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "thin")])));
    let p = path.display().to_string();
    for want in [
        "missing federation_rule_id (set --federation-rule-id, ANTHROPIC_FEDERATION_RULE_ID, or authentication.federation_rule_id in ".to_string(),
        format!("missing organization_id (set --organization-id, ANTHROPIC_ORGANIZATION_ID, or organization_id in {p})"),
        "ANTHROPIC_IDENTITY_TOKEN_FILE or ANTHROPIC_IDENTITY_TOKEN".to_string(),
        format!("authentication.identity_token in {p}"),
    ] {
        assert!(m.contains(&want), "want {want:?} in {m}");
    }
    // The face's spelling is used.
    let o = Overrides { names: FieldNames::CamelCase, ..Default::default() };
    let m = cfg_err(resolve(&o, &d.env(&[(ENV_PROFILE, "thin")])));
    assert!(m.contains("option federationRuleId") && m.contains("option identityToken"), "{m}");
    let o = Overrides { names: FieldNames::SnakeCase, ..Default::default() };
    let m = cfg_err(resolve(&o, &d.env(&[(ENV_PROFILE, "thin")])));
    assert!(m.contains("argument organization_id"), "{m}");
}

#[test]
fn profile_credentials_path_and_base_url() {
    let d = Dir::new();
    d.profile(
        "c",
        &format!(
            r#"{{"organization_id":"{ORG}","base_url":"https://eu.example.com/","authentication":{{"type":"oidc_federation","federation_rule_id":"{RULE}",
               "identity_token":{{"source":"file","path":"t"}},"credentials_path":"/var/cache/c.json","scope":"s1"}}}}"#
        ),
    );
    let env = d.env(&[(ENV_PROFILE, "c"), (ENV_BASE_URL, "https://env.example.com"), (ENV_SCOPE, "s2")]);
    let (f, _, _) = fed(resolve(&Overrides::default(), &env).unwrap());
    assert_eq!(f.credentials_path, Some(PathBuf::from("/var/cache/c.json")));
    assert_eq!(f.base_url.value, "https://eu.example.com");
    assert!(matches!(f.base_url.origin, Origin::ProfileFile(_)));
    assert_eq!(f.scope.as_deref(), Some("s1"));
    // Explicit overrides beat the profile.
    let o = Overrides {
        base_url: Some("http://127.0.0.1:8080/".into()),
        credentials_path: Some("/x/y.json".into()),
        ..Default::default()
    };
    let (f, _, _) = fed(resolve(&o, &env).unwrap());
    assert_eq!(f.base_url, Sourced::new("http://127.0.0.1:8080".to_string(), Origin::Explicit("--base-url".into())));
    assert_eq!(f.credentials_path, Some(PathBuf::from("/x/y.json")));
}

#[test]
fn base_url_is_checked_with_its_origin() {
    let d = Dir::new();
    let mut vars = env_fed();
    vars.push((ENV_BASE_URL, "http://api.example.com"));
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&vars)));
    assert!(m.contains("base_url from environment variable ANTHROPIC_BASE_URL uses plain http"), "{m}");
    for (url, ok) in [
        ("https://api.anthropic.com", true),
        ("http://localhost:1234", true),
        ("http://[::1]:9/", true),
        ("http://127.0.0.1", true),
        ("http://localhost.evil.com", false),
        ("ftp://x", false),
        ("https://", false),
        ("https://user:pw@host", false),
        ("https://a b", false),
    ] {
        assert_eq!(crate::url::check_base_url(url, "base_url").is_ok(), ok, "{url}");
    }
}

// ---------------------------------------------------------------- step 4

#[test]
fn env_federation() {
    let d = Dir::new();
    let mut vars = env_fed();
    vars.extend([(ENV_IDENTITY_TOKEN, JWT), (ENV_WORKSPACE_ID, "default"), (ENV_BASE_URL, "https://x.example.com/")]);
    let (f, step, kind) = fed(resolve(&Overrides::default(), &d.env(&vars)).unwrap());
    assert_eq!(kind, Step::EnvFederation);
    assert!(step.contains(ENV_IDENTITY_TOKEN_FILE), "{step}");
    // FILE wins over the literal token.
    assert_eq!(f.identity.value, IdentitySpec::File { path: "/tmp/jwt".into() });
    assert_eq!(f.workspace_id.as_ref().unwrap().value, "default");
    assert_eq!(f.base_url, Sourced::new("https://x.example.com".to_string(), Origin::EnvVar(ENV_BASE_URL.into())));
    assert_eq!(f.credentials_path, None);
    assert_eq!(f.profile, None);
    // The JWT never shows in Debug output.
    assert!(!format!("{f:?}").contains("eyJ"));
}

#[test]
fn env_federation_beats_the_active_profile() {
    let d = Dir::new();
    d.profile("default", &fed_profile(RULE2, ORG2));
    let (f, _, kind) = fed(resolve(&Overrides::default(), &d.env(&env_fed())).unwrap());
    assert_eq!(kind, Step::EnvFederation);
    assert_eq!(f.federation_rule_id.value, RULE);
}

#[test]
fn env_federation_bad_ids_are_errors_without_secrets() {
    let d = Dir::new();
    let vars = [(ENV_FEDERATION_RULE_ID, RULE), (ENV_ORGANIZATION_ID, "org_123"), (ENV_IDENTITY_TOKEN, JWT)];
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&vars)));
    assert!(
        m.starts_with(
            "organization_id from environment variable ANTHROPIC_ORGANIZATION_ID is not a UUID (got \"org_123\""
        ),
        "{m}"
    );
    assert!(!m.contains("eyJ"));
    // A JWT pasted into the id variable is not echoed.
    let vars = [(ENV_FEDERATION_RULE_ID, JWT), (ENV_ORGANIZATION_ID, ORG), (ENV_IDENTITY_TOKEN, JWT)];
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&vars)));
    assert!(!m.contains("eyJ") && m.contains("ANTHROPIC_FEDERATION_RULE_ID"), "{m}");
}

// ---------------------------------------------------------------- step 5

#[test]
fn active_profile_default_and_pointer() {
    let d = Dir::new();
    let p = d.profile("default", &fed_profile(RULE, ORG));
    let (f, step, kind) = fed(resolve(&Overrides::default(), &d.env(&[])).unwrap());
    assert_eq!(kind, Step::ActiveProfile);
    assert_eq!(step, format!("active profile default ({})", p.display()));
    assert_eq!(f.profile.as_deref(), Some("default"));

    let p2 = d.profile("work", &fed_profile(RULE2, ORG2));
    d.active("  work\n");
    let (f, step, _) = fed(resolve(&Overrides::default(), &d.env(&[])).unwrap());
    assert_eq!(f.federation_rule_id.value, RULE2);
    assert!(step.contains(&p2.display().to_string()) && step.contains("active_config"), "{step}");

    // A pointer to a missing profile is an error naming both files.
    d.active("gone");
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[])));
    assert!(m.contains("gone.json") && m.contains("active_config"), "{m}");
    // An invalid name in the pointer is an error.
    d.active("../x");
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[])));
    assert!(m.contains("active profile file") && m.contains("path separator"), "{m}");
    // An empty pointer means `default`.
    d.active("   \n");
    let (f, _, _) = fed(resolve(&Overrides::default(), &d.env(&[])).unwrap());
    assert_eq!(f.federation_rule_id.value, RULE);
}

#[test]
fn broken_auto_discovered_profile_is_skipped_unless_user_configured() {
    // Config dir from HOME: not user-configured, so the broken default profile
    // is skipped and the final error says why.
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config").join("anthropic");
    fs::create_dir_all(dir.join("configs")).unwrap();
    let path = dir.join("configs").join("default.json");
    fs::write(&path, r#"{"authentication":{"type":"bogus"}}"#).unwrap();
    let env = Env::fixed([("HOME", home.path().display().to_string()), ("XDG_CONFIG_HOME", String::new())]);
    if cfg!(windows) {
        return;
    }
    let m = cfg_err(resolve(&Overrides::default(), &env));
    assert!(m.starts_with("no Claude API credentials are configured"), "{m}");
    assert!(m.contains("exists but was skipped") && m.contains("bogus"), "{m}");
    // With ANTHROPIC_CONFIG_DIR set, the profile's own error surfaces.
    let env = Env::fixed([(ENV_CONFIG_DIR, dir.display().to_string())]);
    let m = cfg_err(resolve(&Overrides::default(), &env));
    assert!(
        m.starts_with(&format!("config file {}", path.display()))
            && m.contains("\"bogus\" is not a known authentication type"),
        "{m}"
    );
}

#[test]
fn nothing_configured_lists_what_was_looked_for() {
    let d = Dir::new();
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[])));
    for want in [
        ENV_API_KEY,
        ENV_AUTH_TOKEN,
        ENV_PROFILE,
        ENV_FEDERATION_RULE_ID,
        ENV_IDENTITY_TOKEN_FILE,
        "default.json",
        "does not exist",
        "from ANTHROPIC_CONFIG_DIR",
        "To fix",
    ] {
        assert!(m.contains(want), "want {want:?} in {m}");
    }
    // Partial env federation: say what is missing.
    let m =
        cfg_err(resolve(&Overrides::default(), &d.env(&[(ENV_FEDERATION_RULE_ID, RULE), (ENV_IDENTITY_TOKEN, JWT)])));
    assert!(m.contains("incomplete") && m.contains("missing ANTHROPIC_ORGANIZATION_ID (or --organization-id)"), "{m}");
    assert!(!m.contains("eyJ"), "{m}");
}

// ---------------------------------------------------------------- explicit settings

#[test]
fn explicit_settings_come_first_and_are_completed_from_env() {
    let d = Dir::new();
    d.profile("default", &fed_profile(RULE2, ORG2));
    let o = Overrides {
        federation_rule_id: Some(RULE.into()),
        identity_token: Some(IdentitySpec::Command { command: vec!["get-token".into()], timeout_s: None }),
        ..Default::default()
    };
    let env = d.env(&[(ENV_API_KEY, "sk-ant-api03-x"), (ENV_ORGANIZATION_ID, ORG), (ENV_PROFILE, "default")]);
    let (f, step, kind) = fed(resolve(&o, &env).unwrap());
    assert_eq!(kind, Step::Explicit);
    assert_eq!(step, "explicit settings completed from environment variables (ANTHROPIC_ORGANIZATION_ID)");
    assert_eq!(f.federation_rule_id.origin, Origin::Explicit("--federation-rule-id".into()));
    assert_eq!(f.organization_id.origin, Origin::EnvVar(ENV_ORGANIZATION_ID.into()));
    assert_eq!(f.identity.origin, Origin::Explicit("--identity-token".into()));
    assert_eq!(f.credentials_path, None);
    assert_eq!(f.profile, None);

    // Missing pieces: every way to set them, and a note on profiles.
    let o = Overrides { workspace_id: Some("wrkspc_01x".into()), names: FieldNames::SnakeCase, ..Default::default() };
    let m = cfg_err(resolve(&o, &d.env(&[])));
    assert!(m.contains("argument federation_rule_id") && m.contains("argument profile"), "{m}");
    // Empty explicit values are reported, not replaced by the environment.
    let o = Overrides { federation_rule_id: Some(String::new()), ..Default::default() };
    let m = cfg_err(resolve(&o, &d.env(&env_fed())));
    assert!(m.contains("federation_rule_id from --federation-rule-id is empty"), "{m}");
    // An explicitly empty optional id means "omit", even when the environment has one.
    let o =
        Overrides { workspace_id: Some(String::new()), service_account_id: Some(String::new()), ..Default::default() };
    let mut vars = env_fed();
    vars.extend([(ENV_WORKSPACE_ID, "wrkspc_01env"), (ENV_SERVICE_ACCOUNT_ID, "svac_01env")]);
    let (f, _, kind) = fed(resolve(&o, &d.env(&vars)).unwrap());
    assert_eq!(kind, Step::Explicit);
    assert_eq!((f.workspace_id, f.service_account_id), (None, None));
}

#[test]
fn explicit_profile_with_overrides() {
    let d = Dir::new();
    let path = d.profile("ci", &fed_profile(RULE2, ORG2));
    let o = Overrides {
        profile: Some("ci".into()),
        organization_id: Some(ORG.into()),
        workspace_id: Some("wrkspc_01flag".into()),
        ..Default::default()
    };
    let env = d.env(&[(ENV_API_KEY, "k"), (ENV_WORKSPACE_ID, "wrkspc_01env")]);
    let (f, step, kind) = fed(resolve(&o, &env).unwrap());
    assert_eq!(kind, Step::ExplicitProfile);
    assert_eq!(step, format!("profile ci ({}) from --profile", path.display()));
    assert_eq!(f.organization_id, Sourced::new(ORG.to_string(), Origin::Explicit("--organization-id".into())));
    assert_eq!(f.federation_rule_id.origin, Origin::ProfileFile(path.clone()));
    assert_eq!(f.workspace_id.unwrap().origin, Origin::Explicit("--workspace-id".into()));

    let o = Overrides { profile: Some("nope".into()), ..Default::default() };
    assert!(cfg_err(resolve(&o, &env)).contains("--profile names the profile \"nope\""));
    let o = Overrides { profile: Some(".x".into()), ..Default::default() };
    assert!(cfg_err(resolve(&o, &env)).contains("from --profile starts with a dot"));
}

#[test]
fn user_oauth_profiles() {
    let d = Dir::new();
    let path =
        d.profile("me", r#"{"workspace_id":"wrkspc_01me","authentication":{"type":"user_oauth","client_id":"cid"}}"#);
    let r = resolve(&Overrides::default(), &d.env(&[(ENV_PROFILE, "me")])).unwrap();
    let Resolution::UserOauth { profile, profile_path, credentials_path, base_url, workspace_id, client_id } =
        r.resolution
    else {
        panic!()
    };
    assert_eq!(profile, "me");
    assert_eq!(profile_path, path);
    assert_eq!(credentials_path, d.path().join("credentials").join("me.json"));
    assert_eq!(base_url.origin, Origin::Default);
    assert_eq!(workspace_id.unwrap().value, "wrkspc_01me");
    assert_eq!(client_id.as_deref(), Some("cid"));

    let o = Overrides { profile: Some("me".into()), federation_rule_id: Some(RULE.into()), ..Default::default() };
    let m = cfg_err(resolve(&o, &d.env(&[])));
    assert!(m.contains("--federation-rule-id given") && m.contains("user_oauth"), "{m}");
}

#[cfg(unix)]
#[test]
fn writable_profile_is_refused_through_the_chain() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new();
    let p = d.profile("default", &fed_profile(RULE, ORG));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    let m = cfg_err(resolve(&Overrides::default(), &d.env(&[])));
    assert!(m.contains("writable by group or others") && m.contains("chmod go-w"), "{m}");
}

#[test]
fn base_url_messages_never_show_credentials() {
    for url in [
        "http://user:hunter2pass@127.0.0.1:8080",
        "http://user:hunter2pass@example.com",
        "ftp://hunter2pass@example.com",
        "https://user:hunter2pass@",
        "hunter2pass@example.com",
        "http://example.com/?key=hunter2pass",
        "gopher://example.com/#hunter2pass",
    ] {
        let err = crate::url::check_base_url(url, &base_url_field(&Origin::EnvVar("ANTHROPIC_BASE_URL".into())))
            .expect_err(url);
        assert!(!err.message().contains("hunter2pass"), "{url}: {}", err.message());
    }
}

// ---------------------------------------------------------------- partial resolution

#[test]
fn partial_ids_follow_the_chain_when_it_fails() {
    let d = Dir::new();
    // The active profile (named by active_config) has a malformed organization id.
    d.profile("ci", &fed_profile(RULE2, "org_not_a_uuid"));
    d.active("ci\n");
    let env = d.env(&[(ENV_SERVICE_ACCOUNT_ID, "svac_01env"), (ENV_WORKSPACE_ID, "")]);
    let overrides = Overrides { workspace_id: Some("wrkspc_01explicit".into()), ..Default::default() };
    // Explicit settings win, so the chain stops at "explicit": no profile is read.
    cfg_err(resolve(&overrides, &env));
    let ids = partial_ids(&overrides, &env);
    let names: Vec<&str> = ids.iter().map(|(f, _)| f.name()).collect();
    assert_eq!(names, ["service_account_id", "workspace_id"], "{ids:?}");
    // Without explicit settings the chain reads the active profile, and so does the partial resolution.
    let none = Overrides::default();
    cfg_err(resolve(&none, &env));
    let ids = partial_ids(&none, &env);
    let by: Vec<(&str, &str, bool)> =
        ids.iter().map(|(f, s)| (f.name(), s.value.as_str(), matches!(s.origin, Origin::ProfileFile(_)))).collect();
    assert_eq!(
        by,
        [
            ("federation_rule_id", RULE2, true),
            ("organization_id", "org_not_a_uuid", true),
            ("service_account_id", "svac_01env", false),
        ]
    );
    // An active_config that names no valid profile: nothing from a profile.
    d.active("../escape");
    assert!(partial_ids(&none, &env).iter().all(|(_, s)| !matches!(s.origin, Origin::ProfileFile(_))));
}
