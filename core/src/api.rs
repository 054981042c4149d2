//! Calling the Claude API with a federated access token (SPEC §2): the header
//! rules every face that talks to the API (the proxy, the bindings' helpers)
//! must apply the same way.

/// Why `token` cannot be an access token, when it cannot: it goes into an
/// `Authorization: Bearer` header and onto one line of `token --format env`
/// (often appended to `$GITHUB_ENV`), so it must be non-empty printable ASCII
/// without spaces. The one check for tokens from the endpoint, from the disk
/// cache, from a `user_oauth` credentials file and from `ANTHROPIC_AUTH_TOKEN`.
pub fn access_token_problem(token: &str) -> Option<&'static str> {
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
pub fn merge_beta<'a>(values: impl IntoIterator<Item = &'a str>, add: &[&'a str]) -> String {
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

/// [`merge_beta`] with [`OAUTH_BETA`]: the `anthropic-beta` value a request
/// made with an access token must carry.
pub fn with_oauth_beta<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    merge_beta(values, &[OAUTH_BETA])
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
}
