//! Decoding a JWT without verifying it: for diagnostics (doctor) and for
//! reading `exp`. Never returns or logs the signature or the raw token.
//!
//! Only the JWS compact form (`header.claims.signature`, base64url) is
//! accepted; an encrypted JWT (JWE, five parts) is refused. Error strings
//! describe the problem without quoting any part of the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// Largest token we will look at (the exchange refuses larger assertions).
pub(crate) const MAX_JWT_BYTES: usize = 16 * 1024;

/// How long after its `exp`, by this machine's clock, an identity token
/// still counts as unexpired: an allowance for a clock running a little
/// ahead of the token endpoint's (docs/design.md §1). The one constant for
/// the check before every exchange and for `doctor`'s `jwt_expired`.
pub(crate) const EXPIRY_SKEW_ALLOWANCE_SECONDS: i64 = 30;

/// How many seconds ago a token with this `exp` expired, when at `now` it
/// is past it by more than [`EXPIRY_SKEW_ALLOWANCE_SECONDS`]; `None` while
/// it is usable. The one rule of when an identity token counts as expired.
pub(crate) fn expired_seconds_ago(exp: i64, now: i64) -> Option<i64> {
    let ago = now.saturating_sub(exp);
    (ago > EXPIRY_SKEW_ALLOWANCE_SECONDS).then_some(ago)
}

/// A JWT's header and claims, unverified. The signature is not kept.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedJwt {
    /// The JOSE header (`alg`, `kid`, …).
    pub header: Map<String, Value>,
    /// The claims (`iss`, `sub`, `aud`, `exp`, …).
    pub claims: Map<String, Value>,
}

/// Decode `token` (surrounding whitespace ignored) into header and claims
/// without checking the signature. The error says what is wrong, never what
/// the token contains.
pub fn decode_unverified(token: &str) -> Result<DecodedJwt, String> {
    decode_inner(token, MAX_JWT_BYTES, false)
}

/// Like [`decode_unverified`], for diagnostics: also decodes tokens over the
/// 16 KiB exchange limit (up to 64 KiB) and unsecured ones (empty signature,
/// `alg` `none`), so a report can show what is wrong with them.
pub(crate) fn decode_unverified_lenient(token: &str) -> Result<DecodedJwt, String> {
    decode_inner(token, 4 * MAX_JWT_BYTES, true)
}

fn decode_inner(token: &str, max_bytes: usize, allow_unsigned: bool) -> Result<DecodedJwt, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("the token is empty".to_string());
    }
    if token.len() > max_bytes {
        return Err(format!("the token is {} bytes, more than the {max_bytes}-byte limit for a JWT", token.len()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err("the token is an encrypted JWT (JWE, five parts); a signed JWT (JWS, three parts) is needed"
                .to_string())
        }
        n => {
            return Err(format!(
                "the token is not a JWT: expected three dot-separated parts (header.claims.signature), found {n}"
            ))
        }
    }
    let header = decode_part(parts[0], "header")?;
    let claims = decode_part(parts[1], "claims")?;
    if parts[2].is_empty() && !allow_unsigned {
        return Err(
            "the token has no signature (an unsecured JWT, alg none); identity providers sign their tokens".to_string()
        );
    }
    if !parts[2].bytes().all(is_b64url) {
        return Err("the signature part is not base64url text".to_string());
    }
    Ok(DecodedJwt { header, claims })
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='
}

fn decode_part(part: &str, name: &str) -> Result<Map<String, Value>, String> {
    if part.is_empty() {
        return Err(format!("the {name} part is empty"));
    }
    // Tolerate padding, which some encoders add despite RFC 7515.
    let unpadded = part.trim_end_matches('=');
    if !unpadded.bytes().all(is_b64url) {
        return Err(format!("the {name} part is not base64url text (a JWT uses only letters, digits, - and _)"));
    }
    let bytes = URL_SAFE_NO_PAD.decode(unpadded).map_err(|_| format!("the {name} part is not valid base64url"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        // serde_json messages give a position, not the input.
        format!("the {name} part is not JSON ({e})")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(format!("the {name} part is JSON but not an object")),
    }
}

impl DecodedJwt {
    fn num(&self, name: &str) -> Option<i64> {
        match self.claims.get(name)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64)),
            _ => None,
        }
    }
    fn string(&self, name: &str) -> Option<&str> {
        self.claims.get(name)?.as_str()
    }

    /// `exp` (unix seconds), when present and numeric.
    pub fn exp(&self) -> Option<i64> {
        self.num("exp")
    }
    /// `iat` (unix seconds), when present and numeric.
    pub fn iat(&self) -> Option<i64> {
        self.num("iat")
    }
    /// `nbf` (unix seconds), when present and numeric.
    pub fn nbf(&self) -> Option<i64> {
        self.num("nbf")
    }
    /// `jti`, when present and a string.
    pub fn jti(&self) -> Option<&str> {
        self.string("jti")
    }
    /// `iss`, when present and a string.
    pub fn iss(&self) -> Option<&str> {
        self.string("iss")
    }
    /// `sub`, when present and a string.
    pub fn sub(&self) -> Option<&str> {
        self.string("sub")
    }
    /// `aud` as a list (a JWT may carry one string or an array of them).
    pub fn aud(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
    /// The header's `alg`, when present.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg")?.as_str()
    }
    /// Seconds of life left at `now` (negative when expired), if `exp` is set.
    pub fn remaining(&self, now: i64) -> Option<i64> {
        self.exp().map(|exp| exp.saturating_sub(now))
    }
    /// How many seconds ago the token expired, when at `now` it is past its
    /// `exp` by more than [`EXPIRY_SKEW_ALLOWANCE_SECONDS`]: the rule that
    /// keeps an expired identity token from being sent. `None` while it is
    /// usable, and for a token without `exp`.
    #[cfg(test)]
    pub(crate) fn expired_seconds_ago(&self, now: i64) -> Option<i64> {
        expired_seconds_ago(self.exp()?, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v.as_bytes())
    }
    fn jwt(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("signature-bytes"))
    }

    #[test]
    fn decodes_header_and_claims() {
        let t = jwt(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"https://token.actions.githubusercontent.com","sub":"repo:o/r:ref:refs/heads/main","aud":"https://api.anthropic.com","exp":1800000000,"iat":1799999700,"nbf":1799999690,"jti":"abc-123"}"#,
        );
        let d = decode_unverified(&format!("  {t}\n")).unwrap();
        assert_eq!(d.alg(), Some("RS256"));
        assert_eq!(d.header.get("kid").and_then(Value::as_str), Some("k1"));
        assert_eq!(d.exp(), Some(1_800_000_000));
        assert_eq!(d.iat(), Some(1_799_999_700));
        assert_eq!(d.nbf(), Some(1_799_999_690));
        assert_eq!(d.jti(), Some("abc-123"));
        assert_eq!(d.iss(), Some("https://token.actions.githubusercontent.com"));
        assert_eq!(d.sub(), Some("repo:o/r:ref:refs/heads/main"));
        assert_eq!(d.aud(), vec!["https://api.anthropic.com"]);
        assert_eq!(d.remaining(1_799_999_800), Some(200));
        assert_eq!(d.remaining(1_800_000_100), Some(-100));
        // Expired only past the clock-skew allowance.
        let allowed = 1_800_000_000 + EXPIRY_SKEW_ALLOWANCE_SECONDS;
        assert_eq!(d.expired_seconds_ago(1_799_999_999), None);
        assert_eq!(d.expired_seconds_ago(allowed), None);
        assert_eq!(d.expired_seconds_ago(allowed + 1), Some(EXPIRY_SKEW_ALLOWANCE_SECONDS + 1));
    }

    #[test]
    fn claim_helpers_handle_odd_types() {
        let d = decode_unverified(&jwt(
            r#"{"alg":"ES256"}"#,
            r#"{"exp":1800000000.75,"iat":"x","jti":7,"aud":["a","b",3]}"#,
        ))
        .unwrap();
        assert_eq!(d.exp(), Some(1_800_000_000));
        assert_eq!(d.iat(), None);
        assert_eq!(d.jti(), None);
        assert_eq!(d.aud(), vec!["a", "b"]);
        let d = decode_unverified(&jwt(r#"{"alg":"ES256"}"#, "{}")).unwrap();
        assert_eq!((d.exp(), d.iat(), d.jti(), d.remaining(0)), (None, None, None, None));
        assert!(d.aud().is_empty());
    }

    #[test]
    fn accepts_padded_segments() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let c = format!("{}==", URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#));
        let d = decode_unverified(&format!("{h}.{c}.c2ln")).unwrap();
        assert_eq!(d.sub(), Some("a"));
    }

    #[test]
    fn rejects_malformed_tokens_without_quoting_them() {
        let secretish = "SECRETMARKERxyz";
        let good_h = b64(r#"{"alg":"RS256"}"#);
        let good_c = b64(r#"{"sub":"x"}"#);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("   ".to_string(), "empty"),
            (secretish.to_string(), "found 1"),
            (format!("{secretish}.{secretish}"), "found 2"),
            (format!("{good_h}.{good_c}.sig.{secretish}"), "found 4"),
            (format!("{good_h}.{good_c}.a.b.{secretish}"), "JWE"),
            (format!("{secretish}!.{good_c}.sig"), "header part is not base64url"),
            (format!("{good_h}.{}.sig", b64(secretish)), "claims part is not JSON"),
            (format!("{good_h}.{}.sig", b64(&format!("[\"{secretish}\"]"))), "claims part is JSON but not an object"),
            (format!("{}.{good_c}.sig", b64(&format!("\"{secretish}\""))), "header part is JSON but not an object"),
            (format!(".{good_c}.sig"), "header part is empty"),
            (format!("{good_h}.{good_c}."), "no signature"),
            (format!("{good_h}.{good_c}.si+g/"), "signature part is not base64url"),
            (format!("{good_h}.A.sig"), "not valid base64url"),
        ];
        for (token, expect) in cases {
            let err = decode_unverified(&token).unwrap_err();
            assert!(err.contains(expect), "{token:?}: {err}");
            assert!(!err.contains(secretish), "{err}");
            assert!(!err.contains(&good_c), "{err}");
        }
    }

    #[test]
    fn bounded_input() {
        let big = jwt(r#"{"alg":"RS256"}"#, &format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_JWT_BYTES)));
        let err = decode_unverified(&big).unwrap_err();
        assert!(err.contains("limit"), "{err}");
        assert!(err.len() < 200, "{err}");
        // Just under the limit still decodes.
        let ok = jwt(r#"{"alg":"RS256"}"#, &format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_JWT_BYTES / 2)));
        assert!(ok.len() <= MAX_JWT_BYTES);
        assert!(decode_unverified(&ok).is_ok());
    }
}
