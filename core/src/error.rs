//! The one error type of the engine. Every face maps it once: the CLI to an
//! exit code, Python to an exception class, Node to a JS error with `kind`.
//!
//! The error type is also the one place that cleans text for people: its
//! constructors and every method that adds text pass it through [`scrub`],
//! which flattens control characters (no terminal escapes, no forged log
//! lines), removes anything token- or JWT-shaped and bounds the length. The
//! text fields are private, so no face can build or print an unclean message.
//! Callers still scrub the *specific* secrets they know of (an assertion, an
//! expanded `${VAR}`) before the text lands here.

use std::fmt;

/// What went wrong, coarse enough for a caller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad or missing configuration: a flag, env var, profile file or id.
    /// Fix the configuration; retrying will not help.
    Config,
    /// The identity-token source failed (file missing, command failed,
    /// metadata endpoint down, empty token, …).
    Identity,
    /// The token endpoint answered with a 4xx: the exchange was refused.
    Denied,
    /// The token endpoint could not be reached, timed out, answered 5xx/429
    /// after retries, or answered something that is not a token response.
    Unavailable,
    /// A local failure that is none of the above (cache I/O, lock time-out…).
    Internal,
}

impl ErrorKind {
    /// Stable machine name: `config`, `identity`, `denied`, `unavailable`, `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Identity => "identity",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The credential-process exit code for this kind (documented in README).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Config => 2,
            ErrorKind::Identity => 3,
            ErrorKind::Denied => 4,
            ErrorKind::Unavailable => 5,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest message an [`Error`] keeps, in characters (longer ones are cut).
pub(crate) const MAX_MESSAGE_CHARS: usize = 8000;
/// Longest `request-id` / error code an [`Error`] keeps.
const MAX_FIELD_CHARS: usize = 200;

/// An engine error. Its message is complete, human-readable, secret-free and
/// clean (see the module docs): read it with [`Error::message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The class of failure; faces map it to their exit code or exception.
    pub kind: ErrorKind,
    message: String,
    /// HTTP status of the token endpoint's answer, when there was one.
    pub status: Option<u16>,
    request_id: Option<String>,
    error_code: Option<String>,
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`; the message is cleaned and bounded.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: clean_message(&message.into()), status: None, request_id: None, error_code: None }
    }
    /// An [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// An [`ErrorKind::Identity`] error.
    pub fn identity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Identity, message)
    }
    /// An [`ErrorKind::Denied`] error.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    /// An [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// An [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// The `request-id` response header (cleaned, bounded; blank is none).
    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = clean_field(request_id);
        self
    }
    /// The RFC 6749 `error` code or Anthropic error `type` (cleaned, bounded; blank is none).
    pub(crate) fn with_error_code(mut self, code: Option<String>) -> Self {
        self.error_code = clean_field(code);
        self
    }
    /// Prefix the message with context, keeping kind/status/request id.
    pub(crate) fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = clean_message(&format!("{prefix}: {}", self.message));
        self
    }
    /// Append text to the message (a hint, how many attempts were made…).
    pub fn append(&mut self, text: impl AsRef<str>) {
        self.message = clean_message(&format!("{}{}", self.message, text.as_ref()));
    }
    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message: secret-free, without control characters, bounded.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The message, owned.
    pub(crate) fn into_message(self) -> String {
        self.message
    }
    /// The `request-id` response header of the token endpoint's answer, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// The RFC 6749 `error` code (or the Anthropic error `type`), when given.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
}

fn clean_message(text: &str) -> String {
    scrub(text, &[], MAX_MESSAGE_CHARS)
}

fn clean_field(value: Option<String>) -> Option<String> {
    value.map(|v| scrub(v.trim(), &[], MAX_FIELD_CHARS)).filter(|v| !v.trim().is_empty())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            if !self.message.contains(id.as_str()) {
                write!(f, " (request-id: {id})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The one serialised form of an error, which every face maps (the CLI's
/// `doctor --json`, the Node and Python glue): `kind`, `message` (the
/// [`Display`](fmt::Display) text: the message, with the request id when the
/// message lacks it), and `status`, `request_id`, `error_code` when known.
/// The text in it is the text the error cleaned when it was built.
impl serde::Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = 2 + [self.status.is_some(), self.request_id.is_some(), self.error_code.is_some()]
            .iter()
            .filter(|set| **set)
            .count();
        let mut st = serializer.serialize_struct("Error", fields)?;
        st.serialize_field("kind", self.kind.as_str())?;
        st.serialize_field("message", &self.to_string())?;
        if let Some(status) = self.status {
            st.serialize_field("status", &status)?;
        }
        if let Some(id) = &self.request_id {
            st.serialize_field("request_id", id)?;
        }
        if let Some(code) = &self.error_code {
            st.serialize_field("error_code", code)?;
        }
        st.end()
    }
}

/// Make text safe to print: every control character (C0, DEL, C1: newlines,
/// ESC, BEL…) and every bidirectional-override character becomes a space, so
/// untrusted text cannot move the cursor, retitle a terminal, forge a log
/// line or reorder what is shown; every occurrence of each of `secrets`
/// (non-empty ones) and anything that looks like an Anthropic token
/// (`sk-ant-…`) or a JWT (three base64url segments starting with `eyJ`) is
/// redacted; the result is cut to `max_chars` characters.
pub fn scrub(text: &str, secrets: &[&str], max_chars: usize) -> String {
    let mut out: String = text.chars().map(|c| if is_unsafe_char(c) { ' ' } else { c }).collect();
    for s in secrets {
        let s = s.trim();
        if s.len() >= 4 {
            out = out.replace(s, "[redacted]");
        }
    }
    out = redact_pattern(&out, "sk-ant-", |c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    out = redact_jwts(&out);
    if out.chars().count() > max_chars {
        let cut: String = out.chars().take(max_chars).collect();
        out = format!("{cut}…");
    }
    out
}

/// Control characters and the Unicode bidirectional controls (U+061C,
/// U+200E/F, U+202A–U+202E, U+2066–U+2069).
/// True when the text looks like a secret (an Anthropic key/token or a JWT)
/// and must not be echoed.
pub(crate) fn looks_secret(s: &str) -> bool {
    let t = s.trim();
    t.contains("sk-ant-") || (t.contains("eyJ") && t.matches('.').count() >= 2) || t.len() > 200
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn redact_pattern(text: &str, prefix: &str, body: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(prefix) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let end = after.char_indices().find(|&(_, c)| !body(c)).map(|(i, _)| i).unwrap_or(after.len());
        out.push_str("[redacted]");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn redact_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '=';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("eyJ") {
        let after = &rest[pos..];
        let end = after.char_indices().find(|&(_, c)| !is_b64(c)).map(|(i, _)| i).unwrap_or(after.len());
        let candidate = &after[..end];
        out.push_str(&rest[..pos]);
        if candidate.matches('.').count() >= 2 && candidate.len() >= 16 {
            out.push_str("[redacted-jwt]");
        } else {
            out.push_str(candidate);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_tokens_and_jwts() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let msg = format!("bad {jwt} and sk-ant-oat01-AbC_d-9 and SECRETVALUE end");
        let s = scrub(&msg, &["SECRETVALUE"], 1000);
        assert!(!s.contains(jwt), "{s}");
        assert!(!s.contains("sk-ant-oat01"), "{s}");
        assert!(!s.contains("SECRETVALUE"), "{s}");
        assert!(s.starts_with("bad ") && s.ends_with(" end"), "{s}");
    }

    #[test]
    fn scrub_cuts_long_text() {
        let s = scrub(&"x".repeat(5000), &[], 100);
        assert_eq!(s.chars().count(), 101);
    }

    /// The 403 body of issue #10: a terminal escape, a window-title change,
    /// BEL, and a newline forging a second log line.
    const HOSTILE: &str = "denied\u{1b}[2J\u{1b}]0;TITLE\u{7}\nanthropic-wif: forged: x\r\u{9b}31m\u{202e}evil";

    fn assert_printable(s: &str) {
        assert!(!s.chars().any(is_unsafe_char), "unclean: {s:?}");
    }

    #[test]
    fn scrub_flattens_control_and_bidi_characters() {
        let s = scrub(HOSTILE, &[], 1000);
        assert_printable(&s);
        assert!(s.starts_with("denied [2J ]0;TITLE  anthropic-wif: forged: x"), "{s:?}");
    }

    #[test]
    fn every_way_of_building_an_error_cleans_its_text() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let e = Error::denied(format!("{HOSTILE} {jwt} sk-ant-oat01-AbC"));
        assert_printable(e.message());
        assert!(!e.message().contains("eyJ") && !e.message().contains("sk-ant-oat01"), "{}", e.message());
        let mut e = Error::identity("x").context(HOSTILE);
        e.append(HOSTILE);
        assert_printable(e.message());
        let e = e.with_request_id(Some(format!("req\n{HOSTILE}"))).with_error_code(Some(HOSTILE.into()));
        assert_printable(e.request_id().unwrap());
        assert_printable(e.error_code().unwrap());
        assert_printable(&e.to_string());
        assert!(!format!("{e:?}").contains('\u{1b}'), "Debug shows the cleaned text too");
        assert_eq!(Error::internal("x").with_request_id(Some(" \n ".into())).request_id(), None);
        let long = Error::internal("y".repeat(MAX_MESSAGE_CHARS * 2));
        assert_eq!(long.message().chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn the_serialised_form() {
        let e = Error::denied("Authentication failed")
            .with_status(401)
            .with_request_id(Some("req_1".into()))
            .with_error_code(Some("invalid_grant".into()));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "denied", "message": "Authentication failed (request-id: req_1)",
                               "status": 401, "request_id": "req_1", "error_code": "invalid_grant"})
        );
        assert_eq!(
            serde_json::to_value(Error::config("bad")).unwrap(),
            serde_json::json!({"kind": "config", "message": "bad"})
        );
    }

    #[test]
    fn exit_codes_are_distinct() {
        let kinds =
            [ErrorKind::Config, ErrorKind::Identity, ErrorKind::Denied, ErrorKind::Unavailable, ErrorKind::Internal];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
    }
}
