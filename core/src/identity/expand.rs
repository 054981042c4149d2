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
//!
//! In a URL ([`expand_url`]) variables may stand only in the path, the query
//! and the fragment: the scheme, host and port are written literally, so the
//! environment cannot redirect the request and its headers to another host.

use crate::env::Env;
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

/// One piece of a template: literal text or a variable reference.
enum Piece<'a> {
    Text(&'a str),
    Var {
        name: &'a str,
        /// Byte offset of the `$` that starts `${NAME}`.
        at: usize,
    },
}

/// Split `template` into pieces; malformed references are configuration errors.
fn pieces<'a>(template: &'a str, source: &str, what: &str) -> Result<Vec<Piece<'a>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push(Piece::Text(&rest[..pos]));
        let at = template.len() - rest.len() + pos;
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
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
            out.push(Piece::Var { name, at });
            rest = &body[end + 1..];
        } else {
            out.push(Piece::Text("$"));
            rest = after;
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Expand `template`. `what` names the template in errors (e.g. `the url` or
/// `header Authorization`) and `source` is the identity source's description.
pub(crate) fn expand(template: &str, env: &Env, source: &str, what: &str) -> Result<Expanded> {
    expand_pieces(&pieces(template, source, what)?, env, source, what, template.len())
}

fn expand_pieces(pieces: &[Piece<'_>], env: &Env, source: &str, what: &str, len: usize) -> Result<Expanded> {
    let mut text = String::with_capacity(len);
    let mut values = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => text.push_str(t),
            Piece::Var { name, .. } => match env.get(name) {
                Some(v) => {
                    text.push_str(&v);
                    values.push(Secret::new(v));
                }
                None => {
                    return Err(Error::identity(format!(
                        "{source}: {what} uses ${{{name}}}, but the environment variable {name} is not set (or is empty); set it, or remove it from the template"
                    )));
                }
            },
        }
    }
    Ok(Expanded { text, values })
}

/// Expand a URL template whose scheme, host and port are literal: a
/// `${VAR}` there is refused, because it would let the environment choose
/// where the request and its headers (often credentials) are sent. Variables
/// are fine in the path, the query and the fragment.
pub(crate) fn expand_url(template: &str, env: &Env, source: &str) -> Result<Expanded> {
    const WHAT: &str = "the url";
    let pieces = pieces(template, source, WHAT)?;
    // The origin ends where the path, query or fragment begins.
    let origin_end = match template.find("://") {
        Some(i) => i + 3 + template[i + 3..].find(['/', '?', '#']).unwrap_or(template.len() - i - 3),
        None => template.find(['/', '?', '#']).unwrap_or(template.len()),
    };
    if let Some(name) = pieces.iter().find_map(|p| match p {
        Piece::Var { name, at } if *at < origin_end => Some(*name),
        _ => None,
    }) {
        return Err(Error::config(format!(
            "{source}: {WHAT} uses ${{{name}}} in its scheme, host or port; write those literally (e.g. https://idp.example.com/token?aud=${{AUDIENCE}}): \
             a variable there would let the environment decide where the request and its headers (often credentials) go. \
             Variables are allowed in the path, the query and header values"
        )));
    }
    expand_pieces(&pieces, env, source, WHAT, template.len())
}

/// The names of the variables `template` refers to (none when it is malformed).
pub(crate) fn variables(template: &str) -> Vec<String> {
    pieces(template, "", "")
        .map(|ps| {
            ps.into_iter()
                .filter_map(|p| match p {
                    Piece::Var { name, .. } => Some(name.to_string()),
                    Piece::Text(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
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
    fn url_variables_are_refused_in_the_scheme_host_and_port() {
        for t in [
            "http://${HOST}/x",
            "https://idp.${DOMAIN}/x",
            "https://idp.example:${PORT}/x",
            "${SCHEME}://idp.example/x",
            "${URL}",
            "${BASE}/token",
            "https://u:${PASS}@idp.example/x",
        ] {
            let err = expand_url(t, &env(), "src").err().unwrap_or_else(|| panic!("{t} was accepted"));
            assert_eq!(err.kind, ErrorKind::Config, "{t}");
            assert!(
                err.message().contains("scheme, host or port") && err.message().contains("header"),
                "{}",
                err.message()
            );
            assert!(
                !err.message().contains("s3cr3t") && !err.message().contains("127.0.0.1:8080"),
                "{}",
                err.message()
            );
        }
        let e = expand_url("https://idp.example:8443/t/${TOKEN}?a=${TOKEN}#${TOKEN}", &env(), "src").unwrap();
        assert_eq!(e.text, "https://idp.example:8443/t/s3cr3t-value?a=s3cr3t-value#s3cr3t-value");
        let e = expand_url("https://idp.example?x=${TOKEN}", &env(), "src").unwrap();
        assert_eq!(e.text, "https://idp.example?x=s3cr3t-value");
        // `$$` is a literal dollar, not a variable.
        assert_eq!(expand_url("https://a$$b.example/", &env(), "src").unwrap().text, "https://a$b.example/");
        assert_eq!(variables("https://h/${A}?b=${B_1}&$${C}"), ["A", "B_1"]);
        assert!(variables("https://h/${").is_empty());
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
