//! Calling the Claude API with a federated access token (docs/design.md §2): the header
//! rules every face that talks to the API (the proxy, the bindings' helpers)
//! must apply the same way, and which request paths may carry the token at all
//! ([`check_forwarded_path`]).

/// Why `token` cannot be an access token, when it cannot: it goes into an
/// `Authorization: Bearer` header and onto one line of `token --format env`
/// (often appended to `$GITHUB_ENV`), so it must be non-empty printable ASCII
/// without spaces. The one check for tokens from the endpoint, from the disk
/// cache, from a `user_oauth` credentials file and from `ANTHROPIC_AUTH_TOKEN`.
pub(crate) fn access_token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("is empty")
    } else if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Some("contains spaces, control characters (a newline…) or non-ASCII characters, which cannot go into an HTTP header")
    } else {
        None
    }
}

/// The beta flag an OAuth access token needs on every API request.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The header that carries beta flags.
pub const BETA_HEADER: &str = "anthropic-beta";

/// Merge `add` into the beta flags of one or more `anthropic-beta` header
/// values (a header may repeat; each value is a comma-separated list).
///
/// Flags are compared whole (`oauth-2025-04-20` is not found in
/// `oauth-2025-04-200`), surrounding white space and empty items are dropped,
/// order is kept, and no flag appears twice.
pub(crate) fn merge_beta<'a>(values: impl IntoIterator<Item = &'a str>, add: &[&'a str]) -> String {
    let mut flags: Vec<&str> = Vec::new();
    let existing = values.into_iter().flat_map(|v| v.split(','));
    for f in existing.chain(add.iter().copied()) {
        let f = f.trim();
        if !f.is_empty() && !flags.contains(&f) {
            flags.push(f);
        }
    }
    flags.join(",")
}

/// `merge_beta` with [`OAUTH_BETA`]: the `anthropic-beta` value a request
/// made with an access token must carry.
pub fn with_oauth_beta<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    merge_beta(values, &[OAUTH_BETA])
}

/// Forwarded paths start with this: the Claude API's versioned routes
/// (Messages, token counting, Message Batches, Models, Files, …).
pub(crate) const FORWARDED_PREFIX: &str = "/v1/";

/// …except the token endpoint: whoever forwards requests makes the exchange
/// itself, and its clients have no business there.
const TOKEN_ENDPOINT_PREFIX: &str = "/v1/oauth/";

/// Why [`check_forwarded_path`] refused a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRefusal {
    /// Not one of the API routes a token is forwarded to (see `FORWARDED_PREFIX`).
    NotForwarded,
    /// A `.` or `..` segment, written plainly or percent-encoded in any case
    /// (`%2e`, `.%2E`), also with `;parameters` (`..;x`, which some servers read
    /// as `..`): a gateway that normalises the path would resolve it against
    /// the base URL's prefix and route the request elsewhere.
    DotSegment,
    /// A percent-encoded byte that a gateway decoding the path could read as
    /// structure: `/` (`%2F`), `\` (`%5C`), `%` (`%25`, which a second decoding
    /// turns into any escape), a control character or a non-ASCII byte; or a
    /// raw backslash, which some servers treat as `/`.
    UnsafeEscape,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl PathRefusal {
    /// What was wrong, for an error message.
    pub fn explain(self) -> &'static str {
        match self {
            PathRefusal::NotForwarded => {
                "only the Claude API's /v1/ routes are forwarded with the access token (not the token endpoint /v1/oauth/)"
            }
            PathRefusal::DotSegment => {
                "the path has a '.' or '..' segment (possibly percent-encoded); it could leave the base URL's prefix"
            }
            PathRefusal::UnsafeEscape => {
                "the path has an encoded '/', '\\', '%', control or non-ASCII byte, or a raw backslash; \
                 a gateway decoding it could route the request elsewhere"
            }
            PathRefusal::BadEscape => "the path has a '%' that is not followed by two hex digits",
        }
    }
}

/// Whether a request path (without the query) may be forwarded to the API's
/// base URL with the access token: it must decode to a `/v1/` route other
/// than the token endpoint, with no dot segments and no escape that a
/// gateway could decode into a separator. Checked on every segment after one
/// percent-decoding; since `%25` is refused, no second decoding can produce
/// anything new. The path is then forwarded exactly as received.
pub fn check_forwarded_path(path: &str) -> Result<(), PathRefusal> {
    let raw = path.as_bytes();
    // Most paths have no escape: check them in place (this runs on every proxied request).
    if !raw.contains(&b'%') {
        return check_decoded(raw);
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = |at: usize| raw.get(at).and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PathRefusal::BadEscape);
                };
                let c = (hi * 16 + lo) as u8;
                if matches!(c, b'/' | b'\\' | b'%') || c.is_ascii_control() || !c.is_ascii() {
                    return Err(PathRefusal::UnsafeEscape);
                }
                decoded.push(c);
                i += 3;
            }
            c if c == b'\\' || c.is_ascii_control() || !c.is_ascii() => return Err(PathRefusal::UnsafeEscape),
            c => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    check_decoded(&decoded)
}

/// The checks after percent-decoding (`raw` bytes were checked there or have no escape).
fn check_decoded(decoded: &[u8]) -> Result<(), PathRefusal> {
    if decoded.iter().any(|c| *c == b'\\' || c.is_ascii_control() || !c.is_ascii()) {
        return Err(PathRefusal::UnsafeEscape);
    }
    // A segment's name is what a gateway routes on: `;` parameters dropped.
    let names = || decoded.split(|c| *c == b'/').map(|s| s.split(|c| *c == b';').next().unwrap_or(s));
    if names().any(|name| name == b"." || name == b"..") {
        return Err(PathRefusal::DotSegment);
    }
    if !decoded.starts_with(FORWARDED_PREFIX.as_bytes()) {
        return Err(PathRefusal::NotForwarded);
    }
    // The token endpoint's segment, however spelled (`OAuth`, `oauth;x`,
    // after empty segments a gateway may merge), is never forwarded.
    let endpoint = TOKEN_ENDPOINT_PREFIX.trim_matches('/').rsplit('/').next().unwrap_or_default().as_bytes();
    if names().skip(2).find(|name| !name.is_empty()).is_some_and(|name| name.eq_ignore_ascii_case(endpoint)) {
        return Err(PathRefusal::NotForwarded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_are_one_printable_word() {
        assert_eq!(access_token_problem("sk-ant-oat01-AbC_d-9~+/="), None);
        assert_eq!(access_token_problem(""), Some("is empty"));
        for bad in ["sk-ant-oat01-a\nANTHROPIC_BASE_URL=https://evil", "a b", "a\tb", "a\r", "tök", "a\u{7f}", " a"] {
            assert!(access_token_problem(bad).is_some_and(|w| w.contains("HTTP header")), "{bad:?}");
        }
    }

    #[test]
    fn adds_the_flag_to_nothing() {
        assert_eq!(with_oauth_beta([]), "oauth-2025-04-20");
        assert_eq!(with_oauth_beta([""]), "oauth-2025-04-20");
        assert_eq!(with_oauth_beta([" , ,"]), "oauth-2025-04-20");
    }

    #[test]
    fn appends_after_existing_flags_in_order() {
        assert_eq!(
            with_oauth_beta(["prompt-caching-2024-07-31, tools-2024-04-04"]),
            "prompt-caching-2024-07-31,tools-2024-04-04,oauth-2025-04-20"
        );
    }

    #[test]
    fn whole_flag_comparison() {
        // A flag that merely contains the name is a different flag.
        assert_eq!(with_oauth_beta(["oauth-2025-04-200"]), "oauth-2025-04-200,oauth-2025-04-20");
        assert_eq!(with_oauth_beta(["x-oauth-2025-04-20"]), "x-oauth-2025-04-20,oauth-2025-04-20");
    }

    #[test]
    fn no_duplicates() {
        assert_eq!(with_oauth_beta(["oauth-2025-04-20"]), "oauth-2025-04-20");
        assert_eq!(with_oauth_beta([" a , oauth-2025-04-20 ,a"]), "a,oauth-2025-04-20");
        assert_eq!(with_oauth_beta(["a,b", "b, oauth-2025-04-20", "c"]), "a,b,oauth-2025-04-20,c");
        assert_eq!(merge_beta(["a"], &["b", "b", "a"]), "a,b");
    }

    #[test]
    fn api_routes_are_forwarded() {
        for p in [
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/batches",
            "/v1/messages/batches/msgbatch_01AbC/results",
            "/v1/models",
            "/v1/models/claude-sonnet-4-5",
            "/v1/files",
            "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w/content",
            "/v1/complete",
            "/v1/a..b/.hidden/...",
            "/v1/x%20y",
            "/%76%31/messages",
        ] {
            assert_eq!(check_forwarded_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn other_routes_and_the_token_endpoint_are_not() {
        for p in ["/", "", "*", "/v1", "/v2/messages", "/V1/messages", "/api/hello", "/v1;x/messages", "//v1/messages"]
        {
            assert_eq!(check_forwarded_path(p), Err(PathRefusal::NotForwarded), "{p}");
        }
        // Also with `;parameters` a gateway may drop (`/v1/oauth;x/token` routed as `/v1/oauth/token`),
        // after an empty segment a gateway may merge, and the bare segment.
        for p in [
            "/v1/oauth/token",
            "/v1/OAuth/token",
            "/v1/%6fauth/token",
            "/v1/oauth/",
            "/v1/oauth;/",
            "/v1/oauth;x/token",
            "/v1//oauth/token",
            "/v1/oauth",
            "/v1/OAUTH%3bx/token",
        ] {
            assert_eq!(check_forwarded_path(p), Err(PathRefusal::NotForwarded), "{p}");
        }
    }

    #[test]
    fn dot_segments_in_any_spelling_are_refused() {
        for p in [
            "/v1/../debug/echo",
            "/../debug/echo",
            "/v1/messages/..",
            "/v1/./messages",
            "/v1/%2e%2e/debug",
            "/v1/%2E%2E/debug",
            "/v1/.%2e/debug",
            "/v1/%2e./debug",
            "/v1/%2e/messages",
            "/v1/..;x/debug",
            "/v1/..%3b/debug",
            "/v1/.;/messages",
        ] {
            assert_eq!(check_forwarded_path(p), Err(PathRefusal::DotSegment), "{p}");
        }
    }

    #[test]
    fn escapes_a_gateway_could_decode_into_structure_are_refused() {
        for p in [
            "/v1/..%2fdebug",
            "/v1/..%2Fdebug",
            "/v1/messages%2f..%2f..%2fdebug",
            "/v1/..%5cdebug",
            "/v1/..%5Cdebug",
            "/v1/..\\debug",
            "/v1/%252e%252e/debug",
            "/v1/%00",
            "/v1/%0a",
            "/v1/%c0%ae%c0%ae/debug",
        ] {
            assert_eq!(check_forwarded_path(p), Err(PathRefusal::UnsafeEscape), "{p}");
        }
        for p in ["/v1/%", "/v1/%2", "/v1/%zz", "/v1/%2g"] {
            assert_eq!(check_forwarded_path(p), Err(PathRefusal::BadEscape), "{p}");
        }
    }

    /// A gateway in front of the API that is as lenient as real ones get:
    /// decodes the path up to three times, treats `\` as `/`, drops `;params`
    /// and resolves dot segments (RFC 3986 §5.2.4).
    fn normalising_gateway(path: &str) -> String {
        let mut p = path.to_string();
        for _ in 0..3 {
            let b = p.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
                match (b[i], hex(i + 1), hex(i + 2)) {
                    (b'%', Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (c, _, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            p = String::from_utf8_lossy(&out).replace('\\', "/");
        }
        let mut stack: Vec<&str> = Vec::new();
        for seg in p.split('/').skip(1) {
            match seg.split(';').next().unwrap_or(seg) {
                "." => {}
                ".." => {
                    stack.pop();
                }
                s => stack.push(s),
            }
        }
        format!("/{}", stack.join("/"))
    }

    proptest::proptest! {
        /// Whatever passes the rule stays under the base URL's prefix and
        /// under /v1/ even behind a normalising gateway.
        #[test]
        fn an_accepted_path_cannot_leave_the_prefix(pieces in proptest::collection::vec(proptest::sample::select(vec![
            "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%25", "%", "%32%65", "v1", "messages",
            "oauth", "token", ";", "%3b", "a", "%61", "%00", "%c0%ae", "%76%31",
        ]), 0..12)) {
            let path: String = pieces.concat();
            for p in [path.clone(), format!("/v1/{path}")] {
                if check_forwarded_path(&p).is_ok() {
                    let routed = normalising_gateway(&format!("/prefix{p}"));
                    proptest::prop_assert!(routed.starts_with("/prefix/v1/"), "{p:?} routed to {routed:?}");
                    proptest::prop_assert!(!routed.to_ascii_lowercase().starts_with("/prefix/v1/oauth/"), "{p:?}");
                }
            }
        }
    }
}
