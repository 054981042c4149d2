//! Reading and judging the token endpoint's answer: the success body
//! (RFC 6749 §5.1), error bodies (§5.2 and Anthropic's shape) reduced to
//! their safe fields, `Retry-After`, and the hints we add.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::error::scrub;
use crate::secret::Secret;

/// Longest `expires_in` we believe. The server mints at most 86 400 s; a
/// year or more means the answer is not what we think it is.
pub(crate) const MAX_EXPIRES_IN: i64 = 365 * 24 * 3600;
/// Longest server-supplied string (description, code, …) kept in a message.
pub(crate) const MAX_FIELD_CHARS: usize = 300;
/// Longest `Retry-After` we parse as a number of seconds (a day).
const MAX_RETRY_AFTER_SECS: u64 = 24 * 3600;

/// The fields of a successful answer, before `expires_at` is computed.
pub(crate) struct Parsed {
    pub access_token: Secret,
    pub expires_in: i64,
    pub scope: Option<String>,
}

/// Judge a 2xx JSON object. Errors are secret-free descriptions of what is
/// wrong (they never quote the token, and quote other values scrubbed).
/// The access token is moved out of `obj` (never copied), so once the
/// caller zeroises the raw body no plain copy of it is left behind.
pub(crate) fn parse_success(obj: &mut serde_json::Map<String, Value>, assertion: &str) -> Result<Parsed, String> {
    let access_token = match obj.remove("access_token") {
        Some(Value::String(s)) => Secret::new(s),
        None | Some(Value::Null) => return Err("it has no access_token".into()),
        Some(other) => return Err(format!("its access_token is {}, not a string", crate::json::type_name(&other))),
    };
    if let Some(why) = crate::api::access_token_problem(access_token.expose()) {
        return Err(format!("its access_token {why}"));
    }
    match obj.get("token_type") {
        // The official SDKs accept an answer without token_type; so do we.
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            return Err(format!(
                "its token_type is \"{}\", but only Bearer tokens are supported",
                clean(t, &[assertion, access_token.expose()], 40)
            ))
        }
        Some(other) => {
            return Err(format!("its token_type is {}, not the string \"Bearer\"", crate::json::type_name(other)))
        }
    }
    let expires_in = parse_expires_in(obj.get("expires_in"))?;
    let scope = match obj.get("scope") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(clean(s, &[assertion, access_token.expose()], 1000)),
        _ => None,
    };
    Ok(Parsed { access_token, expires_in, scope })
}

/// `expires_in` (RFC 6749 §5.1: seconds, a JSON number). Accepted: integers;
/// finite floats, floored; numeric strings (both official SDKs coerce them:
/// Python with `int()`, Node with `Number()`). Refused: missing, booleans,
/// anything else, ≤ 0 (already expired) and more than a year (absurd).
pub(crate) fn parse_expires_in(v: Option<&Value>) -> Result<i64, String> {
    let secs: i64 = match v {
        None | Some(Value::Null) => return Err("it has no expires_in".into()),
        Some(Value::Number(n)) => number_secs(n.as_i64(), n.as_f64())?,
        Some(Value::String(s)) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                i
            } else {
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() && t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
                        number_secs(None, Some(f))?
                    }
                    // Not quoted: an untrusted string may echo the request.
                    _ => {
                        return Err(format!(
                            "its expires_in is a string of {} characters that is not a number of seconds",
                            s.chars().count()
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!("its expires_in is {}, not a number of seconds", crate::json::type_name(other)))
        }
    };
    if secs <= 0 {
        return Err(format!("its expires_in is {secs}: the token would already be expired"));
    }
    if secs > MAX_EXPIRES_IN {
        return Err(format!("its expires_in is {secs} s, more than a year, which no token endpoint mints"));
    }
    Ok(secs)
}

fn number_secs(int: Option<i64>, float: Option<f64>) -> Result<i64, String> {
    if let Some(i) = int {
        return Ok(i);
    }
    match float {
        Some(f) if f.is_finite() => {
            let f = f.floor();
            // Out-of-range values are caught by the range check; clamp here.
            Ok(if f >= i64::MAX as f64 {
                i64::MAX
            } else if f <= i64::MIN as f64 {
                i64::MIN
            } else {
                f as i64
            })
        }
        _ => Err("its expires_in is not a finite number".into()),
    }
}

/// Trim, then [`scrub`] (which flattens control characters and cuts).
pub fn clean(text: &str, secrets: &[&str], max: usize) -> String {
    scrub(text.trim(), secrets, max)
}

/// The safe part of an error body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorDetails {
    /// RFC 6749 `error`, or Anthropic `error.type`.
    pub code: Option<String>,
    /// RFC 6749 `error_description`, or Anthropic `error.message`.
    pub description: Option<String>,
    pub uri: Option<String>,
    /// What to say when the body gave no usable fields.
    pub note: Option<String>,
}

impl ErrorDetails {
    /// `code: description (see uri)`, or the note.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.code {
            out.push_str(c);
        }
        if let Some(d) = &self.description {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(d);
        }
        if let Some(u) = &self.uri {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("(see {u})"));
        }
        if out.is_empty() {
            out = self.note.clone().unwrap_or_else(|| "no error details in the answer".into());
        }
        out
    }
}

/// Keep only RFC 6749 §5.2 `error`, `error_description`, `error_uri` and
/// Anthropic's `{"type":"error","error":{"type","message"}}`; every string is
/// scrubbed of `secrets` (and any `sk-ant-…` or JWT) and cut.
pub(crate) fn error_details(body: &[u8], content_type: Option<&str>, secrets: &[&str]) -> ErrorDetails {
    let mut d = ErrorDetails::default();
    let ct = content_type.map(|c| clean(c, secrets, 60)).unwrap_or_else(|| "none".into());
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => {
            let s = |v: Option<&Value>, max: usize| match v {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(clean(s, secrets, max)),
                _ => None,
            };
            match obj.get("error") {
                Some(Value::Object(inner)) => {
                    d.code = s(inner.get("type"), 80);
                    d.description = s(inner.get("message"), MAX_FIELD_CHARS);
                }
                other => {
                    d.code = s(other, 80);
                    d.description = s(obj.get("error_description"), MAX_FIELD_CHARS);
                    d.uri = s(obj.get("error_uri"), 200);
                }
            }
            if d.code.is_none() && d.description.is_none() {
                d.note =
                    Some(format!("the JSON answer has no error or error_description field ({} bytes)", body.len()));
            }
        }
        Ok(other) => {
            d.note = Some(format!("the answer is {}, not a JSON error object", crate::json::type_name(&other)));
        }
        Err(_) if body.is_empty() => d.note = Some("the answer has an empty body".into()),
        Err(_) => {
            // Plain text (a proxy's "upstream connect error", say) helps; HTML
            // pages and binary do not. Either way only a scrubbed snippet.
            let text = std::str::from_utf8(body).ok();
            let html =
                ct.to_ascii_lowercase().contains("html") || text.is_some_and(|t| t.trim_start().starts_with('<'));
            match text {
                Some(t) if !html => {
                    d.note = Some(format!("a non-JSON answer (content-type {ct}): \"{}\"", clean(t, secrets, 200)));
                }
                _ => d.note = Some(format!("a non-JSON answer (content-type {ct}, {} bytes)", body.len())),
            }
        }
    }
    d
}

/// `Retry-After`: delay-seconds or an HTTP date. `None` when absent or
/// unparseable; dates in the past mean "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        let secs = v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_RETRY_AFTER_SECS * 365);
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The hint for a denied exchange (401, or 400 `invalid_grant`).
pub(crate) fn denied_hint(rule_id: &str, workspace_set: bool) -> String {
    let mut h = format!(
        "Check that federation rule {} matches the identity token's claims \
         (issuer, audience, subject).",
        clean(rule_id, &[], 80)
    );
    if !workspace_set {
        h.push_str(
            " No workspace_id was given: if the rule covers several workspaces, set one \
             (ANTHROPIC_WORKSPACE_ID, the profile's workspace_id, --workspace-id, or the workspace_id / workspaceId option).",
        );
    }
    h.push_str(
        " An identity token can be exchanged only once, so a token that was already used is refused. \
         The Workload identity page of the Claude Console shows the reason for each refused exchange.",
    );
    h
}
