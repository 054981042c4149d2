//! `${VAR}` expansion for the `url` source's URL and header values.
//!
//! Syntax (deliberately small, no shell semantics):
//! - `${NAME}` is replaced by the value of `NAME` from [`Env`]; `NAME` matches
//!   `[A-Za-z_][A-Za-z0-9_]*`. An unset or empty variable is an error naming it
//!   (never a silent empty string: an empty bearer would fail obscurely).
//! - `$$` is a literal `$` (so `$${X}` yields the text `${X}`).
//! - A `$` followed by anything else (`$X`, a trailing `$`) is kept literally:
//!   only the braced form expands, so `$` in ordinary URLs needs no escaping.
//! - `${` without a closing `}`, `${}` and `${bad-name}` are configuration
//!   errors.
//!
//! The expanded values are returned alongside the text so callers can scrub
//! them from any message (they are often bearer tokens).

use crate::config::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The result of expanding one template.
pub(crate) struct Expanded {
    pub text: String,
    /// Every substituted value, for scrubbing messages.
    pub values: Vec<Secret>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expand `template`. `what` names the template in errors (e.g. `the url` or
/// `header Authorization`) and `source` is the identity source's description.
pub(crate) fn expand(template: &str, env: &Env, source: &str, what: &str) -> Result<Expanded> {
    let mut text = String::with_capacity(template.len());
    let mut values = Vec::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(Error::config(format!(
                    "{source}: {what} has an unterminated `${{` (write `${{NAME}}` to expand a variable, `$$` for a literal `$`)"
                )));
            };
            let name = &body[..end];
            if !valid_name(name) {
                let shown: String = name.chars().take(40).collect();
                return Err(Error::config(format!(
                    "{source}: {what} has `${{{shown}}}`, which is not a valid variable name (letters, digits and `_`, not starting with a digit; `$$` is a literal `$`)"
                )));
            }
            match env.get(name) {
                Some(v) => {
                    text.push_str(&v);
                    values.push(Secret::new(v));
                }
                None => {
                    return Err(Error::identity(format!(
                        "{source}: {what} uses ${{{name}}}, but the environment variable {name} is not set (or is empty); set it, or remove it from the template"
                    )));
                }
            }
            rest = &body[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    Ok(Expanded { text, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn env() -> Env {
        Env::fixed([("HOST", "127.0.0.1:8080"), ("TOKEN", "s3cr3t-value"), ("EMPTY", "")])
    }

    #[test]
    fn expands_braced_variables_and_collects_values() {
        let e = expand("http://${HOST}/x?t=${TOKEN}&y=${TOKEN}", &env(), "src", "the url").unwrap();
        assert_eq!(e.text, "http://127.0.0.1:8080/x?t=s3cr3t-value&y=s3cr3t-value");
        let vals: Vec<&str> = e.values.iter().map(|s| s.expose()).collect();
        assert_eq!(vals, ["127.0.0.1:8080", "s3cr3t-value", "s3cr3t-value"]);
    }

    #[test]
    fn dollar_rules() {
        let e = expand("a$$b $${TOKEN} $X $ end$", &env(), "src", "the url").unwrap();
        assert_eq!(e.text, "a$b ${TOKEN} $X $ end$");
        assert!(e.values.is_empty());
        let e = expand("no dollars", &env(), "src", "the url").unwrap();
        assert_eq!(e.text, "no dollars");
        let e = expand("é${TOKEN}ü", &env(), "src", "the url").unwrap();
        assert_eq!(e.text, "és3cr3t-valueü");
    }

    #[test]
    fn unset_and_empty_variables_are_errors_naming_them() {
        for name in ["MISSING", "EMPTY"] {
            let err =
                expand(&format!("x${{{name}}}"), &env(), "identity token url X", "header Authorization").err().unwrap();
            assert_eq!(err.kind, ErrorKind::Identity);
            assert!(err.message().contains(name), "{}", err.message());
            assert!(err.message().contains("identity token url X"), "{}", err.message());
            assert!(err.message().contains("header Authorization"), "{}", err.message());
        }
    }

    #[test]
    fn malformed_templates_are_config_errors() {
        for t in ["x${TOKEN", "x${}", "x${1A}", "x${A-B}", "${ TOKEN }"] {
            let err = expand(t, &env(), "src", "the url").err().unwrap();
            assert_eq!(err.kind, ErrorKind::Config, "{t}: {}", err.message());
            assert!(!err.message().contains("s3cr3t"), "{}", err.message());
        }
    }
}
