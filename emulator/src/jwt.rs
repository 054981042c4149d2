//! Just enough JWT handling for a server stand-in: decode the header and
//! claims of a presented assertion (no signature check: the emulator has no
//! issuer keys), and mint unsigned-looking test JWTs with a random signature.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The issuer of the emulator's test JWTs.
pub const DEFAULT_ISSUER: &str = "https://emulator.anthropic-wif.invalid";
/// The default audience of test JWTs (the one the SDKs' presets request).
pub const DEFAULT_AUDIENCE: &str = "https://api.anthropic.com";
/// The default subject of test JWTs.
pub const DEFAULT_SUBJECT: &str = "repo:anthropic-wif/emulator:ref:refs/heads/main";
/// The default life of a test JWT, in seconds.
pub const DEFAULT_JWT_TTL: i64 = 3600;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The decoded, unverified parts of a JWT.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub claims: Map<String, Value>,
}

fn is_b64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

/// Decode a compact JWS; the error says what is wrong without quoting the input.
pub(crate) fn decode(token: &str) -> Result<Decoded, &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("expected three dot-separated segments (header.payload.signature)");
    }
    if parts.iter().any(|p| p.is_empty() || !is_b64url(p)) {
        return Err("every segment must be non-empty base64url");
    }
    let header = LENIENT.decode(parts[0]).map_err(|_| "the header is not valid base64url")?;
    let header: Value = serde_json::from_slice(&header).map_err(|_| "the header is not JSON")?;
    match header.get("alg") {
        Some(Value::String(a)) if !a.is_empty() => {}
        _ => return Err("the header has no \"alg\""),
    }
    let payload = LENIENT.decode(parts[1]).map_err(|_| "the payload is not valid base64url")?;
    let claims: Value = serde_json::from_slice(&payload).map_err(|_| "the payload is not JSON")?;
    match claims {
        Value::Object(claims) => Ok(Decoded { claims }),
        _ => Err("the payload is not a JSON object"),
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(crate) fn now_unix_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Random characters from `[A-Za-z0-9]`.
pub(crate) fn base62(n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

/// Build a test JWT from explicit claims (header `{"alg":"RS256","typ":"JWT","kid":"emulator"}`,
/// random signature bytes).
pub fn encode_claims(claims: &Map<String, Value>) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "emulator"});
    let sig: Vec<u8> = (0..256).map(|_| fastrand::u8(..)).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The default claims of a test JWT: `iss`, `sub`, `aud`, `iat`, `exp = iat + ttl`
/// (a negative `ttl` makes an already expired token), a unique `jti`.
pub fn default_claims(iss: &str, sub: &str, aud: &str, ttl: i64) -> Map<String, Value> {
    let iat = now_unix();
    let mut m = Map::new();
    m.insert("iss".into(), Value::from(iss));
    m.insert("sub".into(), Value::from(sub));
    m.insert("aud".into(), Value::from(aud));
    m.insert("iat".into(), Value::from(iat));
    m.insert("nbf".into(), Value::from(iat.min(iat + ttl)));
    m.insert("exp".into(), Value::from(iat + ttl));
    m.insert("jti".into(), Value::from(format!("jti_{}", base62(24))));
    m
}

/// A fresh test JWT with the emulator's default issuer and a unique `jti`.
/// Needs no running emulator.
pub fn test_jwt(sub: &str, aud: &str, ttl_secs: i64) -> String {
    encode_claims(&default_claims(DEFAULT_ISSUER, sub, aud, ttl_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let t = test_jwt("s", "a", 60);
        let d = decode(&t).expect("decodes");
        assert_eq!(d.claims["sub"], "s");
        assert_eq!(d.claims["aud"], "a");
        let exp = d.claims["exp"].as_i64().expect("exp");
        assert!((exp - now_unix() - 60).abs() <= 2);
        assert!(d.claims["jti"].as_str().expect("jti").starts_with("jti_"));
        assert_ne!(test_jwt("s", "a", 60), t);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("abc").is_err());
        assert!(decode("a.b").is_err());
        assert!(decode("a..c").is_err());
        assert!(decode("!!.??.xx").is_err());
        let not_json = format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode("nope"), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(decode(&not_json).unwrap_err(), "the header is not JSON");
        let no_alg = format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode("{}"), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(decode(&no_alg).unwrap_err(), "the header has no \"alg\"");
        let arr = format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#), URL_SAFE_NO_PAD.encode("[1]"));
        assert_eq!(decode(&arr).unwrap_err(), "the payload is not a JSON object");
        // Padded segments are accepted too.
        let padded = format!(
            "{}.{}.c2ln",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"RS2"}"#),
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"a":1}"#)
        );
        assert!(padded.contains('='));
        assert_eq!(decode(&padded).expect("padded decodes").claims["a"], 1);
    }
}
