//! AWS Signature Version 4, hand-rolled on `sha2` (HMAC-SHA256 is a dozen
//! lines; the `aws-sigv4` crate would pull in the smithy runtime).
//!
//! Only what the STS Query API needs: header-based signing of a request
//! whose path, query, headers and payload are given. Checked against the
//! published aws-sig-v4-test-suite vectors in the tests below.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(data).finalize();
    let out = Sha256::new().chain_update(opad).chain_update(inner).finalize();
    // Wipe the key material we copied.
    zeroize::Zeroize::zeroize(&mut k);
    zeroize::Zeroize::zeroize(&mut ipad);
    zeroize::Zeroize::zeroize(&mut opad);
    out.into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SigV4 URI encoding: every byte except the unreserved `A-Z a-z 0-9 - _ . ~`
/// becomes `%XX` (upper-case hex). Also used for form bodies.
pub(crate) fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `name=value&…` with both sides URI-encoded, in the given order.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect::<Vec<_>>().join("&")
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` for a unix time (UTC).
pub(crate) fn amz_date(unix: i64) -> (String, String) {
    let (y, m, d, hh, mm, ss) = crate::clock::utc_civil(unix);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!("{date}T{hh:02}{mm:02}{ss:02}Z");
    (time, date)
}

/// Credentials to sign with. `Debug` never shows the secret parts.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Where they came from, for messages (`environment variables`, …).
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("session_token", &self.session_token.as_ref().map(|_| "[redacted]"))
            .field("origin", &self.origin)
            .finish()
    }
}

/// One request to sign.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// Canonical URI: the path, already URI-encoded (`/` for STS).
    pub path: &'a str,
    /// Query parameters, raw (encoded and sorted here).
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, raw names and values; must include `host` and `x-amz-date`.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The canonical request and the signed-headers list.
pub(crate) fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = req.query.iter().map(|(k, v)| (uri_encode(k), uri_encode(v))).collect();
    query.sort();
    let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let creq = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        query,
        canonical_headers,
        signed,
        sha256_hex(req.payload)
    );
    (creq, signed)
}

/// The `Authorization` header value for `req`, signed at `amz_time`
/// (`YYYYMMDDTHHMMSSZ`, the same value as the request's `x-amz-date`).
pub(crate) fn authorization(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_time: &str,
) -> String {
    let date = &amz_time[..8.min(amz_time.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (creq, signed) = canonical_request(req);
    let sts = format!("AWS4-HMAC-SHA256\n{amz_time}\n{scope}\n{}", sha256_hex(creq.as_bytes()));
    let key = signing_key(creds.secret_access_key.expose(), date, region, service);
    let signature = hex(&hmac_sha256(&key, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        creds.access_key_id
    )
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_secret = Secret::new(format!("AWS4{secret}"));
    let k_date = hmac_sha256(k_secret.expose().as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The aws-sig-v4-test-suite's context: these example credentials, region
    // us-east-1, service `service`, 2015-08-30T12:36:00Z.
    fn suite_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            origin: "test".into(),
        }
    }
    const T: &str = "20150830T123600Z";
    const HOST: &str = "example.amazonaws.com";

    fn sign(method: &str, query: &[(&str, &str)], extra: &[(&str, &str)], payload: &[u8]) -> String {
        let mut headers = vec![("Host", HOST), ("X-Amz-Date", T)];
        headers.extend_from_slice(extra);
        let req = Request { method, path: "/", query, headers: &headers, payload };
        authorization(&req, &suite_creds(), "us-east-1", "service", T)
    }

    fn expected(signed: &str, sig: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}"
        )
    }

    #[test]
    fn hmac_rfc4231_case_2_and_long_key() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231 test case 6: a key longer than the block size.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn get_vanilla() {
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("Host", HOST), ("X-Amz-Date", T)],
            payload: b"",
        };
        let (creq, signed) = canonical_request(&req);
        assert_eq!(
            creq,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;x-amz-date");
        // The suite's string to sign hashes this canonical request to bb5797…
        assert_eq!(sha256_hex(creq.as_bytes()), "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
        assert_eq!(
            sign("GET", &[], &[], b""),
            expected("host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert_eq!(
            sign("GET", &[("Param2", "value2"), ("Param1", "value1")], &[], b""),
            expected("host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn post_vanilla() {
        assert_eq!(
            sign("POST", &[], &[], b""),
            expected("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        assert_eq!(
            sign("POST", &[], &[("Content-Type", "application/x-www-form-urlencoded")], b"Param1=value1"),
            expected(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(1_440_938_160), ("20150830T123600Z".to_string(), "20150830".to_string()));
        assert_eq!(amz_date(0).0, "19700101T000000Z");
        assert_eq!(amz_date(951_782_400).0, "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799).0, "20991231T235959Z");
        assert_eq!(uri_encode("https://api.anthropic.com/a b~"), "https%3A%2F%2Fapi.anthropic.com%2Fa%20b~");
        assert_eq!(uri_encode("é"), "%C3%A9");
        assert_eq!(form_encode(&[("Audience.member.1", "x y"), ("A", "1")]), "Audience.member.1=x%20y&A=1");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = suite_creds();
        c.session_token = Some(Secret::new("session-secret-value"));
        let d = format!("{c:?}");
        assert!(d.contains("AKIDEXAMPLE"));
        assert!(!d.contains("wJalr"), "{d}");
        assert!(!d.contains("session-secret"), "{d}");
    }
}
