//! The one error type of the engine. Every face maps it once: the CLI to an
//! exit code, Python to an exception class, Node to a JS error with `kind`.
//!
//! Messages never contain a secret: every string that may carry server or
//! user-supplied text passes through [`scrub`] before it lands here.

use std::fmt;

/// What went wrong, coarse enough for a caller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// An engine error. `message` is complete, human-readable and secret-free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// HTTP status of the token endpoint's answer, when there was one.
    pub status: Option<u16>,
    /// The `request-id` response header, when there was one.
    pub request_id: Option<String>,
    /// The RFC 6749 `error` code (or the Anthropic error `type`), when given.
    pub error_code: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), status: None, request_id: None, error_code: None }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn identity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Identity, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }
    pub fn with_error_code(mut self, code: Option<String>) -> Self {
        self.error_code = code;
        self
    }
    /// Prefix the message with context, keeping kind/status/request id.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
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

/// Remove secrets from a string that may reach a message: every occurrence of
/// each of `secrets` (non-empty ones) and anything that looks like an
/// Anthropic token (`sk-ant-…`) or a JWT (three base64url segments starting
/// with `eyJ`). Also cuts the string to `max_chars` characters.
pub fn scrub(text: &str, secrets: &[&str], max_chars: usize) -> String {
    let mut out = text.to_string();
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
