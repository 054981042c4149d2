//! Profile files: `<config_dir>/configs/<profile>.json` (docs/design.md §3).
//!
//! The file is not secret, but it decides where an identity token is sent
//! and what runs as you, so it must be this user's (or root's) and writable by
//! nobody else, and so must `configs/` (the rule is [`crate::trusted`]'s); we
//! cap its size, bound its nesting, and report every problem with the file's
//! path, the key and the fix.
//!
//! Paths inside the file (`identity_token.path`, `credentials_path`) are used
//! as the official SDKs use them: a relative path is relative to the process's
//! working directory (not to the profile file), `identity_token.path` is taken
//! literally, and `credentials_path` gets a leading `~` expanded to the home
//! directory (Python's `expanduser`).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ids::looks_secret;
use super::{Env, Origin};
use crate::error::{scrub, Error, Result};
use crate::identity::IdentitySpec;
use crate::trusted;

/// Largest profile file we read.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Deepest JSON nesting we accept (the schema needs 4).
pub(crate) const MAX_JSON_DEPTH: usize = 64;
/// Longest profile name (the file name `<name>.json` must fit in 255 bytes).
pub(crate) const MAX_PROFILE_NAME: usize = 200;

pub(crate) const AUTH_OIDC_FEDERATION: &str = "oidc_federation";
pub(crate) const AUTH_USER_OAUTH: &str = "user_oauth";

/// A parsed profile file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (`configs/<name>.json`).
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// `version`, normalised (`"1.0"`); `None` when absent.
    pub version: Option<String>,
    /// `organization_id`.
    pub organization_id: Option<String>,
    /// `workspace_id`.
    pub workspace_id: Option<String>,
    /// Without trailing slashes.
    pub base_url: Option<String>,
    /// The `authentication` object.
    pub auth: ProfileAuth,
}

/// The `authentication` object, by `type`. Empty strings count as unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileAuth {
    /// `type: oidc_federation`: workload identity federation.
    OidcFederation {
        /// `federation_rule_id`.
        federation_rule_id: Option<String>,
        /// `service_account_id`.
        service_account_id: Option<String>,
        /// `identity_token`: where the identity JWT comes from.
        identity_token: Option<IdentitySpec>,
        /// `credentials_path`: the token cache file (default `credentials/<profile>.json`).
        credentials_path: Option<PathBuf>,
        /// `scope` (display only).
        scope: Option<String>,
    },
    /// An interactive login's tokens. The access token lives in the
    /// credentials file (`credentials_path`, else `credentials/<profile>.json`);
    /// with a `client_id` the SDKs refresh it with a `refresh_token` grant
    /// (out of scope here), without one the file is rotated by someone else.
    UserOauth {
        /// `client_id`: set when the SDKs refresh the token themselves.
        client_id: Option<String>,
        /// `credentials_path`: the file holding the access token.
        credentials_path: Option<PathBuf>,
        /// `scope` (display only).
        scope: Option<String>,
    },
}

impl ProfileAuth {
    /// The `type` value (`oidc_federation` or `user_oauth`).
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ProfileAuth::OidcFederation { .. } => AUTH_OIDC_FEDERATION,
            ProfileAuth::UserOauth { .. } => AUTH_USER_OAUTH,
        }
    }
    /// `credentials_path`, when set.
    pub(crate) fn credentials_path(&self) -> Option<&Path> {
        match self {
            ProfileAuth::OidcFederation { credentials_path, .. } | ProfileAuth::UserOauth { credentials_path, .. } => {
                credentials_path.as_deref()
            }
        }
    }
}

/// `<config_dir>/configs/<name>.json`.
pub fn config_path(config_dir: &Path, name: &str) -> PathBuf {
    config_dir.join("configs").join(format!("{name}.json"))
}

/// `<config_dir>/credentials/<name>.json`.
pub fn credentials_path(config_dir: &Path, name: &str) -> PathBuf {
    config_dir.join("credentials").join(format!("{name}.json"))
}

/// Check a profile name: `^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`, so it cannot leave
/// `configs/` (no separators, no leading dot, no `..`, no NUL).
pub(crate) fn validate_name(name: &str, origin: &Origin) -> Result<()> {
    let problem = name_problem(name);
    match problem {
        None => Ok(()),
        Some(p) => {
            let shown = if looks_secret(name) { "(value not shown)".to_string() } else { format!("{name:?}") };
            Err(Error::config(format!(
                "profile name {shown} from {origin} {p}: a profile name is a file name under <config dir>/configs/ and may contain only letters, digits, '_', '-' and '.' (not as the first character), e.g. `default` or `ci-prod`"
            )))
        }
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.trim() != name {
        return Some("has leading or trailing whitespace".into());
    }
    if name.contains('\0') {
        return Some("contains a NUL byte".into());
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c == '\\') {
        return Some(format!("contains the path separator {c:?}"));
    }
    if name.starts_with('.') {
        return Some("starts with a dot".into());
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')) {
        return Some(format!("contains the character {c:?}"));
    }
    if name.len() > MAX_PROFILE_NAME {
        return Some(format!("is {} characters long (at most {MAX_PROFILE_NAME})", name.len()));
    }
    None
}

/// Read and parse `<config_dir>/configs/<name>.json`. The name must already be valid.
pub(crate) fn load(config_dir: &Path, name: &str, env: &Env) -> Result<Profile> {
    let path = config_path(config_dir, name);
    let bytes = read_config_file(&path, name)?;
    parse(&bytes, name, &path, env)
}

/// What whoever controls a profile file (or the directory that holds it) could do.
pub(crate) const PROFILE_STAKE: &str = "choose where your identity token is sent and which command runs as you";

/// Read a config file: the `configs/` directory and the file itself must pass
/// [`trusted::Policy::Settings`] (this user's or root's, not writable by group
/// or others, a symlink only if it is this user's or root's), the file must be
/// a regular file of at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config_file(path: &Path, name: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    if let Some(dir) = path.parent() {
        trusted::check_dir(dir, "profile directory", PROFILE_STAKE).map_err(Error::config)?;
    }
    let (file, meta) = trusted::open(path, "config file", PROFILE_STAKE, trusted::Policy::Settings).map_err(|e| match e {
        trusted::OpenError::Missing => Error::config(format!(
            "config file not found at {shown} (profile {name:?}): create it, pick another profile with ANTHROPIC_PROFILE, or point ANTHROPIC_CONFIG_DIR at the directory that holds configs/{name}.json"
        )),
        trusted::OpenError::Refused(why) => Error::config(format!("{why} (profile {name:?})")),
        trusted::OpenError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Error::config(format!(
            "config file {shown} (profile {name:?}) is not readable by this process: {e}; check its mode and owner"
        )),
        trusted::OpenError::Io(e) => Error::config(format!("config file {shown} (profile {name:?}) could not be opened: {e}")),
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(path, meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::config(format!("config file {shown} (profile {name:?}) could not be read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(path, bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_big(path: &Path, len: u64) -> Error {
    Error::config(format!(
        "config file {} is too large ({len} bytes; a profile is at most {MAX_CONFIG_BYTES} bytes): it is not a profile, check the path",
        path.display()
    ))
}

/// The deepest nesting of arrays/objects in `bytes`, stopping once past `limit`.
fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parse a profile file's bytes. `path` is used in messages and origins.
pub(crate) fn parse(bytes: &[u8], name: &str, path: &Path, env: &Env) -> Result<Profile> {
    let shown = path.display();
    let ctx = |m: String| Error::config(format!("config file {shown} (profile {name:?}): {m}"));
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(ctx("starts with a UTF-8 byte-order mark, which the official SDKs cannot read; save the file as UTF-8 without BOM".into()));
    }
    if json_depth_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(ctx(format!(
            "JSON is nested more than {MAX_JSON_DEPTH} levels deep; a profile needs 4: this is not a profile file"
        )));
    }
    let root: Value = serde_json::from_slice(bytes)
        .map_err(|e| ctx(format!("is not valid JSON ({}); fix the syntax", scrub(&e.to_string(), &[], 300))))?;
    let Value::Object(root) = root else {
        return Err(ctx(format!("must contain a JSON object, not {}", crate::json::type_name(&root))));
    };

    let version = match root.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "1" || s.starts_with("1.") => Some(s.clone()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (1.0..2.0).contains(&f)) => Some(format!("{:.1}", n.as_f64().unwrap_or(1.0))),
        Some(other) => {
            return Err(ctx(format!(
                "has unsupported \"version\" {}: this anthropic-wif reads version \"1.0\" profile files; write \"version\": \"1.0\" or upgrade anthropic-wif",
                short_json(other)
            )))
        }
    };
    let organization_id = opt_str(&root, "organization_id", "organization_id").map_err(&ctx)?;
    let workspace_id = opt_str(&root, "workspace_id", "workspace_id").map_err(&ctx)?;
    let base_url = opt_str(&root, "base_url", "base_url").map_err(&ctx)?.map(|s| s.trim_end_matches('/').to_string());

    let auth = match root.get("authentication") {
        Some(Value::Object(a)) => a,
        None | Some(Value::Null) => {
            return Err(ctx(format!(
                "is missing the \"authentication\" object; add e.g. \"authentication\": {{\"type\": \"{AUTH_OIDC_FEDERATION}\", \"federation_rule_id\": \"fdrl_…\", \"identity_token\": {{\"source\": \"file\", \"path\": \"…\"}}}}"
            )))
        }
        Some(other) => return Err(ctx(format!("\"authentication\" must be an object, not {}", crate::json::type_name(other)))),
    };
    let auth_type = match auth.get("type") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => {
            return Err(ctx(format!(
                "authentication.type is missing; set it to \"{AUTH_OIDC_FEDERATION}\" (workload identity federation) or \"{AUTH_USER_OAUTH}\" (an interactive login)"
            )))
        }
        Some(other) => return Err(ctx(format!("authentication.type must be a string, not {}", crate::json::type_name(other)))),
    };
    let credentials_path = opt_str(auth, "credentials_path", "authentication.credentials_path")
        .map_err(&ctx)?
        .map(|p| expand_home(&p, env));
    let scope = opt_str(auth, "scope", "authentication.scope").map_err(&ctx)?;

    let auth = match auth_type {
        AUTH_OIDC_FEDERATION => {
            let federation_rule_id =
                opt_str(auth, "federation_rule_id", "authentication.federation_rule_id").map_err(&ctx)?;
            let service_account_id =
                opt_str(auth, "service_account_id", "authentication.service_account_id").map_err(&ctx)?;
            let identity_token = match auth.get("identity_token") {
                None | Some(Value::Null) => None,
                // Ruby's SDK writes a bare string: the token file's path (docs/sdk-profiles.md §1).
                Some(Value::String(path)) => Some(IdentitySpec::bare_path(path).map_err(&ctx)?),
                Some(v) => Some(IdentitySpec::from_json(v, "authentication.identity_token").map_err(&ctx)?),
            };
            ProfileAuth::OidcFederation {
                federation_rule_id,
                service_account_id,
                identity_token,
                credentials_path,
                scope,
            }
        }
        AUTH_USER_OAUTH => {
            let client_id = opt_str(auth, "client_id", "authentication.client_id").map_err(&ctx)?;
            ProfileAuth::UserOauth { client_id, credentials_path, scope }
        }
        other => {
            let shown = if looks_secret(other) { "(value not shown)".to_string() } else { format!("{other:?}") };
            return Err(ctx(format!(
                "authentication.type {shown} is not a known authentication type; use \"{AUTH_OIDC_FEDERATION}\" (workload identity federation) or \"{AUTH_USER_OAUTH}\" (an interactive login)"
            )));
        }
    };

    Ok(Profile {
        name: name.to_string(),
        path: path.to_path_buf(),
        version,
        organization_id,
        workspace_id,
        base_url,
        auth,
    })
}

/// A string field; absent, null and "" are unset; other types are errors.
fn opt_str(obj: &Map<String, Value>, key: &str, key_path: &str) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key_path} must be a string, not {}", crate::json::type_name(other))),
    }
}

fn expand_home(p: &str, env: &Env) -> PathBuf {
    if p == "~" {
        if let Some(h) = env.home() {
            return h;
        }
    }
    if let Some(rest) = p.strip_prefix("~/").or_else(|| p.strip_prefix("~\\")) {
        if let Some(h) = env.home() {
            return h.join(rest);
        }
    }
    PathBuf::from(p)
}

fn short_json(v: &Value) -> String {
    scrub(&v.to_string(), &[], 40)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = config_path(dir, name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        p
    }

    fn env() -> Env {
        Env::fixed([("HOME", "/home/u")])
    }

    const FULL: &str = r#"{"version": "1.0",
        "organization_id": "123e4567-e89b-12d3-a456-426614174000", "workspace_id": "wrkspc_01abc",
        "base_url": "https://example.anthropic.com/",
        "authentication": {"type": "oidc_federation",
          "federation_rule_id": "fdrl_01abc", "service_account_id": "svac_01abc",
          "identity_token": {"source": "file", "path": "/var/run/secrets/anthropic.com/token"},
          "credentials_path": "~/cache/ci.json", "scope": "user:inference", "future_field": 1}}"#;

    #[test]
    fn parses_the_full_schema() {
        let d = tempfile::tempdir().unwrap();
        let path = write(d.path(), "ci", FULL);
        let p = load(d.path(), "ci", &env()).unwrap();
        assert_eq!(p.path, path);
        assert_eq!(p.name, "ci");
        assert_eq!(p.version.as_deref(), Some("1.0"));
        assert_eq!(p.organization_id.as_deref(), Some("123e4567-e89b-12d3-a456-426614174000"));
        assert_eq!(p.workspace_id.as_deref(), Some("wrkspc_01abc"));
        assert_eq!(p.base_url.as_deref(), Some("https://example.anthropic.com"));
        assert_eq!(
            p.auth,
            ProfileAuth::OidcFederation {
                federation_rule_id: Some("fdrl_01abc".into()),
                service_account_id: Some("svac_01abc".into()),
                identity_token: Some(IdentitySpec::File { path: "/var/run/secrets/anthropic.com/token".into() }),
                credentials_path: Some(PathBuf::from("/home/u/cache/ci.json")),
                scope: Some("user:inference".into()),
            }
        );
    }

    #[test]
    fn empty_strings_are_unset_and_relative_paths_stay_relative() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "p",
            r#"{"organization_id": "", "authentication": {"type": "oidc_federation", "federation_rule_id": "",
               "identity_token": {"source": "file", "path": "tok/jwt"}, "credentials_path": "cache/c.json"}}"#,
        );
        let p = load(d.path(), "p", &env()).unwrap();
        assert_eq!(p.organization_id, None);
        assert_eq!(p.version, None);
        let ProfileAuth::OidcFederation { federation_rule_id, identity_token, credentials_path, .. } = p.auth else {
            panic!()
        };
        assert_eq!(federation_rule_id, None);
        assert_eq!(identity_token, Some(IdentitySpec::File { path: "tok/jwt".into() }));
        assert_eq!(credentials_path, Some(PathBuf::from("cache/c.json")));
    }

    #[test]
    fn user_oauth_profile() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "me",
            r#"{"version":"1.0","workspace_id":"wrkspc_01x","authentication":{"type":"user_oauth","client_id":"abc"}}"#,
        );
        let p = load(d.path(), "me", &env()).unwrap();
        assert_eq!(
            p.auth,
            ProfileAuth::UserOauth { client_id: Some("abc".into()), credentials_path: None, scope: None }
        );
    }

    #[test]
    fn profile_names() {
        let o = Origin::EnvVar("ANTHROPIC_PROFILE".into());
        for ok in ["default", "ci-prod", "a.b", "_x", "-x", "A9", "a..b"] {
            validate_name(ok, &o).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("", "is empty"),
            ("..", "starts with a dot"),
            (".hidden", "starts with a dot"),
            ("../etc", "path separator"),
            ("a/b", "path separator"),
            ("a\\b", "path separator"),
            ("a\0b", "NUL"),
            (" a", "whitespace"),
            ("a b", "character ' '"),
            ("a:b", "character ':'"),
            ("é", "character"),
        ] {
            let e = validate_name(bad, &o).expect_err(bad);
            assert_eq!(e.kind, crate::ErrorKind::Config);
            assert!(e.message().contains(why), "{bad:?}: {}", e.message());
            assert!(e.message().contains("environment variable ANTHROPIC_PROFILE"), "{}", e.message());
        }
        assert!(validate_name(&"a".repeat(201), &o).unwrap_err().message().contains("characters long"));
    }

    #[test]
    fn unknown_identity_source_lists_supported_ones() {
        let d = tempfile::tempdir().unwrap();
        let path = write(
            d.path(),
            "x",
            r#"{"authentication":{"type":"oidc_federation","identity_token":{"source":"carrier_pigeon"}}}"#,
        );
        let m = load(d.path(), "x", &env()).unwrap_err().into_message();
        assert!(m.contains(&path.display().to_string()), "{m}");
        assert!(m.contains("\"carrier_pigeon\" is not supported"), "{m}");
        assert!(m.contains("file, env, command, url"), "{m}");
        assert!(m.contains("official SDKs support only \"file\""), "{m}");
        let s = crate::identity::parse::supported_sources();
        assert!(s.contains(&"file".to_string()) && s.contains(&"github_actions".to_string()), "{s:?}");
    }

    #[test]
    fn other_sources_parse() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "x",
            r#"{"authentication":{"type":"oidc_federation","identity_token":{"source":"command","command":["gcloud","auth"],"timeout_s":5}}}"#,
        );
        let p = load(d.path(), "x", &env()).unwrap();
        let ProfileAuth::OidcFederation { identity_token, .. } = p.auth else { panic!() };
        assert_eq!(
            identity_token,
            Some(IdentitySpec::Command { command: vec!["gcloud".into(), "auth".into()], timeout_s: Some(5) })
        );
    }

    #[test]
    fn schema_errors_name_file_key_and_fix() {
        let d = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("[]", "must contain a JSON object, not an array"),
            ("{", "is not valid JSON"),
            ("{}", "missing the \"authentication\" object"),
            (r#"{"authentication": 5}"#, "\"authentication\" must be an object"),
            (r#"{"authentication": {}}"#, "authentication.type is missing"),
            (r#"{"authentication": {"type": "api_key"}}"#, "\"api_key\" is not a known authentication type"),
            (r#"{"authentication": {"type": 3}}"#, "authentication.type must be a string"),
            (
                r#"{"organization_id": 5, "authentication": {"type": "oidc_federation"}}"#,
                "organization_id must be a string, not a number",
            ),
            (r#"{"version": "2.0", "authentication": {"type": "oidc_federation"}}"#, "unsupported \"version\""),
            (
                r#"{"authentication": {"type": "oidc_federation", "identity_token": 5}}"#,
                "must be an identity-token source object",
            ),
            (r#"{"authentication": {"type": "oidc_federation", "identity_token": " "}}"#, "an empty string"),
            (r#"{"authentication": {"type": "oidc_federation", "identity_token": {}}}"#, "has no \"source\""),
            (
                r#"{"authentication": {"type": "oidc_federation", "identity_token": {"source": "file"}}}"#,
                "missing field `path`",
            ),
            (
                r#"{"authentication": {"type": "oidc_federation", "identity_token": {"source": "file", "path": ""}}}"#,
                "non-empty \"path\"",
            ),
            (
                r#"{"authentication": {"type": "oidc_federation", "identity_token": {"source": "env", "var": ""}}}"#,
                "\"var\" is empty",
            ),
        ];
        for (text, want) in cases {
            let path = write(d.path(), "bad", text);
            let e = load(d.path(), "bad", &env()).expect_err(text);
            assert_eq!(e.kind, crate::ErrorKind::Config);
            assert!(e.message().contains(want), "{text}: {}", e.message());
            assert!(e.message().contains(&path.display().to_string()), "{}", e.message());
        }
        // a number version 1 is fine
        write(d.path(), "v", r#"{"version": 1, "authentication": {"type": "user_oauth"}}"#);
        assert_eq!(load(d.path(), "v", &env()).unwrap().version.as_deref(), Some("1.0"));
    }

    #[test]
    fn bom_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b", "\u{feff}{\"authentication\":{\"type\":\"user_oauth\"}}");
        assert!(load(d.path(), "b", &env()).unwrap_err().message().contains("byte-order mark"));
    }

    #[test]
    fn deep_nesting_errors_without_crashing() {
        let d = tempfile::tempdir().unwrap();
        // Far deeper than any stack could take recursively.
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        write(d.path(), "deep", &deep);
        let m = load(d.path(), "deep", &env()).unwrap_err().into_message();
        assert!(m.contains("nested more than"), "{m}");
        // Nesting inside strings does not count.
        let text = format!(r#"{{"x": "{}", "authentication": {{"type": "user_oauth"}}}}"#, "[".repeat(1000));
        write(d.path(), "str", &text);
        load(d.path(), "str", &env()).unwrap();
        // And serde_json's own recursion limit (128) errors rather than crashes
        // for what might slip past us.
        let deep: String = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let r: std::result::Result<Value, _> = serde_json::from_str(&deep);
        assert!(r.unwrap_err().to_string().contains("recursion limit"));
    }

    #[test]
    fn size_cap() {
        let d = tempfile::tempdir().unwrap();
        let big = format!(
            r#"{{"pad": "{}", "authentication": {{"type": "user_oauth"}}}}"#,
            "x".repeat(MAX_CONFIG_BYTES as usize)
        );
        write(d.path(), "big", &big);
        let m = load(d.path(), "big", &env()).unwrap_err().into_message();
        assert!(m.contains("too large"), "{m}");
    }

    #[test]
    fn missing_file_and_directory() {
        let d = tempfile::tempdir().unwrap();
        let m = load(d.path(), "nope", &env()).unwrap_err().into_message();
        assert!(m.contains("not found") && m.contains("nope.json"), "{m}");
        fs::create_dir_all(config_path(d.path(), "dir")).unwrap();
        let m = load(d.path(), "dir", &env()).unwrap_err().into_message();
        assert!(m.contains("not a regular file"), "{m}");
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_writable_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "w", r#"{"authentication":{"type":"user_oauth"}}"#);
        for mode in [0o664, 0o646, 0o666] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let m = load(d.path(), "w", &env()).unwrap_err().into_message();
            assert!(m.contains("writable by group or others"), "{m}");
            assert!(m.contains(&format!("chmod go-w {}", p.display())), "{m}");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        load(d.path(), "w", &env()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        load(d.path(), "w", &env()).unwrap();
    }

    #[test]
    fn secrets_in_a_profile_do_not_leak_into_errors() {
        let d = tempfile::tempdir().unwrap();
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let text = format!(
            r#"{{"authentication":{{"type":"oidc_federation","identity_token":{{"source":"url","url":"https://x","headers":{{"A":5}},"field":"{jwt}"}}}}}}"#
        );
        write(d.path(), "s", &text);
        let m = load(d.path(), "s", &env()).unwrap_err().into_message();
        assert!(!m.contains("eyJ"), "{m}");
        write(d.path(), "t", &format!(r#"{{"authentication":{{"type":"{jwt}"}}}}"#));
        let m = load(d.path(), "t", &env()).unwrap_err().into_message();
        assert!(!m.contains("eyJ"), "{m}");
    }
}
