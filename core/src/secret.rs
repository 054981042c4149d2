//! A string that must never be printed: identity JWTs and access tokens.
//! `Debug`/`Display` never show it, the memory is zeroised on drop, and the
//! only way to the text is the explicit [`Secret::expose`].

use std::fmt;
use zeroize::Zeroize;

/// A secret string: never in `Debug`/`Display`, zeroised on drop.
pub struct Secret(String);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret text. Call only where the secret is sent or handed out.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A display form that shows at most the last 4 characters, e.g.
    /// `sk-ant-oat01-…abcd` for an access token, `…abcd` otherwise.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let n = s.chars().count();
        let tail: String = if n >= 12 { s.chars().skip(n - 4).collect() } else { String::new() };
        if let Some(prefix) = ["sk-ant-oat01-", "sk-ant-api03-", "sk-ant-"].iter().find(|p| s.starts_with(*p)) {
            format!("{prefix}…{tail}")
        } else {
            format!("…{tail}")
        }
    }
}

/// An HTTP request body that carries a secret (the exchange's assertion, a
/// web identity token): the HTTP client sends these very bytes, and they are
/// zeroed when it drops them, so no plain copy of ours is left in freed
/// memory (or a core dump). Copies the HTTP and TLS stacks make internally
/// (a small body copied into hyper's write buffer, TLS records) are out of
/// our reach; [`crate::process::harden`] keeps core dumps off altogether.
pub(crate) fn wiped_body(bytes: Vec<u8>) -> reqwest::Body {
    reqwest::Body::from(bytes::Bytes::from_owner(zeroize::Zeroizing::new(bytes)))
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // Constant-time-ish comparison is not needed here (no oracle), but
        // avoid short-circuit on length to be tidy.
        self.0.len() == other.0.len() && self.0.bytes().zip(other.0.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }
}
impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn never_prints() {
        let s = Secret::new("sk-ant-oat01-supersecretvalue1234");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert_eq!(s.masked(), "sk-ant-oat01-…1234");
        assert_eq!(Secret::new("short").masked(), "…");
    }
}
