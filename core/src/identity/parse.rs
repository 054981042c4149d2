//! The identity-token source as JSON: the one parser and the one static check
//! of [`IdentitySpec`], used by profiles (`authentication.identity_token`),
//! the CLI (`--identity-token JSON` and its shortcuts), and the bindings
//! (`identity_token=` / `identityToken`) through [`crate::options`].
//!
//! Every message starts with `field`, the caller's name for the value (a
//! profile key, a flag, an argument), and never echoes a value that may be a
//! token (a JWT passed where the source object belongs is the usual mistake).

use serde::Deserialize;
use serde_json::Value;

use super::IdentitySpec;
use crate::error::looks_secret;
use crate::error::scrub;
use crate::json::type_name;

/// An example of the shape, for messages.
const EXAMPLE: &str = r#"{"source": "file", "path": "/var/run/secrets/anthropic.com/token"}"#;

impl IdentitySpec {
    /// Parse the `identity_token` union from JSON and check what can be
    /// checked without fetching ([`IdentitySpec::validate`]). An unknown
    /// `source` lists the supported ones.
    pub(crate) fn from_json(value: &Value, field: &str) -> Result<IdentitySpec, String> {
        let Value::Object(obj) = value else {
            return Err(format!(
                "{field} must be an identity-token source object like {EXAMPLE}, not {}",
                type_name(value)
            ));
        };
        let source = match obj.get("source") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => {
                return Err(format!(
                    "{field} has no \"source\"; supported sources: {} (e.g. {EXAMPLE})",
                    supported_sources().join(", ")
                ))
            }
            Some(other) => return Err(format!("{field}.source must be a string, not {}", type_name(other))),
        };
        let supported = supported_sources();
        if !supported.iter().any(|s| s == source) {
            let shown = if looks_secret(source) { "(value not shown)".to_string() } else { format!("{source:?}") };
            return Err(format!(
                "{field}.source {shown} is not supported; supported sources: {}. Note that the official SDKs support only \"file\" (a few of them env, literal or value: docs/sdk-profiles.md §1): a profile with any other source works only with anthropic-wif as the credential provider",
                supported.join(", ")
            ));
        }
        let spec = IdentitySpec::deserialize(value)
            .map_err(|e| format!("{field} (source {source:?}) is invalid: {}", scrub(&e.to_string(), &[], 300)))?;
        spec.validate(field)?;
        Ok(spec)
    }

    /// Ruby's shape in a profile: a bare string instead of an object is the
    /// path of the token file (docs/sdk-profiles.md §1).
    pub(crate) fn bare_path(path: &str) -> Result<IdentitySpec, String> {
        if path.trim().is_empty() {
            return Err(format!("authentication.identity_token is an empty string; give the identity token file's path, or an object such as {EXAMPLE}"));
        }
        Ok(IdentitySpec::File { path: path.into() })
    }

    /// `IdentitySpec::from_json` of JSON text (the CLI's `--identity-token`).
    pub fn from_json_text(text: &str, field: &str) -> Result<IdentitySpec, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "{field} is not JSON ({}); give the source as JSON such as '{EXAMPLE}'",
                scrub(&e.to_string(), &[], 200)
            )
        })?;
        IdentitySpec::from_json(&value, field)
    }

    /// What can be checked without fetching: a `file` source names a file,
    /// an `env` source names a variable (not its value), a `command` has a
    /// program. `field` names where the source came from.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        match self {
            IdentitySpec::File { path } if path.as_os_str().is_empty() => Err(format!(
                "{field}: source \"file\" needs a non-empty \"path\" (the identity token file, e.g. /var/run/secrets/anthropic.com/token)"
            )),
            IdentitySpec::Env { var } => match env_var_problem(var) {
                Some(problem) => Err(format!("{field}: source \"env\": {problem}")),
                None => Ok(()),
            },
            IdentitySpec::Command { command, .. } if command.first().is_none_or(|p| p.is_empty()) => Err(format!(
                "{field}: source \"command\" needs \"command\": the program and its arguments, e.g. [\"gcloud\", \"auth\", \"print-identity-token\"]"
            )),
            _ => Ok(()),
        }
    }
}

/// Why `var` cannot be the name of the variable that holds an identity
/// token, if it cannot (the one rule for `env` sources and the CI presets' `var`).
pub(crate) fn env_var_problem(var: &str) -> Option<&'static str> {
    if var.trim().is_empty() {
        Some("\"var\" is empty; give the name of the variable that holds the identity JWT")
    } else if var.contains('=') || var.contains('\0') {
        Some("\"var\" contains `=` or NUL, so it is not a variable name; give the variable's name, not its value")
    } else if looks_secret(var) {
        Some("\"var\" looks like a token, not a variable name (value not shown); give the name of the variable that holds the JWT")
    } else {
        None
    }
}

/// The `source` names [`IdentitySpec`] accepts, asked of serde itself so the
/// list follows the enum.
pub(crate) fn supported_sources() -> Vec<String> {
    let probe = serde_json::json!({ "source": "\u{1}" });
    let msg = match IdentitySpec::deserialize(&probe) {
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    let list: Vec<String> = msg
        .split_once("expected one of ")
        .map(|(_, rest)| {
            rest.split(", ").map(|s| s.trim().trim_matches('`').to_string()).filter(|s| !s.is_empty()).collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        vec!["file".into(), "env".into()]
    } else {
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_parser_one_set_of_messages() {
        let f = "argument identity_token";
        let spec = IdentitySpec::from_json(&json!({"source": "file", "path": "/t"}), f).unwrap();
        assert_eq!(spec, IdentitySpec::File { path: "/t".into() });
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let e = IdentitySpec::from_json(&json!(jwt), f).unwrap_err();
        assert!(
            e.starts_with("argument identity_token must be an identity-token source object") && !e.contains(jwt),
            "{e}"
        );
        let e = IdentitySpec::from_json(&json!({"source": "carrier-pigeon"}), f).unwrap_err();
        assert!(e.contains("is not supported; supported sources: file, env, command, url"), "{e}");
        let e = IdentitySpec::from_json(&json!({"source": jwt}), f).unwrap_err();
        assert!(e.contains("(value not shown)") && !e.contains(jwt), "{e}");
        let e = IdentitySpec::from_json(&json!({"path": "/t"}), f).unwrap_err();
        assert!(e.contains("has no \"source\""), "{e}");
        let e = IdentitySpec::from_json(&json!({"source": "file"}), f).unwrap_err();
        assert!(e.contains("(source \"file\") is invalid: missing field `path`"), "{e}");
        let e = IdentitySpec::from_json(&json!({"source": "file", "path": ""}), f).unwrap_err();
        assert!(e.contains("needs a non-empty \"path\""), "{e}");
        for var in ["", "A=b", jwt] {
            let e = IdentitySpec::from_json(&json!({"source": "env", "var": var}), f).unwrap_err();
            assert!(e.starts_with("argument identity_token: source \"env\": \"var\"") && !e.contains(jwt), "{e}");
        }
        let e = IdentitySpec::from_json(&json!({"source": "command", "command": []}), f).unwrap_err();
        assert!(e.contains("needs \"command\""), "{e}");
        let e = IdentitySpec::from_json_text("eyJ", "--identity-token").unwrap_err();
        assert!(e.starts_with("--identity-token is not JSON"), "{e}");
    }

    #[test]
    fn supported_sources_follow_the_enum() {
        let s = supported_sources();
        assert!(s.len() > 10 && s.contains(&"aws_sts".to_string()) && s.contains(&"auto".to_string()), "{s:?}");
    }
}
